"""Composite functions written in the DSL from primitives, named as in torch.nn.functional.

Composites need no gradient rule or lowering of their own: they are made of primitives.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from ..ir.errors import GraphBuildError, user_frame
from ..ir.roles import RNG_COUNTER_NAME, RNG_SEED_NAME, Role
from . import dsl
from .dsl import Tensor, _tensor, apply


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, (int, np.integer)) else tuple(int(x) for x in v)  # type: ignore


def logsumexp(x, axis=-1, keepdims: bool = False) -> Tensor:
    """log(sum(exp(x))) along axis, shifted by the (gradient-free) max for stability."""
    x = _tensor(x)
    m = dsl.stop_gradient(dsl.max(x, axis, keepdims=True))
    out = dsl.log(dsl.sum(dsl.exp(x - m), axis, keepdims=True)) + m
    return out if keepdims else dsl.squeeze(out, axis)


def softmax(x, dim: int = -1) -> Tensor:
    """exp(x - max) / sum(exp(x - max)) along dim."""
    x = _tensor(x)
    e = dsl.exp(x - dsl.stop_gradient(dsl.max(x, dim, keepdims=True)))
    return e / dsl.sum(e, dim, keepdims=True)


def log_softmax(x, dim: int = -1) -> Tensor:
    """x - logsumexp(x) along dim."""
    return x - logsumexp(x, dim, keepdims=True)


def leaky_relu(x, negative_slope: float = 0.01) -> Tensor:
    """x if x > 0 else negative_slope * x."""
    x = _tensor(x)
    return dsl.where(x > 0, x, x * negative_slope)


def gelu(x, approximate: str = "none") -> Tensor:
    """x * Phi(x) (exact, with erf) or its tanh approximation."""
    x = _tensor(x)
    if approximate == "tanh":
        return 0.5 * x * (1 + dsl.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x * x * x)))
    if approximate != "none":
        raise GraphBuildError(f"{user_frame()}: gelu: approximate must be 'none' or 'tanh'")
    return 0.5 * x * (1 + dsl.erf(x * (1 / math.sqrt(2))))


def silu(x) -> Tensor:
    """x * sigmoid(x)."""
    return x * dsl.sigmoid(x)


def linear(x, weight, bias=None) -> Tensor:
    """x @ weight.T + bias, weight laid out (out_features, in_features) as in PyTorch."""
    y = dsl.matmul(x, dsl.transpose(weight))
    return y if bias is None else y + bias


def layer_norm(x, normalized_shape, weight=None, bias=None, eps: float = 1e-5) -> Tensor:
    """(x - mean) / sqrt(var + eps) * weight + bias over the last len(normalized_shape) dims."""
    x = _tensor(x)
    n = 1 if isinstance(normalized_shape, int) else len(tuple(normalized_shape))
    axes = tuple(range(x.ndim - n, x.ndim))
    mu = dsl.mean(x, axes, keepdims=True)
    xc = x - mu
    var = dsl.mean(xc * xc, axes, keepdims=True)
    y = xc / dsl.sqrt(var + eps)
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups: int = 1) -> Tensor:
    """2-D convolution over NCHW (torch.nn.functional.conv2d)."""
    y = apply("conv2d", [x, weight], {"stride": _pair(stride), "padding": _pair(padding),
                                      "dilation": _pair(dilation), "groups": int(groups)})
    return y if bias is None else y + dsl.reshape(bias, (1, -1, 1, 1))


def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups: int = 1,
                     dilation=1) -> Tensor:
    """Transposed 2-D convolution (torch.nn.functional.conv_transpose2d)."""
    y = apply("conv_transpose2d", [x, weight], {
        "stride": _pair(stride), "padding": _pair(padding), "output_padding": _pair(output_padding),
        "dilation": _pair(dilation), "groups": int(groups)})
    return y if bias is None else y + dsl.reshape(bias, (1, -1, 1, 1))


def max_pool2d(x, kernel_size, stride=None, padding=0) -> Tensor:
    """Max over kernel_size windows (stride defaults to kernel_size)."""
    k = _pair(kernel_size)
    return apply("max_pool2d", [x], {"kernel_size": k, "stride": _pair(stride) if stride else k,
                                     "padding": _pair(padding)})


def avg_pool2d(x, kernel_size, stride=None, padding=0, count_include_pad: bool = True) -> Tensor:
    """Mean over kernel_size windows (stride defaults to kernel_size)."""
    k = _pair(kernel_size)
    return apply("avg_pool2d", [x], {"kernel_size": k, "stride": _pair(stride) if stride else k,
                                     "padding": _pair(padding),
                                     "count_include_pad": bool(count_include_pad)})


def rng_inputs(graph=None) -> tuple[Tensor, Tensor]:
    """The graph's (rng_seed, rng_step) int64 scalar inputs, declared on first use."""
    g = graph or dsl._graph_for([])
    seed, counter = g.role_input(Role.RNG_SEED), g.role_input(Role.RNG_COUNTER)
    if seed is None:
        seed = g.add_input(RNG_SEED_NAME, dsl.TensorType((), "int64"), Role.RNG_SEED)
    if counter is None:
        counter = g.add_input(RNG_COUNTER_NAME, dsl.TensorType((), "int64"), Role.RNG_COUNTER)
    return Tensor(seed), Tensor(counter)


