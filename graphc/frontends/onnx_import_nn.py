"""ONNX import handlers for linear algebra and neural-network ops (MatMul, Gemm, Einsum, Conv,
pools, normalizations, Softmax); registered in the table of onnx_import_ops.py.
"""
from __future__ import annotations

import math
import string
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from ..ir.types import Dim, dim_product
from . import dsl
from . import functional as F
from .dsl import Tensor
from .onnx_import_ops import Val, handler

if TYPE_CHECKING:  # pragma: no cover
    from .onnx_import import _Ctx

# ---- linear algebra and neural-network ops ------------------------------------------------------

@handler("MatMul")
def _matmul(c: _Ctx) -> Val:
    return dsl.matmul(c.t(0), c.t(1))


def _einsum_terms(c: _Ctx, xs: list[Tensor]) -> tuple[list[str], str]:
    """The equation's input terms and output, with "..." spelled out as spare letters."""
    eq = str(c.attr("equation")).replace(" ", "")
    lhs, arrow, out = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(xs):
        raise c.fail(f"equation {eq!r} has {len(terms)} operands, the node {len(xs)}")
    spare = [ch for ch in string.ascii_letters if ch not in eq]
    n_ell = max([x.ndim - len(t.replace("...", "")) for t, x in zip(terms, xs) if "..." in t],
                default=0)
    ell = "".join(spare[:n_ell])
    # the dims "..." covers align on the right, as numpy broadcasting does
    terms = [t.replace("...", ell[n_ell - (x.ndim - len(t.replace("...", ""))):])
             for t, x in zip(terms, xs)]
    if not arrow:  # implicit output: the ellipsis dims, then letters used once, in order
        once = sorted(ch for ch in set("".join(terms)) if "".join(terms).count(ch) == 1
                      and ch not in ell)
        out = ell + "".join(once)
    out = out.replace("...", ell)
    for t, x in zip(terms, xs):
        if len(t) != x.ndim:
            raise c.fail(f"einsum term {t!r} does not fit a rank-{x.ndim} input")
    return terms, out


def _diagonal(c: _Ctx, x: Tensor, term: str) -> tuple[Tensor, str]:
    """A letter repeated in one term takes the diagonal of those axes."""
    for ch in dict.fromkeys(term):
        while term.count(ch) > 1:
            p = term.index(ch)
            q = term.index(ch, p + 1)
            n = x.shape[p]
            if not isinstance(n, int) or x.shape[q] != n:
                raise c.fail(f"the diagonal of {ch!r} needs equal static dims, got {x.shape}")
            shape = [1] * x.ndim
            shape[p] = shape[q] = n
            eye = dsl.constant(np.eye(n, dtype=bool).reshape(shape))
            x = dsl.sum(dsl.where(eye, x, np.zeros((), x.dtype)), (q,))
            term = term[:q] + term[q + 1:]
    return x, term


@handler("Einsum")
def _einsum(c: _Ctx) -> Val:
    """One or two operands, as transposes, sums, reshapes and one batched matmul."""
    xs = [c.t(i) for i in range(len(c.inputs))]
    if len(xs) not in (1, 2):
        raise c.fail(f"einsum of {len(xs)} operands is not supported (1 or 2)")
    terms, out = _einsum_terms(c, xs)
    for i in range(len(xs)):
        xs[i], terms[i] = _diagonal(c, xs[i], terms[i])

    def own_sums(x: Tensor, term: str, other: str) -> tuple[Tensor, str]:
        axes = tuple(i for i, ch in enumerate(term) if ch not in out and ch not in other)
        if not axes:
            return x, term
        return dsl.sum(x, axes), "".join(ch for i, ch in enumerate(term) if i not in axes)

    def permute(x: Tensor, term: str, order: str) -> Tensor:
        perm = [term.index(ch) for ch in order]
        return x if perm == list(range(len(perm))) else dsl.transpose(x, perm)
    if len(xs) == 1:
        x, term = own_sums(xs[0], terms[0], "")
        return permute(x, term, out)
    a, ta = own_sums(xs[0], terms[0], terms[1])
    b, tb = own_sums(xs[1], terms[1], ta)
    size: dict[str, Dim] = {}
    for x, term in ((a, ta), (b, tb)):
        for ch, d in zip(term, x.shape):
            if size.get(ch, 1) == 1:
                size[ch] = d
    batch = "".join(ch for ch in ta if ch in tb and ch in out)
    inner = "".join(ch for ch in ta if ch in tb and ch not in out)
    left = "".join(ch for ch in ta if ch not in tb)
    right = "".join(ch for ch in tb if ch not in ta)
    dims = lambda letters: tuple(size[ch] for ch in letters)  # noqa: E731
    a = dsl.broadcast_to(permute(a, ta, batch + left + inner), dims(batch + left + inner))
    b = dsl.broadcast_to(permute(b, tb, batch + inner + right), dims(batch + inner + right))
    a = dsl.reshape(a, dims(batch) + (dim_product(dims(left)), dim_product(dims(inner))))
    b = dsl.reshape(b, dims(batch) + (dim_product(dims(inner)), dim_product(dims(right))))
    y = dsl.reshape(dsl.matmul(a, b), dims(batch + left + right))
    return permute(y, batch + left + right, out)


