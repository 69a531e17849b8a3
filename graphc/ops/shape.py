"""Shape and indexing primitives: reshape, transpose, expand, concat, slice, gather, pad."""
from __future__ import annotations

import builtins

import numpy as np

from ..ir.types import TensorType, broadcast_shapes, dim_product, normalize_dim
from .base import Op, OpTraits, fmt_shape, norm_axis, register
from .base import static_numel

INT_MAX = 2**63 - 1


@register
class reshape(Op):
    """y = x with a new shape of the same size (dims may be symbolic; no -1 here)"""
    traits = OpTraits(view_like=True)
    shape_attrs = ("shape",)
    onnx_output_buffer = "alias"  # onnxruntime's Reshape kernel aliases its input

    def infer(self, x, shape):
        shape = tuple(normalize_dim(d) for d in shape)
        if dim_product(shape) != x.numel():
            raise ValueError(f"cannot reshape {fmt_shape(x)} ({x.numel()} elements) to "
                             f"{tuple(shape)} ({dim_product(shape)} elements)")
        return TensorType(shape, x.dtype)

    def cost(self, *xs, y, **attrs):
        """No arithmetic: a view with a new shape."""
        return 0

    def ref(self, x, shape):
        return x.reshape(shape)

    def onnx(self, e, x, shape):
        if any(d == 0 for d in shape):
            # ONNX reads a 0 in the target shape as "copy this dim" unless allowzero is set,
            # and forbids -1 together with allowzero
            if e.opset < 14:  # no allowzero: the result holds no element, so broadcast nothing
                return e.op("Expand", [e.const(np.zeros((), e.in_types[0].dtype)), e.shape_tensor(shape)])
            return e.op("Reshape", [x, e.shape_tensor(shape)], allowzero=1)
        if e.opset >= 14 and len([d for d in shape if not isinstance(d, (int, np.integer))]) > 1:
            # two or more symbolic dims are read from the inputs at run time (no -1), and one of
            # them may be 0 there, which only allowzero keeps from meaning "copy this dim"
            return e.op("Reshape", [x, e.shape_tensor(shape)], allowzero=1)
        return e.op("Reshape", [x, e.shape_tensor(shape, allow_minus_one=True)])

    def tvm(self, e, x, shape):
        return e.R.reshape(x, e.shape(shape))

    def vjp(self, g, x, *, y, shape):
        from ..frontends import dsl
        return (dsl.reshape(g, x.shape),)


@register
class transpose(Op):
    """y = x with axes permuted: y.shape[i] = x.shape[axes[i]]"""
    traits = OpTraits(view_like=True)
    # onnxruntime 1.32's CPU build moves bfloat16 data (measured): its kernel is type-agnostic
    onnxruntime_cpu_missing: tuple[str, ...] = ()

    def infer(self, x, axes):
        if sorted(axes) != list(range(x.rank)):
            raise ValueError(f"axes {tuple(axes)} are not a permutation of {x.rank} axes of {fmt_shape(x)}")
        return TensorType(tuple(x.shape[a] for a in axes), x.dtype)

    def cost(self, *xs, y, **attrs):
        """No arithmetic: data movement only."""
        return 0

    def ref(self, x, axes):
        return np.transpose(x, axes)

    def onnx(self, e, x, axes):
        return e.op("Transpose", [x], perm=list(axes))

    def tvm(self, e, x, axes):
        return e.R.permute_dims(x, [int(a) for a in axes])

    def vjp(self, g, x, *, y, axes):
        from ..frontends import dsl
        return (dsl.transpose(g, tuple(int(i) for i in np.argsort(axes))),)


