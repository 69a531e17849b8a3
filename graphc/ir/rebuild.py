"""Rebuilding a graph node by node: the one copy routine every pass uses.

A pass starts from `new_frame(graph)` (same name, meta, inputs and params with their roles),
re-adds the nodes it keeps with `copy_node`, and ends with `set_outputs`, which carries the
output names, their order and the state updates over.
"""
from __future__ import annotations

from typing import Sequence

from .graph import Graph, Node, Value


def new_frame(graph: Graph) -> tuple[Graph, dict[Value, Value]]:
    """An empty graph with `graph`'s name, meta, inputs and params (roles kept, data shared)."""
    return graph.clone(nodes=False)


def copy_node(g: Graph, node: Node, inputs: Sequence[Value]) -> Value:
    """Adds a copy of `node` over `inputs` to `g`, keeping its name, source and provenance."""
    return g.add_node(node.op, list(inputs), node.attrs, node.output.type, node.output.name,
                      node.source, node.origin)


def set_outputs(new: Graph, old: Graph, vmap: dict[Value, Value]) -> Graph:
    """Points `new`'s outputs (same names, same order) and state updates at the mapped values."""
    return new.finish_copy(old, vmap)
