"""`gc.scan`: a loop traced once into a body subgraph (JAX's `lax.scan` meaning)."""
from __future__ import annotations

import inspect
import itertools
from typing import Any, Callable

import numpy as np

from ..ir.errors import GraphBuildError, user_frame
from ..ir.graph import Graph, Value, current_graph
from ..ir.types import TensorType, normalize_dim
from . import dsl
from .dsl import Tensor

__all__ = ["scan"]

_bodies = itertools.count()


# ---- pytrees of tensors: a Tensor (or array/number) leaf, tuples, lists, dicts, None -------------

def _flatten(tree: Any) -> tuple[list[Any], Any]:
    if tree is None:
        return [], None
    if isinstance(tree, (tuple, list)):
        leaves, defs = [], []
        for t in tree:
            lv, d = _flatten(t)
            leaves += lv
            defs.append((len(lv), d))
        return leaves, (type(tree), defs)
    if isinstance(tree, dict):
        keys = list(tree)
        leaves, defs = [], []
        for k in keys:
            lv, d = _flatten(tree[k])
            leaves += lv
            defs.append((len(lv), d))
        return leaves, (dict, list(zip(keys, defs)))
    return [tree], "leaf"


def _unflatten(tdef: Any, leaves: list[Any]) -> Any:
    if tdef is None:
        return None
    if tdef == "leaf":
        return leaves[0]
    kind, defs = tdef
    out, pos = [], 0
    items = defs if kind is not dict else [d for _, d in defs]
    for n, d in items:
        out.append(_unflatten(d, leaves[pos:pos + n]))
        pos += n
    if kind is dict:
        return {k: v for (k, _), v in zip(defs, out)}
    return kind(out)


def _body_line(fn: Callable) -> str:
    try:
        file = inspect.getsourcefile(fn) or "?"
        line = inspect.getsourcelines(fn)[1]
        return f"{file.rsplit('/', 1)[-1]}:{line}"
    except (TypeError, OSError):
        return getattr(fn, "__name__", "body")


class _Capture:
    """Turns a value of an enclosing graph, read by the body, into a body input (a constant of
    the loop); each outer value is captured once."""

    def __init__(self, body: Graph, outer: Graph):
        self.body, self.outer = body, outer
        self.map: dict[Value, Value] = {}

    def __call__(self, v: Value) -> Value:
        if v.graph is self.body:
            return v
        if v.graph is not self.outer:
            if id(self.outer) in dsl.CAPTURE:  # a loop inside a loop: capture it level by level
                v = dsl.CAPTURE[id(self.outer)](v)
            else:
                raise GraphBuildError(f"{user_frame()}: value %{v.name} belongs to graph "
                                      f"{v.graph.name!r}, which does not enclose this loop body")
        if v not in self.map:
            self.map[v] = self.body.add_input(self.body.unique_name(f"k.{v.name}"), v.type)
        return self.map[v]


