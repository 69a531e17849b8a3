"""eliminate_dead_code: drops nodes that no graph output depends on.

Graph inputs and parameters are kept even when unused: they are the graph's interface and the
parameters carry data a caller may still feed or read.
"""
from __future__ import annotations

from ..ir.graph import Graph, Node
from .pipeline import register_pass
from ..ir.rebuild import copy_node, new_frame, set_outputs


def live_nodes(graph: Graph) -> set[Node]:
    """The nodes some output depends on (walked backwards from the outputs)."""
    live: set[Node] = set()
    stack = [v.producer for v in graph.outputs.values() if v.producer is not None]
    while stack:
        n = stack.pop()
        if n in live:
            continue
        live.add(n)
        stack.extend(i.producer for i in n.inputs if i.producer is not None and i.producer not in live)
    return live


@register_pass("eliminate_dead_code")
def eliminate_dead_code(graph: Graph) -> Graph:
    """A copy of `graph` without the nodes its outputs do not need."""
    live = live_nodes(graph)
    new, vmap = new_frame(graph)
    for node in graph.nodes:
        if node in live:
            vmap[node.output] = copy_node(new, node, [vmap[i] for i in node.inputs])
    return set_outputs(new, graph, vmap)
