"""ONNX import handlers for bit operations and quantization, registered in the table of
onnx_import_ops.py.

The bit operations map onto graphc's bitwise primitives (graphc/ops/bitwise.py). Quantization
(QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear, MatMulInteger, ConvInteger,
QLinearMatMul, QLinearConv) is composite: a scale broadcast along an axis or repeated over
blocks, arithmetic in float32 (float64 for float64 data and for QLinear's requantization, as
onnx's reference), rounding half to even, and a clipping or saturating cast to the quantized
type.
"""
from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Sequence

import ml_dtypes
import numpy as np

from ..ir.types import FLOAT8_DTYPES, FLOAT_DTYPES, PACKED_INT_DTYPES, is_integer_dtype
from . import dsl
from .dsl import Tensor
from .onnx_import_math import round_half_even
from .onnx_import_ops import HANDLERS, Val, handler, onnx_cast

if TYPE_CHECKING:  # pragma: no cover
    from .onnx_import import _Ctx


# ---- bit operations ---------------------------------------------------------------------------

_BITWISE = {"BitwiseAnd": "bitwise_and", "BitwiseOr": "bitwise_or", "BitwiseXor": "bitwise_xor"}


@handler(*_BITWISE)
def _bitwise(c: _Ctx) -> Val:
    return dsl.apply(_BITWISE[c.node.op_type], [c.t(0), c.t(1)])


@handler("BitwiseNot")
def _bitwise_not(c: _Ctx) -> Val:
    return dsl.apply("bitwise_not", [c.t(0)])


@handler("BitShift")
def _bit_shift(c: _Ctx) -> Val:
    direction = c.only("direction", ("LEFT", "RIGHT"), None)
    return dsl.apply("shift_left" if direction == "LEFT" else "shift_right", [c.t(0), c.t(1)])


@handler("BitCast")
def _bitcast(c: _Ctx) -> Val:
    return dsl.apply("bitcast", [c.t(0)], {"dtype": c.imp.dtype_of(int(c.attr("to")), c)})


# ---- quantization -----------------------------------------------------------------------------

#: the range of each integer type a value is quantized to
_INT_RANGE = {d: (int(ml_dtypes.iinfo(d).min), int(ml_dtypes.iinfo(d).max))
              for d in ("int8", "uint8", "int16", "uint16", "int32", "uint32") + PACKED_INT_DTYPES}


def _per_axis(c: _Ctx, v: Tensor, x: Tensor, what: str) -> Tensor:
    """A scale or zero point made to broadcast against x: a scalar as it is, a vector along
    `axis`, a blocked one (`block_size`) repeated over each block along `axis`."""
    if v.type.rank == 0 or (v.type.rank == 1 and v.shape[0] == 1):
        return dsl.reshape(v, ()) if v.type.rank else v
    rank = x.type.rank
    axis = int(c.attr("axis", 1))
    if not -rank <= axis < rank:
        raise c.fail(f"axis {axis} is out of range for the input's rank {rank}")
    axis %= rank
    block = int(c.attr("block_size", 0))
    if not block:
        if v.type.rank != 1 or v.shape[0] != x.shape[axis]:
            raise c.fail(f"{what} has shape {tuple(v.shape)}; per-axis quantization along axis "
                         f"{axis} needs ({x.shape[axis]},)")
        return dsl.reshape(v, tuple(x.shape[axis] if i == axis else 1 for i in range(rank)))
    if block < 0 or v.type.rank != rank:
        raise c.fail(f"block_size {block} with {what} of shape {tuple(v.shape)}: blocked "
                     f"quantization needs a positive block size and a {what} of rank {rank}")
    shape = list(v.shape)
    rep = dsl.broadcast_to(dsl.expand_dims(v, axis + 1),
                           tuple(shape[:axis + 1] + [block] + shape[axis + 1:]))
    rep = dsl.reshape(rep, tuple(shape[:axis] + [shape[axis] * block] + shape[axis + 1:]))
    n = x.shape[axis]
    if not isinstance(n, int) or rep.shape[axis] < n or \
            any(a != b for i, (a, b) in enumerate(zip(rep.shape, x.shape)) if i != axis):
        raise c.fail(f"{what} of shape {tuple(v.shape)} with block_size {block} does not "
                     f"cover the input's shape {tuple(x.shape)}")
    return dsl.slice(rep, (0,), (n,), (axis,)) if rep.shape[axis] != n else rep


