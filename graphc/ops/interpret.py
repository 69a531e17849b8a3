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
from ..ir.types import DTYPES, compute_dtype, eval_dim

#: numpy dtype -> the dtype its kernels compute in, for the dtypes that differ (`compute_dtype`)
_WIDEN = {np.dtype(d): np.dtype(compute_dtype(d)) for d in DTYPES if compute_dtype(d) != d}


def _widen(a):
    """float16/bfloat16 (and float8 / float4) arrays as float32, 4- and 2-bit integers as 8-bit:
    every kernel computes them so and the interpreter rounds the result back to the node's dtype
    (as GPU kernels accumulate)."""
    if isinstance(a, np.ndarray):
        to = _WIDEN.get(a.dtype)
        if to is not None:
            return a.astype(to)
    return a


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


def run_ref(op, args: list, attrs: dict[str, Any], out_dtype: str) -> np.ndarray:
    """`op`'s numpy kernel on `args`, float16/bfloat16 inputs computed in float32 and the result
    rounded to `out_dtype`: what the interpreter does for one node. Example:
    ``run_ref(get_op("exp"), [x_bf16], {}, "bfloat16")``."""
    if not op.traits.exact_bits:
        args = [_widen(a) for a in args]
    out = np.asarray(op.ref(*args, **attrs))
    return out if out.dtype == np.dtype(out_dtype) else out.astype(out_dtype)


def interpret(graph: Graph, feeds: dict[str, np.ndarray], bindings: dict[str, int]
              ) -> dict[str, np.ndarray]:
    """Evaluates every node; returns arrays by value name (inputs, params and node outputs)."""
    env: dict[str, np.ndarray] = {p.name: p.data for p in graph.params}
    env.update(feeds)
    for node in graph.nodes:
        args = [env[v.name] if node.op.traits.exact_bits else _widen(env[v.name])
                for v in node.inputs]
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
