"""ONNX import: an onnx ModelProto (or .onnx file) -> a graphc Graph built with the DSL.

Each ONNX op is translated into DSL calls by one handler (the table `HANDLERS` in
onnx_import_ops.py, filled by the onnx_import_*.py modules), so the result is an ordinary graph:
printable, differentiable, exportable again. What the handlers need to know when importing
(Reshape's shape, axes, pads, ...) must be constants (or graph inputs fixed with
`input_values=`); ONNX shape arithmetic on symbolic sizes (Shape -> Gather -> Concat -> Reshape,
as exporters write for a dynamic batch) is followed at import time (onnx_import_shapes.py) and
read at run time where it is used as data, and other all-constant subgraphs are folded with the
numpy reference, under a size cap. Before any of that, onnx_import_checks.py refuses malformed
or hostile files.

Initializers become parameters (trainable, with their values) when they are floating point and
used as data; integer ones, ones only read at import time, and names made by exporters for
constants (containing "/") become constants. Pass ``params=`` to choose otherwise.
"""
from __future__ import annotations

import os
import re
from typing import Any, Callable, Iterable, Union

import numpy as np

from ..ir.graph import Graph, current_graph
from ..ir.types import DTYPES, Dim
from . import dsl
from .dsl import Tensor
from .onnx_import_checks import Limits, OnnxImportError, check_model, load_model, read_tensor
from .onnx_import_ops import HANDLERS, NOT_PARAM_INPUTS, Val
from . import onnx_import_attention, onnx_import_control, onnx_import_index  # noqa: F401
from . import onnx_import_grid, onnx_import_math  # noqa: F401
from . import onnx_import_nn, onnx_import_pool, onnx_import_resize  # noqa: F401
from . import onnx_import_quant, onnx_import_recurrent, onnx_import_training  # noqa: F401
from .onnx_import_random import RANDOM_OPS
from . import onnx_import_rnn, onnx_import_select  # noqa: F401  (each registers its handlers)
from .onnx_import_shapes import SYMBOLIC, dims_tensor


__all__ = ["OnnxImportError", "Limits", "import_onnx"]
_BAD_NAME = re.compile(r"[^A-Za-z0-9_.:/\-]")


class _Ctx:
    """What a handler sees: the node, its attributes, and helpers to read its inputs."""

    def __init__(self, imp: "_Importer", node: Any, inputs: list[Val]):
        self.imp, self.node, self.inputs = imp, node, inputs
        self.attrs = imp.attributes(node)
        self.opset = imp.opset

    def where(self) -> str:
        return self.imp.describe(self.node)

    def fail(self, msg: str) -> OnnxImportError:
        return OnnxImportError(f"{self.where()}: {msg}")

    def has(self, i: int) -> bool:
        return i < len(self.inputs) and self.inputs[i] is not None

    def t(self, i: int) -> Tensor:
        """Input i as a graph Tensor (constants become constant nodes)."""
        v = self.inputs[i]
        if isinstance(v, Tensor):
            return v
        if v is None:
            raise self.fail(f"input {i} is missing")
        if current_graph() is not self.imp.g:  # folding in a scratch graph
            return self.imp.constant(v, self)
        # one constant node per ONNX tensor, named after it, however many nodes read it
        name = self.node.input[i]
        if name not in self.imp.consts:
            t = self.imp.constant(v, self)
            self.imp.g.rename(t.value, _BAD_NAME.sub("_", name))
            self.imp.consts[name] = t
        return self.imp.consts[name]

    def const(self, i: int, what: str) -> np.ndarray:
        """Input i as a constant known now; raises if it is computed at run time."""
        v = self.inputs[i] if i < len(self.inputs) else None
        if v is None:
            raise self.fail(f"{what} (input {i}) is missing")
        if isinstance(v, Tensor):
            raise self.fail(f"{what} (input {i}, {self.node.input[i]!r}) is computed at run time; "
                            "graphc needs it known when importing")
        if v.dtype == object:
            raise self.fail(f"{what} (input {i}) holds symbolic sizes {list(v.reshape(-1))}")
        return v

    def dims(self, i: int, what: str) -> tuple[Dim, ...]:
        """Input i as a list of dims: ints, or symbols read from an input's shape."""
        v = self.inputs[i] if i < len(self.inputs) else None
        if isinstance(v, Tensor) or v is None:
            self.const(i, what)
        return tuple(d if isinstance(d, str) else int(d) for d in np.asarray(v).reshape(-1))

    def ints(self, name: str, i: int | None = None, default: Any = None) -> Any:
        """An int list from attribute `name`, else from input i (newer opsets), else default."""
        if name in self.attrs:
            return [int(a) for a in np.atleast_1d(self.attrs[name])]
        if i is not None and self.has(i):
            return [int(a) for a in self.const(i, name).reshape(-1)]
        return default

    def attr(self, name: str, default: Any = None) -> Any:
        return self.attrs.get(name, default)

    def only(self, name: str, allowed: Iterable[Any], default: Any) -> Any:
        v = self.attrs.get(name, default)
        if v not in allowed:
            raise self.fail(f"attribute {name}={v!r} is not supported (only {list(allowed)})")
        return v


