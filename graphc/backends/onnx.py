"""ONNX lowering and export; with onnx_session.py, the only modules that import onnx / onnxruntime.

onnxruntime execution (sessions, `OnnxExecutable`, `OrtStepper`, the backend registration) is in
`graphc.backends.onnx_session`; its public names are re-exported here.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..ir.errors import GraphcError
from ..ir.graph import Graph, Node
from ..ir.printer import node_in_context
from ..ir.types import TensorType, parse_dim

DEFAULT_OPSET = 18
#: the ai.onnx opsets graphc writes; each is tested with onnx.checker (full_check) and with
#: onnxruntime against the numpy reference over the whole op table (tests/backends/test_onnx_opsets.py).
#: Lowerings whose ONNX form changed in this range ask `e.opset` or use the emitter's helpers
#: (`reduce`, `reduce_mean`, `shape_of`).
SUPPORTED_OPSETS = tuple(range(13, 29))
IR_VERSION = 10  # onnxruntime 1.31 rejects onnx 1.23's default IR version 14


def _onnx():
    import onnx
    return onnx


_DTYPE = {"float32": 1, "int32": 6, "int64": 7, "bool": 9, "float16": 10, "float64": 11, "bfloat16": 16,
          "uint8": 2, "int8": 3, "uint16": 4, "int16": 5, "uint32": 12, "uint64": 13,
          "float8_e4m3fn": 17, "float8_e4m3fnuz": 18, "float8_e5m2": 19, "float8_e5m2fnuz": 20,
          "uint4": 21, "int4": 22, "float4_e2m1fn": 23, "float8_e8m0fnu": 24, "uint2": 25, "int2": 26}


class OnnxEmitter:
    """Collects ONNX nodes and initializers while ops lower themselves.

    Lowerings call `op`, `const`, `shape_tensor` and `onnx_dtype`, and read `in_types` and
    `out_type` of the node being lowered.
    """

    def __init__(self, graph: Graph, opset: int):
        self.graph, self.opset = graph, opset
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        # output names are taken too: a fresh tensor name must never be an output's
        self._names: set[str] = {v.name for v in graph.values()} | set(graph.outputs)
        self._consts: dict[tuple, str] = {}
        self._dim_cache: dict[str, str] = {}
        self.sym_source: dict[str, tuple[str, int]] = {}
        for v in graph.inputs:
            for axis, d in enumerate(v.type.shape):
                if isinstance(d, str):
                    coef, syms = parse_dim(d)
                    if coef == 1 and sum(syms.values()) == 1:
                        self.sym_source.setdefault(next(iter(syms)), (v.name, axis))
        self.in_types: list[TensorType] = []
        self.out_type: TensorType | None = None
        self.prefix = graph.name

    def scan(self, xs: list[str], body: Graph, n_carry: int, n_xs: int, length: Any,
             reverse: bool, index: int) -> str:
        """One result of a `scan` node: an ONNX Scan with the body as a subgraph (onnx_control)."""
        from .onnx_control import lower_scan
        return lower_scan(self, xs, body, n_carry, n_xs, length, reverse, index)

    def fresh(self, hint: str) -> str:
        name, k = hint, 0
        while name in self._names:
            k += 1
            name = f"{hint}_{k}"
        self._names.add(name)
        return name

    @staticmethod
    def onnx_dtype(dtype: str) -> int:
        return _DTYPE[dtype]

    def op(self, op_type: str, inputs: list[str], n_out: int = 1, **attrs: Any) -> Any:
        """Emits one ONNX node; returns its output's name (a list of `n_out` names if n_out > 1)."""
        out = self.fresh(f"{self.prefix}/{op_type}")
        outs = [out] + [self.fresh(f"{out}_{i}") for i in range(1, n_out)]
        self.nodes.append(_onnx().helper.make_node(op_type, list(inputs), outs, name=out, **attrs))
        return out if n_out == 1 else outs

    def reduce(self, op_type: str, x: str, axes=None, keepdims: bool = False) -> str:
        """ONNX `op_type` (ReduceSum, ReduceMax, ...) of `x` over `axes` (None: all of them).

        The axes are an input from opset 13 for ReduceSum and from opset 18 for the other
        Reduce* ops, an attribute before; this writes the form of `self.opset`.
        """
        if axes is None:
            return self.op(op_type, [x], keepdims=int(keepdims))
        axes = [int(a) for a in axes]
        if op_type == "ReduceSum" or self.opset >= 18:
            return self.op(op_type, [x, self.const(np.array(axes, np.int64))], keepdims=int(keepdims))
        return self.op(op_type, [x], axes=axes, keepdims=int(keepdims))

    def reduce_mean(self, x: str, x_type: TensorType, axes=None, keepdims: bool = False) -> str:
        """The mean of `x` (of type `x_type`) over `axes` (None: all), NaN over no element.

        onnxruntime's ReduceMean of an empty slice is 0, numpy's and PyTorch's mean is NaN
        (0 / 0); where a reduced dim may be 0 (a symbolic or a zero dim) this writes the sum
        divided by the count read at run time, which is NaN there as well.
        """
        rank = x_type.rank
        ax = list(range(rank)) if axes is None else [int(a) % max(rank, 1) for a in axes]
        dims = [x_type.shape[a] for a in ax]
        if all(isinstance(d, (int, np.integer)) and d > 0 for d in dims):
            return self.reduce("ReduceMean", x, axes, keepdims)
        total = self.reduce("ReduceSum", x, axes, keepdims)
        dt = x_type.dtype
        if all(isinstance(d, (int, np.integer)) for d in dims):  # a static zero dim
            return self.op("Div", [total, self.const(np.zeros((), dt))])
        sizes = self.op("Gather", [self.op("Shape", [x]), self.const(np.array(ax, np.int64))])
        count = self.op("Cast", [self.reduce("ReduceProd", sizes)], to=self.onnx_dtype(dt))
        return self.op("Div", [total, count])

    def shape_of(self, x: str, start: int, end: int) -> str:
        """`x`'s dims start..end-1 as a 1-D int64 tensor (Shape's start/end exist from opset 15)."""
        if self.opset >= 15:
            return self.op("Shape", [x], start=start, end=end)
        return self.op("Slice", [self.op("Shape", [x]), self.const(np.array([start], np.int64)),
                                 self.const(np.array([end], np.int64))])

    def const(self, value: np.ndarray, name_hint: str = "const") -> str:
        """An initializer holding `value` (small ones shared)."""
        value = np.asarray(value)
        key = None
        if value.size <= 16:
            key = (value.dtype.str, value.shape, value.tobytes())
            if key in self._consts:
                return self._consts[key]
        name = self.fresh(f"{self.prefix}/{name_hint}")
        self.initializers.append(_onnx().numpy_helper.from_array(value, name))
        if key is not None:
            self._consts[key] = name
        return name

    def _sym_dim(self, sym: str) -> str:
        if sym not in self._dim_cache:
            if sym not in self.sym_source:
                raise GraphcError(f"symbolic dim {sym!r} is not the dim of any graph input, so its "
                                  "size cannot be read at run time")
            src, axis = self.sym_source[sym]
            saved, self.prefix = self.prefix, f"shape_of_{sym}"
            self._dim_cache[sym] = self.shape_of(src, axis, axis + 1)
            self.prefix = saved
        return self._dim_cache[sym]

    def shape_tensor(self, dims, allow_minus_one: bool = False) -> str:
        """A 1-D int64 tensor of `dims`, reading symbolic sizes from the inputs' shapes."""
        dims = tuple(dims)
        symbolic = [d for d in dims if not isinstance(d, (int, np.integer))]
        if not symbolic:
            return self.const(np.array(dims, np.int64), "shape")
        if allow_minus_one and len(symbolic) == 1:
            return self.const(np.array([-1 if d == symbolic[0] else d for d in dims], np.int64), "shape")
        parts = []
        for d in dims:
            if isinstance(d, (int, np.integer)):
                parts.append(self.const(np.array([d], np.int64), "dim"))
                continue
            coef, syms = parse_dim(d)
            acc = None
            for s in sorted(syms.elements()):
                sd = self._sym_dim(s)
                acc = sd if acc is None else self.op("Mul", [acc, sd])
            if coef != 1:
                acc = self.op("Mul", [acc, self.const(np.array([coef], np.int64), "dim")])
            parts.append(acc)
        if len(parts) == 1:  # a one-part Concat is a copy onnxruntime does not remove
            return parts[0]
        return self.op("Concat", parts, axis=0)


