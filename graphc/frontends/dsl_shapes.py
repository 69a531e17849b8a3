"""The DSL's shape and indexing functions: reshape, transpose/permute, expand, concat, slice,
take/gather (numpy's and torch's meanings), pad and Tensor indexing (`x[1:, None]`).

Split from graphc/frontends/dsl.py to keep modules small; `graphc.frontends.dsl` re-exports
every name, so `gc.reshape` and `dsl.reshape` are these functions.
"""
from __future__ import annotations

import builtins
from typing import Any, Sequence

import numpy as np

from ..ir.errors import GraphBuildError, user_frame
from ..ir.graph import Graph, Value
from ..ir.types import dim_divide, dim_product, normalize_dim
from ..ops.base import norm_axis
from ..ops.shape import INT_MAX
# `sum` here is the DSL's reduction (as in dsl.py); Python's is `builtins.sum`
from .dsl import (Tensor, _axis, _tensor, _varargs, apply, constant, maximum, minimum, one_of, sum,
                  where)

# ---- shapes ---------------------------------------------------------------------------------------

def reshape(x, shape) -> Tensor:
    """x with a new shape; one dim may be -1 (inferred), dims may be symbols."""
    x = _tensor(x)
    shape = (shape,) if isinstance(shape, (int, str)) else tuple(shape)
    if builtins.sum(1 for d in shape if d == -1) > 1:
        raise GraphBuildError(f"{user_frame()}: reshape: only one dim may be -1, got {shape}")
    if -1 in shape:
        known = dim_product([d for d in shape if d != -1])
        rest = dim_divide(x.type.numel(), known)
        if rest is None:
            raise GraphBuildError(f"{user_frame()}: reshape: cannot reshape {tuple(x.shape)} to {shape}")
        shape = tuple(rest if d == -1 else d for d in shape)
    shape = tuple(normalize_dim(d) for d in shape)
    if shape == x.shape:
        return x
    return apply("reshape", [x], {"shape": shape})


def transpose(x, *dims, axes=None) -> Tensor:
    """numpy.transpose(x, axes): axes permuted (default: reversed); or torch.transpose(x, dim0,
    dim1): two dims swapped. The forms cannot be confused: numpy's takes one tuple.

    Example: ``gc.transpose(x, (0, 2, 1))`` is ``gc.transpose(x, 1, 2)``.
    """
    x = _tensor(x)
    if len(dims) == 2 and axes is None:
        return swapaxes(x, *dims)
    if len(dims) > 1 or (dims and axes is not None):
        raise GraphBuildError(f"{user_frame()}: transpose takes axes (one tuple, numpy's) or two "
                              f"dims to swap (torch's), got {dims!r}")
    axes = dims[0] if dims else axes
    if axes is None:
        axes = tuple(reversed(range(x.ndim)))
    else:
        axes = tuple(_axis("transpose", a, x.ndim) for a in axes)
        if sorted(axes) != list(range(x.ndim)):
            raise GraphBuildError(f"{user_frame()}: transpose: {axes} is not a permutation of the "
                                  f"{x.ndim} axes of {tuple(x.shape)}")
    return apply("transpose", [x], {"axes": axes})


def permute(x, *dims) -> Tensor:
    """torch.permute(x, dims): x with its dims reordered (numpy's transpose(x, dims))."""
    return transpose(_tensor(x), tuple(_varargs(dims)))


def swapaxes(x, a: int, b: int) -> Tensor:
    """x with axes a and b exchanged (numpy.swapaxes, torch.swapaxes / swapdims)."""
    x = _tensor(x)
    axes = list(range(x.ndim))
    a, b = _axis("swapaxes", a, x.ndim), _axis("swapaxes", b, x.ndim)
    axes[a], axes[b] = axes[b], axes[a]
    return transpose(x, tuple(axes))


swapdims = swapaxes


def moveaxis(x, source, destination) -> Tensor:
    """x with axes `source` moved to positions `destination` (numpy.moveaxis, torch.movedim)."""
    x = _tensor(x)
    src = [_axis("moveaxis", a, x.ndim) for a in (source if isinstance(source, (tuple, list))
                                                  else (source,))]
    dst = [_axis("moveaxis", a, x.ndim) for a in (destination if isinstance(destination, (tuple, list))
                                                  else (destination,))]
    if len(src) != len(dst):
        raise GraphBuildError(f"{user_frame()}: moveaxis: {len(src)} source and {len(dst)} "
                              "destination axes")
    rest = [a for a in range(x.ndim) if a not in src]
    order = [None] * x.ndim
    for s_, d_ in zip(src, dst):
        order[d_] = s_
    it = iter(rest)
    return transpose(x, tuple(a if a is not None else next(it) for a in order))


