"""TVM lowering of `scan`, by unrolling at lowering time.

The graphc IR stays rolled (one body, one group of scan nodes); only the Relax module repeats the
body once per step, so the trip count must be static here. A Relax loop (a recursive function or
`while`) would keep the module constant-size too; it is not written yet (issue 11). The K nodes of
one scan (final carries, stacked ys) share one unrolled copy.
"""
from __future__ import annotations

from typing import Any

from ..ir.errors import GraphcError
from ..ir.graph import Graph


def lower_scan(e: Any, xs: list[Any], body: Graph, n_carry: int, n_xs: int, length: Any,
               reverse: bool, index: int) -> Any:
    """Result `index` of the scan over the Relax values `xs` (the body emitted once per step)."""
    groups = e.__dict__.setdefault("_scan_groups", {})
    key = (id(body), tuple(id(x) for x in xs), bool(reverse))
    if key in groups:
        return groups[key][1][index]
    L = length[0] if isinstance(length, (tuple, list)) else length
    if not isinstance(L, int):
        raise GraphcError(f"the TVM backend unrolls scan at lowering time, so the trip count must "
                          f"be static; got {L!r} (bind it, or use the onnxruntime backend)")
    saved = (e.in_types, e.out_type)
    R = e.R
    carry = list(xs[:n_carry])
    seqs, consts = list(xs[n_carry:n_carry + n_xs]), list(xs[n_carry + n_xs:])
    outs = list(body.outputs.values())
    ys: list[list[Any]] = [[None] * L for _ in outs[n_carry:]]
    for t in (range(L - 1, -1, -1) if reverse else range(L)):
        x_t = [e.emit(R.squeeze(e.emit(R.strided_slice(s, axes=[0], begin=[t], end=[t + 1])), [0]))
               for s in seqs]
        env = {v.name: val for v, val in zip(body.inputs, carry + x_t + consts)}
        for node in body.nodes:
            e.in_types = [v.type for v in node.inputs]
            e.out_type = node.output.type
            env[node.output.name] = e.emit(node.op.tvm(e, *[env[v.name] for v in node.inputs],
                                                       **node.attrs))
        res = [env[o.name] for o in outs]
        carry = res[:n_carry]
        for j, y in enumerate(res[n_carry:]):
            ys[j][t] = e.emit(R.expand_dims(y, [0]))
    stacked = [e.emit(R.concat(y, axis=0)) for y in ys]
    e.in_types, e.out_type = saved
    groups[key] = (xs, carry + stacked)  # xs held so their ids stay theirs
    return (carry + stacked)[index]