def _wide(dtype: str) -> str:
    return "float64" if dtype == "float64" else "float32"


def _to_int(c: _Ctx, y: Tensor, zp: Tensor | None, dtype: str) -> Tensor:
    """round(y) + zp, clipped to the range of the integer `dtype` and cast to it."""
    r = dsl.cast(round_half_even(y), _wide(y.dtype))
    if zp is not None:
        r = r + dsl.cast(zp, r.dtype)
    lo, hi = _INT_RANGE[dtype]
    r = dsl.minimum(dsl.maximum(r, np.asarray(lo, r.dtype)), np.asarray(hi, r.dtype))
    return dsl.cast(r, dtype)


@handler("QuantizeLinear")
def _quantize(c: _Ctx) -> Val:
    x = c.t(0)
    zp = c.t(2) if c.has(2) else None
    out = c.imp.dtype_of(int(c.attr("output_dtype")), c) if c.attr("output_dtype") else None
    if zp is not None and out is not None and zp.dtype != out:
        raise c.fail(f"output_dtype {out} differs from the zero point's dtype {zp.dtype}")
    out = zp.dtype if zp is not None else (out or "uint8")
    scale = _per_axis(c, c.t(1), x, "the scale")
    zp = _per_axis(c, zp, x, "the zero point") if zp is not None else None
    if c.attr("precision"):
        p = c.imp.dtype_of(int(c.attr("precision")), c)
        y = dsl.cast(x, p) / dsl.cast(scale, p)
    else:
        y = x / (scale if scale.dtype == x.dtype else dsl.cast(scale, x.dtype))
    if out in _INT_RANGE:
        return _to_int(c, y, zp, out)
    if out in FLOAT8_DTYPES and out != "float8_e8m0fnu":
        return onnx_cast(c, y, out)  # a float8 zero point is zero
    if out == "float4_e2m1fn":  # no NaN or infinity: the cast saturates
        return dsl.cast(y + dsl.cast(zp, y.dtype) if zp is not None else y, out)
    raise c.fail(f"cannot quantize to {out}")


@handler("DequantizeLinear")
def _dequantize(c: _Ctx) -> Val:
    x, scale = c.t(0), c.t(1)
    out = c.imp.dtype_of(int(c.attr("output_dtype")), c) if c.attr("output_dtype") else scale.dtype
    wide = _wide(scale.dtype)
    dx = dsl.cast(x, wide)
    if c.has(2) and (is_integer_dtype(x.dtype)):
        zp = c.t(2)
        if zp.dtype != x.dtype:
            raise c.fail(f"the zero point's dtype {zp.dtype} differs from the input's {x.dtype}")
        dx = dx - dsl.cast(_per_axis(c, zp, x, "the zero point"), wide)
    return dsl.cast(dx * dsl.cast(_per_axis(c, scale, x, "the scale"), wide), out)


@handler("DynamicQuantizeLinear")
def _dynamic_quantize(c: _Ctx) -> Sequence[Val]:
    x = c.t(0)
    if x.dtype not in FLOAT_DTYPES:
        raise c.fail(f"input must be a float, got {x.dtype}")
    f = dsl.cast(x, "float32")
    hi = dsl.maximum(dsl.max(f), np.float32(0))
    lo = dsl.minimum(dsl.min(f), np.float32(0))
    rng = dsl.where(hi == lo, np.float32(1), hi - lo)
    scale = rng / np.float32(255)
    zp = round_half_even(dsl.minimum(dsl.maximum(-lo / scale, np.float32(0)), np.float32(255)))
    y = _to_int(c, f / scale, zp, "uint8")
    return [y, dsl.cast(scale, x.dtype), dsl.cast(zp, "uint8")]


