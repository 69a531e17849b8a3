"""Bitwise primitives on integers: and, or, xor, not, shifts, and bitcast (reinterpreting bits).

ONNX has BitwiseAnd/Or/Xor/Not from opset 18; for the older opsets graphc writes, the lowerings
spell them with BitShift (opset 11) on the bits and boolean And/Or/Xor.

They are primitives because no composite of graphc's arithmetic expresses them exactly on every
integer width (a shift by multiplication overflows differently, and bits of a float have no
arithmetic spelling). None is differentiable: their outputs are integers, or bits.
"""
from __future__ import annotations

import numpy as np

from ..ir.types import UNSIGNED_DTYPES, TensorType, canonical_dtype, is_integer_dtype
from .base import Op, OpTraits, register
from .elementwise import Binary, Unary

#: the first ai.onnx opset with BitwiseAnd/Or/Xor/Not
_BITWISE_OPSET = 18


def _require_int(t: TensorType, what: str = "input") -> None:
    if not is_integer_dtype(t.dtype):
        raise TypeError(f"{what} must be an integer dtype, got {t.dtype}")


def _need_opset(e, op: str, opset: int) -> None:
    if e.opset < opset:
        raise NotImplementedError(f"ONNX has {op} from opset {opset}; exporting at opset "
                                  f"{e.opset}: pass opset={opset} or later")


class BitwiseBinary(Binary):
    """z = f(a, b) bit by bit, on integers of one dtype, broadcasting."""

    differentiable = False

    def infer(self, a: TensorType, b: TensorType) -> TensorType:
        _require_int(a)
        return super().infer(a, b)

    #: the ONNX boolean op that combines one bit of each operand (And, Or, Xor)
    bool_op = ""

    def onnx(self, e, a, b):
        if e.opset >= _BITWISE_OPSET:
            return e.op(self.onnx_op, [a, b])
        # before opset 18: unpack both operands into bits (BitShift, on the unsigned type of
        # the same width), combine the bits as bools, and sum them back with their weights
        dt = e.in_types[0].dtype
        bits = np.iinfo(dt).bits
        a_bits, b_bits = _unpack_bits(e, a, dt), _unpack_bits(e, b, dt)
        both = e.op("Cast", [e.op(self.bool_op, [a_bits, b_bits])], to=e.onnx_dtype("int64"))
        # summed 32 bits at a time (onnxruntime's int64 ReduceSum is exact only below 2**53);
        # the high half's weight 2**32 wraps in int64 like the bits of a two's complement number
        low = min(bits, 32)
        weights = e.const(np.int64(1) << np.arange(low, dtype=np.int64))
        total = e.reduce("ReduceSum", e.op("Mul", [_bit_range(e, both, 0, low), weights]), [-1])
        if bits == 64:
            high = e.reduce("ReduceSum", e.op("Mul", [_bit_range(e, both, 32, 64), weights]), [-1])
            total = e.op("Add", [total, e.op("Mul", [high, e.const(np.int64(1) << 32)])])
        return e.op("Cast", [total], to=e.onnx_dtype(dt))


def _bit_range(e, bits: str, start: int, end: int) -> str:
    """bits[..., start:end] (ONNX Slice on the last axis)."""
    return e.op("Slice", [bits, e.const(np.array([start], np.int64)),
                          e.const(np.array([end], np.int64)), e.const(np.array([-1], np.int64))])


def _unpack_bits(e, x: str, dt: str) -> str:
    """x's bits, least significant first, as bools along a new last axis (ONNX before opset 18)."""
    bits = np.iinfo(dt).bits
    u = f"uint{bits}"
    xu = x if dt == u else e.op("Cast", [x], to=e.onnx_dtype(u))
    xu = e.op("Unsqueeze", [xu, e.const(np.array([-1], np.int64))])
    up = e.op("BitShift", [xu, e.const(np.arange(bits - 1, -1, -1).astype(u))], direction="LEFT")
    down = e.op("BitShift", [up, e.const(np.asarray(bits - 1, u))], direction="RIGHT")
    return e.op("Cast", [down], to=e.onnx_dtype("bool"))


@register
class bitwise_and(BitwiseBinary):
    """z = a & b"""
    traits = OpTraits(elementwise=True, broadcasting=True, commutative=True,
                      relax_op="bitwise_and")
    onnx_op = "BitwiseAnd"
    bool_op = "And"
    fn = staticmethod(np.bitwise_and)


@register
class bitwise_or(BitwiseBinary):
    """z = a | b"""
    traits = OpTraits(elementwise=True, broadcasting=True, commutative=True,
                      relax_op="bitwise_or")
    onnx_op = "BitwiseOr"
    bool_op = "Or"
    fn = staticmethod(np.bitwise_or)