def _value_info(name: str, t: TensorType):
    dims = [d if isinstance(d, int) else str(d) for d in t.shape]
    return _onnx().helper.make_tensor_value_info(name, _DTYPE[t.dtype], dims)


def check_opset(opset: int | None) -> int:
    """`opset` (None: `DEFAULT_OPSET`) if graphc writes it; else a GraphcError listing those it does."""
    if opset is None:
        return DEFAULT_OPSET
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)) or \
            int(opset) not in SUPPORTED_OPSETS:
        raise GraphcError(f"opset {opset!r} is not supported: graphc writes ai.onnx opsets "
                          f"{SUPPORTED_OPSETS[0]} to {SUPPORTED_OPSETS[-1]} (default {DEFAULT_OPSET})")
    return int(opset)


def missing_onnx_lowerings(graph: Graph) -> list[Node]:
    return [n for n in graph.nodes if n.op.onnx is None]


def to_onnx(graph: Graph, opset: int | None = None, params_as_inputs: bool = False,
            loops: str = "scan"):
    """Lowers `graph` to an onnx.ModelProto (standard ai.onnx ops only).

    Args:
        graph: the graph.
        opset: the ai.onnx opset (default 18); one of `SUPPORTED_OPSETS` (13 to 28).
        params_as_inputs: also list parameters as graph inputs (with their initial values as
            defaults), so a runtime can feed new values; off for a plain inference model.
        loops: "scan" lowers each graphc `scan` to an ONNX Scan with its body as a subgraph;
            "unroll" repeats the body once per step where the trip count is static (faster on
            onnxruntime's CPU build, see onnx_control.py), a Scan elsewhere.

    Internal values named like an output of another value are renamed in the model (an ONNX
    name has one definition), so the model's inputs and outputs keep the graph's names.

    Raises:
        GraphcError: an unsupported opset, a node without an ONNX lowering, or an input or
            parameter whose name is the name of an output of another value.
    """
    onnx = _onnx()
    opset = check_opset(opset)
    missing = missing_onnx_lowerings(graph)
    if missing:
        lines = "\n".join(f"  {n.op.name} at {n.source or '?'} (%{n.output.name})" for n in missing)
        raise GraphcError(f"graph {graph.name!r}: {len(missing)} node(s) have no ONNX lowering:\n{lines}")
    e = OnnxEmitter(graph, opset)
    if loops not in ("scan", "unroll"):
        raise GraphcError(f"loops must be 'scan' or 'unroll', got {loops!r}")
    e.loops = loops
    names: dict[str, str] = {v.name: v.name for v in graph.inputs + graph.params}
    for v in graph.inputs + graph.params:
        out = graph.outputs.get(v.name)
        if out is not None and out is not v:
            raise GraphcError(f"graph {graph.name!r}: output {v.name!r} is %{out.name}, but an "
                              f"{'input' if v in graph.inputs else 'parameter'} has that name too; "
                              "ONNX gives a name one definition: rename the output")
    # the ONNX name of each node's value: its own, unless an output of another value has it
    own_name = {}
    for node in graph.nodes:
        v = node.output
        clash = v.name in graph.outputs and graph.outputs[v.name] is not v
        own_name[v.name] = e.fresh(v.name) if clash else v.name
    for p in graph.params:
        e.initializers.append(onnx.numpy_helper.from_array(np.asarray(p.data), p.name))
    for node in graph.nodes:
        e.in_types = [v.type for v in node.inputs]
        e.out_type = node.output.type
        e.prefix = node.output.name
        start = len(e.nodes)
        try:
            out = _lower_node(e, node, [names[v.name] for v in node.inputs])
        except GraphcError:
            raise
        except Exception as exc:  # noqa: BLE001 - re-raised with the node in context
            raise GraphcError(f"{node.source or '?'}: lowering {node.op.name} to ONNX failed: {exc}\n"
                              f"{node_in_context(graph, node)}") from exc
        doc = _provenance(node)
        for emitted in e.nodes[start:]:
            emitted.doc_string = doc
        # give the node's final ONNX tensor the graph value's name, for readable exports
        produced = [n for n in e.nodes[start:] if out in n.output]
        if produced and not any(out in n.input for n in e.nodes[start:]):
            produced[0].output[0] = own_name[node.output.name]
            produced[0].name = own_name[node.output.name]
            out = own_name[node.output.name]
        names[node.output.name] = out
    outputs = []
    for k, v in graph.outputs.items():
        src = names[v.name]
        if src != k:
            e.nodes.append(onnx.helper.make_node("Identity", [src], [k], name=f"output/{k}",
                                                doc_string=f"graphc: output {k!r} is %{v.name}"))
        outputs.append(_value_info(k, v.type))
    inputs = [_value_info(v.name, v.type) for v in graph.inputs]
    if params_as_inputs:
        inputs += [_value_info(p.name, p.type) for p in graph.params]
    g = onnx.helper.make_graph(e.nodes, graph.name, inputs, outputs, e.initializers)
    model = onnx.helper.make_model(g, opset_imports=[onnx.helper.make_opsetid("", opset)],
                                   producer_name="graphc", producer_version=_graphc_version())
    model.ir_version = IR_VERSION
    onnx.helper.set_model_props(model, _model_props(graph))
    return model


