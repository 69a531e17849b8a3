"""prune_scan_outputs: a loop stops stacking the per-step outputs nobody reads.

A scan with K results is K nodes sharing one body (graphc/ops/control.py); once dead-code
elimination has dropped the result nodes nothing reads, the body still returns those ys, and
every backend still stacks them: onnxruntime copies each one on every iteration. This pass gives
each such group a body without the unread ys (the carries stay: they feed the next step) and
renumbers the remaining result nodes. The body's now-dead nodes go when the pipeline simplifies
inside the bodies.
"""
from __future__ import annotations

from ..ir.graph import Graph
from ..ir.rebuild import copy_node, new_frame, set_outputs
from ..ops.control import scan_group
from .pipeline import register_pass


def _without(body: Graph, drop: set[int]) -> Graph:
    """A copy of `body` returning all its outputs except those at the positions in `drop`."""
    new, vmap = body.clone(nodes=False)
    for n in body.nodes:
        vmap[n.output] = copy_node(new, n, [vmap[i] for i in n.inputs])
    new.outputs = {k: vmap[v] for j, (k, v) in enumerate(body.outputs.items()) if j not in drop}
    return new


@register_pass("prune_scan_outputs")
def prune_scan_outputs(graph: Graph) -> Graph:
    """A copy of `graph` whose scans return only the stacked ys some node reads."""
    used: dict[tuple, set[int]] = {}
    for n in graph.nodes:
        if scan_group(n) is not None:
            used.setdefault(scan_group(n), set()).add(int(n.attrs.get("index", 0)))
    plans: dict[tuple, tuple[Graph, dict[int, int]]] = {}
    bodies: dict[tuple, Graph] = {}
    for n in graph.nodes:
        key = scan_group(n)
        if key is None or key in plans:
            continue
        body, n_carry = n.attrs["body"], int(n.attrs["n_carry"])
        drop = {j for j in range(n_carry, len(body.outputs)) if j not in used[key]}
        if not drop:
            continue
        bkey = (id(body), frozenset(drop))
        if bkey not in bodies:
            bodies[bkey] = _without(body, drop)
        kept = [j for j in range(len(body.outputs)) if j not in drop]
        plans[key] = (bodies[bkey], {old: new for new, old in enumerate(kept)})
    if not plans:
        return graph
    new, vmap = new_frame(graph)
    for n in graph.nodes:
        plan = plans.get(scan_group(n))
        if plan is None:
            vmap[n.output] = copy_node(new, n, [vmap[i] for i in n.inputs])
            continue
        body, index = plan
        attrs = dict(n.attrs, body=body, index=index[int(n.attrs.get("index", 0))])
        vmap[n.output] = new.add_node(n.op, [vmap[i] for i in n.inputs], attrs, n.output.type,
                                      n.output.name, n.source, n.origin)
    return set_outputs(new, graph, vmap)

