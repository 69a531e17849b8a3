"""Reductions over axes (sum, mean, max, min, argmax) and matmul."""
from __future__ import annotations

import numpy as np

from ..ir.types import TensorType, broadcast_shapes
from .base import Op, fmt_shape, norm_axes, norm_axis, register, require_float


def reduced_shape(shape, axes, keepdims):
    return tuple((1 if keepdims else None) if i in axes else d for i, d in enumerate(shape)
                 if keepdims or i not in axes)


class Reduce(Op):
    """y = reduce(x) over `axes` (None: all), keeping reduced axes as size 1 if `keepdims`."""

    onnx_op = ""

    def infer(self, x: TensorType, axes=None, keepdims=False) -> TensorType:
        if x.dtype == "bool":
            raise TypeError("bool input; cast it to a number first")
        ax = norm_axes(axes, x.rank)
        return TensorType(reduced_shape(x.shape, ax, keepdims), x.dtype)

    def ref(self, x, axes=None, keepdims=False):
        ax = norm_axes(axes, x.ndim)
        return np.asarray(self.fn(x, axis=ax, keepdims=keepdims)).astype(x.dtype, copy=False)

    def onnx(self, e, x, axes=None, keepdims=False):
        ax = norm_axes(axes, e.in_types[0].rank)
        if not ax:
            return e.op("Identity", [x])
        return e.op(self.onnx_op, [x, e.const(np.array(ax, np.int64))], keepdims=int(keepdims))


@register
class sum(Reduce):
    """y = sum of x over axes"""
    onnx_op = "ReduceSum"
    fn = staticmethod(np.sum)


@register
class mean(Reduce):
    """y = mean of x over axes"""
    onnx_op = "ReduceMean"

    def infer(self, x, axes=None, keepdims=False):
        require_float(x)
        return super().infer(x, axes, keepdims)

    fn = staticmethod(np.mean)


@register
class max(Reduce):
    """y = max of x over axes"""
    onnx_op = "ReduceMax"
    fn = staticmethod(np.max)


@register
class min(Reduce):
    """y = min of x over axes"""
    onnx_op = "ReduceMin"
    fn = staticmethod(np.min)


@register
class argmax(Op):
    """y = index of the first maximum of x along `axis` (int64)"""
    differentiable = False

    def infer(self, x, axis=-1, keepdims=False):
        a = norm_axis(axis, x.rank)
        return TensorType(reduced_shape(x.shape, (a,), keepdims), "int64")

    def ref(self, x, axis=-1, keepdims=False):
        out = np.argmax(x, axis=axis).astype(np.int64)
        return np.expand_dims(out, axis) if keepdims else out

    def onnx(self, e, x, axis=-1, keepdims=False):
        return e.op("ArgMax", [x], axis=norm_axis(axis, e.in_types[0].rank), keepdims=int(keepdims))


@register
class matmul(Op):
    """c = a @ b (numpy semantics: batch dims broadcast, 1-D operands promoted)"""
    arity = 2

    def infer(self, a: TensorType, b: TensorType) -> TensorType:
        if a.dtype != b.dtype:
            raise TypeError(f"{fmt_shape(a)} @ {fmt_shape(b)}: dtypes {a.dtype} and {b.dtype} differ")
        if a.dtype == "bool":
            raise TypeError("bool inputs; cast them to a number first")
        if a.rank == 0 or b.rank == 0:
            raise ValueError(f"{fmt_shape(a)} @ {fmt_shape(b)}: matmul needs operands of rank >= 1")
        sa = a.shape if a.rank > 1 else (1,) + a.shape
        sb = b.shape if b.rank > 1 else b.shape + (1,)
        if sa[-1] != sb[-2]:
            raise ValueError(f"{fmt_shape(a)} @ {fmt_shape(b)}: inner dimensions {sa[-1]} and {sb[-2]} differ")
        try:
            batch = broadcast_shapes(sa[:-2], sb[:-2])
        except ValueError as exc:
            raise ValueError(f"{fmt_shape(a)} @ {fmt_shape(b)}: batch dims: {exc}") from None
        out = batch + ((sa[-2],) if a.rank > 1 else ()) + ((sb[-1],) if b.rank > 1 else ())
        return TensorType(out, a.dtype)

    def ref(self, a, b):
        return np.matmul(a, b)

    def onnx(self, e, a, b):
        return e.op("MatMul", [a, b])
