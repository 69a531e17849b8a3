"""ONNX lowering of `scan`: a standard ai.onnx `Scan` whose body is the lowered body Graph.

The K nodes of one graphc scan (one per result: final carries, stacked ys) share a body and an
input list; the first one lowered emits the Scan, the others reuse its outputs. Loop constants
(weights the body reads) are not Scan inputs: the body refers to them by their outer names, as
ONNX allows a subgraph to read values of the enclosing graph.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..ir.graph import Graph, Value
from ..ir.types import TensorType


def _renamed_body(body: Graph, prefix: str, const_names: list[str], n_carry: int, n_xs: int,
                  dummy: bool) -> Graph:
    """A copy of `body` whose names are unique in the enclosing ONNX graph: internal values get
    `prefix/`, loop constants take the outer names they read."""
    g = Graph(prefix)
    vm: dict[Value, Value] = {}
    ins = list(body.inputs)
    for i, v in enumerate(ins[:n_carry]):
        vm[v] = g.add_input(f"{prefix}/c{i}", v.type)
    if dummy:
        g.add_input(f"{prefix}/step", TensorType((), "float32"))
    for i, v in enumerate(ins[n_carry:n_carry + n_xs]):
        vm[v] = g.add_input(f"{prefix}/x{i}", v.type)
    for v, name in zip(ins[n_carry + n_xs:], const_names):
        vm[v] = g.add_input(name, v.type)
    for n in body.nodes:
        vm[n.output] = g.add_node(n.op, [vm[i] for i in n.inputs], n.attrs, n.output.type,
                                  f"{prefix}/{n.output.name}", n.source, n.origin)
    # a body output takes its value's own name where it can, so the lowering adds no Identity
    # (onnxruntime copies each one on every iteration); a body input or a value returned twice
    # needs one, under a name of its own
    produced = {n.output for n in body.nodes}
    for i, v in enumerate(body.outputs.values()):
        own = vm[v].name
        name = own if v in produced and own not in g.outputs else f"{prefix}/out{i}"
        g.outputs[name] = vm[v]
    return g


def lower_scan(e: Any, xs: list[str], body: Graph, n_carry: int, n_xs: int, length: Any,
               reverse: bool, index: int) -> str:
    """The ONNX name of result `index` of the scan over inputs `xs` (emitting the Scan once)."""
    from .onnx import to_onnx
    groups = e.__dict__.setdefault("_scan_groups", {})
    key = (id(body), tuple(xs), bool(reverse))
    if key in groups:
        return groups[key][index]
    L = length[0] if isinstance(length, (tuple, list)) else length
    if getattr(e, "loops", "scan") == "unroll" and isinstance(L, int) and L > 0:
        groups[key] = _unrolled(e, xs, body, n_carry, n_xs, L, reverse)
        return e.op("Identity", [groups[key][index]])
    prefix = e.fresh(f"{e.prefix}/scan_body")
    carries, seqs = xs[:n_carry], xs[n_carry:n_carry + n_xs]
    consts = xs[n_carry + n_xs:]
    dummy = n_xs == 0
    if dummy:  # Scan needs one scanned input: a vector of `length` zeros stands for the steps
        seqs = [e.op("ConstantOfShape", [e.shape_tensor((L,))],
                     value=_onnx_tensor(np.zeros(1, np.float32)))]
    sub = _renamed_body(body, prefix, consts, n_carry, n_xs, dummy)
    sg = to_onnx(sub, opset=e.opset).graph
    _own_names(sg, prefix)
    keep = [i for i in sg.input if i.name not in set(consts)]
    del sg.input[:]
    sg.input.extend(keep)
    n_out = len(body.outputs)
    m, k = len(seqs), n_out - n_carry
    attrs: dict[str, Any] = dict(body=sg, num_scan_inputs=m)
    if reverse:
        attrs["scan_input_directions"] = [1] * m
        if k:
            attrs["scan_output_directions"] = [1] * k
    outs = e.op("Scan", carries + seqs, n_out=n_out, **attrs)
    outs = [outs] if n_out == 1 else list(outs)
    groups[key] = outs
    # an Identity, so the graph value's name lands on it and not on the Scan's first output
    return e.op("Identity", [outs[index]])


def _unrolled(e: Any, xs: list[str], body: Graph, n_carry: int, n_xs: int, L: int,
              reverse: bool) -> list[str]:
    """The scan's results with the body's lowering repeated once per step (no Scan node): the
    graphc IR stays rolled, only the ONNX model is unrolled (`to_onnx(..., loops="unroll")`)."""
    saved = (e.in_types, e.out_type, e.prefix)
    carry = list(xs[:n_carry])
    seqs, consts = list(xs[n_carry:n_carry + n_xs]), list(xs[n_carry + n_xs:])
    outs = list(body.outputs.values())
    ys: list[list[str]] = [[""] * L for _ in outs[n_carry:]]
    zero_axis = None
    for t in (range(L - 1, -1, -1) if reverse else range(L)):
        e.prefix = f"{saved[2]}/t{t}"
        x_t = [e.op("Gather", [s_, e.const(np.array(t, np.int64))], axis=0) for s_ in seqs]
        env = {v.name: n for v, n in zip(body.inputs, carry + x_t + consts)}
        for node in body.nodes:
            e.in_types = [v.type for v in node.inputs]
            e.out_type = node.output.type
            e.prefix = f"{saved[2]}/t{t}/{node.output.name}"
            env[node.output.name] = node.op.onnx(e, *[env[v.name] for v in node.inputs],
                                                 **node.attrs)
        res = [env[o.name] for o in outs]
        carry = res[:n_carry]
        if zero_axis is None:
            zero_axis = e.const(np.array([0], np.int64), "axes")
        for j, y in enumerate(res[n_carry:]):
            ys[j][t] = e.op("Unsqueeze", [y, zero_axis])
    e.in_types, e.out_type, e.prefix = saved
    return carry + [e.op("Concat", y, axis=0) for y in ys]


def _own_names(sg: Any, prefix: str) -> None:
    """Prefixes the names the body's lowering made up (`shape_of_N/Shape`), which would clash
    with the enclosing graph's: ONNX names are single-assignment across scopes."""
    mine = prefix + "/"
    ren: dict[str, str] = {}
    for t in sg.initializer:
        if not t.name.startswith(mine):
            ren[t.name] = t.name = mine + t.name
    for n in sg.node:
        for j, o in enumerate(n.output):
            if o and not o.startswith(mine):
                ren[o] = mine + o
                n.output[j] = ren[o]
        if n.name and not n.name.startswith(mine):
            n.name = mine + n.name
    for n in sg.node:
        for j, i in enumerate(n.input):
            if i in ren:
                n.input[j] = ren[i]
    for o in sg.output:
        if o.name in ren:
            o.name = ren[o.name]


def _onnx_tensor(a: np.ndarray):
    import onnx
    return onnx.numpy_helper.from_array(a)
