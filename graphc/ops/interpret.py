"""The reference interpreter: runs each node's numpy `ref` kernel in order.

It lives with the ops because it is the meaning of a graph (each primitive's `ref` kernel is the
living definition of the op); the numpy backend, eager module calls and the ONNX importer's
constant folding all run it.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..ir.errors import GraphcError
from ..ir.graph import Graph, Node
from ..ir.printer import node_in_context
from ..ir.types import eval_dim


def resolve_attrs(node: Node, bindings: dict[str, int]) -> dict[str, Any]:
    """The node's attributes with symbolic dims in its shape attributes replaced by sizes."""
    attrs = dict(node.attrs)
    for k in node.op.shape_attrs:
        if k in attrs:
            try:
                attrs[k] = tuple(eval_dim(d, bindings) for d in attrs[k])
            except KeyError as exc:
                raise GraphcError(f"{node.op.name}: symbol {exc.args[0]} has no size; bind it by "
                                  "feeding an input that uses it") from None
    return attrs


def interpret(graph: Graph, feeds: dict[str, np.ndarray], bindings: dict[str, int]
              ) -> dict[str, np.ndarray]:
    """Evaluates every node; returns arrays by value name (inputs, params and node outputs)."""
    env: dict[str, np.ndarray] = {p.name: p.data for p in graph.params}
    env.update(feeds)
    for node in graph.nodes:
        args = [env[v.name] for v in node.inputs]
        try:
            out = node.op.ref(*args, **resolve_attrs(node, bindings))
        except GraphcError:
            raise
        except Exception as exc:  # noqa: BLE001 - re-raised with the node in context
            where = f"{node.source}: " if node.source else ""
            raise GraphcError(f"{where}{node.op.name} failed in the numpy reference: {exc}\n"
                              f"{node_in_context(graph, node)}") from exc
        out = np.asarray(out)
        if out.dtype != np.dtype(node.output.type.dtype):
            out = out.astype(node.output.type.dtype)
        env[node.output.name] = out
    return env