@register
class expand(Op):
    """y = x broadcast to `shape` (numpy broadcast_to)"""
    traits = OpTraits(view_like=True)
    shape_attrs = ("shape",)

    def infer(self, x, shape):
        shape = tuple(normalize_dim(d) for d in shape)
        try:
            out = broadcast_shapes(x.shape, shape)
        except ValueError as exc:
            raise ValueError(f"cannot expand {fmt_shape(x)} to {shape}: {exc}") from None
        if out != shape:
            raise ValueError(f"cannot expand {fmt_shape(x)} to {shape}")
        return TensorType(shape, x.dtype)

    def cost(self, *xs, y, **attrs):
        """No arithmetic: data movement only."""
        return 0

    def ref(self, x, shape):
        return np.broadcast_to(x, shape).copy()

    def onnx(self, e, x, shape):
        if 0 in shape:
            # an empty result: onnxruntime's graph optimizations turn Expand of a size-1 dim to a
            # static 0 into the input itself (shape 1, not 0), so expand a scalar instead
            return e.op("Expand", [e.const(np.zeros((), e.in_types[0].dtype)), e.shape_tensor(shape)])
        return e.op("Expand", [x, e.shape_tensor(shape)])

    def tvm(self, e, x, shape):
        return e.R.broadcast_to(x, e.shape(shape))

    def vjp(self, g, x, *, y, shape):
        return (g,)  # the autodiff pass sums g over the broadcast axes


@register
class concat(Op):
    """y = inputs joined along `axis`"""
    traits = OpTraits(concatenates=True)
    arity = None
    # onnxruntime 1.32's CPU build moves bfloat16 data (measured): its kernel is type-agnostic
    onnxruntime_cpu_missing: tuple[str, ...] = ()

    def infer(self, *xs, axis):
        if not xs:
            raise ValueError("needs at least one input")
        first = xs[0]
        a = norm_axis(axis, first.rank)
        for t in xs[1:]:
            if t.dtype != first.dtype or t.rank != first.rank or any(
                    d1 != d2 for i, (d1, d2) in enumerate(zip(t.shape, first.shape)) if i != a):
                raise ValueError("inputs " + ", ".join(fmt_shape(t) + f" {t.dtype}" for t in xs)
                                 + f" do not match outside axis {axis}")
        dims = [t.shape[a] for t in xs]
        if all(isinstance(d, int) for d in dims):
            total = builtins.sum(dims)
        elif len(set(dims)) == 1:
            total = dim_product([len(dims), dims[0]])
        else:
            raise ValueError(f"cannot concatenate symbolic dims {dims} along axis {axis}")
        return TensorType(first.shape[:a] + (total,) + first.shape[a + 1:], first.dtype)

    def cost(self, *xs, y, **attrs):
        """No arithmetic: data movement only."""
        return 0

    def ref(self, *xs, axis):
        return np.concatenate(xs, axis=axis)

    def onnx(self, e, *xs, axis):
        return e.op("Concat", list(xs), axis=norm_axis(axis, e.in_types[0].rank))

    def tvm(self, e, *xs, axis):
        return e.R.concat(list(xs), axis=norm_axis(axis, e.in_types[0].rank))

    def vjp(self, g, *xs, y, axis):
        from ..frontends import dsl
        a = norm_axis(axis, y.ndim)
        dims = [x.shape[a] for x in xs]
        if builtins.all(isinstance(d, int) for d in dims):
            outs, off = [], 0
            for d in dims:
                outs.append(dsl.slice(g, [off], [off + d], [a]))
                off += d
            return tuple(outs)
        # equal symbolic parts d: view the axis as (parts, d) and take one part at a time
        k, d = len(xs), dims[0]
        gk = dsl.reshape(g, g.shape[:a] + (k, d) + g.shape[a + 1:])
        return tuple(dsl.reshape(dsl.slice(gk, [i], [i + 1], [a]), x.shape) for i, x in enumerate(xs))


def _slice_len(d, start, end, step):
    if isinstance(d, int):
        return len(range(*builtins.slice(start, end, step).indices(d)))
    if step == 1 and start == 0 and end >= INT_MAX // 2:
        return d
    if step == 1 and start < 0 and end >= INT_MAX // 2:
        return -start
    if step == 1 and 0 <= start < end < INT_MAX // 2:
        return end - start
    raise ValueError(f"cannot slice symbolic dim {d} with start={start}, end={end}, step={step}")


