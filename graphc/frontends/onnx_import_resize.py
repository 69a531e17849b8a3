"""ONNX import of Resize (and the older Upsample): separable interpolation as one matrix
product per resized axis.

Each resized axis gets a constant (output x input) weight matrix computed at import time with
onnx's reference rules (coordinate transformation, nearest rounding, linear and cubic kernels,
antialias, exclude_outside, tf_crop_and_resize extrapolation), so the graph is plain matmuls
and is differentiable; shapes, scales and sizes must be known when importing.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable

import numpy as np

from . import dsl
from .dsl import Tensor
from .onnx_import_ops import Val, handler

if TYPE_CHECKING:  # pragma: no cover
    from .onnx_import import _Ctx


def _nearest(mode: str) -> Callable[[float, float], np.ndarray]:
    def coeffs(r: float, scale: float) -> np.ndarray:
        if float(r).is_integer():
            return np.array([0.0, 1.0])
        if mode == "round_prefer_floor":
            return np.array([r <= 0.5, r > 0.5], float)
        if mode == "round_prefer_ceil":
            return np.array([r < 0.5, r >= 0.5], float)
        return np.array([1.0, 0.0]) if mode == "floor" else np.array([0.0, 1.0])
    return coeffs


def _linear(antialias: bool) -> Callable[[float, float], np.ndarray]:
    def coeffs(r: float, scale: float) -> np.ndarray:
        if not antialias:
            return np.array([1 - r, r])
        scale = min(scale, 1.0)
        start = int(np.floor(-1 / scale) + 1)
        args = (np.arange(start, 2 - start) - r) * scale
        w = np.clip(1 - np.abs(args), 0, 1)
        return w / w.sum()
    return coeffs


def _cubic(a: float, antialias: bool) -> Callable[[float, float], np.ndarray]:
    def kernel(x: float) -> float:
        x = abs(x)
        if x <= 1:
            return (a + 2) * x**3 - (a + 3) * x**2 + 1
        return a * x**3 - 5 * a * x**2 + 8 * a * x - 4 * a if x < 2 else 0.0

    def coeffs(r: float, scale: float) -> np.ndarray:
        if not antialias:
            return np.array([kernel(r + 1), kernel(r), kernel(1 - r), kernel(2 - r)])
        scale = min(scale, 1.0)
        start = int(np.floor(-2 / scale) + 1)
        w = np.array([kernel(scale * (i - r)) for i in range(start, 2 - start)])
        return w / w.sum()
    return coeffs


def _source_coords(mode: str, n_in: int, n_out: int, scale: float, roi: tuple[float, float]
                   ) -> np.ndarray:
    y = np.arange(n_out, dtype=np.float64)
    out_f = scale * n_in
    if mode == "align_corners":
        return np.zeros(n_out) if out_f == 1 else y * (n_in - 1) / (out_f - 1)
    if mode == "asymmetric":
        return y / scale
    if mode == "tf_crop_and_resize":
        lo, hi = roi
        x = np.full(n_out, (hi - lo) * (n_in - 1) / 2) if out_f == 1 else \
            y * (hi - lo) * (n_in - 1) / (out_f - 1)
        return x + lo * (n_in - 1)
    if mode == "pytorch_half_pixel":
        return np.full(n_out, -0.5) if out_f == 1 else (y + 0.5) / scale - 0.5
    if mode == "half_pixel":
        return (y + 0.5) / scale - 0.5
    if mode == "half_pixel_symmetric":
        offset = n_in / 2 * (1 - n_out / out_f)
        return offset + (y + 0.5) / scale - 0.5
    raise ValueError(f"coordinate_transformation_mode={mode!r} is not supported")


def weights(n_in: int, n_out: int, scale: float, coeffs: Callable[[float, float], np.ndarray],
            mode: str, roi: tuple[float, float], exclude_outside: bool
            ) -> tuple[np.ndarray, np.ndarray | None]:
    """The (n_out, n_in) interpolation matrix of one axis, and which outputs extrapolate."""
    x = _source_coords(mode, n_in, n_out, scale, roi)
    xi = np.floor(x)
    ratios = np.where(x == xi, 1.0, x - xi)
    c = np.stack([np.asarray(coeffs(float(r), scale), np.float64) for r in ratios]) \
        if n_out else np.zeros((0, 2))
    n = c.shape[1]
    pad = int(np.ceil(n / 2))
    xp = x + pad
    p = np.floor(xp).astype(np.int64)
    frac = xp - p
    if n % 2 == 0:  # the n nearest taps, ties to the smaller index
        start = p + np.where(frac == 0, -(n // 2), -(n // 2) + 1)
    else:
        start = p + np.where(frac <= 0.5, -((n - 1) // 2), -((n - 1) // 2) + 1)
    taps = start[:, None] + np.arange(n)[None, :] - pad
    if exclude_outside:
        c = np.where((taps < 0) | (taps >= n_in), 0.0, c)
        total = c.sum(axis=1, keepdims=True)
        c = c / np.where(total == 0, 1.0, total)
    w = np.zeros((n_out, n_in))
    rows = np.repeat(np.arange(n_out), n)
    np.add.at(w, (rows, np.clip(taps, 0, n_in - 1).reshape(-1)), c.reshape(-1))
    extra = ((x < 0) | (x > n_in - 1)) if mode == "tf_crop_and_resize" else None
    return w, extra


def _apply(x: Tensor, axis: int, w: np.ndarray) -> Tensor:
    """x with `axis` mapped through w (out x in)."""
    moved = dsl.swapaxes(x, axis, -1)
    y = dsl.matmul(moved, dsl.constant(np.ascontiguousarray(w.T).astype(x.dtype)))
    return dsl.swapaxes(y, axis, -1)


def resize(c: _Ctx, x: Tensor, scales: list[float] | None, sizes: list[int] | None,
           axes: list[int], roi: list[float] | None) -> Tensor:
    shape = x.shape
    if not all(isinstance(shape[a], int) for a in axes):
        raise c.fail(f"Resize needs static sizes along the resized axes, got {tuple(shape)}")
    if not x.type.is_float:
        raise c.fail(f"Resize of {x.dtype} is not supported (float only)")
    mode = c.attr("mode", "nearest")
    antialias = bool(c.attr("antialias", 0))
    if mode == "nearest":
        if antialias:
            raise c.fail("antialias is not supported with mode='nearest'")
        coeffs = _nearest(c.attr("nearest_mode", "round_prefer_floor"))
    elif mode == "linear":
        coeffs = _linear(antialias)
    elif mode == "cubic":
        coeffs = _cubic(float(c.attr("cubic_coeff_a", -0.75)), antialias)
    else:
        raise c.fail(f"mode={mode!r} is not supported")
    n_in = [int(shape[a]) for a in axes]
    if sizes is not None:
        scales = [s / n for s, n in zip(sizes, n_in)]
        policy = c.attr("keep_aspect_ratio_policy", "stretch")
        if policy in ("not_larger", "not_smaller"):
            s = min(scales) if policy == "not_larger" else max(scales)
            scales = [s] * len(axes)
            sizes = [int(s * n + 0.5) for n in n_in]
        elif policy != "stretch":
            raise c.fail(f"keep_aspect_ratio_policy={policy!r} is not supported")
    else:
        sizes = [int(s * n) for s, n in zip(scales, n_in)]
    for (s, n_out) in zip(scales, sizes):
        c.imp.limits.check((n_out,), x.dtype, f"{c.where()}: Resize output")
    tmode = c.attr("coordinate_transformation_mode", "half_pixel")
    extrap = float(c.attr("extrapolation_value", 0.0))
    y = x
    for i, (a, n, s, n_out) in enumerate(zip(axes, n_in, scales, sizes)):
        r = (0.0, 1.0) if roi is None else (float(roi[i]), float(roi[i + len(axes)]))
        if math.isclose(s, 1.0) and n_out == n and \
                (tmode != "tf_crop_and_resize" or (math.isclose(r[0], 0) and math.isclose(r[1], 1))):
            continue
        try:
            w, outside = weights(n, n_out, float(s), coeffs, tmode, r,
                                 bool(c.attr("exclude_outside", 0)))
        except ValueError as exc:
            raise c.fail(str(exc)) from None
        c.imp.limits.check(w.shape, x.dtype, f"{c.where()}: Resize weights")
        y = _apply(y, a, w)
        if outside is not None and outside.any():
            mshape = [1] * y.ndim
            mshape[a] = n_out
            y = dsl.where(dsl.constant(outside.reshape(mshape)), np.asarray(extrap, x.dtype), y)
    return y


@handler("Resize", static=(1, 2, 3))
def _resize(c: _Ctx) -> Val:
    x = c.t(0)
    rank = x.ndim
    axes = [a % rank for a in c.ints("axes", default=list(range(rank)))]
    if c.opset < 11:  # Resize-10: X, scales
        scales = [float(v) for v in c.const(1, "scales").reshape(-1)]
        return resize(c, x, scales, None, axes, None)
    def given(i: int, what: str) -> np.ndarray | None:
        v = c.const(i, what).reshape(-1) if c.has(i) else None
        return v if v is not None and v.size else None
    roi, scales, sizes = given(1, "roi"), given(2, "scales"), given(3, "sizes")
    if roi is not None and len(roi) == 2 * rank and len(axes) < rank:
        roi = np.concatenate([roi[axes], roi[[rank + a for a in axes]]])
    if sizes is not None:
        return resize(c, x, None, [int(v) for v in sizes], axes, roi)
    if scales is None:
        raise c.fail("Resize needs scales or sizes")
    return resize(c, x, [float(v) for v in scales], None, axes, roi)


@handler("Upsample", static=(1,))
def _upsample(c: _Ctx) -> Val:
    x = c.t(0)
    scales = c.attr("scales") if "scales" in c.attrs else c.const(1, "scales")
    scales = [float(v) for v in np.asarray(scales).reshape(-1)]
    mode = c.attr("mode", "nearest")
    if mode not in ("nearest", "linear", "bilinear"):
        raise c.fail(f"mode={mode!r} is not supported")
    c.attrs.setdefault("coordinate_transformation_mode", "asymmetric")
    c.attrs["mode"] = "linear" if mode == "bilinear" else mode
    c.attrs.setdefault("nearest_mode", "floor")
    return resize(c, x, scales, None, list(range(x.ndim)), None)