@handler("Gemm")
def _gemm(c: _Ctx) -> Val:
    a, b = c.t(0), c.t(1)
    if c.attr("transA", 0):
        a = dsl.transpose(a)
    if c.attr("transB", 0):
        b = dsl.transpose(b)
    y = dsl.matmul(a, b)
    alpha, beta = float(c.attr("alpha", 1.0)), float(c.attr("beta", 1.0))
    if alpha != 1.0:
        y = y * alpha
    if c.has(2) and beta != 0.0:
        bias = c.t(2)
        y = y + (bias if beta == 1.0 else bias * beta)
    return y


def _spatial_pads(c: _Ctx, x: Tensor, kernel: Sequence[int], strides: Sequence[int],
                  dilations: Sequence[int], one_d: bool) -> list[int]:
    """ONNX pads [h_begin, w_begin, h_end, w_end] of the 2-D view, from `pads` or auto_pad."""
    auto = c.attr("auto_pad", "NOTSET")
    if auto == "NOTSET":
        p = c.ints("pads", default=[0] * (2 if one_d else 4))
        return [0, p[0], 0, p[1]] if one_d else p
    if auto == "VALID":
        return [0, 0, 0, 0]
    if auto not in ("SAME_UPPER", "SAME_LOWER"):
        raise c.fail(f"auto_pad={auto!r} is not supported")
    begins, ends = [], []
    for n, k, s, d in zip(x.shape[2:], kernel, strides, dilations):
        if not isinstance(n, int):
            raise c.fail(f"auto_pad={auto} needs static spatial dims, got {n}")
        total = max((math.ceil(n / s) - 1) * s + (k - 1) * d + 1 - n, 0)
        small, big = total // 2, total - total // 2
        begins.append(big if auto == "SAME_LOWER" else small)
        ends.append(small if auto == "SAME_LOWER" else big)
    return begins + ends


def _as_2d(c: _Ctx, x: Tensor) -> tuple[Tensor, bool]:
    """1-D (N, C, L) tensors become (N, C, 1, L), so 2-D primitives serve 1-D ops too."""
    if x.ndim == 3:
        return dsl.expand_dims(x, 2), True
    if x.ndim != 4:
        raise c.fail(f"only 1-D and 2-D {c.node.op_type} is supported, got input {tuple(x.shape)}")
    return x, False


def _pad_rest(x: Tensor, pads: list[int], symmetric: tuple[int, int], fill: float) -> Tensor:
    """Explicitly pads what a symmetric padding attribute cannot express."""
    extra = [(0, 0), (0, 0)] + [(b - s, e - s) for b, e, s in zip(pads[:2], pads[2:], symmetric)]
    return dsl.pad(x, extra, fill) if any(b or e for b, e in extra) else x


@handler("Conv")
def _conv(c: _Ctx) -> Val:
    x, w = c.t(0), c.t(1)
    x, one_d = _as_2d(c, x)
    if one_d:
        w = dsl.expand_dims(w, 2)
    k = [int(d) for d in w.shape[2:]]
    pick = (lambda v: [1] + v) if one_d else (lambda v: v)  # noqa: E731
    strides = pick(c.ints("strides", default=[1] * (len(k) - one_d)))
    dil = pick(c.ints("dilations", default=[1] * (len(k) - one_d)))
    pads = _spatial_pads(c, x, k, strides, dil, one_d)
    sym = (min(pads[0], pads[2]), min(pads[1], pads[3]))
    x = _pad_rest(x, pads, sym, 0.0)
    bias = c.t(2) if c.has(2) else None
    y = F.conv2d(x, w, bias, stride=tuple(strides), padding=sym, dilation=tuple(dil),
                 groups=int(c.attr("group", 1)))
    return dsl.squeeze(y, 2) if one_d else y