def _graphc_version() -> str:
    from importlib import metadata
    try:
        return metadata.version("graphc")
    except metadata.PackageNotFoundError:  # pragma: no cover - a source tree without install
        return "unknown"


def _provenance(node: Node) -> str:
    """The doc_string of the ONNX nodes lowered from `node`: its graphc op, value, source line
    and, for a backward node, the forward op it comes from (`node.origin`)."""
    lines = [f"graphc: {node.op.name} -> %{node.output.name}",
             f"source: {node.source or '?'}"]
    if node.origin:
        lines.append(f"origin: {node.origin}")
    return "\n".join(lines)


def _model_props(graph: Graph) -> dict[str, str]:
    """metadata_props: the graphc version, the graph's name and the pipelines that built it."""
    props = {"graphc.version": _graphc_version(), "graphc.graph": graph.name}
    if graph.spec is not None and graph.spec.reports:
        props["graphc.pipelines"] = ", ".join(graph.spec.reports)
    return props


def export_onnx(graph: Graph, path: str | os.PathLike | None = None, opset: int | None = None,
                check: bool = True):
    """Writes `graph` as an ONNX model and returns the ModelProto.

    Parameters become initializers, symbolic dims become named dims, and input/output names are
    the graph's. The model passes `onnx.checker.check_model(model, full_check=True)`.
    `opset` is one of `SUPPORTED_OPSETS` (ai.onnx 13 to 28; default 18).

    Raises:
        GraphcError: another opset (the message lists the supported ones), or see `to_onnx`.

    Example: ``gc.export_onnx(graph, "model.onnx", opset=17)``
    """
    onnx = _onnx()
    model = to_onnx(graph, opset)
    if check:
        onnx.checker.check_model(model, full_check=True)
    if path is not None:
        onnx.save(model, os.fspath(path))
    return model


