"""Loop bodies: mapping a graph transformation over the subgraphs held in node attributes.

Not a pass. A pipeline registered with ``bodies=True`` (pipeline.py) runs itself, after its
passes, on every loop body (a Graph in a node attribute, as `scan`'s ``body``), nested bodies
included, so a body is simplified and fused by the same passes as the graph around it. Passes
themselves stay local to one graph and never call a pipeline.
"""
from __future__ import annotations

from typing import Callable

from ..ir.graph import Graph
from ..ir.rebuild import new_frame, set_outputs


def has_bodies(graph: Graph) -> bool:
    """True where some node of `graph` holds a Graph in an attribute."""
    return any(isinstance(a, Graph) for n in graph.nodes for a in n.attrs.values())


def bodies(graph: Graph) -> list[Graph]:
    """The distinct loop bodies of `graph` (not nested ones), in node order."""
    seen: dict[int, Graph] = {}
    for n in graph.nodes:
        for a in n.attrs.values():
            if isinstance(a, Graph):
                seen.setdefault(id(a), a)
    return list(seen.values())


def map_bodies(graph: Graph, fn: Callable[[Graph], Graph],
               changed: Callable[[Graph, Graph], bool]) -> Graph:
    """A copy of `graph` whose loop bodies are `fn(body)`; `graph` itself where it has none.

    Each distinct body is transformed once, so the K result nodes of one scan keep sharing one
    body object; a body for which `changed(old, new)` is false is kept as it was (its identity
    matters to `extended_body`). `fn` must keep the body's inputs and output names (a pipeline
    checks that for every pass).
    """
    if not has_bodies(graph):
        return graph
    done = {id(b): b for b in bodies(graph)}
    for key, body in list(done.items()):
        new_body = fn(body)
        done[key] = new_body if changed(body, new_body) else body
    if all(done[id(b)] is b for b in bodies(graph)):
        return graph
    new, vmap = new_frame(graph)
    for node in graph.nodes:
        attrs = {k: done[id(a)] if isinstance(a, Graph) else a for k, a in node.attrs.items()}
        vmap[node.output] = new.add_node(node.op, [vmap[i] for i in node.inputs], attrs,
                                         node.output.type, node.output.name, node.source,
                                         node.origin)
    return set_outputs(new, graph, vmap)