movedim = moveaxis


def broadcast_to(x, shape) -> Tensor:
    """x broadcast to `shape` (numpy.broadcast_to)."""
    x = _tensor(x)
    shape = tuple(normalize_dim(d) for d in shape)
    if shape == x.shape:
        return x
    if len(shape) > x.ndim:
        x = reshape(x, (1,) * (len(shape) - x.ndim) + tuple(x.shape))
    return apply("expand", [x], {"shape": shape})


def expand(x, *sizes) -> Tensor:
    """torch's Tensor.expand: x broadcast to `sizes` (a tuple or ints); -1 keeps x's dim.

    Example: ``gc.expand(b, (-1, 4))`` turns (3, 1) into (3, 4).
    """
    x = _tensor(x)
    sizes = tuple(_varargs(sizes))
    lead = len(sizes) - x.ndim
    if lead < 0:
        raise GraphBuildError(f"{user_frame()}: expand: {sizes} has fewer dims than "
                              f"{tuple(x.shape)}")
    shape = tuple(x.shape[i - lead] if d == -1 and i >= lead else d for i, d in enumerate(sizes))
    if -1 in shape:
        raise GraphBuildError(f"{user_frame()}: expand: -1 is only allowed for x's own dims, got "
                              f"{sizes} for {tuple(x.shape)}")
    return broadcast_to(x, shape)


def expand_dims(x, axis=None, *, dim=None) -> Tensor:
    """x with a new size-1 axis at `axis` / `dim` (numpy.expand_dims, torch.unsqueeze)."""
    x = _tensor(x)
    axis = one_of("expand_dims", axis, dim)
    if axis is None:
        raise GraphBuildError(f"{user_frame()}: expand_dims: give the new axis (axis= or dim=)")
    a = _axis("expand_dims", axis, x.ndim + 1)
    return reshape(x, x.shape[:a] + (1,) + x.shape[a:])


unsqueeze = expand_dims


def squeeze(x, axis=None, *, dim=None) -> Tensor:
    """x without size-1 axes (all of them, or those named by `axis` / `dim`).

    Naming an axis that is not 1 raises (numpy's behaviour; torch would return x unchanged).
    """
    x = _tensor(x)
    axis = one_of("squeeze", axis, dim)
    axes = [i for i, d in enumerate(x.shape) if d == 1] if axis is None else \
        [_axis("squeeze", a, x.ndim) for a in (axis if isinstance(axis, (tuple, list)) else (axis,))]
    for a in axes:
        if x.shape[a] != 1:
            raise GraphBuildError(f"{user_frame()}: squeeze: axis {a} of {tuple(x.shape)} is not 1")
    return reshape(x, tuple(d for i, d in enumerate(x.shape) if i not in axes))


