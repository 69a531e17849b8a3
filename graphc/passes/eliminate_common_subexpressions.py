"""eliminate_common_subexpressions: one node for each (op, inputs, attributes) computed twice.

All primitives are pure functions of their inputs and attributes (random_uniform too: it is a
hash of its seed and counter inputs), so two nodes that agree on all three compute the same
value. The first node survives, with its name, source line and provenance.
"""
from __future__ import annotations

from typing import Any, Hashable

import numpy as np

from ..ir.graph import Graph, Value
from .pipeline import register_pass
from ..ir.rebuild import copy_node, new_frame, set_outputs


def freeze(v: Any) -> Hashable:
    """A hashable key that is equal exactly when two attribute values are equal.

    Arrays compare by dtype, shape and bytes (so -0.0 and 0.0, or NaN payloads, stay distinct);
    scalars by type and repr (so True, 1 and 1.0 stay distinct).
    """
    if isinstance(v, np.ndarray):
        return ("ndarray", v.dtype.str, v.shape, np.ascontiguousarray(v).tobytes())
    if isinstance(v, (tuple, list)):
        return (type(v).__name__, tuple(freeze(x) for x in v))
    if isinstance(v, dict):
        return ("dict", tuple(sorted((k, freeze(x)) for k, x in v.items())))
    if isinstance(v, (float, np.floating)):
        return (type(v).__name__, float(v).hex())
    if isinstance(v, (bool, int, str, type(None), np.integer, np.bool_)):
        return (type(v).__name__, repr(v))
    return (type(v).__name__, repr(v))


def node_key(op_name: str, inputs: list[Value], attrs: dict[str, Any], out_type: Any) -> Hashable:
    """The identity of a computation: op, the exact input values, attributes and result type."""
    return (op_name, tuple(id(i) for i in inputs), freeze(attrs), out_type)


@register_pass("eliminate_common_subexpressions")
def eliminate_common_subexpressions(graph: Graph) -> Graph:
    """A copy of `graph` in which equal computations are done once."""
    new, vmap = new_frame(graph)
    seen: dict[Hashable, Value] = {}
    for node in graph.nodes:
        ins = [vmap[i] for i in node.inputs]
        key = node_key(node.op.name, ins, node.attrs, node.output.type)
        hit = seen.get(key)
        if hit is None:
            hit = seen[key] = copy_node(new, node, ins)
        vmap[node.output] = hit
    return set_outputs(new, graph, vmap)
