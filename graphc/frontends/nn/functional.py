"""Activations, losses and layer functions for `graphc.nn`, named as in torch.nn.functional.

All are composites of graphc primitives (no gradient rules or lowerings of their own). Class
scores are on the LAST axis (for (N, C) logits this is PyTorch's layout too).
"""
from __future__ import annotations

import math

import numpy as np

from ...ir.errors import GraphBuildError, user_frame
from .. import dsl
from ..dsl import Tensor, _tensor
from ..functional import (_reduce, avg_pool2d, binary_cross_entropy_with_logits, conv2d,
                          cross_entropy, declare_label_range, dropout, gelu, layer_norm,
                          leaky_relu, linear, log_softmax, logsumexp, max_pool2d, mse_loss,
                          nll_loss, one_hot, ones_like, silu, softmax)
from ..functional import adaptive_avg_pool2d, conv1d, conv_transpose2d, group_norm

sigmoid, tanh, relu = dsl.sigmoid, dsl.tanh, dsl.relu


def elu(x, alpha: float = 1.0) -> Tensor:
    """x if x > 0 else alpha * (exp(x) - 1)."""
    x = _tensor(x)
    return dsl.where(x > 0, x, alpha * (dsl.exp(dsl.minimum(x, 0.0)) - 1.0))


def softplus(x, beta: float = 1.0) -> Tensor:
    """log(1 + exp(beta x)) / beta, computed stably."""
    x = _tensor(x) * beta
    return (dsl.relu(x) + dsl.log(1.0 + dsl.exp(-dsl.abs(x)))) * (1.0 / beta)


def l1_loss(input, target, reduction: str = "mean") -> Tensor:
    """mean(|input - target|)."""
    return _reduce(dsl.abs(_tensor(input) - target), reduction)


def huber_loss(input, target, reduction: str = "mean", delta: float = 1.0) -> Tensor:
    """0.5 d^2 where |d| < delta, else delta (|d| - delta / 2); d = input - target."""
    d = _tensor(input) - target
    a = dsl.abs(d)
    quad = dsl.minimum(a, delta)  # the quadratic part, so each branch stays finite
    return _reduce(0.5 * quad * quad + delta * (a - quad), reduction)


def smooth_l1_loss(input, target, reduction: str = "mean", beta: float = 1.0) -> Tensor:
    """Huber loss divided by beta (torch.nn.functional.smooth_l1_loss)."""
    if beta == 0:
        return l1_loss(input, target, reduction)
    return huber_loss(input, target, reduction, beta) * (1.0 / beta)


def binary_cross_entropy(input, target, reduction: str = "mean") -> Tensor:
    """-(t log p + (1 - t) log(1 - p)) on probabilities, each log clamped at -100 as in PyTorch."""
    p = _tensor(input)
    t = target
    return _reduce(-(t * dsl.maximum(dsl.log(p), -100.0)
                     + (1.0 - t) * dsl.maximum(dsl.log(1.0 - p), -100.0)), reduction)


def multi_margin_loss(input, target, p: int = 1, margin: float = 1.0,
                      reduction: str = "mean") -> Tensor:
    """sum_{j != y} max(0, margin - x[y] + x[j])^p / C per sample (torch's MultiMarginLoss)."""
    x = _tensor(input)
    if p not in (1, 2):
        raise GraphBuildError(f"{user_frame()}: multi_margin_loss: p must be 1 or 2, got {p}")
    c = x.shape[-1]
    declare_label_range(target, c, "multi_margin_loss")
    onehot = one_hot(target, c, x.dtype)
    xy = dsl.sum(x * onehot, -1, keepdims=True)
    m = dsl.relu(margin - xy + x) * (1.0 - onehot)
    if p == 2:
        m = m * m
    return _reduce(dsl.sum(m, -1) * (1.0 / c), reduction)


def multiclass_hinge_loss(input, target, margin: float = 1.0, reduction: str = "mean") -> Tensor:
    """The multiclass SVM loss: sum_{j != y} max(0, margin + x[j] - x[y]) per sample."""
    x = _tensor(input)
    per_sample = multi_margin_loss(x, target, 1, margin, "none") * float(x.shape[-1])
    return _reduce(per_sample, reduction)


def hinge_embedding_loss(input, target, margin: float = 1.0, reduction: str = "mean") -> Tensor:
    """x where t == 1, max(0, margin - x) where t == -1 (binary hinge with +-1 labels)."""
    x = _tensor(input)
    return _reduce(dsl.where(target > 0, x, dsl.relu(margin - x)), reduction)


def kl_div(input, target, reduction: str = "mean", log_target: bool = False) -> Tensor:
    """t (log t - input) pointwise, input being log-probabilities (torch.nn.functional.kl_div)."""
    x = _tensor(input)
    if log_target:
        out = dsl.exp(target) * (target - x)
    else:
        t = _tensor(target) if isinstance(target, Tensor) else dsl.constant(target, graph=x.graph)
        safe = dsl.where(t > 0, t, 1.0)
        out = dsl.where(t > 0, t * (dsl.log(safe) - x), 0.0)
    if reduction == "batchmean":
        return dsl.sum(out) * (1.0 / out.shape[0])
    return _reduce(out, reduction)