def scan(body: Callable[[Any, Any], tuple[Any, Any]], init: Any, xs: Any = None,
         length: int | str | None = None, reverse: bool = False) -> tuple[Any, Any]:
    """Loops `body(carry, x_t) -> (carry, y_t)` over the leading axis of `xs` (JAX's lax.scan).

    The body is traced once into a subgraph held by `scan` nodes, so the graph does not grow with
    the trip count, which may be symbolic (`("T", "N", 64)`). Values of the enclosing graph that
    the body reads (weights) become loop constants, and gradients flow to them.

    Args:
        body: a function of (carry, x_t) returning (new carry, y_t); carry, x_t and y_t are
            pytrees (a Tensor, tuples, lists, dicts) of Tensors; y_t may be None.
        init: the initial carry (a pytree of Tensors).
        xs: a pytree of Tensors, each of shape (length, ...), or None.
        length: the trip count; needed when `xs` is None, else checked against it.
        reverse: run t = length-1 down to 0; ys stay indexed by t.

    Returns:
        (final carry, stacked ys): ys leaves have shape (length, *y_t.shape).

    Raises:
        GraphBuildError: xs of different lengths, no length, or a carry whose shape or dtype the
            body changes (naming the body's line and both types).

    Example: ``h, hs = gc.scan(lambda h, x: (h + x, h), h0, xs)``
    """
    src = user_frame()
    c_leaves, c_def = _flatten(init)
    x_leaves, x_def = _flatten(xs)
    tensors = [t for t in c_leaves + x_leaves if isinstance(t, (Tensor, Value))]
    outer = tensors[0].graph if tensors else current_graph()
    if outer is None:
        raise GraphBuildError(f"{src}: gc.scan: no graph is being built")
    if id(outer) in dsl.CAPTURE or current_graph() is not None and id(current_graph()) in dsl.CAPTURE:
        outer = current_graph()
    c_vals = [dsl.as_value(t, outer) for t in c_leaves]
    x_vals = [dsl.as_value(t, outer) for t in x_leaves]
    lens = {normalize_dim(v.type.shape[0]) for v in x_vals if v.type.rank}
    if any(v.type.rank == 0 for v in x_vals):
        raise GraphBuildError(f"{src}: gc.scan: xs leaves need a leading loop axis, got a scalar")
    if len(lens) > 1:
        raise GraphBuildError(f"{src}: gc.scan: xs leaves have different lengths {sorted(map(str, lens))}")
    if length is not None and lens and normalize_dim(length) not in lens:
        raise GraphBuildError(f"{src}: gc.scan: length={length} but xs have length {lens.pop()}")
    if length is None and not lens:
        raise GraphBuildError(f"{src}: gc.scan: give xs or length")
    L = normalize_dim(length) if length is not None else lens.pop()
    name = getattr(body, "__name__", "body")
    name = "scan_body" if name == "<lambda>" else name
    g = Graph(f"{name}_{next(_bodies)}")
    line = _body_line(body)
    cin = [g.add_input(f"carry{i}", v.type) for i, v in enumerate(c_vals)]
    xin = [g.add_input(f"x{i}", TensorType(tuple(v.type.shape[1:]), v.type.dtype))
           for i, v in enumerate(x_vals)]
    cap = _Capture(g, outer)
    dsl.CAPTURE[id(g)] = cap
    try:
        with g:
            res = body(_unflatten(c_def, [Tensor(v) for v in cin]),
                       _unflatten(x_def, [Tensor(v) for v in xin]))
            if not isinstance(res, (tuple, list)) or len(res) != 2:
                raise GraphBuildError(f"{src}: gc.scan: the body ({line}) must return (carry, y), "
                                      f"got {type(res).__name__}")
            nc_leaves, nc_def = _flatten(res[0])
            y_leaves, y_def = _flatten(res[1])
            if nc_def != c_def:
                raise GraphBuildError(f"{src}: gc.scan: the body ({line}) returns a carry of another "
                                      f"structure than init ({len(nc_leaves)} leaves for "
                                      f"{len(c_leaves)})")
            nc = [dsl.as_value(t, g, c.type.dtype) for t, c in zip(nc_leaves, cin)]
            ys = [dsl.as_value(t, g) for t in y_leaves]
    finally:
        del dsl.CAPTURE[id(g)]
    for i, (a, b) in enumerate(zip(cin, nc)):
        if a.type != b.type:
            raise GraphBuildError(f"{src}: gc.scan: the body ({line}) takes carry {i} as {a.type} "
                                  f"and returns {b.type}; a carry keeps its shape and dtype")
    for i, v in enumerate(nc):
        g.outputs[f"carry{i}"] = v
    for i, v in enumerate(ys):
        g.outputs[f"y{i}"] = v
    consts = list(cap.map)
    inputs = c_vals + x_vals + consts
    attrs = dict(body=g, n_carry=len(c_vals), n_xs=len(x_vals), length=(L,), reverse=bool(reverse))
    with outer:
        outs = [dsl.apply("scan", inputs, dict(attrs, index=i), name="scan")
                for i in range(len(nc) + len(ys))]
    return _unflatten(c_def, outs[:len(nc)]), _unflatten(y_def, outs[len(nc):])