@handler("ConvTranspose")
def _conv_transpose(c: _Ctx) -> Val:
    x, w = c.t(0), c.t(1)
    x, one_d = _as_2d(c, x)
    if one_d:
        w = dsl.expand_dims(w, 2)
    pick = (lambda v: [1] + v) if one_d else (lambda v: v)  # noqa: E731
    pick0 = (lambda v: [0] + v) if one_d else (lambda v: v)  # noqa: E731
    nd = 2 - one_d
    k = [int(d) for d in w.shape[2:]]
    s = pick(c.ints("strides", default=[1] * nd))
    d = pick(c.ints("dilations", default=[1] * nd))
    op = pick0(c.ints("output_padding", default=[0] * nd))
    n_in = x.shape[2:]
    if not all(isinstance(n, int) for n in n_in):
        raise c.fail(f"ConvTranspose needs static spatial dims, got {tuple(n_in)}")
    full = [ss * (n - 1) + (kk - 1) * dd + 1 for ss, n, kk, dd in zip(s, n_in, k, d)]
    auto = c.attr("auto_pad", "NOTSET")
    if "output_shape" in c.attrs or auto in ("SAME_UPPER", "SAME_LOWER"):
        want = pick(c.ints("output_shape")[-nd:]) if "output_shape" in c.attrs else \
            [n * ss for n, ss in zip(n_in, s)]
        total = [f + o - t for f, o, t in zip(full, op, want)]
        if any(t < 0 for t in total):  # the rest of output_shape: zeros past the end
            op = [o - min(t, 0) for o, t in zip(op, total)]
            total = [max(t, 0) for t in total]
        upper = auto != "SAME_LOWER"
        begin = [t // 2 if upper else t - t // 2 for t in total]
        end = [t - b for t, b in zip(total, begin)]
    elif auto in ("NOTSET", "VALID"):
        p = c.ints("pads", default=[0] * (2 * nd)) if auto == "NOTSET" else [0] * (2 * nd)
        begin, end = pick0(p[:nd]), pick0(p[nd:])
    else:
        raise c.fail(f"auto_pad={auto!r} is not supported")
    groups = int(c.attr("group", 1))
    bias = c.t(2) if c.has(2) else None
    if begin == end and all(o < ss or o < dd for o, ss, dd in zip(op, s, d)):
        y = F.conv_transpose2d(x, w, bias, stride=tuple(s), padding=tuple(begin),
                               output_padding=tuple(op), dilation=tuple(d), groups=groups)
    else:  # the unpadded result, grown by output_padding, then cropped by the pads
        y = F.conv_transpose2d(x, w, None, stride=tuple(s), padding=(0, 0),
                               output_padding=(0, 0), dilation=tuple(d), groups=groups)
        if any(op):
            y = dsl.pad(y, [(0, 0), (0, 0)] + [(0, o) for o in op], 0.0)
        y = dsl.slice(y, begin, [f + o - e for f, o, e in zip(full, op, end)], [2, 3])
        if bias is not None:
            y = y + dsl.reshape(bias, (1, -1, 1, 1))
    return dsl.squeeze(y, 2) if one_d else y


@handler("MaxPool", "AveragePool")
def _pool(c: _Ctx) -> Val:
    if len(c.node.output) > 1 and c.node.output[1]:
        raise c.fail("the Indices output of MaxPool is not supported")
    x, one_d = _as_2d(c, c.t(0))
    pick = (lambda v: [1] + v) if one_d else (lambda v: v)  # noqa: E731
    k = pick(c.ints("kernel_shape"))
    strides = pick(c.ints("strides", default=[1] * (len(k) - one_d)))
    if any(d != 1 for d in c.ints("dilations", default=[1])):
        raise c.fail("dilated pools are not supported")
    pads = _spatial_pads(c, x, k, strides, [1, 1], one_d)
    avg = c.node.op_type == "AveragePool"
    if c.attr("ceil_mode", 0):
        if avg:
            raise c.fail("ceil_mode=1 is not supported for AveragePool")
        # ceil mode = extra -inf padding at the end, enough for one more partial window, but
        # not for a window that would start in the end padding (ONNX and PyTorch drop it)
        for i, (n, kk, s) in enumerate(zip(x.shape[2:], k, strides)):
            if not isinstance(n, int):
                raise c.fail(f"ceil_mode=1 needs static spatial dims, got {n}")
            span = n + pads[i] + pads[i + 2] - kk
            out = -(-span // s) + 1
            if (out - 1) * s >= n + pads[i]:
                out -= 1
            pads[i + 2] += max(0, (out - 1) * s - span)
    sym = (min(pads[0], pads[2]), min(pads[1], pads[3]))
    if avg and sym != (max(pads[0], pads[2]), max(pads[1], pads[3])):
        raise c.fail(f"asymmetric pads {pads} are not supported for AveragePool")
    if any(2 * p > kk for p, kk in zip(sym, k)):
        raise c.fail(f"pads {pads} exceed half the kernel {k}")
    if avg:
        y = F.avg_pool2d(x, tuple(k), tuple(strides), sym,
                         count_include_pad=bool(c.attr("count_include_pad", 0)))
    else:
        y = F.max_pool2d(_pad_rest(x, pads, sym, -np.inf), tuple(k), tuple(strides), sym)
    return dsl.squeeze(y, 2) if one_d else y


@handler("GlobalAveragePool", "GlobalMaxPool")
def _global_pool(c: _Ctx) -> Val:
    x = c.t(0)
    axes = tuple(range(2, x.ndim))
    fn = dsl.mean if c.node.op_type == "GlobalAveragePool" else dsl.max
    return fn(x, axes, keepdims=True)


@handler("BatchNormalization", static=(3, 4))
def _batch_norm(c: _Ctx) -> Sequence[Val]:
    x = c.t(0)
    shape = (1, -1) + (1,) * (x.ndim - 2)
    if c.attr("training_mode", 0):  # batch statistics; the running ones updated by momentum
        axes = (0,) + tuple(range(2, x.ndim))
        mean = dsl.mean(x, axes)
        xc = x - dsl.reshape(mean, shape)
        var = dsl.mean(xc * xc, axes)
        eps, mom = float(c.attr("epsilon", 1e-5)), float(c.attr("momentum", 0.9))
        y = (x - dsl.reshape(mean, shape)) / dsl.sqrt(dsl.reshape(var, shape) + eps) * \
            dsl.reshape(c.t(1), shape) + dsl.reshape(c.t(2), shape)
        return [y, c.t(3) * mom + mean * (1.0 - mom), c.t(4) * mom + var * (1.0 - mom)]
    if len(c.node.output) > 1 and any(c.node.output[1:]):
        raise c.fail("the running mean and variance outputs need training_mode=1")
    scale, bias, mean, var = (dsl.reshape(c.t(i), shape) for i in (1, 2, 3, 4))
    eps = float(c.attr("epsilon", 1e-5))
    return [(x - mean) / dsl.sqrt(var + eps) * scale + bias]


@handler("InstanceNormalization")
def _instance_norm(c: _Ctx) -> Val:
    x = c.t(0)
    axes = tuple(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mu = dsl.mean(x, axes, keepdims=True)
    xc = x - mu
    var = dsl.mean(xc * xc, axes, keepdims=True)
    y = xc / dsl.sqrt(var + float(c.attr("epsilon", 1e-5)))
    return y * dsl.reshape(c.t(1), shape) + dsl.reshape(c.t(2), shape)


def _softmax_like(c: _Ctx, fn: Callable[..., Tensor]) -> Val:
    x = c.t(0)
    if c.opset >= 13:
        return fn(x, int(c.attr("axis", -1)))
    # before opset 13 the input is seen as 2-D: dims before `axis` by dims from it
    axis = int(c.attr("axis", 1)) % max(x.ndim, 1)
    flat = dsl.reshape(x, (dim_product(x.shape[:axis]), dim_product(x.shape[axis:])))
    return dsl.reshape(fn(flat, -1), x.shape)


@handler("Softmax")
def _softmax(c: _Ctx) -> Val:
    return _softmax_like(c, F.softmax)


@handler("LogSoftmax")
def _log_softmax(c: _Ctx) -> Val:
    return _softmax_like(c, F.log_softmax)
