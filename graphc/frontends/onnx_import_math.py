"""ONNX import handlers for more elementwise math, arg-reductions and normalizations, as
composites over graphc's primitives; registered in the table of onnx_import_ops.py.

Rounding (Floor, Ceil, Round) and Mod have no primitive: they go through a cast to int64 (which
truncates), guarded so NaN, infinities and floats too large to have a fraction pass through.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..ir.types import DTYPES, dim_product
from . import dsl
from . import functional as F
from .dsl import Tensor
from .onnx_import_ops import Val, handler, onnx_cast

if TYPE_CHECKING:  # pragma: no cover
    from .onnx_import import _Ctx

# floats at least this large have no fractional part (2**mantissa bits)
_INTEGRAL = {"float32": 2.0**23, "float64": 2.0**52, "float16": 2.0**10, "bfloat16": 2.0**7}


def dtype_of_input(c: _Ctx, i: int) -> str:
    v = c.inputs[i]
    name = v.dtype if isinstance(v, Tensor) else np.asarray(v).dtype.name
    if name not in DTYPES:
        raise c.fail(f"dtype {name} is not supported (graphc has {', '.join(DTYPES)})")
    return name


@handler("CastLike")
def _cast_like(c: _Ctx) -> Val:
    to = dtype_of_input(c, 1)
    if dtype_of_input(c, 0) == to:
        return c.inputs[0]
    return onnx_cast(c, c.t(0), to)


# ---- rounding and remainders ---------------------------------------------------------------------

def trunc(x: Tensor) -> Tensor:
    """x rounded toward zero (floats); NaN, infinities and huge values are kept as they are."""
    if not x.type.is_float:
        return x
    t = dsl.cast(dsl.cast(x, "int64"), x.dtype)
    keep = dsl.logical_not(dsl.abs(x) < _INTEGRAL[x.dtype])  # also true for NaN
    return dsl.where(keep, x, t)


def floor(x: Tensor) -> Tensor:
    t = trunc(x)
    return x if not x.type.is_float else t - dsl.cast(t > x, x.dtype)


@handler("Floor")
def _floor(c: _Ctx) -> Val:
    return floor(c.t(0))


@handler("Ceil")
def _ceil(c: _Ctx) -> Val:
    x = c.t(0)
    t = trunc(x)
    return t + dsl.cast(t < x, x.dtype)


@handler("Round")
def _round(c: _Ctx) -> Val:
    return round_half_even(c.t(0))


def round_half_even(x: Tensor) -> Tensor:
    """x rounded to the nearest integer, half to even, as ONNX (and numpy) round."""
    if not x.type.is_float:
        return x
    f = floor(x)
    d = x - f
    odd = (f - 2.0 * floor(f * 0.5)) == 1.0
    up = (d > 0.5) | ((d == 0.5) & odd)
    return f + dsl.cast(up, x.dtype)


@handler("Mod")
def _mod(c: _Ctx) -> Val:
    a, b = c.t(0), c.t(1)
    fmod = int(c.attr("fmod", 0))
    if a.dtype in ("float16", "bfloat16"):  # in float32, where a - trunc(a / b) * b is exact
        a32, b32 = dsl.cast(a, "float32"), dsl.cast(b, "float32")
        return dsl.cast(_remainder(a32, b32, fmod), a.dtype)
    return _remainder(a, b, fmod)


def _remainder(a: Tensor, b: Tensor, fmod: int) -> Tensor:
    """ONNX Mod of a and b: C's fmod (the sign of a) or, with fmod=0, Python's % (of b)."""
    if a.type.is_float:
        r = a - trunc(a / b) * b  # C's fmod; a finite a over an infinite b stays a
        r = dsl.where((dsl.abs(b) == np.inf) & (dsl.abs(a) < np.inf), a, r)
    else:
        r = a - dsl.div(a, b) * b  # integer div truncates: r has the sign of a (C's fmod)
    if fmod:
        return r
    zero = np.zeros((), a.dtype)
    fix = dsl.logical_not(r == zero) & dsl.logical_not((r < zero) == (b < zero))
    return dsl.where(fix, r + b, r)  # Python's %: the sign of the divisor


@handler("IsNaN")
def _isnan(c: _Ctx) -> Val:
    x = c.t(0)
    return dsl.logical_not(x == x)


@handler("IsInf")
def _isinf(c: _Ctx) -> Val:
    x = c.t(0)
    pos, neg = x == np.inf, x == -np.inf
    if not c.attr("detect_positive", 1):
        return neg if c.attr("detect_negative", 1) else pos & dsl.logical_not(pos)
    return (pos | neg) if c.attr("detect_negative", 1) else pos


@handler("Xor")
def _xor(c: _Ctx) -> Val:
    return dsl.logical_not(c.t(0) == c.t(1))


# ---- trigonometry ------------------------------------------------------------------------------
# Hyperbolic functions are composites of exp, log and sqrt; circular ones are range reduction
# plus series, in float64 (graphc has no trigonometric primitive).

@handler("Sinh", "Cosh", "Asinh", "Acosh", "Atanh")
def _hyperbolic(c: _Ctx) -> Val:
    x = c.t(0)
    op = c.node.op_type
    if op in ("Sinh", "Cosh"):
        e, inv = dsl.exp(x), dsl.exp(dsl.neg(x))
        return (e - inv) * 0.5 if op == "Sinh" else (e + inv) * 0.5
    if op == "Asinh":  # odd: log(|x| + sqrt(x^2 + 1)) with the sign of x, exact for large -x
        ax = dsl.abs(x)
        return dsl.sign(x) * dsl.log(ax + dsl.sqrt(ax * ax + 1.0))
    if op == "Acosh":
        return dsl.log(x + dsl.sqrt(x * x - 1.0))
    return 0.5 * dsl.log((1.0 + x) / (1.0 - x))


def _poly(t: Tensor, coeffs: list[float]) -> Tensor:
    """sum(coeffs[i] * t**i) by Horner's rule."""
    y = dsl.constant(np.asarray(coeffs[-1], t.dtype))
    for a in coeffs[-2::-1]:
        y = y * t + a
    return y


