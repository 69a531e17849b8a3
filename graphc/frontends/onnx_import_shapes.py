"""Shape arithmetic on symbolic sizes for the ONNX importer, done at import time.

Exporters compute run-time shapes with ONNX ops (Shape -> Gather -> Unsqueeze -> Concat ->
Reshape for `x.reshape(x.shape[0], -1)`). The importer holds such values as numpy object arrays
of dims (ints and symbols such as "N", "8*N") and folds the ops here; they turn back into int64
arrays as soon as no symbol is left.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from ..ir.types import Dim, dim_divide, dim_product, parse_dim

if TYPE_CHECKING:  # pragma: no cover
    from .onnx_import import _Ctx


def norm_dims(v: np.ndarray) -> np.ndarray:
    """An object array of dims becomes int64 once no symbol is left in it."""
    if not isinstance(v, np.ndarray):  # numpy hands back a bare element for 0-d results
        v = np.asarray(v, dtype=object)
    flat = list(v.reshape(-1))
    if all(isinstance(d, (int, np.integer)) for d in flat):
        return np.asarray(v.astype(np.int64) if v.size else np.zeros(v.shape, np.int64))
    return v


def _sym_binary(fn: Callable[[Dim, Dim], Dim]) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    return lambda a, b: norm_dims(np.asarray(np.frompyfunc(fn, 2, 1)(a, b), dtype=object))


def _dim_div(a: Dim, b: Dim) -> Dim:
    q = dim_divide(a, b)
    if q is None:
        raise ValueError(f"{a} / {b} does not divide exactly")
    return q


def _dim_int_only(op: Callable[[int, int], int]) -> Callable[[Dim, Dim], Dim]:
    def fn(a, b):
        if isinstance(a, str) or isinstance(b, str):
            raise ValueError(f"cannot express {a} {op.__name__} {b} as a dim")
        return op(int(a), int(b))
    return fn


SYMBOLIC: dict[str, Callable[[_Ctx, list[np.ndarray]], np.ndarray]] = {
    "Identity": lambda c, v: v[0],
    "Cast": lambda c, v: _fold_cast(c, v[0]),
    "Gather": lambda c, v: norm_dims(np.take(v[0], v[1].astype(np.int64),
                                              axis=int(c.attr("axis", 0)))),
    "Concat": lambda c, v: norm_dims(np.concatenate(
        [np.asarray(x, dtype=object) for x in v if x is not None], axis=int(c.attr("axis")))),
    "Unsqueeze": lambda c, v: _fold_unsqueeze(c, v[0]),
    "Squeeze": lambda c, v: _fold_squeeze(c, v[0]),
    "Reshape": lambda c, v: v[0].reshape(tuple(int(d) for d in v[1].reshape(-1))),
    "Slice": lambda c, v: _fold_slice(c, v[0]),
    "Mul": lambda c, v: _sym_binary(lambda a, b: dim_product([a, b]))(v[0], v[1]),
    "Div": lambda c, v: _sym_binary(_dim_div)(v[0], v[1]),
    "Add": lambda c, v: _sym_binary(_dim_int_only(lambda a, b: a + b))(v[0], v[1]),
    "Sub": lambda c, v: _sym_binary(_dim_int_only(lambda a, b: a - b))(v[0], v[1]),
    "ReduceProd": lambda c, v: fold_prod(v[0], c.ints("axes", 1), bool(c.attr("keepdims", 1))),
}


def _fold_cast(c: _Ctx, v: np.ndarray) -> Any:
    """Sizes stay symbolic as integers; cast to another type, they are read at run time."""
    to = c.imp.dtype_of(int(c.attr("to")), c)
    if to in ("int64", "int32"):
        return v
    from . import dsl
    return dsl.cast(c.imp.constant(v, c), to)


def _fold_unsqueeze(c: _Ctx, v: np.ndarray) -> np.ndarray:
    axes = c.ints("axes", 1)
    rank = v.ndim + len(axes)
    for a in sorted(ax % rank for ax in axes):
        v = np.expand_dims(v, a)
    return v


def _fold_squeeze(c: _Ctx, v: np.ndarray) -> np.ndarray:
    axes = c.ints("axes", 1)
    drop = ([i for i, d in enumerate(v.shape) if d == 1] if axes is None
            else [a % v.ndim for a in axes])
    return v.reshape(tuple(d for i, d in enumerate(v.shape) if i not in drop))


def _fold_slice(c: _Ctx, v: np.ndarray) -> np.ndarray:
    starts, ends = c.ints("starts", 1), c.ints("ends", 2)
    axes = c.ints("axes", 3, list(range(len(starts))))
    steps = c.ints("steps", 4, [1] * len(starts))
    idx = [slice(None)] * v.ndim
    for s, e, a, st in zip(starts, ends, axes, steps):
        idx[a % v.ndim] = slice(s, e, st)
    return norm_dims(v[tuple(idx)])


def fold_prod(v: np.ndarray, axes, keep: bool) -> np.ndarray:
    ax = tuple(range(v.ndim)) if axes is None else tuple(a % v.ndim for a in axes)
    if v.dtype != object:
        return np.asarray(np.prod(v, axis=ax, keepdims=keep))
    prod = np.frompyfunc(lambda a, b: dim_product([a, b]), 2, 1)
    out = v
    for a in sorted(ax, reverse=True):
        out = prod.reduce(out, axis=a, keepdims=keep, initial=1)
    return norm_dims(np.asarray(out, dtype=object))


def dims_tensor(v: np.ndarray, sources: dict[str, tuple[Any, int]], dtype: str = "int64") -> Any:
    """A graph tensor computing the dims in `v` at run time (object array of ints and symbols).

    `sources` maps each symbol to a tensor and the axis whose size it is; a dim such as "8*N"
    becomes 8 * size(x, axis). Raises ValueError for a symbol with no source.
    """
    from . import dsl
    parts = []
    for d in v.reshape(-1):
        coef, syms = parse_dim(d if isinstance(d, str) else int(d))
        t = None if coef == 1 and syms else dsl.constant(np.asarray(coef, dtype))
        for s, n in sorted(syms.items()):
            if s not in sources:
                raise ValueError(f"symbolic size {s!r} has no input to read it from at run time")
            x, axis = sources[s]
            size = dsl.apply("size", [x], {"axes": (axis,), "dtype": dtype})
            for _ in range(n):
                t = size if t is None else t * size
        parts.append(t)
    if v.ndim == 0:
        return parts[0]
    return dsl.reshape(dsl.stack(parts), tuple(v.shape))