@register
class bitwise_xor(BitwiseBinary):
    """z = a ^ b"""
    traits = OpTraits(elementwise=True, broadcasting=True, commutative=True,
                      relax_op="bitwise_xor")
    onnx_op = "BitwiseXor"
    bool_op = "Xor"
    fn = staticmethod(np.bitwise_xor)


@register
class bitwise_not(Unary):
    """y = ~x"""
    traits = OpTraits(elementwise=True, relax_op="bitwise_not")
    onnx_op = "BitwiseNot"
    differentiable = False

    def infer(self, x: TensorType) -> TensorType:
        _require_int(x)
        return x

    fn = staticmethod(np.invert)

    def onnx(self, e, x):
        if e.opset >= _BITWISE_OPSET:
            return e.op("BitwiseNot", [x])
        # before opset 18: ~x is -x - 1 in two's complement, computed in int64 (which every
        # opset's Neg and Sub take) and wrapped back to x's width by the Cast
        dt = e.in_types[0].dtype
        wide = e.op("Cast", [x], to=e.onnx_dtype("int64"))
        y = e.op("Sub", [e.op("Neg", [wide]), e.const(np.asarray(1, np.int64))])
        return e.op("Cast", [y], to=e.onnx_dtype(dt))


def _shift_amounts(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """a and b broadcast, and where b is a valid shift (0 <= b < the bit width of a)."""
    a, b = np.broadcast_arrays(a, b)
    bits = np.iinfo(a.dtype).bits
    valid = (b >= 0) & (b < bits) if b.dtype.kind == "i" else b < bits
    return a, np.where(valid, b, 0).astype(a.dtype), valid


class Shift(BitwiseBinary):
    """z = a shifted by b bits; a shift by the bit width or more (or a negative one) gives 0
    (-1 for a right shift of a negative number), as ONNX BitShift."""

    direction = ""

    def onnx(self, e, a, b):
        if e.in_types[0].dtype not in UNSIGNED_DTYPES:
            _need_opset(e, f"BitShift of {e.in_types[0].dtype}", 28)
        return e.op("BitShift", [a, b], direction=self.direction)


@register
class shift_left(Shift):
    """z = a << b (wrapping in a's width)"""
    traits = OpTraits(elementwise=True, broadcasting=True, relax_op="left_shift")
    direction = "LEFT"

    @staticmethod
    def fn(a, b):
        a, s, valid = _shift_amounts(a, b)
        u = np.dtype(f"u{a.dtype.itemsize}")
        out = np.left_shift(a.view(u) if a.dtype.kind == "i" else a, s.astype(u)).view(a.dtype)
        return np.where(valid, out, np.zeros((), a.dtype))


@register
class shift_right(Shift):
    """z = a >> b (arithmetic for signed a)"""
    traits = OpTraits(elementwise=True, broadcasting=True, relax_op="right_shift")
    direction = "RIGHT"

    @staticmethod
    def fn(a, b):
        a, s, valid = _shift_amounts(a, b)
        beyond = np.where(a < 0, np.asarray(-1).astype(a.dtype), np.zeros((), a.dtype)) \
            if a.dtype.kind == "i" else np.zeros((), a.dtype)
        return np.where(valid, np.right_shift(a, s), beyond)


@register
class bitcast(Op):
    """y = the bits of x read as `dtype` (of the same width), shape unchanged"""
    traits = OpTraits(elementwise=True, exact_bits=True)
    differentiable = False
    onnxruntime_cpu_missing = ()

    def infer(self, x: TensorType, dtype: str) -> TensorType:
        to = canonical_dtype(dtype)
        if np.dtype(x.dtype).itemsize != np.dtype(to).itemsize or \
                np.dtype(x.dtype).itemsize * 8 != _bits(x.dtype) or _bits(to) != _bits(x.dtype):
            raise TypeError(f"cannot bitcast {x.dtype} ({_bits(x.dtype)} bits) to {to} "
                            f"({_bits(to)} bits): the widths differ")
        return x.with_dtype(to)

    def cost(self, *xs, y, **attrs):
        """No arithmetic: the same bits."""
        return 0

    def ref(self, x, dtype):
        return np.array(x, order="C").view(dtype)  # a contiguous copy: a view needs one

    def onnx(self, e, x, dtype):
        _need_opset(e, "BitCast", 26)
        return e.op("BitCast", [x], to=e.onnx_dtype(dtype))

    # no tvm rule: TVM 0.27's Relax has no reinterpret op (tvm.relax.op lacks one)

def _bits(dtype: str) -> int:
    """The width of a dtype in bits (int4 and int2 are held one per byte but are narrower)."""
    return {"int4": 4, "uint4": 4, "float4_e2m1fn": 4, "int2": 2, "uint2": 2}.get(
        dtype, np.dtype(dtype).itemsize * 8)
