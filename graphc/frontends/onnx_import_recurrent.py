"""ONNX import of the stateful sequence ops of opset 27 (LinearAttention, CausalConvWithState)
and ai.onnx.preview's FlexAttention, as graphc composites with the arithmetic of onnx's
reference (float32 state and softmax for float16 / bfloat16 data).

LinearAttention's recurrence is unrolled over the (static) sequence length: each step is a few
small matmuls on the running (d_k, d_v) state per head.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from . import dsl
from .dsl import Tensor
from .onnx_import_attention import _heads
from .onnx_import_ops import Val, handler

if TYPE_CHECKING:  # pragma: no cover
    from .onnx_import import _Ctx


def _f32(x: Tensor) -> Tensor:
    """x in float32 (the reference computes the recurrences in float32, whatever the dtype)."""
    return dsl.cast(x, "float32") if x.dtype != "float32" else x


def _repeat_heads(x: Tensor, times: int) -> Tensor:
    """(B, H, ...) -> (B, H*times, ...), each head repeated `times` times in a row (np.repeat)."""
    if times == 1:
        return x
    shape = tuple(x.shape)
    rep = dsl.broadcast_to(dsl.expand_dims(x, 2), shape[:2] + (times,) + shape[2:])
    return dsl.reshape(rep, (shape[0], shape[1] * times) + shape[2:])


# ---- LinearAttention ----------------------------------------------------------------------------

_RULES = ("linear", "gated", "delta", "gated_delta")


@handler("LinearAttention")
def _linear_attention(c: _Ctx) -> Sequence[Val]:
    rule = c.only("update_rule", _RULES, "gated_delta")
    gating, delta = rule in ("gated", "gated_delta"), rule in ("delta", "gated_delta")
    hq, hkv = c.attr("q_num_heads"), c.attr("kv_num_heads")
    if hq is None or hkv is None or hq <= 0 or hkv <= 0 or hq % hkv:
        raise c.fail(f"q_num_heads ({hq}) must be a positive multiple of kv_num_heads ({hkv})")
    if gating != c.has(4):
        raise c.fail(f"update_rule {rule!r} {'needs' if gating else 'forbids'} the decay input")
    if delta != c.has(5):
        raise c.fail(f"update_rule {rule!r} {'needs' if delta else 'forbids'} the beta input")
    query, key, value = c.t(0), c.t(1), c.t(2)
    if any(x.type.rank != 3 for x in (query, key, value)):
        raise c.fail("query, key and value must be rank 3 (B, T, H*D)")
    b, t = query.shape[0], query.shape[1]
    if not isinstance(t, int):
        raise c.fail(f"needs a static sequence length, got {t}")
    q = _f32(_heads(c, query, hq))
    k = _f32(_heads(c, key, hkv))
    v = _f32(_heads(c, value, hkv))
    dk, dv = q.shape[3], v.shape[3]
    if gating:
        decay = c.t(4)
        last = decay.shape[2]
        if last == hkv:  # one gate per head: (B, T, H) -> (B, H, T, 1)
            g4 = dsl.transpose(dsl.reshape(decay, (b, t, hkv, 1)), (0, 2, 1, 3))
        elif last == hkv * dk:  # one per key dim
            g4 = _heads(c, decay, hkv)
        else:
            raise c.fail(f"decay's last dim {last} must be kv_num_heads ({hkv}) or "
                         f"kv_num_heads*d_k ({hkv * dk})")
        g4 = dsl.exp(_f32(g4))
    if delta:
        beta = c.t(5)
        if beta.shape[2] not in (hkv, 1):
            raise c.fail(f"beta's last dim {beta.shape[2]} must be kv_num_heads ({hkv}) or 1")
        beta4 = _f32(dsl.transpose(dsl.reshape(beta, (b, t, beta.shape[2], 1)), (0, 2, 1, 3)))
    if c.has(3):
        past = c.t(3)
        if tuple(past.shape) != (b, hkv, dk, dv):
            raise c.fail(f"past_state has shape {tuple(past.shape)}, expected "
                         f"{(b, hkv, dk, dv)}")
        state, state_dtype = _f32(past), past.dtype
    else:
        state = dsl.broadcast_to(dsl.constant(np.zeros((), q.dtype)), (b, hkv, dk, dv))
        state_dtype = query.dtype
    scale = c.attr("scale")
    scale = float(1.0 / np.sqrt(dk)) if not scale else float(scale)
    outs = []
    for i in range(t):
        def step(x: Tensor) -> Tensor:  # (B, H, T, D) -> (B, H, 1, D) at time i
            return dsl.slice(x, (i,), (i + 1,), (2,))
        k_t, v_t = step(k), step(v)
        if gating:  # the state decays by exp(g_t) along its key dim
            state = state * dsl.swapaxes(step(g4), 2, 3)
        if delta:  # v_t <- beta_t * (v_t - S^T k_t)
            v_t = step(beta4) * (v_t - dsl.matmul(k_t, state))
        state = state + dsl.matmul(dsl.swapaxes(k_t, 2, 3), v_t)
        outs.append(dsl.matmul(step(q), _repeat_heads(state, hq // hkv)) * np.float32(scale))
    out = dsl.concat(outs, 2) if len(outs) > 1 else outs[0]
    out = dsl.reshape(dsl.transpose(out, (0, 2, 1, 3)), (b, t, hq * dv))
    return [dsl.cast(out, query.dtype) if out.dtype != query.dtype else out,
            dsl.cast(state, state_dtype) if state.dtype != state_dtype else state]


# ---- CausalConvWithState ------------------------------------------------------------------------

@handler("CausalConvWithState")
def _causal_conv_with_state(c: _Ctx) -> Sequence[Val]:
    act = c.only("activation", ("none", "silu", "swish"), "none")
    x, w = c.t(0), c.t(1)
    if x.type.rank != 3 or w.type.rank != 3:
        raise c.fail("input must be (batch, channels, length) and weight (channels, 1, k)")
    bsz, ch, _ = x.shape
    k = w.shape[2]
    if not isinstance(k, int) or tuple(w.shape[:2]) != (ch, 1):
        raise c.fail(f"weight has shape {tuple(w.shape)}; a depthwise kernel is ({ch}, 1, k)")
    past = c.t(3) if c.has(3) else \
        dsl.broadcast_to(dsl.constant(np.zeros((), x.dtype)), (bsz, ch, k - 1))
    padded = dsl.concat([past, x], 2) if k > 1 else x
    n = padded.shape[2]
    length = x.shape[2]
    # depthwise valid convolution: the sum over taps j of w[:, 0, j] * padded[..., j:j+L]
    y = None
    for j in range(k):
        tap = dsl.slice(padded, (j,), (n - (k - 1) + j,), (2,)) if k > 1 else padded
        term = tap * dsl.reshape(dsl.slice(w, (j,), (j + 1,), (2,)), (ch, 1))
        y = term if y is None else y + term
    if c.has(2):
        y = y + dsl.reshape(c.t(2), (ch, 1))
    if act != "none":
        y32 = _f32(y)
        y32 = y32 * dsl.sigmoid(y32)
        y = dsl.cast(y32, y.dtype) if y32.dtype != y.dtype else y32
    state = dsl.slice(padded, (n - (k - 1),), (n,), (2,)) if k > 1 else \
        dsl.slice(padded, (length,), (length,), (2,))
    return [y, state]


# ---- FlexAttention (ai.onnx.preview) ------------------------------------------------------------

_PRECISION = {1: "float32", 10: "float16", 16: "bfloat16", 11: "float64"}


@handler("ai.onnx.preview.FlexAttention")
def _flex_attention(c: _Ctx) -> Val:
    q, k, v = c.t(0), c.t(1), c.t(2)
    if any(x.type.rank != 4 for x in (q, k, v)):
        raise c.fail("Q, K and V must be rank 4 (batch, heads, sequence, head size)")
    hq, hkv = q.shape[1], k.shape[1]
    if hq != hkv:
        if hkv <= 0 or hq % hkv:
            raise c.fail(f"{hq} query heads are not a multiple of {hkv} key/value heads")
        k, v = _repeat_heads(k, hq // hkv), _repeat_heads(v, hq // hkv)
    scale = c.attr("scale")
    scale = 1.0 / np.sqrt(q.shape[3]) if scale is None else float(scale)
    root = np.asarray(np.sqrt(np.float32(scale)), q.dtype)
    scores = dsl.matmul(q * root, dsl.swapaxes(k * root, -1, -2))
    prec = c.attr("softmax_precision")
    if prec is not None and int(prec) not in _PRECISION:
        raise c.fail(f"softmax_precision {prec} is not supported")
    dt = _PRECISION[int(prec)] if prec is not None else \
        ("float32" if q.dtype in ("float16", "bfloat16") else q.dtype)
    scores = dsl.cast(scores, dt) if scores.dtype != dt else scores
    scores = _mod(c, "score_mod", scores)
    m = dsl.max(scores, -1, keepdims=True)
    e = dsl.exp(scores - m)
    probs = _mod(c, "prob_mod", e / dsl.sum(e, -1, keepdims=True))
    out = dsl.matmul(probs, dsl.cast(v, dt) if v.dtype != dt else v)
    return dsl.cast(out, v.dtype) if out.dtype != v.dtype else out


def _mod(c: _Ctx, name: str, x: Tensor) -> Tensor:
    """x through the node's `name` subgraph (one input, one output), when it has one."""
    gp = c.attr(name)
    if gp is None:
        return x
    if len(gp.input) != 1 or len(gp.output) != 1:
        raise c.fail(f"{name} must take one input and give one output")
    (y,) = c.imp.run_subgraph(gp, {gp.input[0].name: x}, name)
    y = y if isinstance(y, Tensor) else dsl.constant(np.asarray(y))
    if tuple(y.shape) != tuple(x.shape):
        y = dsl.broadcast_to(y, tuple(x.shape))
    return dsl.cast(y, x.dtype) if y.dtype != x.dtype else y
