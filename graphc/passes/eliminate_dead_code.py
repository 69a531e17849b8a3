"""eliminate_dead_code: drops nodes that no graph output depends on.

Graph inputs and parameters are kept even when unused: they are the graph's interface and the
parameters carry data a caller may still feed or read.
"""
from __future__ import annotations

from ..ir.graph import Graph
from ..ir.rebuild import copy_node, new_frame, set_outputs
from .pipeline import register_pass


@register_pass("eliminate_dead_code")
def eliminate_dead_code(graph: Graph) -> Graph:
    """A copy of `graph` without the nodes its outputs do not need."""
    live = graph.live_nodes()
    new, vmap = new_frame(graph)
    for node in graph.nodes:
        if node in live:
            vmap[node.output] = copy_node(new, node, [vmap[i] for i in node.inputs])
    return set_outputs(new, graph, vmap)