_FACT = [float(np.prod(np.arange(1, n + 1))) for n in range(24)]
# Taylor series on |r| <= pi/4, computed in float64: truncation error below 1e-18
_SIN = [((-1) ** (i // 2)) / _FACT[i] if i % 2 else 0.0 for i in range(22)]
_COS = [((-1) ** (i // 2)) / _FACT[i] if i % 2 == 0 else 0.0 for i in range(22)]
_ATAN = [((-1) ** (i // 2)) / i if i % 2 else 0.0 for i in range(32)]  # |t| <= tan(pi/12)


def sin_cos(x: Tensor) -> tuple[Tensor, Tensor]:
    """(sin x, cos x) in float64: x = k pi/2 + r with |r| <= pi/4, then series in r."""
    k = floor(x * (2 / np.pi) + 0.5)
    r = x - k * (np.pi / 2)
    r2 = r * r
    s = r * _poly(r2, _SIN[1::2])
    co = _poly(r2, _COS[0::2])
    q = k - 4.0 * floor(k * 0.25)  # k mod 4
    sin = dsl.where(q == 0.0, s, dsl.where(q == 1.0, co, dsl.where(q == 2.0, -s, -co)))
    cos = dsl.where(q == 0.0, co, dsl.where(q == 1.0, -s, dsl.where(q == 2.0, -co, s)))
    return sin, cos


def atan(x: Tensor) -> Tensor:
    """arctan in float64: reduced to |t| <= tan(pi/12) by 1/t and the pi/6 addition formula."""
    a = dsl.abs(x)
    big = a > 1.0
    t = dsl.where(big, 1.0 / dsl.where(big, a, np.ones((), a.dtype)), a)
    shift = t > (2.0 - np.sqrt(3.0))
    u = dsl.where(shift, (t - 1 / np.sqrt(3.0)) / (1.0 + t / np.sqrt(3.0)), t)
    y = u * _poly(u * u, _ATAN[1::2]) + dsl.cast(shift, "float64") * (np.pi / 6)
    y = dsl.where(big, np.pi / 2 - y, y)
    return dsl.where(x < 0.0, -y, y)


@handler("Sin", "Cos", "Tan", "Asin", "Acos", "Atan")
def _circular(c: _Ctx) -> Val:
    x = c.t(0)
    if not x.type.is_float:
        raise c.fail(f"{c.node.op_type} of {x.dtype} is not supported")
    xd = dsl.cast(x, "float64") if x.dtype != "float64" else x
    op = c.node.op_type
    if op in ("Sin", "Cos", "Tan"):
        s, co = sin_cos(xd)
        y = s if op == "Sin" else co if op == "Cos" else s / co
    elif op == "Atan":
        y = atan(xd)
    else:
        asin = atan(xd / dsl.sqrt(1.0 - xd * xd))
        y = asin if op == "Asin" else np.pi / 2 - asin
    return y if y.dtype == x.dtype else dsl.cast(y, x.dtype)


# ---- activations ------------------------------------------------------------------------------

@handler("Softsign")
def _softsign(c: _Ctx) -> Val:
    x = c.t(0)
    return x / (1.0 + dsl.abs(x))


@handler("Swish")
def _swish(c: _Ctx) -> Val:
    x = c.t(0)
    return x * dsl.sigmoid(x * float(c.attr("alpha", 1.0)))


@handler("Celu")
def _celu(c: _Ctx) -> Val:
    x, a = c.t(0), float(c.attr("alpha", 1.0))
    return dsl.maximum(x, 0.0) + dsl.minimum(a * (dsl.exp(x / a) - 1.0), 0.0)


@handler("ThresholdedRelu")
def _thresholded_relu(c: _Ctx) -> Val:
    x = c.t(0)
    return dsl.where(x > float(c.attr("alpha", 1.0)), x, np.zeros((), x.dtype))


@handler("Shrink")
def _shrink(c: _Ctx) -> Val:
    x = c.t(0)
    lam, bias = float(c.attr("lambd", 0.5)), float(c.attr("bias", 0.0))
    zero = np.zeros((), x.dtype)
    return dsl.where(x < -lam, x + bias, dsl.where(x > lam, x - bias, zero))


# ---- arg-reductions, one-hots -------------------------------------------------------------------

def _flip(x: Tensor, axis: int) -> Tensor:
    n = x.shape[axis]
    return dsl.slice(x, [-1], [-(2**62)], [axis], [-1]) if n != 0 else x


@handler("ArgMax", "ArgMin")
def _arg(c: _Ctx) -> Val:
    x = c.t(0)
    axis = int(c.attr("axis", 0)) % x.ndim
    keep = bool(c.attr("keepdims", 1))
    if c.node.op_type == "ArgMin":
        x = dsl.neg(x) if x.dtype != "bool" else dsl.logical_not(x)
    if not c.attr("select_last_index", 0):
        return dsl.argmax(x, axis, keepdims=keep)
    n = x.shape[axis]
    if not isinstance(n, int):
        raise c.fail(f"select_last_index=1 needs a static dim along axis {axis}, got {n}")
    return np.asarray(n - 1, np.int64) - dsl.argmax(_flip(x, axis), axis, keepdims=keep)


def one_hot_along(index: Tensor, n: int, axis: int, dtype: str) -> Tensor:
    """`index` (a size-1 dim at `axis`) as a one-hot of depth `n` along that axis."""
    shape = [1] * index.ndim
    shape[axis] = n
    iota = dsl.constant(np.arange(n, dtype=index.dtype).reshape(shape))
    return dsl.cast(index == iota, dtype)


@handler("Hardmax")
def _hardmax(c: _Ctx) -> Val:
    x = c.t(0)
    if c.opset < 13:
        raise c.fail("Hardmax before opset 13 (flattening to 2-D) is not supported")
    axis = int(c.attr("axis", -1)) % x.ndim
    n = x.shape[axis]
    if not isinstance(n, int):
        raise c.fail(f"Hardmax needs a static dim along axis {axis}, got {n}")
    return one_hot_along(dsl.argmax(x, axis, keepdims=True), n, axis, x.dtype)


# ---- normalizations ------------------------------------------------------------------------------

def _normalize(x: Tensor, axes: tuple[int, ...], eps: float) -> tuple[Tensor, Tensor, Tensor]:
    """(x - mean) * inv_std over `axes`, the mean and the inverse standard deviation (kept dims)."""
    mu = dsl.mean(x, axes, keepdims=True)
    xc = x - mu
    inv = 1.0 / dsl.sqrt(dsl.mean(xc * xc, axes, keepdims=True) + eps)
    return xc * inv, mu, inv


@handler("LayerNormalization")
def _layer_norm(c: _Ctx) -> Sequence[Val]:
    x = c.t(0)
    axis = int(c.attr("axis", -1)) % x.ndim
    eps = float(c.attr("epsilon", 1e-5))
    bias = c.t(2) if c.has(2) else None
    if not (len(c.node.output) > 1 and any(c.node.output[1:])):
        return [F.layer_norm(x, tuple(x.shape[axis:]), c.t(1), bias, eps)]
    y, mu, inv = _normalize(x, tuple(range(axis, x.ndim)), eps)
    y = y * c.t(1)
    return [y + bias if bias is not None else y, mu, inv]


@handler("RMSNormalization")
def _rms_norm(c: _Ctx) -> Val:
    x = c.t(0)
    axis = int(c.attr("axis", -1)) % x.ndim
    ms = dsl.mean(x * x, tuple(range(axis, x.ndim)), keepdims=True)
    return x / dsl.sqrt(ms + float(c.attr("epsilon", 1e-5))) * c.t(1)


@handler("MeanVarianceNormalization")
def _mvn(c: _Ctx) -> Val:
    x = c.t(0)
    axes = tuple(a % x.ndim for a in c.ints("axes", default=[0, 2, 3]))
    mu = dsl.mean(x, axes, keepdims=True)
    var = dsl.mean(x * x, axes, keepdims=True) - mu * mu
    return (x - mu) / (dsl.sqrt(var) + 1e-9)


@handler("GroupNormalization")
def _group_norm(c: _Ctx) -> Val:
    x = c.t(0)
    groups = int(c.attr("num_groups"))
    n, ch, rest = x.shape[0], x.shape[1], x.shape[2:]
    if not isinstance(ch, int) or ch % groups:
        raise c.fail(f"{ch} channels do not split into {groups} groups")
    xg = dsl.reshape(x, (n, groups, ch // groups) + tuple(rest))
    y, _, _ = _normalize(xg, tuple(range(2, xg.ndim)), float(c.attr("epsilon", 1e-5)))
    per_group = c.opset < 21  # opset 18 had one scale and bias per group
    shape = (1, groups, 1) + (1,) * len(rest) if per_group else (1, ch) + (1,) * len(rest)
    if per_group:
        return dsl.reshape(y * dsl.reshape(c.t(1), shape) + dsl.reshape(c.t(2), shape), x.shape)
    y = dsl.reshape(y, x.shape)
    return y * dsl.reshape(c.t(1), shape) + dsl.reshape(c.t(2), shape)


@handler("LpNormalization")
def _lp_norm(c: _Ctx) -> Val:
    x = c.t(0)
    axis = int(c.attr("axis", -1))
    p = int(c.attr("p", 2))
    if p == 1:
        norm = dsl.sum(dsl.abs(x), (axis,), keepdims=True)
    elif p == 2:
        norm = dsl.sqrt(dsl.sum(x * x, (axis,), keepdims=True))
    else:
        raise c.fail(f"p={p} is not supported (1 or 2)")
    return x / dsl.where(norm == 0.0, np.ones((), x.dtype), norm)  # a zero vector stays zero


@handler("LRN")
def _lrn(c: _Ctx) -> Val:
    x = c.t(0)
    size = int(c.attr("size"))
    alpha, beta, bias = (float(c.attr(k, d)) for k, d in (("alpha", 1e-4), ("beta", 0.75),
                                                          ("bias", 1.0)))
    ch = x.shape[1]
    if not isinstance(ch, int):
        raise c.fail(f"LRN needs a static channel count, got {ch}")
    lo, hi = (size - 1) // 2, size - 1 - (size - 1) // 2
    sq = dsl.pad(x * x, [(0, 0), (lo, hi)] + [(0, 0)] * (x.ndim - 2))
    total = dsl.slice(sq, [0], [ch], [1])
    for i in range(1, size):
        total = total + dsl.slice(sq, [i], [i + ch], [1])
    return x / dsl.power(total * (alpha / size) + bias, np.asarray(beta, x.dtype))


# ---- shapes of data ---------------------------------------------------------------------------

@handler("SpaceToDepth")
def _space_to_depth(c: _Ctx) -> Val:
    x = c.t(0)
    b = int(c.attr("blocksize"))
    n, ch, h, w = x.shape
    y = dsl.reshape(x, (n, ch, _div(c, h, b), b, _div(c, w, b), b))
    crd = c.only("mode", ("DCR", "CRD"), "DCR") == "CRD"
    y = dsl.transpose(y, (0, 1, 3, 5, 2, 4) if crd else (0, 3, 5, 1, 2, 4))
    return dsl.reshape(y, (n, dim_product([ch, b * b]), _div(c, h, b), _div(c, w, b)))


@handler("DepthToSpace")
def _depth_to_space(c: _Ctx) -> Val:
    x = c.t(0)
    b = int(c.attr("blocksize"))
    n, ch, h, w = x.shape
    cc = _div(c, ch, b * b)
    if c.attr("mode", "DCR") == "DCR":
        y = dsl.transpose(dsl.reshape(x, (n, b, b, cc, h, w)), (0, 3, 4, 1, 5, 2))
    else:
        y = dsl.transpose(dsl.reshape(x, (n, cc, b, b, h, w)), (0, 1, 4, 2, 5, 3))
    return dsl.reshape(y, (n, cc, dim_product([h, b]), dim_product([w, b])))


def _div(c: _Ctx, d, b: int):
    if not isinstance(d, int) or d % b:
        raise c.fail(f"dim {d} is not a multiple of the block size {b}")
    return d // b


@handler("EyeLike")
def _eye_like(c: _Ctx) -> Val:
    v = c.inputs[0]
    shape = v.shape if isinstance(v, Tensor) else np.asarray(v).shape
    if len(shape) != 2 or not all(isinstance(d, int) for d in shape):
        raise c.fail(f"EyeLike needs a static 2-D input, got {shape}")
    dtype = c.imp.dtype_of(int(c.attr("dtype")), c) if "dtype" in c.attrs else \
        dtype_of_input(c, 0)
    c.imp.limits.check(shape, dtype, f"{c.where()}: EyeLike")
    return np.eye(shape[0], shape[1], int(c.attr("k", 0)), dtype=dtype)


@handler("Compress", static=(1,))
def _compress(c: _Ctx) -> Val:
    x = c.t(0)
    keep = np.flatnonzero(c.const(1, "condition").astype(bool))
    if "axis" not in c.attrs:
        x, axis = dsl.reshape(x, (-1,)), 0
    else:
        axis = int(c.attr("axis")) % x.ndim
    return dsl.take(x, dsl.constant(keep.astype(np.int64)), axis)


@handler("SwiGLU")
def _swiglu(c: _Ctx) -> Val:
    a = c.t(0)
    return a * dsl.sigmoid(a * float(c.attr("alpha", 1.0))) * c.t(1)


@handler("Det")
def _det(c: _Ctx) -> Val:
    """Cofactor expansion along the first row, for matrices up to 4 x 4."""
    x = c.t(0)
    n = x.shape[-1]
    if not isinstance(n, int) or x.shape[-2] != n or n > 4:
        raise c.fail(f"Det of {tuple(x.shape)} is not supported (square, at most 4 x 4)")

    def entry(i: int, j: int) -> Tensor:
        return dsl.squeeze(dsl.slice(x, [i, j], [i + 1, j + 1], [x.ndim - 2, x.ndim - 1]),
                           (x.ndim - 2, x.ndim - 1))

    def det(rows: list[int], cols: list[int]) -> Tensor:
        if len(rows) == 1:
            return entry(rows[0], cols[0])
        total = None
        for k, col in enumerate(cols):
            term = entry(rows[0], col) * det(rows[1:], cols[:k] + cols[k + 1:])
            total = term if total is None else (total + term if k % 2 == 0 else total - term)
        return total
    return det(list(range(n)), list(range(n)))
