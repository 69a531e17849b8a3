"""ONNX import of Attention (opset 23+) as a graphc composite: scaled dot products, masks
(boolean or additive, causal, sliding window, padding by `nonpad_kv_seqlen`), a key/value cache,
grouped-query heads, softcap, and the optional QK output; the same arithmetic as onnx's reference.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from . import dsl
from .dsl import Tensor
from .onnx_import_ops import Val, handler

if TYPE_CHECKING:  # pragma: no cover
    from .onnx_import import _Ctx


def _heads(c: _Ctx, x: Tensor, heads: int) -> Tensor:
    """(B, S, heads*D) -> (B, heads, S, D)."""
    b, s, hidden = x.shape
    if not isinstance(hidden, int) or hidden % heads:
        raise c.fail(f"hidden size {hidden} does not split into {heads} heads")
    return dsl.transpose(dsl.reshape(x, (b, s, heads, hidden // heads)), (0, 2, 1, 3))


def _safe_softmax(x: Tensor, masked_row: Tensor | None) -> Tensor:
    """Softmax over the last axis; a row that is all -inf (or flagged masked) gives zeros."""
    zero = np.zeros((), x.dtype)
    m = dsl.max(x, -1, keepdims=True)
    m = dsl.where(m == -np.inf, zero, m)
    e = dsl.exp(x - m)
    total = dsl.sum(e, -1, keepdims=True)
    p = e / dsl.where(total == zero, np.ones((), x.dtype), total)
    return p if masked_row is None else dsl.where(masked_row, zero, p)


@handler("Attention")
def _attention(c: _Ctx) -> Sequence[Val]:
    q, k, v = c.t(0), c.t(1), c.t(2)
    rank3 = q.ndim == 3
    if rank3:
        qh, kvh = c.attr("q_num_heads"), c.attr("kv_num_heads")
        if qh is None or kvh is None:
            raise c.fail("3-D inputs need q_num_heads and kv_num_heads")
        q, k, v = _heads(c, q, int(qh)), _heads(c, k, int(kvh)), _heads(c, v, int(kvh))
    dt = q.dtype
    head = q.shape[3]
    if not isinstance(head, int):
        raise c.fail(f"needs a static head size, got {head}")
    scale = c.attr("scale")
    scale = float(1.0 / np.sqrt(head)) if scale is None else float(scale)
    root = np.asarray(np.sqrt(scale), dt)  # applied to Q and K both, as the reference does
    past_len = 0
    if c.has(4) != c.has(5):
        raise c.fail("past_key and past_value must be given together")
    if c.has(4):
        pk, pv = c.t(4), c.t(5)
        past_len = pk.shape[2]
        k, v = dsl.concat([pk, k], 2), dsl.concat([pv, v], 2)
    present_k, present_v = k, v
    q_len, kv_len = q.shape[2], k.shape[2]
    if not all(isinstance(d, int) for d in (q_len, kv_len, past_len)):
        raise c.fail(f"needs static sequence lengths, got q {q_len}, kv {kv_len}")
    nonpad = dsl.cast(c.t(6), "int64") if c.has(6) else None
    if nonpad is not None and c.has(4):
        raise c.fail("nonpad_kv_seqlen cannot be combined with past_key/past_value")
    neg_inf, zero = np.asarray(-np.inf, dt), np.zeros((), dt)

    bias = None  # additive, broadcastable to (B, H, q, kv)
    if c.has(3):
        mask = c.t(3)
        if mask.dtype == "bool":
            mask = dsl.where(mask, zero, neg_inf)
        elif mask.dtype != dt:
            mask = dsl.cast(mask, dt)
        short = kv_len - mask.shape[-1]
        if short > 0:
            mask = dsl.pad(mask, [(0, 0)] * (mask.ndim - 1) + [(0, short)], -np.inf)
        bias = mask
    i_idx = dsl.constant(np.arange(q_len, dtype=np.int64).reshape(q_len, 1))
    j_idx = dsl.constant(np.arange(kv_len, dtype=np.int64).reshape(1, kv_len))
    # where the query block starts among the keys: per batch with nonpad_kv_seqlen
    offset: Tensor | int = past_len
    if nonpad is not None:
        offset = dsl.reshape(nonpad - np.asarray(q_len, np.int64), (-1, 1, 1, 1))
    pos = i_idx + offset if isinstance(offset, Tensor) else \
        dsl.constant(np.arange(q_len, dtype=np.int64).reshape(q_len, 1) + offset)
    allowed = None
    if c.attr("is_causal", 0):
        allowed = j_idx <= pos
    left, right = int(c.attr("left_window_size", -1)), int(c.attr("right_window_size", -1))
    diff = pos - j_idx
    if left >= 0:
        ok = diff <= np.asarray(left, np.int64)
        allowed = ok if allowed is None else allowed & ok
    if right >= 0:
        ok = dsl.neg(diff) <= np.asarray(right, np.int64)
        allowed = ok if allowed is None else allowed & ok
    if allowed is not None:
        extra = dsl.where(allowed, zero, neg_inf)
        bias = extra if bias is None else bias + extra
    if nonpad is not None:
        keep = j_idx < dsl.reshape(nonpad, (-1, 1))
        pad_bias = dsl.reshape(dsl.where(keep, zero, neg_inf), (-1, 1, 1, kv_len))
        bias = pad_bias if bias is None else bias + pad_bias

    # grouped-query attention: each key/value head serves q_heads / kv_heads query heads
    qh, kh = q.shape[1], k.shape[1]
    if qh != kh:
        if not (isinstance(qh, int) and isinstance(kh, int)) or qh % kh:
            raise c.fail(f"{qh} query heads do not group over {kh} key/value heads")
        reps = qh // kh

        def repeat(t: Tensor) -> Tensor:
            b, h, s, d = t.shape
            t = dsl.broadcast_to(dsl.expand_dims(t, 2), (b, h, reps, s, d))
            return dsl.reshape(t, (b, h * reps, s, d))
        k, v = repeat(k), repeat(v)

    qk = dsl.matmul(q * root, dsl.transpose(k * root, (0, 1, 3, 2)))
    softcap = float(c.attr("softcap", 0.0) or 0.0)
    if softcap > 0:
        qk = dsl.tanh(qk / softcap) * softcap
    logits = qk if bias is None else qk + bias
    mode = int(c.attr("qk_matmul_output_mode", 0))
    qk_out = logits if mode == 2 else qk
    precision = c.attr("softmax_precision")
    sm_dt = c.imp.dtype_of(int(precision), c) if precision is not None else dt
    if sm_dt != dt:
        logits = dsl.cast(logits, sm_dt)
    masked_row = None
    if bias is not None:
        masked_row = dsl.max(bias, -1, keepdims=True) == neg_inf
    p = _safe_softmax(logits, masked_row)
    if sm_dt != dt:
        p = dsl.cast(p, dt)
    if mode == 3:
        qk_out = p
    y = dsl.matmul(p, v)
    if rank3:
        b, h, s, d = y.shape
        y = dsl.reshape(dsl.transpose(y, (0, 2, 1, 3)), (b, s, h * d if isinstance(d, int) and
                                                           isinstance(h, int) else -1))
    return [y, present_k, present_v, qk_out]


@handler("RotaryEmbedding")
def _rotary_embedding(c: _Ctx) -> Val:
    x, cos, sin = c.t(0), c.t(1), c.t(2)
    shape = x.shape
    if x.ndim == 4:  # (B, H, S, D) -> (B, S, H, D)
        x = dsl.transpose(x, (0, 2, 1, 3))
    else:
        heads = int(c.attr("num_heads", 0))
        if not heads or not isinstance(shape[2], int) or shape[2] % heads:
            raise c.fail(f"3-D input {tuple(shape)} needs num_heads that divides its hidden size")
        x = dsl.reshape(x, (shape[0], shape[1], heads, shape[2] // heads))
    head = x.shape[3]
    if not isinstance(head, int):
        raise c.fail(f"needs a static head size, got {head}")
    rot = int(c.attr("rotary_embedding_dim", 0)) or head
    half = rot // 2
    if c.has(3):  # caches indexed by position
        pos = c.t(3)
        cos, sin = dsl.take(cos, pos, 0), dsl.take(sin, pos, 0)
    cos, sin = dsl.expand_dims(cos, 2), dsl.expand_dims(sin, 2)  # (B, S, 1, half)
    xr = dsl.slice(x, [0], [rot], [3])
    if c.attr("interleaved", 0):
        x1, x2 = dsl.slice(xr, [0], [rot], [3], [2]), dsl.slice(xr, [1], [rot], [3], [2])
    else:
        x1, x2 = dsl.slice(xr, [0], [half], [3]), dsl.slice(xr, [half], [rot], [3])
    real, imag = cos * x1 - sin * x2, sin * x1 + cos * x2
    if c.attr("interleaved", 0):
        b, s, h = x.shape[:3]
        xr = dsl.reshape(dsl.stack([real, imag], -1), (b, s, h, rot))
    else:
        xr = dsl.concat([real, imag], 3)
    y = dsl.concat([xr, dsl.slice(x, [rot], [head], [3])], 3) if rot < head else xr
    return dsl.transpose(y, (0, 2, 1, 3)) if len(shape) == 4 else dsl.reshape(y, shape)