# ---- the importer -------------------------------------------------------------------------

ParamRule = Union[None, Iterable[str], Callable[[str, np.ndarray], bool]]


class _Importer:
    def __init__(self, model: Any, label: str, name: str | None, params: ParamRule,
                 base_dir: str | None = None, limits: Limits = Limits(),
                 input_values: dict[str, Any] | None = None):
        self.model, self.label = model, label
        self.input_values = dict(input_values or {})
        self.base_dir, self.limits = base_dir, limits
        self.g = Graph(name or model.graph.name or "onnx_model")
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)
        self.env: dict[str, Val] = {}
        self.consts: dict[str, Tensor] = {}
        self.params = params
        self._symbols: set[str] = set()
        #: symbol -> (input tensor, axis) it is the size of, to compute symbolic sizes at run time
        self.sym_sources: dict[str, tuple[Tensor, int]] = {}
        self._scopes: list[str] = []  # the subgraphs being imported, outermost first

    # -- helpers used by handlers ----------------------------------------------------------------
    def describe(self, node: Any) -> str:
        idx = self._current
        nm = f" {node.name!r}" if node.name else ""
        inner = "".join(f" > {where}" for where in self._scopes)
        if inner:  # a node of a subgraph (If, Loop, Scan): the path to it
            return f"{self.label}: node {idx}{inner} > {node.op_type}{nm}"
        return f"{self.label}: node {idx} ({node.op_type}{nm})"

    def run_subgraph(self, gp: Any, bindings: dict[str, Val], where: str) -> list[Val]:
        """Imports a subgraph's nodes inline, its inputs bound to `bindings` (by position in
        gp.input), outer-scope values visible; returns its outputs' values."""
        if len(bindings) != len(gp.input):
            raise OnnxImportError(f"{where}: the subgraph {gp.name!r} takes {len(gp.input)} "
                                  f"inputs, given {len(bindings)}")
        saved, saved_consts = self.env, self.consts
        # names are per invocation: a loop body's constants differ from one iteration to the next
        self.env, self.consts = dict(saved), dict(saved_consts)
        self._scopes.append(where)
        try:
            for vi, v in zip(gp.input, bindings.values()):
                self.env[vi.name] = v
            for t in gp.initializer:
                self.env[t.name] = read_tensor(t, self.label, self.base_dir)
            for node in gp.node:
                self._node(node)
            missing = [vi.name for vi in gp.output if vi.name not in self.env]
            if missing:
                raise OnnxImportError(f"{where}: subgraph outputs {missing} are not computed")
            return [self.env[vi.name] for vi in gp.output]
        finally:
            self.env, self.consts = saved, saved_consts
            self._scopes.pop()

    def context(self, radius: int = 2) -> str:
        """The ONNX nodes around the current one, as text, the current one marked with '>'."""
        nodes = self.model.graph.node
        i = self._current if isinstance(self._current, int) else 0
        lines = []
        for j in range(max(0, i - radius), min(len(nodes), i + radius + 1)):
            n = nodes[j]
            attrs = "".join(f", {a.name}=..." for a in n.attribute)
            lines.append(f"{'>' if j == i else ' '} {j:4d}  {', '.join(n.output)} = {n.op_type}("
                         f"{', '.join(n.input)}{attrs})")
        return "\n".join(lines)

    def attributes(self, node: Any) -> dict[str, Any]:
        from onnx import AttributeProto, helper
        out = {}
        for a in node.attribute:
            if a.type in (AttributeProto.GRAPH, AttributeProto.GRAPHS):
                out[a.name] = a.g if a.type == AttributeProto.GRAPH else list(a.graphs)
                continue
            v = helper.get_attribute_value(a)
            if isinstance(v, bytes):
                v = v.decode()
            elif a.type == AttributeProto.TENSOR:
                v = read_tensor(v, self.describe(node), self.base_dir, f"attribute {a.name!r}")
            elif isinstance(v, list) and v and isinstance(v[0], bytes):
                v = [x.decode() for x in v]
            out[a.name] = v
        return out

    def dtype_of(self, elem_type: int, ctx: Any = None) -> str:
        from onnx import helper
        try:
            name = np.dtype(helper.tensor_dtype_to_np_dtype(elem_type)).name
        except Exception:  # noqa: BLE001 - unknown enum value
            name = f"type {elem_type}"
        if name not in DTYPES:
            where = ctx.where() if ctx is not None else self.label
            raise OnnxImportError(f"{where}: dtype {name} is not supported (graphc has "
                                  f"{', '.join(DTYPES)})")
        return name

    def constant(self, v: np.ndarray, ctx: Any = None) -> Tensor:
        if v.dtype == object:  # symbolic sizes used as data: read them at run time
            try:
                return dims_tensor(v, self.sym_sources)
            except ValueError as exc:
                raise OnnxImportError(f"{ctx.where() if ctx else self.label}: symbolic sizes "
                                      f"{list(v.reshape(-1))} are used as run-time data: {exc}"
                                      ) from None
        if v.dtype.name not in DTYPES:
            if v.dtype.kind in "iu":
                v = v.astype(np.int64)
            else:
                raise OnnxImportError(f"{ctx.where() if ctx else self.label}: constant of dtype "
                                      f"{v.dtype} is not supported")
        return dsl.constant(np.asarray(v), graph=current_graph())

    def symbol(self, text: str, fallback: str) -> str:
        s = re.sub(r"\W", "_", text) if text else fallback
        if not s or not (s[0].isalpha() or s[0] == "_"):
            s = "d_" + s
        self._symbols.add(s)
        return s

    # -- the whole model ---------------------------------------------------------------------------
    def run(self) -> Graph:
        gp = self.model.graph
        self._current: Any = "?"
        self._check_supported(gp)
        inits = {t.name: read_tensor(t, self.label, self.base_dir) for t in gp.initializer}
        as_param = self._param_names(gp, inits)
        unknown = set(self.input_values) - {vi.name for vi in gp.input}
        if unknown:
            raise OnnxImportError(f"{self.label}: input_values names {sorted(unknown)}, which are "
                                  "not graph inputs")
        g = self.g
        with g:
            for vi in gp.input:
                if vi.name in inits and vi.name not in self.input_values:
                    continue
                t = _tensor_type(vi.type)
                if vi.name in self.input_values:  # known now: a constant, not an input
                    self.env[vi.name] = self._known_input(vi, self.input_values[vi.name])
                    continue
                dtype = self.dtype_of(t.elem_type)
                dims = []
                for axis, d in enumerate(t.shape.dim):
                    if d.HasField("dim_value"):
                        dims.append(int(d.dim_value))
                    else:
                        fallback = f"{_BAD_NAME.sub('_', vi.name)}_{axis}"
                        dims.append(self.symbol(d.dim_param, fallback))
                x = self.env[vi.name] = g.input(_BAD_NAME.sub("_", vi.name), tuple(dims), dtype)
                for axis, d in enumerate(dims):
                    if isinstance(d, str):
                        self.sym_sources.setdefault(d, (x, axis))
            for name, arr in inits.items():
                if name in as_param:
                    self.dtype_of_array(arr, name)
                    self.env[name] = g.param(_BAD_NAME.sub("_", name), init=np.array(arr))
                else:
                    self.env[name] = np.array(arr)
            for i, node in enumerate(gp.node):
                self._current = i
                self._node(node)
            for vi in gp.output:
                if vi.name not in self.env:
                    raise OnnxImportError(f"{self.label}: output {vi.name!r} is not computed by "
                                          "any node")
                v = self.env[vi.name]
                g.output(**{vi.name: v if isinstance(v, Tensor) else self.constant(v)})
        g.meta["onnx_source"] = self.label
        return g

    def _known_input(self, vi: Any, value: Any) -> np.ndarray:
        from onnx import helper
        t = _tensor_type(vi.type)
        arr = np.asarray(value)
        want = np.dtype(helper.tensor_dtype_to_np_dtype(t.elem_type))
        dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
        if arr.dtype != want or (t.HasField("shape") and (
                len(dims) != arr.ndim or any(d is not None and d != n
                                             for d, n in zip(dims, arr.shape)))):
            raise OnnxImportError(f"{self.label}: input_values[{vi.name!r}] is {arr.dtype} "
                                  f"{arr.shape}; the input is {want} {tuple(dims)}")
        return arr

    def dtype_of_array(self, arr: np.ndarray, name: str) -> None:
        if arr.dtype.name not in DTYPES:
            raise OnnxImportError(f"{self.label}: initializer {name!r} has dtype {arr.dtype}, which "
                                  f"graphc does not support ({', '.join(DTYPES)})")

    def _check_supported(self, gp: Any) -> None:
        missing: dict[str, list[str]] = {}

        def visit(nodes: Any, where: str) -> None:
            for i, n in enumerate(nodes):
                key = _op_key(n)
                here = f"{where}node {i}" + (f" {n.name!r}" if n.name else "")
                if key not in HANDLERS:
                    missing.setdefault(key, []).append(here)
                for a in n.attribute:  # subgraphs of If, Loop, Scan
                    for sub in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                        visit(sub.node, f"{here} > {a.name} ")
        visit(gp.node, "")
        if missing:
            lines = [f"  {op} x{len(where)} (first at {where[0]})"
                     for op, where in sorted(missing.items())]
            raise OnnxImportError(f"{self.label}: {len(missing)} ONNX op type(s) cannot be "
                                  "imported:\n" + "\n".join(lines)
                                  + f"\nsupported: {', '.join(sorted(HANDLERS))}")

    def _param_names(self, gp: Any, inits: dict[str, np.ndarray]) -> set[str]:
        rule = self.params
        if rule is not None and not callable(rule):
            names = set(rule)
            unknown = names - set(inits)
            if unknown:
                raise OnnxImportError(f"{self.label}: params names {sorted(unknown)} are not "
                                      "initializers of the model")
            return names
        data_use: set[str] = set()

        def walk(nodes: Any) -> None:
            for n in nodes:
                static = NOT_PARAM_INPUTS.get(n.op_type, ())
                for i, name in enumerate(n.input):
                    if i not in static:
                        data_use.add(name)
                # a loop body (Scan, Loop, If) reads outer initializers by name: data too
                for a in n.attribute:
                    for sub in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                        walk(sub.node)

        walk(gp.node)
        out = set()
        for name, arr in inits.items():
            if callable(rule):
                if rule(name, arr):
                    out.add(name)
            elif arr.dtype.kind == "f" and name in data_use and "/" not in name:
                out.add(name)
        return out

    def _node(self, node: Any) -> None:
        ins: list[Val] = []
        for name in node.input:
            if not name:
                ins.append(None)
                continue
            if name not in self.env:
                raise OnnxImportError(f"{self.describe(node)}: input {name!r} is not defined before "
                                      "this node (the model's nodes must be in topological order)")
            ins.append(self.env[name])
        start = len(self.g.nodes)
        given = [v for v in ins if v is not None]
        try:
            if given and not any(isinstance(v, Tensor) for v in given) and \
                    node.op_type not in ("If", "Loop", "Scan") + RANDOM_OPS:
                # subgraphs import in place; a random op draws at run time, never at import
                outs = self._fold(node, ins)
            else:
                outs = self._call(node, ins)
        except OnnxImportError as exc:
            raise OnnxImportError(f"{exc}\n{self.context()}") from None
        except Exception as exc:  # noqa: BLE001 - re-raised naming the ONNX node, in context
            # a DSL error names the Python line that called the DSL; the ONNX node says more
            msg = re.sub(r"^(\S+:\d+|None): ", "", str(exc))
            raise OnnxImportError(f"{self.describe(node)}: {msg}\n{self.context()}") from exc
        src = f"{self.label}:{self._current}"
        for n in self.g.nodes[start:]:
            n.source = src
        outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
        for name, v in zip(node.output, outs):
            if not name:
                continue
            if name in self.env:  # check_model refuses this first; kept so no value is replaced
                raise OnnxImportError(f"{self.describe(node)}: output {name!r} is already defined")
            if isinstance(v, Tensor) and v.value.producer is not None and \
                    v.value.producer in self.g.nodes[start:] and v.value.name != name:
                self.g.rename(v.value, name)
            self.env[name] = v

    def _call(self, node: Any, ins: list[Val]) -> Any:
        return HANDLERS[_op_key(node)](_Ctx(self, node, ins))

    def _fold(self, node: Any, ins: list[Val]) -> Any:
        """An op on constants only: evaluated now (symbolic dims by SYMBOLIC, else numpy)."""
        from ..ops.interpret import interpret
        if any(isinstance(v, np.ndarray) and v.dtype == object for v in ins):
            if node.op_type in SYMBOLIC:
                return SYMBOLIC[node.op_type](_Ctx(self, node, ins), ins)
            return self._call(node, ins)  # symbolic dims in a static position (Reshape's shape)
        scratch = Graph("fold")
        with scratch:
            outs = self._call(node, ins)
        single = not isinstance(outs, (list, tuple))
        outs = [outs] if single else list(outs)
        for n in scratch.nodes:  # before numpy allocates anything
            if n.output.type.is_static:
                self.limits.check(n.output.type.shape, n.output.type.dtype,
                                  f"{self.describe(node)}: folding at import")
        if any(isinstance(o, Tensor) for o in outs):
            env = interpret(scratch, {}, {})
            outs = [env[o.value.name] if isinstance(o, Tensor) else o for o in outs]
        return outs[0] if single else outs


