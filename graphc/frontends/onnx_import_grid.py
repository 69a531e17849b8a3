"""ONNX import of GridSample and AffineGrid as graphc composites.

GridSample reads the input at coordinates computed at run time: the taps' flat positions are
arithmetic on the grid, and one `gather` per tap (2^k for linear, 4^k for cubic, 1 for nearest
over k spatial dims) fetches them, weighted and summed. Padding modes follow onnx's reference.
"""
from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import numpy as np

from . import dsl
from .dsl import Tensor
from .onnx_import_math import floor, round_half_even, trunc
from .onnx_import_ops import Val, handler

if TYPE_CHECKING:  # pragma: no cover
    from .onnx_import import _Ctx

_CUBIC_A = -0.75


def _reflect(v: Tensor, lo: float, hi: float) -> Tensor:
    """v folded back into [lo, hi] by reflections at the borders, as onnx's reference does."""
    rng = hi - lo
    below, above = v < lo, v > hi
    dx = dsl.where(below, lo - v, v - hi)
    n = trunc(dx / rng)
    r = dx - n * rng
    even = (n - 2.0 * floor(n * 0.5)) == 0.0
    low_side = dsl.where(even, lo + r, hi - r)
    high_side = dsl.where(even, hi - r, lo + r)
    return dsl.where(below, low_side, dsl.where(above, high_side, v))


def _cubic_weights(t: Tensor) -> list[Tensor]:
    a = _CUBIC_A

    def far(u):  # |u| in [1, 2)
        return ((a * u - 5 * a) * u + 8 * a) * u - 4 * a

    def near(u):  # |u| in [0, 1]
        return ((a + 2) * u - (a + 3)) * u * u + 1
    return [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)]


@handler("GridSample")
def _grid_sample(c: _Ctx) -> Val:
    x, grid = c.t(0), c.t(1)
    if not x.type.is_static or not grid.type.is_static:
        raise c.fail(f"GridSample needs static shapes, got {tuple(x.shape)} and "
                     f"{tuple(grid.shape)}")
    mode = c.attr("mode", "linear" if c.opset >= 20 else "bilinear")
    mode = {"bilinear": "linear", "bicubic": "cubic"}.get(mode, mode)
    pad = c.only("padding_mode", ("zeros", "border", "reflection"), "zeros")
    align = bool(c.attr("align_corners", 0))
    n, ch, *dims = [int(d) for d in x.shape]
    k = len(dims)
    out = [int(d) for d in grid.shape[1:-1]]
    dt = x.dtype
    if grid.dtype != dt:
        grid = dsl.cast(grid, dt)
    coords = []
    for i, size in enumerate(dims):  # the grid's last axis lists x (width) first
        g = dsl.squeeze(dsl.slice(grid, [k - 1 - i], [k - i], [grid.ndim - 1]), grid.ndim - 1)
        v = (g + 1.0) * (0.5 * (size - 1)) if align else ((g + 1.0) * size - 1.0) * 0.5
        if mode == "nearest":
            v = round_half_even(v)
        lo, hi = (0.0, size - 1.0) if align else (-0.5, size - 0.5)
        if pad == "border":
            v = dsl.where((v < lo) | (v > hi), dsl.minimum(dsl.maximum(v, 0.0), size - 1.0), v)
        elif pad == "reflection":
            v = _reflect(v, lo, hi)
        coords.append((v, lo, hi))
    # taps per dim: (integer position, weight)
    taps = []
    for (v, lo, hi), size in zip(coords, dims):
        if mode == "nearest":
            taps.append([(v, None)])
            continue
        base = floor(v)
        t = v - base
        if mode == "linear":
            taps.append([(base, 1.0 - t), (base + 1.0, t)])
        else:
            w = _cubic_weights(t)
            taps.append([(base + float(o), w[j]) for j, o in enumerate((-1, 0, 1, 2))])
    strides = [int(np.prod(dims[i + 1:])) for i in range(k)]
    plane = int(np.prod(dims))
    flat_x = dsl.reshape(x, (-1,))
    # (N, C, 1, ...) offsets of each image plane in flat_x
    base_off = np.arange(n * ch, dtype=np.int64).reshape((n, ch) + (1,) * len(out)) * plane
    total = None
    for combo in itertools.product(*taps):
        valid, flat, weight = None, None, None
        for (pos, w), size, stride, (v, lo, hi) in zip(combo, dims, strides, coords):
            if pad == "zeros":
                ok = (pos >= 0.0) & (pos <= size - 1.0)
                valid = ok if valid is None else valid & ok
                idx = dsl.minimum(dsl.maximum(pos, 0.0), size - 1.0)
            elif pad == "border":
                idx = dsl.minimum(dsl.maximum(pos, 0.0), size - 1.0)
            else:
                idx = dsl.minimum(dsl.maximum(trunc(_reflect(pos, lo, hi)), 0.0), size - 1.0)
            part = dsl.cast(idx, "int64") * np.asarray(stride, np.int64)
            flat = part if flat is None else flat + part
            if w is not None:
                weight = w if weight is None else weight * w
        index = dsl.expand_dims(flat, 1) + dsl.constant(base_off)  # (N, C, out...)
        val = dsl.take(flat_x, index, 0)
        if valid is not None:
            val = dsl.where(dsl.expand_dims(valid, 1), val, np.zeros((), dt))
        if weight is not None:
            val = val * dsl.expand_dims(weight, 1)
        total = val if total is None else total + val
    return total


@handler("AffineGrid", static=(1,))
def _affine_grid(c: _Ctx) -> Val:
    theta = c.t(0)
    size = [int(v) for v in c.const(1, "size").reshape(-1)]
    align = bool(c.attr("align_corners", 0))
    n, spatial = size[0], size[2:]
    k = len(spatial)
    if k not in (2, 3):
        raise c.fail(f"AffineGrid of {k} spatial dims is not supported (2 or 3)")

    def line(length: int) -> np.ndarray:
        if align:
            return np.linspace(-1.0, 1.0, length) if length > 1 else np.zeros(1)
        return (2 * np.arange(length) + 1) / length - 1
    axes = [line(d) for d in spatial]  # D, H, W order
    mesh = np.meshgrid(*axes, indexing="ij")
    cols = [m.reshape(-1) for m in mesh[::-1]] + [np.ones(int(np.prod(spatial)))]
    base = np.stack(cols, -1).astype(theta.dtype)  # (points, k + 1): x, y[, z], 1
    grid = dsl.matmul(dsl.constant(base), dsl.transpose(theta, (0, 2, 1)))  # (N, points, k)
    return dsl.reshape(grid, (n,) + tuple(spatial) + (k,))