def dropout(x, p: float = 0.5, training: bool = True, seed=None, step=None) -> Tensor:
    """Zeroes elements with probability p and scales the rest by 1/(1-p).

    The mask is a pure function of (seed, step, element index): `seed` and `step` default to the
    graph's `rng_seed` / `rng_step` inputs, so masks replay on every backend and after a resume.
    """
    x = _tensor(x)
    if not 0 <= p < 1:
        raise GraphBuildError(f"{user_frame()}: dropout: p must be in [0, 1), got {p}")
    if not training or p == 0:
        return x
    if seed is None or step is None:
        s, c = rng_inputs(x.graph)
        seed, step = seed if seed is not None else s, step if step is not None else c
    # each dropout site draws its own stream: the site number is how many draws the graph has
    draw = dsl.get_op("random_uniform")
    site = sum(1 for n in x.graph.nodes if n.op is draw)
    if site:
        seed = seed + dsl.constant(np.int64(site * 1000003), graph=x.graph)
    u = dsl.random_uniform(seed, step, x.shape, x.dtype)
    return dsl.where(u >= p, x * (1.0 / (1.0 - p)), 0.0)


def one_hot(labels, num_classes: int, dtype: str = "float32") -> Tensor:
    """1.0 where the class index equals the label, along a new last axis."""
    labels = _tensor(labels)
    classes = dsl.constant(np.arange(num_classes, dtype=labels.dtype), graph=labels.graph)
    return dsl.cast(dsl.expand_dims(labels, -1) == classes, dtype)


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return dsl.mean(loss)
    if reduction == "sum":
        return dsl.sum(loss)
    if reduction == "none":
        return loss
    raise GraphBuildError(f"{user_frame()}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def cross_entropy(logits, target, reduction: str = "mean", label_smoothing: float = 0.0) -> Tensor:
    """Softmax cross-entropy of (N, C) logits against int class labels (or probabilities)."""
    logits = _tensor(logits)
    logp = log_softmax(logits, -1)
    target = _tensor(target) if isinstance(target, Tensor) else target
    if isinstance(target, Tensor) and target.dtype in ("int32", "int64"):
        if target.ndim != logits.ndim - 1:
            raise GraphBuildError(f"{user_frame()}: cross_entropy: labels {tuple(target.shape)} do not "
                                  f"match logits {tuple(logits.shape)}")
        c = logits.shape[-1]
        q = one_hot(target, c, logits.dtype)
    else:
        q = target
    if label_smoothing:
        q = q * (1 - label_smoothing) + label_smoothing / logits.shape[-1]
    return _reduce(-dsl.sum(q * logp, -1), reduction)


def nll_loss(log_probs, target, reduction: str = "mean") -> Tensor:
    """-log_probs[target] averaged: the negative log likelihood of int labels."""
    log_probs = _tensor(log_probs)
    q = one_hot(target, log_probs.shape[-1], log_probs.dtype)
    return _reduce(-dsl.sum(q * log_probs, -1), reduction)


def mse_loss(input, target, reduction: str = "mean") -> Tensor:
    """mean((input - target)^2)."""
    d = _tensor(input) - target
    return _reduce(d * d, reduction)


def binary_cross_entropy_with_logits(logits, target, reduction: str = "mean") -> Tensor:
    """BCE on logits, computed stably: softplus(z) - z*t."""
    z = _tensor(logits)
    # softplus is z + log(1 + e^-z) for z >= 0 and log(1 + e^z) below: each branch smooth where
    # taken, so the gradient at z = 0 is exact (max(z, 0) + log(1 + e^-|z|) has two kinks there
    # whose subgradients add up wrong), and exp sees only values <= 0 (no overflow)
    pos = z >= 0
    zp, zn = dsl.where(pos, z, 0.0), dsl.where(pos, 0.0, z)
    softplus = dsl.where(pos, zp + dsl.log(1 + dsl.exp(-zp)), dsl.log(1 + dsl.exp(zn)))
    return _reduce(softplus - z * target, reduction)


def clip(x, a_min=None, a_max=None) -> Tensor:
    """x limited to [a_min, a_max] (numpy.clip)."""
    x = _tensor(x)
    if a_min is not None:
        x = dsl.maximum(x, a_min)
    if a_max is not None:
        x = dsl.minimum(x, a_max)
    return x


def zeros_like(x) -> Tensor:
    """Zeros of x's shape and dtype."""
    x = _tensor(x)
    return dsl.broadcast_to(dsl.constant(np.zeros((), x.dtype), graph=x.graph), x.shape)


def ones_like(x) -> Tensor:
    """Ones of x's shape and dtype."""
    x = _tensor(x)
    return dsl.broadcast_to(dsl.constant(np.ones((), x.dtype), graph=x.graph), x.shape)


def norm(x, axis=None, keepdims: bool = False, eps: float = 0.0) -> Tensor:
    """The L2 norm sqrt(sum(x^2)) (eps added under the root keeps its gradient finite at 0)."""
    x = _tensor(x)
    s = dsl.sum(x * x, axis, keepdims) + eps
    # sqrt'(0) is infinite: take the root of a safe value where s == 0 so no NaN leaks back
    pos = s > 0
    return dsl.where(pos, dsl.sqrt(dsl.where(pos, s, 1.0)), 0.0)


__all__: Sequence[str] = [n for n in dir() if not n.startswith("_") and n not in (
    "annotations", "math", "np", "Any", "Sequence", "GraphBuildError", "user_frame", "dsl", "Tensor",
    "apply")]
_ = Any