def batch_norm(x, running_mean, running_var, weight=None, bias=None, training: bool = False,
               momentum: float = 0.1, eps: float = 1e-5) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """(x - mean) / sqrt(var + eps) * weight + bias over all axes but 1 (channels).

    In training the batch's statistics normalize x; returns (y, new_running_mean,
    new_running_var), the running statistics moved by `momentum` towards the batch's mean and
    unbiased variance (None when no running statistics are given). In eval the running
    statistics normalize x.
    """
    x = _tensor(x)
    axes = tuple(a for a in range(x.ndim) if a != 1)
    bshape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    new_mean = new_var = None
    if training or running_mean is None:
        mu = dsl.mean(x, axes, keepdims=True)
        xc = x - mu
        var = dsl.mean(xc * xc, axes, keepdims=True)
        y = xc / dsl.sqrt(var + eps)
        if running_mean is not None:
            n = 1
            for a in axes:
                d = x.shape[a]
                if not isinstance(d, int):
                    n = None
                    break
                n *= d
            if n is None:  # symbolic batch: count the elements at run time
                count = dsl.sum(ones_like(x), axes)
                unbiased = var.reshape((x.shape[1],)) * (count / (count - 1.0))
            else:
                unbiased = var.reshape((x.shape[1],)) * (n / max(n - 1, 1))
            m = dsl.stop_gradient(mu.reshape((x.shape[1],)))
            u = dsl.stop_gradient(unbiased)
            new_mean = running_mean * (1.0 - momentum) + m * momentum
            new_var = running_var * (1.0 - momentum) + u * momentum
    else:
        rm = dsl.reshape(running_mean, bshape)
        rv = dsl.reshape(running_var, bshape)
        y = (x - rm) / dsl.sqrt(rv + eps)
    if weight is not None:
        y = y * dsl.reshape(weight, bshape)
    if bias is not None:
        y = y + dsl.reshape(bias, bshape)
    return y, new_mean, new_var


def embedding(indices, weight, padding_idx: int | None = None) -> Tensor:
    """Rows of `weight` at integer `indices` (rows at padding_idx are zero, with no gradient)."""
    idx = _tensor(indices)
    if idx.dtype not in ("int32", "int64"):
        raise GraphBuildError(f"{user_frame()}: embedding: indices must be int32/int64, got "
                              f"{idx.dtype}")
    out = dsl.take(weight, idx, 0)
    if padding_idx is not None:
        out = dsl.where(dsl.expand_dims(idx == padding_idx, -1), 0.0, out)
    return out


def scaled_dot_product_attention(q, k, v, attn_mask=None, dropout_p: float = 0.0,
                                 is_causal: bool = False, training: bool = True,
                                 scale: float | None = None) -> tuple[Tensor, Tensor]:
    """softmax(q k^T * scale + mask) v over the last two axes; returns (output, weights).

    `attn_mask`: bool (True = may attend, as in torch.nn.functional.scaled_dot_product_attention)
    or float (added to the scores), broadcast against (..., L, S).
    """
    q, k, v = _tensor(q), _tensor(k), _tensor(v)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = dsl.matmul(q * scale, dsl.swapaxes(k, -1, -2))
    L, S = scores.shape[-2], scores.shape[-1]
    if is_causal:
        allowed = np.tril(np.ones((L, S), bool))
        scores = dsl.where(dsl.constant(allowed, graph=q.graph), scores, -math.inf)
    if attn_mask is not None:
        mask = attn_mask if isinstance(attn_mask, Tensor) else dsl.constant(np.asarray(attn_mask),
                                                                            graph=q.graph)
        if mask.dtype == "bool":
            scores = dsl.where(mask, scores, -math.inf)
        else:
            scores = scores + dsl.cast(mask, scores.dtype)
    w = softmax(scores, -1)
    if dropout_p and training:
        w = dropout(w, dropout_p)
    return dsl.matmul(w, v), w


__all__ = [
    "sigmoid", "tanh", "relu", "leaky_relu", "gelu", "silu", "elu", "softplus", "softmax",
    "log_softmax", "logsumexp", "linear", "conv1d", "conv2d", "conv_transpose2d", "max_pool2d",
    "avg_pool2d", "adaptive_avg_pool2d", "dropout", "layer_norm", "batch_norm", "group_norm",
    "embedding", "scaled_dot_product_attention", "one_hot",
    "mse_loss", "l1_loss", "huber_loss", "smooth_l1_loss", "binary_cross_entropy",
    "binary_cross_entropy_with_logits", "cross_entropy", "nll_loss", "multi_margin_loss",
    "multiclass_hinge_loss", "hinge_embedding_loss", "kl_div",
]
