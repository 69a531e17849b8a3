"""ONNX import handlers for indexing, scans, losses and reductions over run-time data, as
composites over graphc's primitives; registered in the table of onnx_import_ops.py.

GatherElements and the scatters address elements through one flat index (static shapes), then
use the `gather` primitive and its adjoint `gather_grad` (a scatter-add).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from . import dsl
from . import functional as F
from .dsl import Tensor
from .onnx_import_math import floor, one_hot_along
from .onnx_import_ops import HANDLERS, Val, handler

if TYPE_CHECKING:  # pragma: no cover
    from .onnx_import import _Ctx

#: scans are unrolled into one node per step up to this length
_MAX_UNROLL = 1024


def _static(c: _Ctx, x: Tensor, what: str) -> tuple[int, ...]:
    if not x.type.is_static:
        raise c.fail(f"{what} needs static shapes, got {tuple(x.shape)}")
    return tuple(int(d) for d in x.shape)


def _wrap(idx: Tensor, n: int) -> Tensor:
    """Negative indices count from the end."""
    return dsl.where(idx < np.zeros((), idx.dtype), idx + np.asarray(n, idx.dtype), idx)


def _flat_index(shape: tuple[int, ...], idx: Tensor, axis: int) -> Tensor:
    """Flat positions in an array of `shape` of idx's elements, idx giving the coordinate on
    `axis` and its own position the others."""
    strides = np.cumprod((shape[1:] + (1,))[::-1])[::-1].astype(np.int64)
    ishape = tuple(int(d) for d in idx.shape)
    grid = np.indices(ishape, dtype=np.int64) if ishape else np.zeros((0,), np.int64)
    rest = sum(grid[d] * strides[d] for d in range(len(ishape)) if d != axis)
    flat = dsl.cast(idx, "int64") * np.asarray(strides[axis], np.int64)
    return flat + dsl.constant(np.asarray(rest, np.int64)) if len(ishape) > 1 else flat


@handler("GatherElements")
def _gather_elements(c: _Ctx) -> Val:
    x, idx = c.t(0), c.t(1)
    shape = _static(c, x, "GatherElements")
    c.imp.limits.check(_static(c, idx, "GatherElements"), np.int64, f"{c.where()}: index table")
    axis = int(c.attr("axis", 0)) % x.ndim
    flat = _flat_index(shape, _wrap(idx, shape[axis]), axis)
    return dsl.take(dsl.reshape(x, (-1,)), flat, 0)


@handler("GatherND")
def _gather_nd(c: _Ctx) -> Val:
    x, idx = c.t(0), c.t(1)
    shape = _static(c, x, "GatherND")
    ishape = _static(c, idx, "GatherND")
    b = int(c.attr("batch_dims", 0))
    k = ishape[-1]
    if not 0 <= b < min(len(shape), len(ishape)) or shape[:b] != ishape[:b] or \
            b + k > len(shape):
        raise c.fail(f"batch_dims={b} does not fit data {shape} and indices {ishape}")
    inner = shape[b + k:]
    strides = np.cumprod((shape[b + 1:b + k] + (1,))[::-1])[::-1].astype(np.int64)
    idx = dsl.cast(idx, "int64")
    per_batch = int(np.prod(shape[b:b + k]))
    # the batch dims are one leading dim of the table: each batch's taps start at its block
    flat = dsl.constant(np.arange(int(np.prod(shape[:b])), dtype=np.int64).reshape(
        ishape[:b] + (1,) * (len(ishape) - 1 - b)) * per_batch) if b else None
    for j in range(k):
        part = _wrap(dsl.squeeze(dsl.slice(idx, [j], [j + 1], [idx.ndim - 1]), idx.ndim - 1),
                     shape[b + j]) * np.asarray(strides[j], np.int64)
        flat = part if flat is None else flat + part
    table = dsl.reshape(x, (int(np.prod(shape[:b + k])),) + inner)
    return dsl.take(table, flat, 0)


def _scatter(c: _Ctx, x: Tensor, flat: Tensor, updates: Tensor) -> Tensor:
    """x with updates written at flat positions (later writes of one position are summed)."""
    shape = tuple(int(d) for d in x.shape)
    size = int(np.prod(shape))
    if not x.type.is_float:
        raise c.fail(f"scatters of {x.dtype} are not supported (float only)")
    red = c.attr("reduction", "none")
    if red not in ("none", "add"):
        raise c.fail(f"reduction={red!r} is not supported (none or add)")
    flat = dsl.reshape(flat, (-1,))
    upd = dsl.reshape(updates, (-1,))
    added = dsl.apply("gather_grad", [upd, flat], {"axis": 0, "shape": (size,)})
    if red == "add":
        return x + dsl.reshape(added, shape)
    hit = dsl.apply("gather_grad", [dsl.constant(np.ones(int(np.prod(upd.shape)), x.dtype)), flat],
                    {"axis": 0, "shape": (size,)})
    keep = dsl.reshape(dsl.where(hit > 0.0, np.zeros((), x.dtype), np.ones((), x.dtype)), shape)
    return x * keep + dsl.reshape(added, shape)


def _scatter_known(c: _Ctx, x: Tensor, flat: np.ndarray, updates: Tensor) -> Tensor:
    """x with updates written at flat positions known now, for every reduction; where a
    position is written twice, in order (the last write wins for reduction "none")."""
    shape = tuple(int(d) for d in x.shape)
    size = int(np.prod(shape))
    c.imp.limits.check((size,), np.int64, f"{c.where()}: scatter table")
    red = c.only("reduction", ("none", "add", "mul", "max", "min"), "none")
    flat = flat.reshape(-1).astype(np.int64)
    if flat.size and (flat.min() < 0 or flat.max() >= size):
        raise c.fail("scatter indices are out of range")
    n = flat.size
    big = np.inf if x.type.is_float else np.iinfo(x.dtype).max
    ident = {"none": 0, "add": 0, "mul": 1, "max": -big, "min": big}[red]
    table = dsl.concat([dsl.reshape(updates, (-1,)), dsl.constant(np.full(1, ident, x.dtype))], 0)
    layer = np.zeros(n, np.int64)  # how many earlier updates hit the same position
    seen: dict[int, int] = {}
    for j, f in enumerate(flat):
        layer[j] = seen.get(int(f), 0)
        seen[int(f)] = layer[j] + 1
    out = dsl.reshape(x, (-1,))
    for d in range(int(layer.max()) + 1 if n else 0):
        pick = np.full(size, n, np.int64)
        pick[flat[layer == d]] = np.flatnonzero(layer == d)
        vals = dsl.take(table, dsl.constant(pick), 0)
        if red == "none":
            out = dsl.where(dsl.constant(pick != n), vals, out)
        elif red == "add":
            out = out + vals
        elif red == "mul":
            out = out * vals
        else:
            out = (dsl.maximum if red == "max" else dsl.minimum)(out, vals)
    return dsl.reshape(out, shape)


def _np_flat_elements(shape: tuple[int, ...], idx: np.ndarray, axis: int) -> np.ndarray:
    idx = np.where(idx < 0, idx + shape[axis], idx).astype(np.int64)
    grid = list(np.indices(idx.shape))
    grid[axis] = idx
    return np.ravel_multi_index(tuple(grid), shape, mode="clip")


def _np_flat_nd(shape: tuple[int, ...], idx: np.ndarray) -> np.ndarray:
    k = idx.shape[-1]
    idx = np.where(idx < 0, idx + np.asarray(shape[:k]), idx).astype(np.int64)
    base = np.ravel_multi_index(tuple(np.moveaxis(idx, -1, 0)), shape[:k], mode="clip")
    inner = int(np.prod(shape[k:]))
    return base[..., None] * inner + np.arange(inner)


def _known_indices(c: _Ctx) -> np.ndarray | None:
    """The indices when known now; reductions other than none and add require them."""
    if not isinstance(c.inputs[1], Tensor) or c.attr("reduction", "none") not in ("none", "add"):
        return c.const(1, "indices").astype(np.int64)
    return None


@handler("ScatterElements", "Scatter")
def _scatter_elements(c: _Ctx) -> Val:
    x = c.t(0)
    shape = _static(c, x, "ScatterElements")
    axis = int(c.attr("axis", 0)) % x.ndim
    known = _known_indices(c)
    if known is not None:
        return _scatter_known(c, x, _np_flat_elements(shape, known, axis), c.t(2))
    idx, upd = c.t(1), c.t(2)
    c.imp.limits.check(_static(c, idx, "ScatterElements"), np.int64, f"{c.where()}: index table")
    return _scatter(c, x, _flat_index(shape, _wrap(idx, shape[axis]), axis), upd)


@handler("ScatterND")
def _scatter_nd(c: _Ctx) -> Val:
    x = c.t(0)
    shape = _static(c, x, "ScatterND")
    known = _known_indices(c)
    if known is not None:
        return _scatter_known(c, x, _np_flat_nd(shape, known), c.t(2))
    idx, upd = c.t(1), c.t(2)
    ishape = _static(c, idx, "ScatterND")
    k = ishape[-1]
    inner = int(np.prod(shape[k:]))
    strides = np.cumprod((shape[1:] + (1,))[::-1])[::-1].astype(np.int64)
    idx = dsl.cast(idx, "int64")
    base = None
    for j in range(k):
        part = _wrap(dsl.squeeze(dsl.slice(idx, [j], [j + 1], [idx.ndim - 1]), idx.ndim - 1),
                     shape[j]) * np.asarray(strides[j], np.int64)
        base = part if base is None else base + part
    # every element of the addressed slices: base + 0..inner-1
    flat = dsl.expand_dims(base, -1) + dsl.constant(np.arange(inner, dtype=np.int64))
    return _scatter(c, x, flat, upd)


# ---- scans ----------------------------------------------------------------------------------------

def _scan(c: _Ctx, combine) -> Tensor:
    x = c.t(0)
    axis = int(c.const(1, "axis").reshape(())) % x.ndim
    n = x.shape[axis]
    if not isinstance(n, int) or n > _MAX_UNROLL:
        raise c.fail(f"{c.node.op_type} needs a static dim of at most {_MAX_UNROLL} along the "
                     f"axis, got {n}")
    rev, excl = bool(c.attr("reverse", 0)), bool(c.attr("exclusive", 0))
    parts = [dsl.slice(x, [i], [i + 1], [axis]) for i in range(n)]
    if rev:
        parts = parts[::-1]
    out, acc = [], None
    for p in parts:
        if excl:
            out.append(acc)
        acc = p if acc is None else combine(acc, p)
        if not excl:
            out.append(acc)
    if excl:
        ident = np.ones if c.node.op_type == "CumProd" else np.zeros
        out[0] = dsl.constant(ident(tuple(parts[0].shape), x.dtype))
    if rev:
        out = out[::-1]
    return dsl.concat(out, axis) if len(out) > 1 else out[0]


_cumsum_float = HANDLERS["CumSum"]


@handler("CumSum", static=(1,))
def _cumsum(c: _Ctx) -> Val:
    x = c.t(0)
    return _cumsum_float(c) if x.type.is_float else _scan(c, dsl.add)


@handler("CumProd", static=(1,))
def _cumprod(c: _Ctx) -> Val:
    return _scan(c, dsl.mul)


# ---- reductions over run-time data --------------------------------------------------------------

_reduce_base = HANDLERS["ReduceSum"]
_EMPTY = {"ReduceMax": -np.inf, "ReduceMin": np.inf, "ReduceLogSumExp": -np.inf,
          "ReduceProd": 1, "ReduceSum": 0, "ReduceSumSquare": 0, "ReduceL1": 0, "ReduceL2": 0,
          "ReduceLogSum": -np.inf}


@handler("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
         "ReduceSumSquare", "ReduceLogSumExp", "ReduceLogSum", static=(1,))
def _reduce(c: _Ctx) -> Val:
    x = c.inputs[0]
    op = c.node.op_type
    if op == "ReduceProd" and not isinstance(x, Tensor):
        return _reduce_base(c)  # shape arithmetic (ReduceProd of a Shape), folded exactly
    axes = c.ints("axes", 1)
    if not axes and c.attr("noop_with_empty_axes", 0):
        return x
    x = c.t(0)
    ax = tuple(range(x.ndim)) if not axes else tuple(a % x.ndim for a in axes)
    keep = bool(c.attr("keepdims", 1))
    if any(x.shape[a] == 0 for a in ax):  # the reduction of nothing
        shape = tuple(1 if i in ax else d for i, d in enumerate(x.shape) if keep or i not in ax)
        fill = _EMPTY.get(op, np.nan)
        if x.dtype == "bool" and op in ("ReduceMax", "ReduceMin"):
            fill = op == "ReduceMin"  # any() of nothing is false, all() of nothing true
        elif not x.type.is_float and not np.isfinite(fill):
            raise c.fail(f"{op} of an empty {x.dtype} set has no value")
        return dsl.broadcast_to(dsl.constant(np.asarray(fill, x.dtype)), shape)
    if op == "ReduceLogSum":
        return dsl.log(dsl.sum(x, ax, keep))
    if op == "ReduceProd":
        return _prod(x, ax, keep)
    if x.dtype == "bool" and op in ("ReduceMax", "ReduceMin"):
        fn = dsl.max if op == "ReduceMax" else dsl.min
        return dsl.cast(fn(dsl.cast(x, "int32"), ax, keep), "bool")
    return _reduce_base(c)


def _prod(x: Tensor, ax: tuple[int, ...], keep: bool) -> Tensor:
    """The product as sign * exp(sum(log|x|)), zero where any factor is zero."""
    dt = x.dtype if x.type.is_float else "float64"
    xf = dsl.cast(x, dt) if dt != x.dtype else x
    mag = dsl.abs(xf)
    zero = dsl.max(dsl.cast(mag == 0.0, dt), ax, keep) > 0.0
    logs = dsl.sum(dsl.log(dsl.where(mag > 0.0, mag, np.ones((), dt))), ax, keep)
    neg = dsl.sum(dsl.cast(xf < 0.0, dt), ax, keep)
    sign = 1.0 - 2.0 * (neg - 2.0 * floor(neg * 0.5))
    y = dsl.where(zero, np.zeros((), dt), sign * dsl.exp(logs))
    if not x.type.is_float:
        return dsl.cast(floor(y + 0.5), x.dtype)
    return y


# ---- losses -----------------------------------------------------------------------------------

def _nll(c: _Ctx, logp: Tensor, target: Tensor, weight: Tensor | None) -> Tensor:
    """ONNX NegativeLogLikelihoodLoss of log-probabilities (N, C, d...) and targets (N, d...)."""
    ch = logp.shape[1]
    if not isinstance(ch, int):
        raise c.fail(f"needs a static class count, got {ch}")
    red = c.only("reduction", ("mean", "sum", "none"), "mean")
    t = dsl.cast(target, "int64")
    valid = None
    if "ignore_index" in c.attrs:
        ii = np.asarray(int(c.attr("ignore_index")), np.int64)
        valid = dsl.logical_not(t == ii)
        t = dsl.where(valid, t, np.zeros((), np.int64))
    pick = one_hot_along(dsl.expand_dims(t, 1), ch, 1, logp.dtype)
    loss = -dsl.sum(logp * pick, (1,))
    w = dsl.take(weight, t, 0) if weight is not None else None
    if valid is not None:
        vf = dsl.cast(valid, logp.dtype)
        w = vf if w is None else w * vf
    if w is not None:
        loss = loss * w
    if red == "none":
        return loss
    total = dsl.sum(loss)
    if red == "sum":
        return total
    if w is None:
        return total / float(np.prod([int(d) for d in t.shape])) if t.type.is_static else \
            dsl.mean(loss)
    return total / dsl.sum(w)


@handler("NegativeLogLikelihoodLoss")
def _nll_loss(c: _Ctx) -> Val:
    return _nll(c, c.t(0), c.t(1), c.t(2) if c.has(2) else None)


@handler("SoftmaxCrossEntropyLoss")
def _softmax_ce(c: _Ctx) -> Sequence[Val]:
    scores = c.t(0)
    logp = F.log_softmax(scores, 1)
    loss = _nll(c, logp, c.t(1), c.t(2) if c.has(2) else None)
    return [loss, logp]


# ---- scatters with a known layout -------------------------------------------------------------

@handler("TensorScatter", static=(2,))
def _tensor_scatter(c: _Ctx) -> Val:
    cache, upd = c.t(0), c.t(1)
    shape = _static(c, cache, "TensorScatter")
    ushape = _static(c, upd, "TensorScatter")
    axis = int(c.attr("axis", -2)) % len(shape)
    starts = c.const(2, "write_indices").astype(np.int64).reshape(-1) if c.has(2) else \
        np.zeros(shape[0], np.int64)
    c.imp.limits.check((len(ushape),) + ushape, np.int64, f"{c.where()}: index table")
    grid = list(np.indices(ushape))
    pos = grid[axis] + starts[grid[0]]
    if c.attr("mode", "linear") == "circular":
        pos = pos % shape[axis]
    elif pos.size and pos.max() >= shape[axis]:
        raise c.fail(f"writes past the cache length {shape[axis]}")
    grid[axis] = pos
    return _scatter_known(c, cache, np.ravel_multi_index(tuple(grid), shape), upd)


@handler("Col2Im", static=(1, 2))
def _col2im(c: _Ctx) -> Val:
    x = c.t(0)
    n, ck, cols = _static(c, x, "Col2Im")
    image = [int(v) for v in c.const(1, "image_shape").reshape(-1)]
    block = [int(v) for v in c.const(2, "block_shape").reshape(-1)]
    k = len(image)
    s = c.ints("strides", default=[1] * k)
    d = c.ints("dilations", default=[1] * k)
    p = c.ints("pads", default=[0] * (2 * k))
    kk = int(np.prod(block))
    if ck % kk:
        raise c.fail(f"{ck} rows do not split into blocks of {kk}")
    ch = ck // kk
    blocks = [(im + p[i] + p[i + k] - d[i] * (b - 1) - 1) // s[i] + 1
              for i, (im, b) in enumerate(zip(image, block))]
    if int(np.prod(blocks)) != cols:
        raise c.fail(f"{cols} columns, but the image and block shapes give {blocks}")
    c.imp.limits.check((k + 3, ck, cols), np.int64, f"{c.where()}: index table")
    # for every input element (c, kernel offset, block), its position in the image
    ci, ko, bl = np.indices((ch, kk, cols))
    offs, locs = np.unravel_index(ko, block), np.unravel_index(bl, blocks)
    pos = [locs[i] * s[i] - p[i] + offs[i] * d[i] for i in range(k)]
    inside = np.all([(q >= 0) & (q < image[i]) for i, q in enumerate(pos)], axis=0)
    plane = int(np.prod(image))
    flat = ci * plane + np.ravel_multi_index(tuple(np.clip(q, 0, image[i] - 1)
                                                    for i, q in enumerate(pos)), image)
    flat = np.where(inside, flat, ch * plane)  # taps in the padding go to a spare slot
    flat = (np.arange(n)[:, None, None, None] * (ch * plane + 1) + flat[None]).reshape(n, ck, cols)
    total = n * (ch * plane + 1)
    out = dsl.apply("gather_grad", [dsl.reshape(x, (-1,)), dsl.constant(flat.reshape(-1))],
                    {"axis": 0, "shape": (total,)})
    out = dsl.slice(dsl.reshape(out, (n, ch * plane + 1)), [0], [ch * plane], [1])
    return dsl.reshape(out, (n, ch) + tuple(image))


@handler("MaxUnpool", static=(2,))
def _max_unpool(c: _Ctx) -> Val:
    x, idx = c.t(0), c.t(1)
    n, ch, *spatial = _static(c, x, "MaxUnpool")
    k = c.ints("kernel_shape")
    s = c.ints("strides", default=[1] * len(k))
    p = c.ints("pads", default=[0] * (2 * len(k)))
    default = [(m - 1) * ss + kk - p[i] - p[i + len(k)]
               for i, (m, ss, kk) in enumerate(zip(spatial, s, k))]
    out = [int(v) for v in c.const(2, "output_shape").reshape(-1)][2:] if c.has(2) else default
    idx = dsl.cast(idx, "int64")
    if out != default:  # the indices count positions in the default shape: move them over
        plane = np.asarray(int(np.prod(default)), np.int64)
        nc = dsl.div(idx, plane)
        rem, new = idx - nc * plane, nc * np.asarray(int(np.prod(out)), np.int64)
        for i in range(len(default)):
            inner = np.asarray(int(np.prod(default[i + 1:])), np.int64)
            coord = dsl.div(rem, inner)
            rem = rem - coord * inner
            new = new + coord * np.asarray(int(np.prod(out[i + 1:])), np.int64)
        idx = new
    total = n * ch * int(np.prod(out))
    y = dsl.apply("gather_grad", [dsl.reshape(x, (-1,)), dsl.reshape(idx, (-1,))],
                  {"axis": 0, "shape": (total,)})
    return dsl.reshape(y, (n, ch) + tuple(out))
