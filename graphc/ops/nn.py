"""Neural-network primitives on NCHW tensors: conv2d, conv_transpose2d, pools; random_uniform."""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..ir.types import TensorType, dim_product
from .base import Op, fmt_shape, register, require_float
from .base import OpTraits, static_bytes, static_numel


def _out_len(n, k, s, p, d, what):
    if not isinstance(n, int):
        raise ValueError(f"{what}: spatial dims must be static, got {n}")
    out = (n + 2 * p - d * (k - 1) - 1) // s + 1
    if out <= 0:
        raise ValueError(f"{what}: input size {n} is too small for kernel {k} "
                         f"(stride {s}, padding {p}, dilation {d})")
    return out


def _windows(x, kernel, stride, padding, dilation, fill):
    """(N, C, OH, OW, kh, kw) view of the padded input's sliding windows."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=fill)
    win = sliding_window_view(xp, ((kh - 1) * dh + 1, (kw - 1) * dw + 1), axis=(2, 3))
    return win[:, :, ::sh, ::sw, ::dh, ::dw]


@register
class conv2d(Op):
    """y[n,o] = sum_{c,i,j} x[n, g*C/G + c, s*h + d*i - p, s*w + d*j - p] * w[o, c, i, j]"""
    arity = 2
    traits = OpTraits(low_precision=True)
    onnxruntime_cpu_missing = ("float64", "bfloat16")
    onnx_bfloat16_opset = 22

    def infer(self, x, w, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1):
        require_float(x)
        if x.rank != 4 or w.rank != 4:
            raise ValueError(f"needs x (N, C, H, W) and w (O, C/groups, kh, kw), got {fmt_shape(x)} "
                             f"and {fmt_shape(w)}")
        if x.dtype != w.dtype:
            raise TypeError(f"dtypes {x.dtype} and {w.dtype} differ")
        if x.shape[1] != dim_product([w.shape[1], groups]) or w.shape[0] % groups:
            raise ValueError(f"x {fmt_shape(x)} has {x.shape[1]} channels but w {fmt_shape(w)} with "
                             f"groups={groups} expects {dim_product([w.shape[1], groups])}")
        oh = _out_len(x.shape[2], w.shape[2], stride[0], padding[0], dilation[0], "conv2d")
        ow = _out_len(x.shape[3], w.shape[3], stride[1], padding[1], dilation[1], "conv2d")
        return TensorType((x.shape[0], w.shape[0], oh, ow), x.dtype)

    def cost(self, x, w, *, y, **attrs):
        """2 * output elements * (C/groups * kh * kw) multiply-adds."""
        return 2 * static_numel(y) * int(w.shape[1]) * int(w.shape[2]) * int(w.shape[3])

    def ref(self, x, w, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1):
        win = _windows(x, w.shape[2:], stride, padding, dilation, 0)
        cg, og = x.shape[1] // groups, w.shape[0] // groups
        outs = [np.einsum("nchwij,ocij->nohw", win[:, g * cg:(g + 1) * cg], w[g * og:(g + 1) * og],
                          optimize=True) for g in range(groups)]
        return np.concatenate(outs, axis=1).astype(x.dtype, copy=False)

    def onnx(self, e, x, w, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1):
        return e.op("Conv", [x, w], strides=list(stride), pads=[padding[0], padding[1]] * 2,
                    dilations=list(dilation), group=groups)

    def tvm(self, e, x, w, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1):
        if e.in_types[1].shape[1] == 0:  # no input channels: TVM leaves the empty sum unwritten
            return e.R.zeros(e.shape(e.out_type.shape), e.out_type.dtype)
        o = e.in_types[1].shape[0]
        if groups == 1 and tuple(dilation) == (1, 1) and o % e.vector_lanes(x) == 0:
            # Channels-last output: the output channels become the vector lanes (a 14- or
            # 10-wide image row makes an odd vector, which LLVM handles badly), the weight is
            # read as (c, i, j, o) so that those lanes are contiguous; then back to NCHW.
            te = e.te
            (sh, sw), (ph, pw) = stride, padding
            n_, _, oh, ow = e.out_type.shape
            if ph or pw:
                x = e.emit(e.R.nn.pad(x, [0, 0, 0, 0, ph, ph, pw, pw], "constant", 0.0))
            wt = e.emit(e.R.permute_dims(w, [1, 2, 3, 0]))

            def conv_nhwc(xt, wk):
                c = te.reduce_axis((0, wk.shape[0]), name="c")
                a = te.reduce_axis((0, wk.shape[1]), name="a")
                b = te.reduce_axis((0, wk.shape[2]), name="b")
                return te.compute((xt.shape[0], oh, ow, wk.shape[3]), lambda n, i, j, k: te.sum(
                    xt[n, c, i * sh + a, j * sw + b] * wk[c, a, b, k], axis=[c, a, b]),
                    name="conv2d_nhwc")
            return e.R.permute_dims(e.emit_te(conv_nhwc, x, wt), [0, 3, 1, 2])
        return e.R.nn.conv2d(x, w, strides=tuple(stride), padding=tuple(padding),
                             dilation=tuple(dilation), groups=groups)

    def vjp(self, g, x, w, *, y, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1):
        from ..frontends import dsl
        # dx: the adjoint convolution, its output_padding chosen to give back x's exact size
        extra = _output_padding(x.shape[2:], y.shape[2:], w.shape[2:], stride, padding, dilation)
        gx = dsl.apply("conv_transpose2d", [g, w], {
            "stride": tuple(stride), "padding": tuple(padding), "output_padding": extra,
            "dilation": tuple(dilation), "groups": groups})
        return (gx, _conv_weight_grad(x, g, w.shape[2:], stride, padding, dilation, groups))


@register
class conv_transpose2d(Op):
    """y = the adjoint of conv2d applied to x: w is (C_in, C_out/groups, kh, kw) as in PyTorch"""
    arity = 2
    traits = OpTraits(low_precision=True)
    onnxruntime_cpu_missing = ("float64", "bfloat16")
    onnx_bfloat16_opset = 22

    def infer(self, x, w, stride=(1, 1), padding=(0, 0), output_padding=(0, 0), dilation=(1, 1),
              groups=1):
        require_float(x)
        if x.rank != 4 or w.rank != 4 or x.shape[1] != w.shape[0] or x.dtype != w.dtype:
            raise ValueError(f"needs x (N, C, H, W) and w (C, O/groups, kh, kw) of one dtype, got "
                             f"{fmt_shape(x)} and {fmt_shape(w)}")
        if x.shape[1] % groups:
            raise ValueError(f"{x.shape[1]} channels do not split into {groups} groups")
        dims = []
        for i in range(2):
            n = x.shape[2 + i]
            if not isinstance(n, int):
                raise ValueError(f"spatial dims must be static, got {n}")
            dims.append((n - 1) * stride[i] - 2 * padding[i] + dilation[i] * (w.shape[2 + i] - 1)
                        + output_padding[i] + 1)
        return TensorType((x.shape[0], w.shape[1] * groups, dims[0], dims[1]), x.dtype)

    def cost(self, x, w, *, y, **attrs):
        """2 * input elements * (O/groups * kh * kw): each input scatters into a window."""
        return 2 * static_numel(x) * int(w.shape[1]) * int(w.shape[2]) * int(w.shape[3])

    def ref(self, x, w, stride=(1, 1), padding=(0, 0), output_padding=(0, 0), dilation=(1, 1),
            groups=1):
        n, cin, h, wd = x.shape
        kh, kw = w.shape[2:]
        cg, og = cin // groups, w.shape[1]
        fh = (h - 1) * stride[0] + dilation[0] * (kh - 1) + 1 + output_padding[0]
        fw = (wd - 1) * stride[1] + dilation[1] * (kw - 1) + 1 + output_padding[1]
        full = np.zeros((n, og * groups, fh, fw), x.dtype)
        for g in range(groups):
            xg, wg = x[:, g * cg:(g + 1) * cg], w[g * cg:(g + 1) * cg]
            for i in range(kh):
                for j in range(kw):
                    hi, wj = i * dilation[0], j * dilation[1]
                    full[:, g * og:(g + 1) * og, hi:hi + (h - 1) * stride[0] + 1:stride[0],
                         wj:wj + (wd - 1) * stride[1] + 1:stride[1]] += \
                        np.einsum("nchw,co->nohw", xg, wg[:, :, i, j], optimize=True)
        oh = fh - 2 * padding[0]
        ow = fw - 2 * padding[1]
        return full[:, :, padding[0]:padding[0] + oh, padding[1]:padding[1] + ow].copy()

    def onnx(self, e, x, w, stride=(1, 1), padding=(0, 0), output_padding=(0, 0), dilation=(1, 1),
             groups=1):
        return e.op("ConvTranspose", [x, w], strides=list(stride), pads=[padding[0], padding[1]] * 2,
                    output_padding=list(output_padding), dilations=list(dilation), group=groups)

    def tvm(self, e, x, w, stride=(1, 1), padding=(0, 0), output_padding=(0, 0), dilation=(1, 1),
            groups=1):
        if e.in_types[1].shape[0] == 0:  # no input channels: TVM leaves the empty sum unwritten
            return e.R.zeros(e.shape(e.out_type.shape), e.out_type.dtype)
        kh, kw = e.in_types[1].shape[2:]
        full = (kh - 1 - padding[0], kw - 1 - padding[1])
        if tuple(stride) == (1, 1) and tuple(dilation) == (1, 1) and groups == 1 and min(full) >= 0:
            # stride 1: a plain conv2d of the padded input with the flipped, transposed kernel,
            # which TVM schedules far better than its generic transposed convolution
            wt = e.R.permute_dims(e.R.flip(e.R.flip(w, 2), 3), [1, 0, 2, 3])
            pads = (full[0], full[1], full[0] + output_padding[0], full[1] + output_padding[1])
            return e.R.nn.conv2d(x, wt, padding=pads)
        return e.R.nn.conv2d_transpose(x, w, strides=tuple(stride), padding=tuple(padding),
                                       output_padding=tuple(output_padding),
                                       dilation=tuple(dilation), groups=groups)

    def vjp(self, g, x, w, *, y, stride=(1, 1), padding=(0, 0), output_padding=(0, 0),
            dilation=(1, 1), groups=1):
        from ..frontends import dsl
        # conv_transpose2d(., w) is the adjoint of conv2d(., w): swap the roles of x and y
        gx = dsl.apply("conv2d", [g, w], {"stride": tuple(stride), "padding": tuple(padding),
                                          "dilation": tuple(dilation), "groups": groups})
        return (gx, _conv_weight_grad(g, x, w.shape[2:], stride, padding, dilation, groups))


class Pool(Op):
    """Shared infer for 2-D pools over windows of `kernel_size`."""
    onnx_bfloat16_opset = 22

    def infer(self, x, kernel_size, stride, padding, **_):
        require_float(x)
        if x.rank != 4:
            raise ValueError(f"needs x (N, C, H, W), got {fmt_shape(x)}")
        if any(p * 2 > k for p, k in zip(padding, kernel_size)):
            raise ValueError(f"padding {padding} is more than half of kernel {kernel_size}")
        oh = _out_len(x.shape[2], kernel_size[0], stride[0], padding[0], 1, self.name)
        ow = _out_len(x.shape[3], kernel_size[1], stride[1], padding[1], 1, self.name)
        return TensorType(x.shape[:2] + (oh, ow), x.dtype)

    def cost(self, x, *, y, kernel_size, **attrs):
        """One operation per window element of each output."""
        return static_numel(y) * int(kernel_size[0]) * int(kernel_size[1])


@register
class max_pool2d(Pool):
    """y[n,c,h,w] = max over the window at (s*h - p, s*w - p) of size kernel_size"""

    def ref(self, x, kernel_size, stride, padding):
        win = _windows(x, kernel_size, stride, padding, (1, 1), -np.inf)
        return win.max(axis=(4, 5)).astype(x.dtype, copy=False)

    def onnx(self, e, x, kernel_size, stride, padding):
        if e.in_types[0].shape[1] == 0:
            return _onnx_zeros(e, e.out_type.shape)
        return e.op("MaxPool", [x], kernel_shape=list(kernel_size), strides=list(stride),
                    pads=[padding[0], padding[1]] * 2)

    def tvm(self, e, x, kernel_size, stride, padding):
        return e.R.nn.max_pool2d(x, tuple(kernel_size), tuple(stride), tuple(padding))

    def vjp(self, g, x, *, y, kernel_size, stride, padding):
        from ..frontends import dsl
        return (dsl.apply("max_pool2d_grad", [x, g], {"kernel_size": tuple(kernel_size),
                                                      "stride": tuple(stride),
                                                      "padding": tuple(padding)}),)


@register
class avg_pool2d(Pool):
    """y[n,c,h,w] = mean over the window (padding counted unless count_include_pad is False)"""
    onnxruntime_cpu_missing = ("float64", "bfloat16")
    onnx_bfloat16_opset = 22

    def ref(self, x, kernel_size, stride, padding, count_include_pad=True):
        win = _windows(x, kernel_size, stride, padding, (1, 1), 0)
        total = win.sum(axis=(4, 5))
        if count_include_pad:
            return (total / (kernel_size[0] * kernel_size[1])).astype(x.dtype)
        ones = _windows(np.ones((1, 1) + x.shape[2:], x.dtype), kernel_size, stride, padding, (1, 1), 0)
        return (total / ones.sum(axis=(4, 5))).astype(x.dtype)

    def onnx(self, e, x, kernel_size, stride, padding, count_include_pad=True):
        if e.in_types[0].shape[1] == 0:
            return _onnx_zeros(e, e.out_type.shape)
        return e.op("AveragePool", [x], kernel_shape=list(kernel_size), strides=list(stride),
                    pads=[padding[0], padding[1]] * 2, count_include_pad=int(count_include_pad))

    def tvm(self, e, x, kernel_size, stride, padding, count_include_pad=True):
        return e.R.nn.avg_pool2d(x, tuple(kernel_size), tuple(stride), tuple(padding),
                                 count_include_pad=bool(count_include_pad))

    def vjp(self, g, x, *, y, kernel_size, stride, padding, count_include_pad=True):
        from ..frontends import dsl
        c = x.shape[1]
        if not isinstance(c, int):
            raise ValueError(f"the gradient of avg_pool2d needs a static channel count, got {c}")
        if c == 0:  # x is empty (and a depthwise convolution of 0 groups is not one)
            return (dsl.broadcast_to(dsl.constant(np.zeros((), x.dtype)), x.shape),)
        kh, kw = kernel_size
        if count_include_pad:
            gs = g * (1.0 / (kh * kw))
        else:  # each output divided by its own count of real (unpadded) inputs
            ones = _windows(np.ones((1, 1) + tuple(x.shape[2:])), kernel_size, stride, padding, (1, 1), 0)
            gs = g / dsl.constant(ones.sum(axis=(4, 5))[0, 0].astype(x.dtype))
        # spreading each output evenly over its window is a depthwise transposed convolution
        extra = _output_padding(x.shape[2:], y.shape[2:], kernel_size, stride, padding, (1, 1))
        w = dsl.constant(np.ones((c, 1, kh, kw), x.dtype))
        return (dsl.apply("conv_transpose2d", [gs, w], {
            "stride": tuple(stride), "padding": tuple(padding), "output_padding": extra,
            "dilation": (1, 1), "groups": c}),)


# ---- counter-based random numbers ----------------------------------------------------------------
# u = hash(seed, counter, element index) / 2^24, computed in int64 with every product < 2^63, so
# numpy, onnxruntime and TVM give bit-identical values.
_M = 2**31
_A, _B, _C = 0x2545F491, 0x6C8E9CF5, 0x1B873593
_ROUNDS = (0x2C1B3C6D, 0x297A2D39, 0x5BD1E995 % _M)


@register
class random_uniform(Op):
    """y = hash(seed, counter, index) / 2^24 in [0, 1): a pure function of its int64 inputs"""
    arity = 2
    differentiable = False
    shape_attrs = ("shape",)

    def infer(self, seed, counter, shape, dtype="float32"):
        for nm, t in (("seed", seed), ("counter", counter)):
            if t.dtype != "int64" or t.rank != 0:
                raise TypeError(f"{nm} must be an int64 scalar, got {t}")
        return TensorType(tuple(shape), dtype)

    def ref(self, seed, counter, shape, dtype="float32"):
        idx = np.arange(int(np.prod(shape, dtype=np.int64)), dtype=np.int64)
        s, c = np.int64(seed) % _M, np.int64(counter) % _M
        h = (idx * _A) % _M
        h = (h + (c * _B) % _M + (s * _C) % _M) % _M
        for k in _ROUNDS:
            h = np.bitwise_xor(h, h // 65536)
            h = (h * k) % _M
            h = (h + s) % _M
        return ((h // 128).astype(dtype) / np.asarray(2.0**24, dtype)).reshape(shape).astype(dtype)

    def onnx(self, e, seed, counter, shape, dtype="float32"):
        i64 = lambda v: e.const(np.array(v, np.int64))  # noqa: E731
        numel = e.op("ReduceProd", [e.shape_tensor(shape)], keepdims=0) if shape else i64(1)
        idx = e.op("Range", [i64(0), numel, i64(1)])
        m = i64(_M)
        s = e.op("Mod", [seed, m])
        c = e.op("Mod", [counter, m])
        h = e.op("Mod", [e.op("Mul", [idx, i64(_A)]), m])
        cb = e.op("Mod", [e.op("Mul", [c, i64(_B)]), m])
        sc = e.op("Mod", [e.op("Mul", [s, i64(_C)]), m])
        h = e.op("Mod", [e.op("Add", [e.op("Add", [h, cb]), sc]), m])
        for k in _ROUNDS:
            h = _onnx_xor_high(e, h) if e.opset < 18 else \
                e.op("BitwiseXor", [h, e.op("Div", [h, i64(65536)])])
            h = e.op("Mod", [e.op("Mul", [h, i64(k)]), m])
            h = e.op("Mod", [e.op("Add", [h, s]), m])
        f = e.op("Cast", [e.op("Div", [h, i64(128)])], to=e.onnx_dtype(dtype))
        u = e.op("Div", [f, e.const(np.array(2.0**24, dtype))])
        return e.op("Reshape", [u, e.shape_tensor(shape)])

    def tvm(self, e, seed, counter, shape, dtype="float32"):
        tir, dims = e.tir, e.shape(shape)
        i64 = lambda v: tir.const(v, "int64")  # noqa: E731

        def compute(sd, ct):
            def body(*idx):
                flat = i64(0)
                for i, d in zip(idx, dims):
                    flat = flat * d + i.astype("int64")
                m = i64(_M)
                # each round reads h twice: bind it (Let) so the expression stays a chain, not
                # a tree doubling per round
                names = iter(range(100))
                steps = []

                def let(expr):
                    v = tir.Var(f"h{next(names)}", "int64")
                    steps.append((v, expr))
                    return v
                s = let(tir.floormod(sd(), m))
                c = tir.floormod(ct(), m)
                h = let(tir.floormod(tir.floormod(flat * i64(_A), m) + tir.floormod(c * i64(_B), m)
                                     + tir.floormod(s * i64(_C), m), m))
                for k in _ROUNDS:
                    h = let(tir.bitwise_xor(h, tir.floordiv(h, i64(65536))))
                    h = let(tir.floormod(tir.floormod(h * i64(k), m) + s, m))
                out = tir.floordiv(h, i64(128)).astype(dtype) / tir.const(2.0**24, dtype)
                for v, expr in reversed(steps):
                    out = tir.Let(v, expr, out)
                return out
            return e.te.compute(dims, body, name="random_uniform")
        return e.emit_te(compute, seed, counter)


def _onnx_xor_high(e, h):
    """h ^ (h // 65536) for int64 0 <= h < 2^31 without BitwiseXor (an ai.onnx op from opset 18).

    h // 65536 < 2^15 flips only the low 15 bits of h: those are recomputed bit by bit, each
    bit pair added mod 2, along a new last axis of 15 bits (h is 1-D).
    """
    i64 = lambda v: e.const(np.array(v, np.int64))  # noqa: E731
    pow2 = i64([1 << k for k in range(15)])
    low = e.op("Mod", [h, i64(1 << 15)])

    def bits(v):
        return e.op("Mod", [e.op("Div", [e.op("Unsqueeze", [v, i64([-1])]), pow2]), i64(2)])
    flipped = e.op("Mod", [e.op("Add", [bits(low), bits(e.op("Div", [h, i64(65536)]))]), i64(2)])
    return e.op("Add", [e.op("Sub", [h, low]), e.reduce("ReduceSum", e.op("Mul", [flipped, pow2]), [-1])])


def _onnx_zeros(e, shape):
    """The (empty) result of a pool over zero channels: onnxruntime's NCHWc layout pass rejects
    MaxPool and AveragePool with no channels ("invalid channel count"), and a Reshape to a shape
    holding a static 0 would read it as "copy this dim"."""
    return e.op("Expand", [e.const(np.zeros((), e.in_types[0].dtype)), e.shape_tensor(shape)])


# ---- gradients of convolutions and pools -------------------------------------------------------

@register
class max_pool2d_grad(Op):
    """dx = g routed to the first maximum of each max_pool2d window of x (summed where windows overlap)"""
    arity = 2
    #: which element is the maximum is piecewise constant in x: no gradient through it
    nondiff_inputs = (0,)
    #: onnxruntime's CPU ScatterElements has no float16 kernel with reduction="add"
    onnxruntime_cpu_missing = ("float16", "bfloat16")
    onnx_bfloat16_opset = 22  # its lowering uses MaxPool

    def infer(self, x, g, kernel_size, stride, padding):
        y = max_pool2d.infer(self, x, kernel_size, stride, padding)
        if g.shape != y.shape or g.dtype != x.dtype:
            raise ValueError(f"g {fmt_shape(g)} {g.dtype} does not match the pool output "
                             f"{fmt_shape(y)} {y.dtype}")
        return x

    def onnx_scratch_bytes(self, ins, out, attrs, dies):
        """The lowering's MaxPool(x) makes pooled values and int64 argmax indices first; then x
        is dropped if this was its last reader, and MaxUnpool places g (float32 windows that
        tile x exactly) or ScatterElements adds g into an Expand of zeros the size of x."""
        x, g = ins
        idx, vals, xb = static_numel(g) * 8, static_bytes(g), static_bytes(x)
        tiles = x.dtype == "float32" and all(
            k <= s and (o - 1) * s - 2 * p + k == n for k, s, p, o, n in
            zip(attrs["kernel_size"], attrs["stride"], attrs["padding"], g.shape[2:], x.shape[2:]))
        pool = vals + idx - static_bytes(out)
        place = idx + (0 if tiles else xb) - (xb if dies[0] else 0)
        return max(pool, place)

    def cost(self, x, g, *, y, kernel_size, **attrs):
        """A compare and an add per window element of each pooled output."""
        return 2 * static_numel(g) * int(kernel_size[0]) * int(kernel_size[1])

    def ref(self, x, g, kernel_size, stride, padding):
        (kh, kw), (sh, sw), (ph, pw) = kernel_size, stride, padding
        win = _windows(x, kernel_size, stride, padding, (1, 1), -np.inf)
        n, c, oh, ow = win.shape[:4]
        first = win.reshape(n, c, oh, ow, kh * kw).argmax(axis=-1)
        rows = np.arange(oh)[:, None] * sh + first // kw
        cols = np.arange(ow)[None, :] * sw + first % kw
        dxp = np.zeros((n, c, x.shape[2] + 2 * ph, x.shape[3] + 2 * pw), x.dtype)
        nn_, cc = np.meshgrid(np.arange(n), np.arange(c), indexing="ij")
        np.add.at(dxp, (nn_[:, :, None, None], cc[:, :, None, None], rows, cols), g)
        return dxp[:, :, ph:ph + x.shape[2], pw:pw + x.shape[3]].copy()

    def onnx(self, e, x, g, kernel_size, stride, padding):
        if e.in_types[0].shape[1] == 0:
            return _onnx_zeros(e, e.in_types[0].shape)
        xt, gt = e.in_types
        # MaxPool's second output indexes the flattened input; scatter-add g there
        _, idx = e.op("MaxPool", [x], n_out=2, kernel_shape=list(kernel_size), strides=list(stride),
                      pads=[padding[0], padding[1]] * 2)
        if (e.opset >= 11 and xt.dtype == "float32" and
                _tiles(kernel_size, stride, padding, gt.shape[2:], xt.shape[2:])):
            # disjoint windows that tile x exactly: no index repeats, so MaxUnpool places g with
            # no adds (onnxruntime: 15% faster than the scatter-add on LeNet-5's first pool; its
            # CPU kernel is float only). Left-over rows would need MaxUnpool's output_shape, which
            # onnx's reference evaluator mishandles.
            return e.op("MaxUnpool", [g, idx], kernel_shape=list(kernel_size),
                        strides=list(stride), pads=[padding[0], padding[1]] * 2)
        shape = e.op("Shape", [x])
        flat = e.const(np.array([-1], np.int64))
        zeros = e.op("Reshape", [e.op("Expand", [e.const(np.zeros((), e.in_types[0].dtype)), shape]),
                                 flat])
        if e.opset >= 16:
            dx = e.op("ScatterElements", [zeros, e.op("Reshape", [idx, flat]),
                                          e.op("Reshape", [g, flat])], axis=0, reduction="add")
            return e.op("Reshape", [dx, shape])
        # no scatter adds before opset 16: outputs (i, j) with i mod ch, j mod cw fixed have
        # disjoint windows, so each such class scatters without collisions; the classes add up
        (kh, kw), (sh, sw) = kernel_size, stride
        ch, cw = -(-kh // sh), -(-kw // sw)
        i64 = lambda v: e.const(np.array(v, np.int64))  # noqa: E731
        end = np.iinfo(np.int64).max

        def part(t, i, j):  # the outputs of class (i, j), flattened
            if ch == cw == 1:
                return e.op("Reshape", [t, flat])
            return e.op("Reshape", [e.op("Slice", [t, i64([i, j]), i64([end, end]), i64([2, 3]),
                                                   i64([ch, cw])]), flat])
        dx = None
        for i in range(ch):
            for j in range(cw):
                one = e.op("ScatterElements", [zeros, part(idx, i, j), part(g, i, j)], axis=0)
                dx = one if dx is None else e.op("Add", [dx, one])
        return e.op("Reshape", [dx, shape])

    def tvm(self, e, x, g, kernel_size, stride, padding):
        return e.R.grad.max_pool2d_backward(g, x, tuple(kernel_size), tuple(stride),
                                            (padding[0], padding[1], padding[0], padding[1]))

    def vjp(self, g, x, gy, *, y, kernel_size, stride, padding):
        from ..frontends import dsl
        # linear in gy: read g at each window's first maximum (windows laid out on a last axis)
        (kh, kw), (sh, sw), (ph, pw) = kernel_size, stride, padding
        oh, ow = gy.shape[2], gy.shape[3]

        def windows(t, fill):
            t = dsl.pad(t, ((0, 0), (0, 0), (ph, ph), (pw, pw)), fill) if ph or pw else t
            return dsl.concat([dsl.expand_dims(dsl.slice(t, [i, j], [i + (oh - 1) * sh + 1,
                                                                    j + (ow - 1) * sw + 1],
                                                         [2, 3], [sh, sw]), -1)
                               for i in range(kh) for j in range(kw)], -1)
        first = dsl.argmax(windows(x, -np.inf), -1, keepdims=True)
        hot = dsl.cast(dsl.equal(first, dsl.constant(np.arange(kh * kw, dtype=np.int64))), g.dtype)
        return (None, dsl.sum(windows(g, 0.0) * hot, -1))


def _tiles(kernel, stride, padding, out_hw, in_hw) -> bool:
    """Whether the pool's windows are disjoint and cover the (padded) input exactly."""
    return all(k <= s and (o - 1) * s - 2 * p + k == n
               for k, s, p, o, n in zip(kernel, stride, padding, out_hw, in_hw))


def _output_padding(in_hw, out_hw, kernel, stride, padding, dilation):
    """The output_padding making a transposed convolution of out_hw come back to exactly in_hw."""
    return tuple(int(n - ((o - 1) * s - 2 * p + d * (k - 1) + 1))
                 for n, o, k, s, p, d in zip(in_hw, out_hw, kernel, stride, padding, dilation))


def _conv_weight_grad(x, gy, kernel, stride, padding, dilation, groups):
    """dw of y = conv2d(x, w): the correlation of x with gy, itself a conv2d over the batch axis.

    With the batch as channels, stride and dilation trade places; the result can exceed the
    kernel by the rows the forward stride skipped, which are sliced off.
    """
    from ..frontends import dsl
    n, c, h, w = x.shape
    if groups == 1:
        xt = dsl.transpose(x, (1, 0, 2, 3))  # (C, N, H, W)
    elif not isinstance(c, int):
        raise ValueError(f"the gradient of a grouped conv2d needs a static channel count, got {c}")
    else:  # channel c' of group gi becomes batch c', channel (gi, n)
        cg = c // groups
        xt = dsl.reshape(dsl.transpose(dsl.reshape(x, (n, groups, cg, h, w)), (2, 1, 0, 3, 4)),
                         (cg, dim_product([groups, n]), h, w))
    gt = dsl.transpose(gy, (1, 0, 2, 3))  # (O, N, OH, OW): the "weight"
    r = dsl.apply("conv2d", [xt, gt], {"stride": tuple(dilation), "padding": tuple(padding),
                                       "dilation": tuple(stride), "groups": groups})
    r = dsl.transpose(r, (1, 0, 2, 3))  # (O, C/groups, kh', kw')
    kh, kw = kernel
    if r.shape[2] != kh or r.shape[3] != kw:
        r = dsl.slice(r, [0, 0], [kh, kw], [2, 3])
    return r