@register
class slice(Op):
    """y = x[start:end:step] along each of `axes` (python slice semantics, clamped)"""

    def infer(self, x, starts, ends, axes, steps):
        shape = list(x.shape)
        for s, t, a, st in zip(starts, ends, axes, steps):
            if st == 0:
                raise ValueError("slice step cannot be zero")
            a = norm_axis(a, x.rank)
            shape[a] = _slice_len(shape[a], s, t, st)
        return TensorType(tuple(shape), x.dtype)

    def cost(self, *xs, y, **attrs):
        """No arithmetic: data movement only."""
        return 0

    def ref(self, x, starts, ends, axes, steps):
        idx = [builtins.slice(None)] * x.ndim
        for s, t, a, st in zip(starts, ends, axes, steps):
            # an end of -INT_MAX means "past the start" only for a negative step: with a
            # positive one the slice is empty, as Python (and ONNX) read it
            idx[a] = builtins.slice(s, None if t >= INT_MAX // 2 and st > 0 else
                                    (None if t <= -INT_MAX // 2 and st < 0 else t), st)
        return x[tuple(idx)].copy()

    def onnx(self, e, x, starts, ends, axes, steps):
        i64 = lambda v: e.const(np.array(v, np.int64))  # noqa: E731
        rank = e.in_types[0].rank
        axes = [norm_axis(a, rank) for a in axes]
        starts, ends = list(starts), [builtins.min(t, INT_MAX) for t in ends]
        for k, (a, st) in enumerate(zip(axes, steps)):
            d = e.in_types[0].shape[a]
            if st < 0 and isinstance(d, int):
                # ONNX clamps a negative-step start into [0, d-1] where Python empties the
                # slice (x[-7::-1] with d = 6), so resolve the bounds the Python way here
                stop = None if ends[k] <= -INT_MAX // 2 else ends[k]
                s0, t0, _ = builtins.slice(starts[k], stop, st).indices(d)
                starts[k], ends[k] = (0, 0) if s0 < 0 else (s0, -INT_MAX if t0 < 0 else t0)
        return e.op("Slice", [x, i64(starts), i64(ends), i64(axes), i64(steps)])

    def tvm(self, e, x, starts, ends, axes, steps):
        rank = e.in_types[0].rank
        return e.R.strided_slice(x, [norm_axis(a, rank) for a in axes], [int(s) for s in starts],
                                 [builtins.max(builtins.min(int(t), INT_MAX), -INT_MAX) for t in ends],
                                 [int(s) for s in steps])

    def vjp(self, g, x, *, y, starts, ends, axes, steps):
        return (_slice_grad(g, x, starts, ends, axes, steps),)


@register
class gather(Op):
    """y = take(x, indices, axis): rows of an embedding table, say"""
    arity = 2
    nondiff_inputs = (1,)
    # onnxruntime 1.32's CPU build moves bfloat16 data (measured): its kernel is type-agnostic
    onnxruntime_cpu_missing: tuple[str, ...] = ()

    def infer(self, x, indices, axis=0):
        if indices.dtype not in ("int32", "int64"):
            raise TypeError(f"indices must be int32 or int64, got {indices.dtype}")
        a = norm_axis(axis, x.rank)
        return TensorType(x.shape[:a] + indices.shape + x.shape[a + 1:], x.dtype)

    def cost(self, *xs, y, **attrs):
        """No arithmetic: data movement only."""
        return 0

    def ref(self, x, indices, axis=0):
        if indices.size and (indices.max() >= x.shape[axis] or indices.min() < -x.shape[axis]):
            raise IndexError(f"gather: index out of range for axis {axis} of size {x.shape[axis]}")
        return np.take(x, indices, axis=axis)

    def onnx(self, e, x, indices, axis=0):
        return e.op("Gather", [x, indices], axis=norm_axis(axis, e.in_types[0].rank))

    def tvm(self, e, x, indices, axis=0):
        # "wrap" gives negative indices numpy's meaning
        return e.R.take(x, indices, axis=norm_axis(axis, e.in_types[0].rank), mode="wrap")

    def vjp(self, g, x, indices, *, y, axis=0):
        from ..frontends import dsl
        return (dsl.apply("gather_grad", [g, indices], {"axis": norm_axis(axis, x.ndim),
                                                        "shape": tuple(x.shape)}), None)


@register
class pad(Op):
    """y = x padded with `value`; pads = ((before, after), ...) for every axis"""

    def infer(self, x, pads, value=0.0):
        if len(pads) != x.rank:
            raise ValueError(f"pads has {len(pads)} pairs for {fmt_shape(x)} of rank {x.rank}")
        shape = []
        for d, (b, a) in zip(x.shape, pads):
            if b < 0 or a < 0:
                raise ValueError(f"negative padding {pads}")
            shape.append(d + b + a if isinstance(d, int) else (d if b == a == 0 else _bad_pad(d)))
        return TensorType(tuple(shape), x.dtype)

    def cost(self, *xs, y, **attrs):
        """No arithmetic: data movement only."""
        return 0

    def ref(self, x, pads, value=0.0):
        return np.pad(x, pads, constant_values=value)

    def onnx(self, e, x, pads, value=0.0):
        flat = [b for b, _ in pads] + [a for _, a in pads]
        return e.op("Pad", [x, e.const(np.array(flat, np.int64)),
                            e.const(np.array(value, e.in_types[0].dtype))], mode="constant")

    def tvm(self, e, x, pads, value=0.0):
        flat = [int(p) for pair in pads for p in pair]
        return e.R.nn.pad(x, flat, "constant", float(value))

    def vjp(self, g, x, *, y, pads, value=0.0):
        from ..frontends import dsl
        ax = [i for i, (b, a) in enumerate(pads) if b or a]
        if not ax:
            return (g,)
        return (dsl.slice(g, [pads[i][0] for i in ax], [pads[i][0] + x.shape[i] for i in ax], ax),)


def _bad_pad(d):
    raise ValueError(f"cannot pad symbolic dim {d}")


# ---- gradient helpers (used by the vjp rules above) ----------------------------------------------

def _slice_grad(g, x, starts, ends, axes, steps):
    """dx: g scattered back to the sliced positions (reversed, interleaved with zeros, padded)."""
    from ..frontends import dsl
    pads = [(0, 0)] * x.ndim
    out = g
    for s, t, a, st in zip(starts, ends, axes, steps):
        a = norm_axis(a, x.ndim)
        d = x.shape[a]
        if not isinstance(d, int):
            if _slice_len(d, s, t, st) == d:
                continue
            raise ValueError(f"the gradient of slice [{s}:{t}:{st}] of symbolic dim {d} would pad "
                             "by a symbolic amount, which pad cannot express")
        stop = None if (t >= INT_MAX // 2 and st > 0) or (t <= -INT_MAX // 2 and st < 0) else t
        pos = list(range(d))[builtins.slice(s, stop, st)]
        if not pos:
            return dsl.broadcast_to(dsl.constant(np.zeros((), g.dtype)), x.shape)
        k = builtins.abs(st)
        if st < 0:  # make the positions ascending
            out = dsl.slice(out, [-1], [-INT_MAX], [a], [-1])
        if k > 1 and len(pos) > 1:  # k - 1 zeros after each element, then drop the trailing ones
            e = dsl.expand_dims(out, a + 1)
            widths = [(0, 0)] * e.ndim
            widths[a + 1] = (0, k - 1)
            e = dsl.pad(e, widths)
            n = len(pos) * k
            out = dsl.reshape(e, out.shape[:a] + (n,) + out.shape[a + 1:])
            out = dsl.slice(out, [0], [n - k + 1], [a])
        first = builtins.min(pos)
        pads[a] = (first, d - first - ((len(pos) - 1) * k + 1))
    return dsl.pad(out, pads) if builtins.any(b or e for b, e in pads) else out


@register
class gather_grad(Op):
    """dx = zeros of `shape` with g[..., i, ...] added at indices[i] along `axis`: gather's adjoint"""
    arity = 2
    nondiff_inputs = (1,)
    shape_attrs = ("shape",)
    #: onnxruntime's CPU ScatterND has no float16 kernel with reduction="add"
    onnxruntime_cpu_missing = ("float16", "bfloat16")

    def infer(self, g, indices, axis, shape):
        if indices.dtype not in ("int32", "int64"):
            raise TypeError(f"indices must be int32 or int64, got {indices.dtype}")
        if not g.is_float:
            raise TypeError(f"g must be float32 or float64, got {g.dtype}")
        shape = tuple(normalize_dim(d) for d in shape)
        a = norm_axis(axis, len(shape))
        want = shape[:a] + indices.shape + shape[a + 1:]
        if g.shape != want:
            raise ValueError(f"g {fmt_shape(g)} does not match a gather of {shape} along axis {a} "
                             f"with indices {fmt_shape(indices)} (expected {want})")
        return TensorType(shape, g.dtype)

    def cost(self, g, indices, *, y, **attrs):
        """One add per element of g."""
        return static_numel(g)

    def ref(self, g, indices, axis, shape):
        a, k = axis % len(shape), indices.ndim
        out = np.zeros(shape, g.dtype)
        idx = np.where(indices < 0, indices + shape[a], indices)
        # out's axis first and g's index dims first, then one unbuffered add per index
        np.add.at(np.moveaxis(out, a, 0), idx, np.moveaxis(g, list(range(a, a + k)), list(range(k))))
        return out

    @staticmethod
    def _perms(a, k, rank):
        """g's index dims to the front, and the scattered axis back to `a` afterwards."""
        to_front = list(range(a, a + k)) + list(range(a)) + list(range(a + k, rank + k - 1))
        back = list(range(1, a + 1)) + [0] + list(range(a + 1, rank))
        return to_front, back

    def onnx(self, e, g, indices, axis, shape):
        r, k = len(shape), e.in_types[1].rank
        a = norm_axis(axis, r)
        idx = e.op("Cast", [indices], to=e.onnx_dtype("int64"))
        zero = e.const(np.zeros((), np.int64))
        d = e.op("Squeeze", [e.shape_tensor((shape[a],)), e.const(np.array([0], np.int64))])
        idx = e.op("Where", [e.op("Less", [idx, zero]), e.op("Add", [idx, d]), idx])
        to_front, back = self._perms(a, k, r)
        gt = g if to_front == sorted(to_front) else e.op("Transpose", [g], perm=to_front)
        data_shape = (shape[a],) + tuple(shape[:a]) + tuple(shape[a + 1:])
        if e.opset < 16:
            # no scatter adds before opset 16: one_hot(indices)^T @ g, g flattened to (M, rest)
            dt = e.in_types[0].dtype
            flat = e.op("Unsqueeze", [e.op("Reshape", [idx, e.const(np.array([-1], np.int64))]),
                                      e.const(np.array([1], np.int64))])
            classes = e.op("Unsqueeze", [e.op("Range", [zero, d, e.const(np.ones((), np.int64))]),
                                         e.const(np.array([0], np.int64))])
            hot = e.op("Cast", [e.op("Equal", [flat, classes])], to=e.onnx_dtype(dt))
            prod = e.op("MatMul", [e.op("Transpose", [hot], perm=[1, 0]), e.op("Flatten", [gt], axis=k)])
            out = e.op("Reshape", [prod, e.shape_tensor(data_shape)])
        else:
            idx = e.op("Unsqueeze", [idx, e.const(np.array([-1], np.int64))])
            zeros = e.op("Expand", [e.const(np.zeros((), e.in_types[0].dtype)), e.shape_tensor(data_shape)])
            out = e.op("ScatterND", [zeros, idx, gt], reduction="add")
        return out if back == sorted(back) else e.op("Transpose", [out], perm=back)

    def tvm(self, e, g, indices, axis, shape):
        r, k = len(shape), e.in_types[1].rank
        a = norm_axis(axis, r)
        d = e.dim(shape[a])

        def wrap(t):  # negative indices count from the end
            return e.te.compute(t.shape, lambda *i: e.tir.if_then_else(
                t(*i) < 0, t(*i) + e.tir.const(d, "int64") if isinstance(d, int) else t(*i) + d, t(*i)),
                name="wrap_index")
        idx = e.R.expand_dims(e.emit_te(wrap, e.emit(e.R.astype(indices, "int64"))), [-1])
        to_front, back = self._perms(a, k, r)
        gt = g if to_front == sorted(to_front) else e.R.permute_dims(g, to_front)
        data_shape = (shape[a],) + tuple(shape[:a]) + tuple(shape[a + 1:])
        out = e.R.scatter_nd(e.R.zeros(e.shape(data_shape), e.in_types[0].dtype), idx, gt, "add")
        return out if back == sorted(back) else e.R.permute_dims(out, back)

    def vjp(self, g, gy, indices, *, y, axis, shape):
        from ..frontends import dsl
        return (dsl.take(g, indices, axis), None)
