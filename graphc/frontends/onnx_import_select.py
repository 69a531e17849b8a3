"""ONNX import handlers that select or rearrange elements (TopK, OneHot, ReverseSequence,
CenterCropPad, Pad's edge/reflect/wrap modes) and signal ops (DFT, window functions), as
composites over graphc's primitives; registered in the table of onnx_import_ops.py.

TopK has no sort primitive to use: each element's rank is counted by comparing it with every
other element along the axis (n x n comparisons, so n is capped), then the k best are picked
with one-hot selections.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from . import dsl
from .dsl import Tensor
from .onnx_import_ops import HANDLERS, Val, handler

if TYPE_CHECKING:  # pragma: no cover
    from .onnx_import import _Ctx

#: TopK compares every pair along its axis: at most this many elements there
_MAX_TOPK_AXIS = 4096


@handler("TopK", static=(1,))
def _topk(c: _Ctx) -> Sequence[Val]:
    x = c.t(0)
    axis = int(c.attr("axis", -1)) % x.ndim
    n = x.shape[axis]
    k = int(c.const(1, "K").reshape(-1)[0]) if c.has(1) else int(c.attr("k"))
    if not isinstance(n, int) or n > _MAX_TOPK_AXIS:
        raise c.fail(f"TopK needs a static axis of at most {_MAX_TOPK_AXIS} elements, got {n}")
    if not 0 <= k <= n:
        raise c.fail(f"K={k} is outside 0..{n}")
    largest = bool(c.attr("largest", 1))
    xt = dsl.swapaxes(x, axis, -1)
    xi, xj = dsl.expand_dims(xt, -1), dsl.expand_dims(xt, -2)  # (..., n, 1), (..., 1, n)
    beats = (xj > xi) if largest else (xj < xi)
    c.imp.limits.check((n, n), bool, f"{c.where()}: TopK comparison mask")
    earlier = dsl.constant(np.tril(np.ones((n, n), bool), -1))  # j < i: ties go to the lower index
    wins = beats | ((xj == xi) & earlier)
    rank = dsl.sum(dsl.cast(wins, "int64"), -1)  # (..., n): how many come before each element
    sel = dsl.expand_dims(rank, -1) == dsl.constant(np.arange(k, dtype=np.int64))  # (..., n, k)
    zero = np.zeros((), x.dtype)
    values = dsl.sum(dsl.where(sel, dsl.expand_dims(xt, -1), zero), -2)
    iota = dsl.constant(np.arange(n, dtype=np.int64).reshape(n, 1))
    indices = dsl.sum(dsl.where(sel, iota, np.zeros((), np.int64)), -2)
    return [dsl.swapaxes(values, axis, -1), dsl.swapaxes(indices, axis, -1)]


@handler("OneHot", static=(1, 2))
def _one_hot(c: _Ctx) -> Val:
    idx = c.t(0)
    depth = int(np.asarray(c.const(1, "depth")).reshape(-1)[0])
    values = c.t(2)
    rank = idx.ndim + 1
    axis = int(c.attr("axis", -1)) % rank
    idx = dsl.cast(idx, "int64") if idx.dtype != "int64" else idx
    idx = dsl.where(idx < np.zeros((), np.int64), idx + np.asarray(depth, np.int64), idx)
    shape = [1] * rank
    shape[axis] = depth
    hot = dsl.expand_dims(idx, axis) == dsl.constant(np.arange(depth, dtype=np.int64).reshape(shape))
    off = dsl.reshape(dsl.slice(values, [0], [1], [0]), ())
    on = dsl.reshape(dsl.slice(values, [1], [2], [0]), ())
    return dsl.where(hot, on, off)


@handler("ReverseSequence", static=(1,))
def _reverse_sequence(c: _Ctx) -> Val:
    x = c.t(0)
    if not x.type.is_static:
        raise c.fail(f"ReverseSequence needs static shapes, got {tuple(x.shape)}")
    lens = c.const(1, "sequence_lens").astype(np.int64).reshape(-1)
    b_axis, t_axis = int(c.attr("batch_axis", 1)), int(c.attr("time_axis", 0))
    shape = tuple(int(d) for d in x.shape)
    c.imp.limits.check((len(shape),) + shape, np.int64, f"{c.where()}: index table")
    grid = list(np.indices(shape))
    t, b = grid[t_axis], grid[b_axis]
    n = lens[b]
    grid[t_axis] = np.where(t < n, n - 1 - t, t)
    flat = np.ravel_multi_index(tuple(grid), shape)
    return dsl.take(dsl.reshape(x, (-1,)), dsl.constant(flat.astype(np.int64)), 0)


def _index_pad(x: Tensor, axis: int, before: int, after: int, mode: str) -> Tensor:
    """x padded along one axis by repeating its own elements (edge, reflect or wrap)."""
    n = int(x.shape[axis])
    pos = np.arange(-before, n + after)
    if mode == "edge":
        idx = np.clip(pos, 0, n - 1)
    elif mode == "wrap":
        idx = np.mod(pos, n)
    else:  # reflect, without repeating the edge
        period = 2 * (n - 1) if n > 1 else 1
        m = np.mod(pos, period)
        idx = np.where(m < n, m, period - m) if n > 1 else np.zeros_like(pos)
    return dsl.take(x, dsl.constant(idx.astype(np.int64)), axis)


_pad_constant = HANDLERS["Pad"]


@handler("Pad", static=(1, 2, 3))
def _pad(c: _Ctx) -> Val:
    mode = c.attr("mode", "constant")
    if mode == "constant":
        return _pad_constant(c)
    if mode not in ("edge", "reflect", "wrap"):
        raise c.fail(f"attribute mode={mode!r} is not supported")
    x = c.t(0)
    pads = c.ints("pads", 1)
    axes = [a % x.ndim for a in c.ints("axes", 3, list(range(x.ndim)))]
    k = len(axes)
    for j, a in enumerate(axes):
        b, e = pads[j], pads[j + k]
        if not isinstance(x.shape[a], int):
            raise c.fail(f"mode={mode!r} needs static dims, got {tuple(x.shape)}")
        if b < 0 or e < 0:
            n = int(x.shape[a])
            x = dsl.slice(x, [max(-b, 0)], [n - max(-e, 0)], [a])
            b, e = max(b, 0), max(e, 0)
        if b or e:
            x = _index_pad(x, a, b, e, mode)
    return x


@handler("CenterCropPad", static=(1,))
def _center_crop_pad(c: _Ctx) -> Val:
    x = c.t(0)
    target = [int(v) for v in c.const(1, "shape").reshape(-1)]
    axes = [a % x.ndim for a in c.ints("axes", default=list(range(x.ndim)))]
    for a, want in zip(axes, target):
        n = x.shape[a]
        if not isinstance(n, int):
            raise c.fail(f"CenterCropPad needs static dims, got {tuple(x.shape)}")
        if want < n:
            start = (n - want) // 2
            x = dsl.slice(x, [start], [start + want], [a])
        elif want > n:
            before = (want - n) // 2
            width = [(0, 0)] * x.ndim
            width[a] = (before, want - n - before)
            x = dsl.pad(x, width, 0.0)
    return x


# ---- signal ------------------------------------------------------------------------------------

@handler("DFT", static=(1, 2))
def _dft(c: _Ctx) -> Val:
    x = c.t(0)
    if not x.type.is_float:
        raise c.fail(f"DFT of {x.dtype} is not supported")
    if c.opset >= 20:
        axis = int(c.const(2, "axis").reshape(())) if c.has(2) else -2
    else:
        axis = int(c.attr("axis", 1))
    axis %= x.ndim
    if axis == x.ndim - 1:
        raise c.fail("the DFT axis cannot be the last (real/imaginary) axis")
    n_in = x.shape[axis]
    if not isinstance(n_in, int):
        raise c.fail(f"DFT needs a static length, got {n_in}")
    n = int(c.const(1, "dft_length").reshape(())) if c.has(1) else n_in
    inverse, onesided = bool(c.attr("inverse", 0)), bool(c.attr("onesided", 0))
    if x.shape[-1] == 1:
        re, im = dsl.squeeze(x, -1), None
    else:
        re = dsl.squeeze(dsl.slice(x, [0], [1], [x.ndim - 1]), -1)
        im = dsl.squeeze(dsl.slice(x, [1], [2], [x.ndim - 1]), -1)
    if n < n_in and not (inverse and onesided):  # dft_length crops or zero-pads the signal
        re = dsl.slice(re, [0], [n], [axis])
        im = None if im is None else dsl.slice(im, [0], [n], [axis])
    elif n > n_in and not (inverse and onesided):
        width = [(0, 0)] * re.ndim
        width[axis] = (0, n - n_in)
        re = dsl.pad(re, width, 0.0)
        im = None if im is None else dsl.pad(im, width, 0.0)
    if inverse and onesided:  # a half spectrum back to a real signal (irfft)
        return _irfft(c, x, re, im, axis, n_in, int(c.const(1, "dft_length").reshape(()))
                      if c.has(1) else 2 * (n_in - 1))
    m = n // 2 + 1 if onesided else n
    kk = np.outer(np.arange(n), np.arange(m)) % n
    ang = (2 * np.pi / n) * kk * (1.0 if inverse else -1.0)
    cos, sin = np.cos(ang), np.sin(ang)
    if inverse:
        cos, sin = cos / n, sin / n

    def along(t: Tensor, w: np.ndarray) -> Tensor:
        y = dsl.matmul(dsl.swapaxes(t, axis, -1), dsl.constant(w.astype(x.dtype)))
        return dsl.swapaxes(y, axis, -1)
    out_re, out_im = along(re, cos), along(re, sin)
    if im is not None:  # (a + ib)(cos + i sin) = a cos - b sin + i (a sin + b cos)
        out_re, out_im = out_re - along(im, sin), out_im + along(im, cos)
    return dsl.stack([out_re, out_im], -1)


def _irfft(c: _Ctx, x: Tensor, re: Tensor, im: Tensor | None, axis: int, m: int, n: int
           ) -> Tensor:
    """x[t] = 1/n sum_k w_k (a_k cos - b_k sin)(2 pi k t / n), the spectrum's missing half
    given by symmetry (w_k = 2 for the bins it mirrors)."""
    m = min(m, n // 2 + 1)
    re = dsl.slice(re, [0], [m], [axis])
    w = np.full(m, 2.0)
    w[0] = 1.0
    if n % 2 == 0 and m == n // 2 + 1:
        w[-1] = 1.0
    ang = 2 * np.pi * np.outer(np.arange(m), np.arange(n)) / n
    wc, ws = w[:, None] * np.cos(ang) / n, w[:, None] * np.sin(ang) / n

    def along(t: Tensor, mat: np.ndarray) -> Tensor:
        y = dsl.matmul(dsl.swapaxes(t, axis, -1), dsl.constant(mat.astype(x.dtype)))
        return dsl.swapaxes(y, axis, -1)
    out = along(re, wc)
    if im is not None:
        out = out - along(dsl.slice(im, [0], [m], [axis]), ws)
    return dsl.expand_dims(out, -1)


@handler("HannWindow", "HammingWindow", "BlackmanWindow", static=(0,))
def _window(c: _Ctx) -> Val:
    n = int(c.const(0, "size").reshape(()))
    c.imp.limits.check((n,), np.float64, f"{c.where()}: window")
    periodic = bool(c.attr("periodic", 1))
    denom = n if periodic else n - 1
    k = np.arange(n, dtype=np.float64)
    t = 2 * np.pi * k / denom if denom else np.zeros(n)
    op = c.node.op_type
    if op == "HannWindow":
        w = 0.5 - 0.5 * np.cos(t)
    elif op == "HammingWindow":
        w = 25 / 46 - (1 - 25 / 46) * np.cos(t)
    else:
        w = 0.42 - 0.5 * np.cos(t) + 0.08 * np.cos(2 * t)
    dt = c.imp.dtype_of(int(c.attr("output_datatype", 1)), c)
    return w.astype(dt)



# ---- spectrograms: STFT (frames through DFT) and MelWeightMatrix (a constant) -----------------

@handler("STFT", static=(1, 3))
def _stft(c: _Ctx) -> Val:
    import copy
    x = c.t(0)
    if x.ndim != 3 or x.shape[2] not in (1, 2) or not isinstance(x.shape[1], int):
        raise c.fail(f"the signal must be (batch, length, 1 or 2) with a static length, got "
                     f"{tuple(x.shape)}")
    step = int(c.const(1, "frame_step").reshape(()))
    window = c.t(2) if c.has(2) else None
    if c.has(3):
        length = int(c.const(3, "frame_length").reshape(()))
    else:
        length = int(window.shape[0]) if window is not None else int(x.shape[1])
    if window is not None and window.shape[0] != length:
        raise c.fail(f"the window has {window.shape[0]} taps for frames of {length}")
    if step <= 0 or length <= 0 or length > x.shape[1]:
        raise c.fail(f"frame_step {step} and frame_length {length} do not fit a signal of "
                     f"{x.shape[1]} samples")
    n_frames = 1 + (x.shape[1] - length) // step
    frames = dsl.stack([dsl.slice(x, [f * step], [f * step + length], [1])
                        for f in range(n_frames)], 1)  # (batch, frames, length, 1 or 2)
    if window is not None:
        w = window if window.dtype == x.dtype else dsl.cast(window, x.dtype)
        frames = frames * dsl.reshape(w, (1, 1, length, 1))
    sub = copy.copy(c)  # the frames' DFT along their length, with this node's onesided
    sub.inputs = [frames, np.asarray(length, np.int64), np.asarray(2, np.int64)]
    sub.attrs = {"onesided": int(c.attr("onesided", 1))}
    sub.opset = max(c.opset, 20)
    return HANDLERS["DFT"](sub)


@handler("MelWeightMatrix", static=(0, 1, 2, 3, 4))
def _mel_weight_matrix(c: _Ctx) -> Val:
    """The (dft_length // 2 + 1, num_mel_bins) triangular filter bank, as onnx's reference."""
    bins, dft, rate = (int(c.const(i, n).reshape(())) for i, n in
                       enumerate(("num_mel_bins", "dft_length", "sample_rate")))
    lo, hi = (float(c.const(i, n).reshape(())) for i, n in
              ((3, "lower_edge_hertz"), (4, "upper_edge_hertz")))
    if bins <= 0 or dft <= 0 or rate <= 0:
        raise c.fail(f"num_mel_bins {bins}, dft_length {dft} and sample_rate {rate} must be "
                     "positive")
    c.imp.limits.check([dft // 2 + 1, bins], np.float64, f"{c.where()}: the filter bank")
    mel_lo, mel_hi = (2595 * np.log1p(f / 700) / np.log(10) for f in (lo, hi))
    points = np.arange(bins + 2) * ((mel_hi - mel_lo) / (bins + 2)) + mel_lo
    hz = 700 * np.expm1(points / 2595 * np.log(10))
    edges = (((dft + 1) * hz) // rate).astype(int)
    if edges.min() < 0 or edges[:-1].max() > dft // 2 or edges[-1] > dft // 2 + 1:
        raise c.fail(f"the band {lo} to {hi} Hz does not fit the {dft // 2 + 1} frequency bins "
                     f"of a {dft}-point DFT at {rate} Hz")
    out = np.zeros((dft // 2 + 1, bins))
    for i in range(bins):
        left, mid, right = edges[i], edges[i + 1], edges[i + 2]
        if mid == left:
            out[mid, i] = 1
        else:
            out[left:mid + 1, i] = (np.arange(left, mid + 1) - left) / (mid - left)
        if right > mid:
            out[mid:right, i] = (right - np.arange(mid, right)) / (right - mid)
    dtype = c.imp.dtype_of(int(c.attr("output_datatype")), c) if c.attr("output_datatype") \
        else "float32"
    return out.astype(dtype)