def flatten(x, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    """Merges dims start_dim..end_dim into one (torch.flatten)."""
    x = _tensor(x)
    s, e = norm_axis(start_dim, x.ndim), norm_axis(end_dim, x.ndim)
    return reshape(x, x.shape[:s] + (dim_product(x.shape[s:e + 1]),) + x.shape[e + 1:])


def concatenate(xs: Sequence[Any], axis=None, *, dim=None) -> Tensor:
    """The inputs joined along `axis` / `dim` (default 0): numpy.concatenate, torch.cat."""
    xs = list(xs)
    axis = one_of("concatenate", axis, dim, default=0)
    if len(xs) == 1:
        return _tensor(xs[0])
    return apply("concat", xs, {"axis": int(axis)})


concat = cat = concatenate


def stack(xs: Sequence[Any], axis=None, *, dim=None) -> Tensor:
    """The inputs stacked along a new axis `axis` / `dim` (default 0): numpy.stack, torch.stack."""
    axis = one_of("stack", axis, dim, default=0)
    return concatenate([expand_dims(x, axis) for x in xs], axis)


def slice(x, starts, ends, axes=None, steps=None) -> Tensor:
    """x[starts:ends:steps] along `axes` (ONNX Slice form; python semantics)."""
    axes = tuple(range(len(starts))) if axes is None else tuple(axes)
    steps = (1,) * len(starts) if steps is None else tuple(steps)
    return apply("slice", [x], {"starts": tuple(starts), "ends": tuple(ends), "axes": axes, "steps": steps})


def take(x, indices, axis: int | None = None) -> Tensor:
    """numpy.take: the elements of x at integer `indices` along `axis`.

    `axis=None` (numpy's default) takes from the flattened x, as torch.take does. Negative
    indices count from the end; an index out of range is an error when the graph runs.

    Returns:
        A Tensor of shape x.shape[:axis] + indices.shape + x.shape[axis + 1:] (indices.shape
        when axis is None). Example: ``rows = gc.take(table, ids, axis=0)``.
    """
    x = _tensor(x)
    if axis is None:
        x, axis = reshape(x, (-1,)), 0
    if not isinstance(indices, (Tensor, Value)):
        indices = constant(np.asarray(indices, np.int64), graph=x.graph)
    return apply("gather", [x, indices], {"axis": _axis("take", axis, x.ndim)})


def index_select(x, dim: int, index) -> Tensor:
    """torch.index_select: the slices of x at the 1-D integer `index` along `dim`."""
    idx = _tensor(index) if isinstance(index, (Tensor, Value)) else np.asarray(index, np.int64)
    if len(idx.shape) != 1:
        raise GraphBuildError(f"{user_frame()}: index_select: index must be 1-D, got "
                              f"{tuple(idx.shape)}; gc.take takes indices of any shape")
    return take(x, idx, dim)


def _int_index(fn: str, index, g: Graph) -> Tensor:
    idx = index if isinstance(index, Tensor) else (
        Tensor(index) if isinstance(index, Value) else constant(np.asarray(index, np.int64), graph=g))
    if idx.dtype not in ("int32", "int64"):
        raise GraphBuildError(f"{user_frame()}: {fn}: index must be int32 or int64, got {idx.dtype} "
                              f"{tuple(idx.shape)}")
    return idx


def _select_along(x: Tensor, idx: Tensor, d: int, fn: str) -> Tensor:
    """out[..., k, ...] = x[..., idx[..., k, ...], ...] along d, broadcasting the other dims.

    A composite of primitives (compare with the class numbers, select, sum over the classes), so
    it needs no gradient rule or lowering of its own; it costs index.size * x.shape[d] elements,
    which for the usual small index (one label per row) is the size of x. Negative indices
    count from the end; an index outside [-C, C) selects nothing and gives 0.
    """
    c = x.shape[d]
    if not isinstance(c, int):
        raise GraphBuildError(f"{user_frame()}: {fn}: needs a static size along dim {d}, got "
                              f"{tuple(x.shape)}")
    idx = where(idx < 0, idx + c, idx)
    classes = constant(np.arange(c, dtype=idx.dtype), graph=x.graph)
    hit = expand_dims(idx, -1) == classes                     # idx.shape + (C,)
    xm = expand_dims(moveaxis(x, d, -1), d)                  # x's dims, 1 at d, C last
    return sum(where(hit, xm, np.zeros((), x.dtype)), -1)


def gather(x, *args, dim=None, index=None, axis=None) -> Tensor:
    """torch.gather(input, dim, index): out[i][j][k] = x[i][index[i][j][k]][k] for dim=1.

    Called as torch's: `gather(x, dim, index)`, with `dim=` / `index=` keywords, or `axis=`
    for dim.

    `index` has x's rank; along every other dim it may be shorter than x (x is cut to it), as in
    torch. For numpy's take (indices of any shape, selecting whole slices) use `gc.take`; for
    numpy's broadcasting variant, `gc.take_along_axis`. Negative indices count from the end.

    Returns:
        A Tensor of index's shape and x's dtype. Example: ``gc.gather(logp, 1, y[:, None])``.

    Raises:
        GraphBuildError: no dim, an index of another rank, or one larger than x along a dim
            other than `dim` (the misuse `gc.gather(x, indices, axis=1)` of numpy's take form).
    """
    x = _tensor(x)
    if args and not isinstance(args[0], (int, np.integer)):
        raise GraphBuildError(f"{user_frame()}: gather follows torch.gather(input, dim, index), but "
                              f"got a {type(args[0]).__name__} where dim goes; for numpy's take "
                              "write gc.take(x, indices, axis=...)")
    if len(args) > 2 or (len(args) >= 1 and (dim is not None or axis is not None)) or (
            len(args) == 2 and index is not None):
        raise GraphBuildError(f"{user_frame()}: gather(input, dim, index): dim or index given twice")
    dim = args[0] if args else dim
    index = args[1] if len(args) == 2 else index
    dim = one_of("gather", axis, dim, ("axis", "dim"))
    if dim is None or index is None:
        raise GraphBuildError(f"{user_frame()}: gather(input, dim, index) needs both dim and index")
    d = _axis("gather", dim, x.ndim)
    idx = _int_index("gather", index, x.graph)
    if idx.ndim != x.ndim:
        raise GraphBuildError(f"{user_frame()}: gather: index {tuple(idx.shape)} must have the rank of "
                              f"input {tuple(x.shape)} (torch.gather); for numpy's take write "
                              "gc.take(x, indices, axis=...)")
    starts, ends, axes = [], [], []
    for a, (n, k) in enumerate(zip(x.shape, idx.shape)):
        if a == d or n == k:
            continue
        if isinstance(n, int) and isinstance(k, int) and k < n:
            starts.append(0); ends.append(k); axes.append(a)
        else:
            raise GraphBuildError(f"{user_frame()}: gather: index {tuple(idx.shape)} does not fit in "
                                  f"input {tuple(x.shape)} along dim {a} (torch.gather needs "
                                  f"index.size(a) <= input.size(a) for a != dim={d})")
    if axes:
        x = slice(x, starts, ends, axes)
    return _select_along(x, idx, d, "gather")


def take_along_axis(x, indices, axis: int | None = None) -> Tensor:
    """numpy.take_along_axis: x's elements at `indices` along `axis`, the other dims broadcast.

    `indices` has x's rank (axis=None: 1-D, into the flattened x). Example:
    ``gc.take_along_axis(logp, y[:, None], axis=1)``.
    """
    x = _tensor(x)
    idx = _int_index("take_along_axis", indices, x.graph)
    if axis is None:
        x, axis = reshape(x, (-1,)), 0
    if idx.ndim != x.ndim:
        raise GraphBuildError(f"{user_frame()}: take_along_axis: indices {tuple(idx.shape)} must have "
                              f"the rank of x {tuple(x.shape)}")
    return _select_along(x, idx, _axis("take_along_axis", axis, x.ndim), "take_along_axis")


def _clamp(x, lo=None, hi=None) -> Tensor:
    x = _tensor(x)
    if lo is not None:
        x = maximum(x, lo)
    if hi is not None:
        x = minimum(x, hi)
    return x


def pad(x, pad_width, constant_values: float = 0.0) -> Tensor:
    """x padded as numpy.pad(x, pad_width, constant_values=...); pad_width per axis."""
    x = _tensor(x)
    pw = np.broadcast_to(np.asarray(pad_width, np.int64), (x.ndim, 2))
    return apply("pad", [x], {"pads": tuple((int(b), int(a)) for b, a in pw),
                              "value": float(constant_values)})


def _getitem(x: Tensor, idx) -> Tensor:
    if isinstance(idx, (Tensor, Value, np.ndarray, list)):
        return take(x, idx, 0)
    idx = idx if isinstance(idx, tuple) else (idx,)
    if builtins.sum(1 for i in idx if i is Ellipsis) > 1:
        raise GraphBuildError(f"{user_frame()}: an index can have only one ellipsis")
    n_real = builtins.sum(1 for i in idx if i is not None and i is not Ellipsis)
    if n_real > x.ndim:
        raise GraphBuildError(f"{user_frame()}: too many indices ({n_real}) for a tensor of rank {x.ndim}")
    if Ellipsis in idx:
        k = idx.index(Ellipsis)
        idx = idx[:k] + (builtins.slice(None),) * (x.ndim - n_real) + idx[k + 1:]
    starts, ends, axes, steps, squeeze_axes, new_axes = [], [], [], [], [], []
    out_axis, axis = 0, 0
    for i in idx:
        if i is None:
            new_axes.append(out_axis)
            out_axis += 1
            continue
        if isinstance(i, (int, np.integer)):
            d = x.shape[axis]
            if isinstance(d, int) and not -d <= i < d:
                raise GraphBuildError(f"{user_frame()}: index {i} is out of range for axis {axis} of "
                                      f"size {d}")
            starts.append(int(i)); ends.append(int(i) + 1 if i != -1 else INT_MAX)
            axes.append(axis); steps.append(1); squeeze_axes.append(axis)
        elif isinstance(i, builtins.slice):
            st = 1 if i.step is None else int(i.step)
            if (i.start, i.stop, i.step) != (None, None, None):
                s = (0 if st > 0 else -1) if i.start is None else int(i.start)
                e = (INT_MAX if st > 0 else -INT_MAX) if i.stop is None else int(i.stop)
                starts.append(s); ends.append(e); axes.append(axis); steps.append(st)
            out_axis += 1
        else:
            raise GraphBuildError(f"{user_frame()}: unsupported index {i!r}")
        axis += 1
    y = slice(x, starts, ends, axes, steps) if axes else x
    if squeeze_axes:
        y = reshape(y, tuple(d for k, d in enumerate(y.shape) if k not in squeeze_axes))
    for a in new_axes:
        y = expand_dims(y, a)
    return y


