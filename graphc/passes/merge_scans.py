"""merge_scans: one loop where the gradient added a second over the same inputs.

Scan's gradient stacks residuals with a scan over an extended body (the forward body plus
residual outputs, `graphc.ops.control.extended_body`) reading the same inputs as the forward
scan. This pass points the forward scan's result nodes at the extended body (same index), so both
groups share one body and one input list: the reference kernel and every lowering then run the
forward loop once instead of twice.
"""
from __future__ import annotations

from ..ir.graph import Graph
from ..ir.rebuild import new_frame, set_outputs
from ..ops.control import extended_body
from .pipeline import register_pass


def _key(node, body) -> tuple:
    a = node.attrs
    return (id(body), tuple(id(i) for i in node.inputs), a.get("reverse"), a.get("length"))


@register_pass("merge_scans")
def merge_scans(graph: Graph) -> Graph:
    """A copy of `graph` whose forward scans use the extended body of a residual scan."""
    ext: dict[tuple, Graph] = {}
    for n in graph.nodes:
        body = n.attrs.get("body")
        base = extended_body(body) if isinstance(body, Graph) else None
        if base is not None:
            ext[_key(n, base)] = body
    if not ext:
        return graph
    new, vmap = new_frame(graph)
    for node in graph.nodes:
        attrs = node.attrs
        body = attrs.get("body")
        if isinstance(body, Graph) and _key(node, body) in ext:
            attrs = dict(attrs, body=ext[_key(node, body)])
        vmap[node.output] = new.add_node(node.op, [vmap[i] for i in node.inputs], attrs,
                                         node.output.type, node.output.name, node.source,
                                         node.origin)
    return set_outputs(new, graph, vmap)
