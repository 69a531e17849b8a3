"""Reductions over axes (sum, mean, max, min, argmax) and matmul."""
from __future__ import annotations

import numpy as np

from ..ir.types import TensorType, broadcast_shapes
from .base import Op, OpTraits, fmt_shape, norm_axes, norm_axis, register, require_float
from .base import static_numel


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

    def cost(self, x, *, y, axes=None, keepdims=False):
        """One operation per input element."""
        return static_numel(x)

    def onnx(self, e, x, axes=None, keepdims=False):
        ax = norm_axes(axes, e.in_types[0].rank)
        if not ax:
            return e.op("Identity", [x])
        return e.reduce(self.onnx_op, x, ax, keepdims)

    def tvm(self, e, x, axes=None, keepdims=False):
        ax = norm_axes(axes, e.in_types[0].rank)
        if not ax:
            return x
        return self.relax_fn(e)(x, axis=list(ax), keepdims=bool(keepdims))


@register
class sum(Reduce):
    """y = sum of x over axes"""
    traits = OpTraits(reduction=True, relax_op="sum")
    onnx_op = "ReduceSum"
    fn = staticmethod(np.sum)

    def vjp(self, g, x, *, y, axes=None, keepdims=False):
        from ..frontends import dsl
        return (dsl.broadcast_to(_keep_reduced(g, x, axes, keepdims), x.shape),)


@register
class mean(Reduce):
    """y = mean of x over axes"""
    traits = OpTraits(reduction=True, relax_op="mean")
    onnx_op = "ReduceMean"

    def infer(self, x, axes=None, keepdims=False):
        require_float(x)
        return super().infer(x, axes, keepdims)

    fn = staticmethod(np.mean)

    def onnx(self, e, x, axes=None, keepdims=False):
        # NaN over an empty slice, as numpy and PyTorch (onnxruntime's ReduceMean gives 0)
        ax = norm_axes(axes, e.in_types[0].rank)
        if not ax:
            return e.op("Identity", [x])
        return e.reduce_mean(x, e.in_types[0], ax, keepdims)

    def vjp(self, g, x, *, y, axes=None, keepdims=False):
        from ..frontends import dsl
        gk = _keep_reduced(g, x, axes, keepdims)
        n = _reduced_count(x, axes)
        if isinstance(n, int) and n == 0:  # x is empty along a reduced axis: its gradient is an empty tensor
            return (dsl.broadcast_to(gk, x.shape),)
        return (dsl.broadcast_to(gk * (1.0 / n) if isinstance(n, int) else gk / n, x.shape),)


@register
class max(Reduce):
    """y = max of x over axes"""
    traits = OpTraits(reduction=True, relax_op="max")
    onnx_op = "ReduceMax"
    fn = staticmethod(np.max)

    def vjp(self, g, x, *, y, axes=None, keepdims=False):
        return (_extremum_grad(g, x, y, axes, keepdims),)


@register
class min(Reduce):
    """y = min of x over axes"""
    traits = OpTraits(reduction=True, relax_op="min")
    onnx_op = "ReduceMin"
    fn = staticmethod(np.min)

    def vjp(self, g, x, *, y, axes=None, keepdims=False):
        return (_extremum_grad(g, x, y, axes, keepdims),)


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

    def cost(self, x, *, y, axis=-1, keepdims=False):
        """One comparison per input element."""
        return static_numel(x)

    def onnx(self, e, x, axis=-1, keepdims=False):
        return e.op("ArgMax", [x], axis=norm_axis(axis, e.in_types[0].rank), keepdims=int(keepdims))

    def tvm(self, e, x, axis=-1, keepdims=False):
        return e.R.argmax(x, axis=norm_axis(axis, e.in_types[0].rank), keepdims=bool(keepdims))


@register
class matmul(Op):
    """c = a @ b (numpy semantics: batch dims broadcast, 1-D operands promoted)"""
    arity = 2
    traits = OpTraits(low_precision=True)

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

    def cost(self, a, b, *, y):
        """2*M*N*K per batch: a multiply and an add for each of K terms of each output."""
        return 2 * static_numel(y) * int(a.shape[-1])

    def onnx(self, e, a, b):
        if e.in_types[1].rank == 1 and e.in_types[0].rank > 1:
            # onnxruntime 1.32's MatmulTransposeFusion drops the transpose of `a` when b is 1-D
            # (Transpose(x) @ v gave x @ v): multiply by b as a (K, 1) column, then drop the axis
            axis = e.const(np.array([-1], np.int64))
            return e.op("Squeeze", [e.op("MatMul", [a, e.op("Unsqueeze", [b, axis])]), axis])
        return e.op("MatMul", [a, b])

    def tvm(self, e, a, b):
        # a transposed operand is read in place by `gemm(a, b, trans_a)` (fuse_gemm makes it)
        return e.R.matmul(a, b)

    def vjp(self, g, a, b, *, y):
        from ..frontends import dsl
        # promote 1-D operands as numpy does, so both products are batched matrix products
        A = a if a.ndim > 1 else dsl.reshape(a, (1,) + a.shape)
        B = b if b.ndim > 1 else dsl.reshape(b, b.shape + (1,))
        G = g
        if a.ndim == 1:
            G = dsl.expand_dims(G, G.ndim - (1 if b.ndim > 1 else 0))
        if b.ndim == 1:
            G = dsl.expand_dims(G, G.ndim)
        ga = dsl.matmul(G, dsl.swapaxes(B, -1, -2))
        gb = dsl.matmul(dsl.swapaxes(A, -1, -2), G)
        if a.ndim == 1:
            ga = dsl.reshape(ga, ga.shape[:-2] + ga.shape[-1:])
        if b.ndim == 1:
            gb = dsl.reshape(gb, gb.shape[:-1])
        return (ga, gb)  # batch dims are summed by the autodiff pass


# ---- gradient helpers (used by the vjp rules above) ----------------------------------------------

def _keep_reduced(t, x, axes, keepdims):
    """t (shaped like a reduction of x) reshaped to keep the reduced axes as size 1."""
    from ..frontends import dsl
    if keepdims:
        return t
    return dsl.reshape(t, reduced_shape(x.shape, norm_axes(axes, x.ndim), True))


def _reduced_count(x, axes):
    """The number of elements each output of a reduction of x sums: an int, or a tensor if symbolic."""
    from ..frontends import dsl
    ax = norm_axes(axes, x.ndim)
    dims = [x.shape[i] for i in ax]
    if all(isinstance(d, int) for d in dims):
        n = 1
        for d in dims:
            n *= d
        return n
    # a symbolic count is read at run time from x's shape (graphc/ops/fused.py: size)
    return dsl.apply("size", [x], {"axes": ax, "dtype": x.dtype})


def _extremum_grad(g, x, y, axes, keepdims):
    """dx = g at the maxima (or minima) of each reduced slice, split evenly between ties."""
    from ..frontends import dsl
    ax = norm_axes(axes, x.ndim)
    hit = dsl.cast(dsl.equal(x, _keep_reduced(y, x, axes, keepdims)), x.dtype)
    return hit * (_keep_reduced(g, x, axes, keepdims) / dsl.sum(hit, ax, keepdims=True))