def _shifted(c: _Ctx, i: int, zp_i: int, to: str) -> Tensor:
    """Input i as `to`, minus its zero point (input zp_i) when there is one."""
    v = dsl.cast(c.t(i), to)
    return v - dsl.cast(c.t(zp_i), to) if c.has(zp_i) else v


@handler("MatMulInteger")
def _matmul_integer(c: _Ctx) -> Val:
    return dsl.matmul(_shifted(c, 0, 2, "int32"), _shifted(c, 1, 3, "int32"))


@handler("QLinearMatMul")
def _qlinear_matmul(c: _Ctx) -> Val:
    acc = dsl.matmul(_shifted(c, 0, 2, "int32"), _shifted(c, 3, 5, "int32"))
    a_s, b_s, y_s = c.t(1), c.t(4), c.t(6)
    k = a_s * (b_s if b_s.dtype == a_s.dtype else dsl.cast(b_s, a_s.dtype)) / \
        (y_s if y_s.dtype == a_s.dtype else dsl.cast(y_s, a_s.dtype))
    y = dsl.cast(acc, "float64") * dsl.cast(k, "float64")
    zp = c.t(7) if c.has(7) else None
    return _to_int(c, y, zp, zp.dtype if zp is not None else c.t(0).dtype)


def _conv_of(c: _Ctx, x: Tensor, w: Tensor) -> Tensor:
    """ONNX Conv with this node's attributes on x and w (float64: exact for 8-bit products)."""
    sub = copy.copy(c)
    sub.inputs = [x, w]
    return HANDLERS["Conv"](sub)


def _per_channel(c: _Ctx, zp: Tensor, rank: int) -> Tensor:
    """A weight zero point per output channel, shaped to broadcast against the weights."""
    if zp.type.rank == 0 or zp.numel() == 1:
        return dsl.reshape(zp, ())
    return dsl.reshape(zp, (zp.shape[0],) + (1,) * (rank - 1))


@handler("ConvInteger")
def _conv_integer(c: _Ctx) -> Val:
    x, w = dsl.cast(c.t(0), "float64"), dsl.cast(c.t(1), "float64")
    if c.has(2):
        x = x - dsl.cast(dsl.reshape(c.t(2), ()) if c.t(2).type.rank else c.t(2), "float64")
    if c.has(3):
        w = w - dsl.cast(_per_channel(c, c.t(3), w.type.rank), "float64")
    return dsl.cast(_conv_of(c, x, w), "int32")


@handler("QLinearConv")
def _qlinear_conv(c: _Ctx) -> Val:
    x = dsl.cast(c.t(0), "float64") - dsl.cast(dsl.reshape(c.t(2), ()), "float64")
    w = dsl.cast(c.t(3), "float64") - dsl.cast(_per_channel(c, c.t(5), c.t(3).type.rank),
                                                 "float64")
    acc = _conv_of(c, x, w)
    if c.has(8):  # an int32 bias, in the accumulator's scale
        b = c.t(8)
        acc = acc + dsl.reshape(dsl.cast(b, "float64"), (b.shape[0],) + (1,) * (acc.type.rank - 2))
    w_s = c.t(4)
    w_s = dsl.reshape(w_s, (w_s.shape[0],) + (1,) * (acc.type.rank - 2)) \
        if w_s.type.rank and w_s.numel() != 1 else dsl.reshape(w_s, ())
    k = dsl.cast(c.t(1), "float64") * dsl.cast(w_s, "float64") / dsl.cast(c.t(6), "float64")
    return _to_int(c, acc * k, c.t(7), c.t(7).dtype)