def _lower_node(e: OnnxEmitter, node: Node, ins: list[str]) -> str:
    """The node's ONNX lowering; a bfloat16 node whose ONNX op accepts bfloat16 only from a
    later opset (`op.onnx_bfloat16_opset`: Conv, pools at 22) runs in float32 between Casts."""
    bf16 = [t.dtype == "bfloat16" for t in e.in_types]
    if not (e.opset < node.op.onnx_bfloat16_opset and (any(bf16) or e.out_type.dtype == "bfloat16")):
        return node.op.onnx(e, *ins, **node.attrs)
    f32 = _DTYPE["float32"]
    ins = [e.op("Cast", [x], to=f32) if b else x for x, b in zip(ins, bf16)]
    e.in_types = [t.with_dtype("float32") if b else t for t, b in zip(e.in_types, bf16)]
    low_out = e.out_type.dtype == "bfloat16"
    if low_out:
        e.out_type = e.out_type.with_dtype("float32")
    out = node.op.onnx(e, *ins, **node.attrs)
    return e.op("Cast", [out], to=_DTYPE["bfloat16"]) if low_out else out


# the onnxruntime side (sessions, executable, stepper, backend registration) lives in
# onnx_session.py; imported last because it imports `to_onnx` from here
from .onnx_session import (  # noqa: E402,F401  (re-exported)
    ONNXRUNTIME_LOOPS, OnnxExecutable, OnnxRuntimeBackend, OrtStepper, check_kernels,
    missing_cpu_kernels, ort_providers)
