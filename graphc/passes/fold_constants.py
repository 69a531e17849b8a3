"""fold_constants: evaluates nodes whose inputs are all literals, at compile time.

Each such node is run with its op's numpy `ref` kernel (the op's definition, so folding cannot
disagree with the reference backend) and replaced by a literal node of the same name, source line
and provenance. Results larger than `max_elements` (and larger than the node's largest input) are
left alone: `expand(1.0, (60000, 784))` is better computed at run time than stored in the model.
A node whose kernel fails (an index out of range, say) is left for run time to report.
"""
from __future__ import annotations

import numpy as np

from ..ir.graph import Graph, Node, Value
from ..ops.base import get_op
from .pipeline import register_pass
from ..ir.rebuild import copy_node, new_frame, set_outputs
from .rewrite import constant_literal

#: results with more elements than this are not folded (unless no bigger than an input)
MAX_ELEMENTS = 4096


def _static_attrs(node: Node) -> bool:
    return all(isinstance(d, (int, np.integer)) for k in node.op.shape_attrs
               for d in (node.attrs.get(k) or ()))


def try_fold(node: Node, inputs: list[Value], max_elements: int) -> np.ndarray | None:
    """The value of `node` over literal `inputs`, or None when it should not be folded."""
    if node.op.arity == 0 or not node.output.type.is_static or not _static_attrs(node):
        return None
    arrays = [constant_literal(v) for v in inputs]
    if any(a is None for a in arrays):
        return None
    size = int(np.prod(node.output.type.shape, dtype=np.int64))
    if size > max_elements and size > max((a.size for a in arrays), default=0):
        return None
    try:
        with np.errstate(all="ignore"):
            out = np.asarray(node.op.ref(*arrays, **node.attrs))
    except Exception:  # noqa: BLE001 - the same error is reported, with context, at run time
        return None
    if out.shape != tuple(node.output.type.shape):
        return None
    return np.array(out, dtype=node.output.type.dtype, order="C")  # keeps 0-d arrays 0-d


@register_pass("fold_constants")
def fold_constants(graph: Graph, max_elements: int = MAX_ELEMENTS) -> Graph:
    """A copy of `graph` with every foldable node replaced by its value (a literal node)."""
    const = get_op("constant")
    new, vmap = new_frame(graph)
    for node in graph.nodes:
        ins = [vmap[i] for i in node.inputs]
        value = try_fold(node, ins, max_elements)
        if value is None:
            vmap[node.output] = copy_node(new, node, ins)
        else:
            vmap[node.output] = new.add_node(const, [], {"value": value}, const.infer(value=value),
                                             node.output.name, node.source, node.origin)
    return set_outputs(new, graph, vmap)