def _tensor_type(tp: Any) -> Any:
    """The tensor type of a graph input: its own, or that of an optional tensor (which graphc
    imports as a tensor that is always present)."""
    if tp.HasField("optional_type") and tp.optional_type.elem_type.HasField("tensor_type"):
        return tp.optional_type.elem_type.tensor_type
    return tp.tensor_type


def _op_key(node: Any) -> str:
    """The handler table's key of a node: its op type, prefixed by its domain unless ai.onnx."""
    return node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"


def import_onnx(model: Any, name: str | None = None, params: ParamRule = None, *,
                base_dir: str | os.PathLike | None = None,
                max_fold_bytes: int = Limits.max_fold_bytes,
                max_tensor_bytes: int = Limits.max_tensor_bytes,
                input_values: dict[str, Any] | None = None, trainable: bool = False) -> Any:
    """Reads an ONNX model into a graphc Graph (or, with `trainable=True`, an nn Module).

    Args:
        model: a path to an .onnx file, or an onnx.ModelProto.
        name: the graph's name (default: the ONNX graph's name).
        params: which initializers become trainable parameters: None for the default rule
            (floating-point initializers used as data, except names with a "/", which
            graphc's exporter gives its constants), a collection of initializer names, or a function
            ``(name, array) -> bool``. The others become constants.
        base_dir: the directory external data is read from (with onnx's checks: relative
            locations only, no "..", no symlinks). Default: the model file's directory; a
            ModelProto with external data needs it (the working directory is never used).
        max_fold_bytes: the largest tensor the import may compute itself (constant folding,
            ConstantOfShape, Range), in bytes; default 256 MiB.
        max_tensor_bytes: the largest tensor the model may declare, in bytes; default 16 GiB.
        input_values: values of graph inputs known when importing ({name: array}); those
            inputs become constants, so a shape, axes or pads input the model reads at run
            time can be fixed (graphc's shapes are known when a graph is built).
        trainable: return a `graphc.nn` Module (`OnnxModule`) instead of the Graph: its
            parameters are the trainable initializers under readable names, and calling it
            inside `@gc.function` inlines the model, so it fine-tunes with `gc.Trainer`.

    Returns:
        A Graph with the model's inputs (dim_params become symbolic dims; unnamed dims get a
        symbol named after the input and axis), parameters and outputs, in ONNX order. Every
        node's source is ``<file>:<index of the ONNX node>``.

    Raises:
        OnnxImportError: a malformed or hostile model (empty or truncated file, what onnx.checker
            rejects, with its message, an unknown opset, a name written twice, an initializer
            whose data does not fit its shape, external data without a directory, a tensor over
            a size limit), listing every unsupported op type at once, or naming the node whose
            attributes, dtypes or run-time shape inputs graphc cannot express.

    Example:
        >>> g = gc.import_onnx("resnet18.onnx"); gc.compile(g)(input=x)

    ONNX has no stop-gradient: graphc's `stop_gradient` exports as Identity and comes back as a
    plain pass-through, so gradients of an imported graph may differ where one was used (not
    for the max-shift in graphc's softmax and logsumexp, whose gradient cancels exactly).
    """
    model, label, base = load_model(model, base_dir)
    limits = Limits(max_tensor_bytes=int(max_tensor_bytes), max_fold_bytes=int(max_fold_bytes))
    check_model(model, label, base, limits)
    graph = _Importer(model, label, name, params, base, limits, input_values).run()
    if trainable:
        from .nn.imported import OnnxModule
        return OnnxModule(graph)
    return graph
