"""ONNX import of MaxPool, AveragePool and LpPool in every form: 1-D to 3-D, dilations,
asymmetric or large pads, ceil mode, MaxPool's Indices output.

2-D (and 1-D) pools that the max_pool2d / avg_pool2d primitives express go to them
(onnx_import_nn.py); the rest are composites: the maximum (or sum) over the kernel's offsets of
strided slices of the padded input, one slice per kernel element.
"""
from __future__ import annotations

import itertools
import math
from typing import TYPE_CHECKING, Sequence

import numpy as np

from . import dsl
from .dsl import Tensor
from .onnx_import_nn import _pool as _pool_2d  # the primitive-backed 2-D pools
from .onnx_import_ops import Val, handler

if TYPE_CHECKING:  # pragma: no cover
    from .onnx_import import _Ctx

#: a composite pool takes one slice per kernel element: at most this many
_MAX_KERNEL_ELEMENTS = 1024


def _geometry(c: _Ctx, x: Tensor) -> tuple[list[int], ...]:
    """kernel, strides, dilations, begin pads, end pads and output sizes of each spatial dim."""
    nd = x.ndim - 2
    spatial = x.shape[2:]
    if not all(isinstance(n, int) for n in spatial):
        raise c.fail(f"pooling needs static spatial dims, got {tuple(spatial)}")
    k = c.ints("kernel_shape")
    s = c.ints("strides", default=[1] * nd)
    d = c.ints("dilations", default=[1] * nd)
    span = [(kk - 1) * dd + 1 for kk, dd in zip(k, d)]
    auto = c.attr("auto_pad", "NOTSET")
    if auto == "NOTSET":
        p = c.ints("pads", default=[0] * (2 * nd))
        begin, end = p[:nd], p[nd:]
    elif auto == "VALID":
        begin, end = [0] * nd, [0] * nd
    elif auto in ("SAME_UPPER", "SAME_LOWER"):
        total = [max((math.ceil(n / ss) - 1) * ss + sp - n, 0)
                 for n, ss, sp in zip(spatial, s, span)]
        small = [t // 2 for t in total]
        big = [t - t // 2 for t in total]
        begin, end = (big, small) if auto == "SAME_LOWER" else (small, big)
    else:
        raise c.fail(f"auto_pad={auto!r} is not supported")
    ceil = bool(c.attr("ceil_mode", 0))
    out = []
    for n, ss, sp, b, e in zip(spatial, s, span, begin, end):
        room = n + b + e - sp
        if room < 0:
            raise c.fail(f"input size {n} is too small for a window of {sp} (pads {b}, {e})")
        o = (-(-room // ss) if ceil else room // ss) + 1
        if ceil and (o - 1) * ss >= n + b:  # a window starting in the end padding is dropped
            o -= 1
        out.append(o)
    return k, s, d, begin, end, out


def _counts(n: int, k: int, s: int, d: int, b: int, e: int, out: int, include_pad: bool
            ) -> np.ndarray:
    """How many elements each output's window holds along one dim (pads counted or not)."""
    lo, hi = (-b, n + e) if include_pad else (0, n)
    starts = np.arange(out) * s - b
    taps = starts[:, None] + np.arange(k)[None, :] * d
    return ((taps >= lo) & (taps < hi)).sum(axis=1)


def _composite(c: _Ctx, x: Tensor) -> Sequence[Val]:
    op = c.node.op_type
    k, s, d, begin, end, out = _geometry(c, x)
    nd = len(k)
    if int(np.prod(k)) > _MAX_KERNEL_ELEMENTS:
        raise c.fail(f"kernel {k} has more than {_MAX_KERNEL_ELEMENTS} elements")
    spatial = [int(n) for n in x.shape[2:]]
    # pad the end far enough for the last window (ceil mode may need more than `end`)
    full_end = [max(e, (o - 1) * ss + (kk - 1) * dd + 1 - n - b)
                for e, o, ss, kk, dd, n, b in zip(end, out, s, k, d, spatial, begin)]
    if op == "MaxPool":
        fill = -np.inf if x.type.is_float else np.iinfo(x.dtype).min
    else:
        fill = 0.0
    xp = x
    if any(begin) or any(full_end):
        xp = dsl.pad(x, [(0, 0), (0, 0)] + list(zip(begin, full_end)), fill)
    want_indices = op == "MaxPool" and len(c.node.output) > 1 and bool(c.node.output[1])
    if want_indices and x.type.is_static:
        c.imp.limits.check([int(x.shape[0]), int(x.shape[1])] + out, np.int64,
                           f"{c.where()}: Indices table")
    p = int(c.attr("p", 2))
    cm = bool(c.attr("storage_order", 0))
    acc = idx = None
    for offs in itertools.product(*(range(kk) for kk in k)):
        starts = [o * dd for o, dd in zip(offs, d)]
        ends = [st + (o - 1) * ss + 1 for st, o, ss in zip(starts, out, s)]
        sl = dsl.slice(xp, starts, ends, list(range(2, 2 + nd)), list(s))
        if op == "LpPool":
            sl = dsl.abs(sl) if p == 1 else (sl * sl if p == 2 else dsl.power(dsl.abs(sl), float(p)))
        if acc is None:
            acc = sl
            if want_indices:
                idx = dsl.constant(_flat_positions(x, offs, s, d, begin, out, cm))
            continue
        if op == "MaxPool":
            if want_indices:
                better = sl > acc  # ties keep the first maximum
                taps = _flat_positions(x, offs, s, d, begin, out, cm)
                idx = dsl.where(better, dsl.constant(taps), idx)
            acc = dsl.maximum(acc, sl)
        else:
            acc = acc + sl
    if op == "AveragePool":
        include = bool(c.attr("count_include_pad", 0))
        per_dim = [_counts(n, kk, ss, dd, b, e, o, include)
                   for n, kk, ss, dd, b, e, o in zip(spatial, k, s, d, begin, end, out)]
        count = per_dim[0]
        for v in per_dim[1:]:
            count = np.multiply.outer(count, v)
        return [acc / dsl.constant(count.reshape((1, 1) + tuple(out)).astype(x.dtype))]
    if op == "LpPool":
        return [acc if p == 1 else (dsl.sqrt(acc) if p == 2 else
                                    dsl.power(acc, np.asarray(1.0 / p, x.dtype)))]
    return [acc, idx] if want_indices else [acc]


def _flat_positions(x: Tensor, offs, s, d, begin, out, column_major: bool = False) -> np.ndarray:
    """The flat index into x (row-major over N, C, spatial; with `column_major`, the spatial
    dims column-major, as MaxPool's storage_order=1) of one kernel offset's taps."""
    if not x.type.is_static:
        raise ValueError(f"MaxPool's Indices output needs a static input shape, got "
                         f"{tuple(x.shape)}")
    shape = [int(n) for n in x.shape]
    grids = np.meshgrid(*[np.arange(o) * ss - b + off * dd
                          for o, ss, b, off, dd in zip(out, s, begin, offs, d)], indexing="ij")
    flat = np.zeros(tuple(out), np.int64)
    order = list(zip(grids, shape[2:]))
    for g, n in (order[::-1] if column_major else order):
        flat = flat * n + np.clip(g, 0, n - 1)  # taps in the padding never win (-inf)
    plane = int(np.prod(shape[2:]))
    nc = np.arange(shape[0] * shape[1], dtype=np.int64).reshape(shape[:2] + [1] * len(out))
    return nc * plane + flat


@handler("MaxPool", "AveragePool", "LpPool")
def _pool(c: _Ctx) -> Sequence[Val]:
    x = c.t(0)
    if c.attr("storage_order", 0) and x.ndim != 4:
        raise c.fail("storage_order=1 (column-major Indices) is supported for 2-D pools only")
    if _primitive_fits(c, x):
        return _pool_2d(c)
    return _composite(c, x)


def _primitive_fits(c: _Ctx, x: Tensor) -> bool:
    """Whether the 2-D pool primitives express this pool (the fast path)."""
    op = c.node.op_type
    if op == "LpPool" or x.ndim not in (3, 4) or not x.type.is_float:
        return False
    if len(c.node.output) > 1 and c.node.output[1]:
        return False
    if any(v != 1 for v in c.ints("dilations", default=[1])):
        return False
    try:
        k, s, d, begin, end, out = _geometry(c, x)
    except Exception:  # noqa: BLE001 - let the composite path report it
        return False
    if x.ndim == 3:
        k, begin, end = [1] + k, [0] + begin, [0] + end
    sym = [min(b, e) for b, e in zip(begin, end)]
    if any(2 * p > kk for p, kk in zip(sym, k)):
        return False
    if op == "AveragePool":
        return not c.attr("ceil_mode", 0) and begin == end
    return True
