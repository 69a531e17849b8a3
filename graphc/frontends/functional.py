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
from .dsl import Tensor, _tensor, apply, one_of


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, (int, np.integer)) else tuple(int(x) for x in v)  # type: ignore


def logsumexp(x, axis=None, keepdims=None, *, dim=None, keepdim=None) -> Tensor:
    """log(sum(exp(x))) along `axis` / `dim` (default -1), shifted by the (gradient-free) max.

    Returns:
        The reduced Tensor (keepdims / keepdim keeps the axis). Example:
        ``gc.logsumexp(x, dim=1)``.
    """
    x = _tensor(x)
    axis = one_of("logsumexp", axis, dim, default=-1)
    keepdims = one_of("logsumexp", keepdims, keepdim, ("keepdims", "keepdim"), False)
    m = dsl.stop_gradient(dsl.max(x, axis, keepdims=True))
    out = dsl.log(dsl.sum(dsl.exp(x - m), axis, keepdims=True)) + m
    return out if keepdims else dsl.squeeze(out, axis)


def softmax(x, dim=None, *, axis=None) -> Tensor:
    """exp(x - max) / sum(exp(x - max)) along `dim` / `axis` (default -1).

    Example: ``p = gc.softmax(logits, dim=-1)`` (or ``axis=-1``, scipy's name).
    """
    x = _tensor(x)
    dim = one_of("softmax", axis, dim, default=-1)
    e = dsl.exp(x - dsl.stop_gradient(dsl.max(x, dim, keepdims=True)))
    return e / dsl.sum(e, dim, keepdims=True)


def log_softmax(x, dim=None, *, axis=None) -> Tensor:
    """x - logsumexp(x) along `dim` / `axis` (default -1)."""
    return x - logsumexp(x, one_of("log_softmax", axis, dim, default=-1), keepdims=True)


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


def _same_padding(fn: str, kernel: Sequence[int], dilation: Sequence[int],
                  stride: Sequence[int]) -> tuple[int, ...]:
    """The symmetric padding of padding="same" (stride 1, an odd dilated kernel)."""
    if any(s != 1 for s in stride) or any(d * (k - 1) % 2 for d, k in zip(dilation, kernel)):
        raise GraphBuildError(f"{user_frame()}: {fn}: padding='same' needs stride 1 and an odd "
                              "(dilated) kernel")
    return tuple(d * (k - 1) // 2 for d, k in zip(dilation, kernel))


def conv1d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups: int = 1) -> Tensor:
    """1-D convolution over (N, C, L) with weight (O, C / groups, k) (torch.nn.functional.conv1d).

    A composite: conv2d on a size-1 height axis. `padding` is an int, "valid" or "same".

    Returns:
        (N, O, L_out). Example: ``y = gc.conv1d(x, w, b, padding=1)``.
    """
    x, w = _tensor(x), _tensor(weight)
    if x.ndim != 3 or w.ndim != 3:
        raise GraphBuildError(f"{user_frame()}: conv1d: needs x (N, C, L) and weight (O, C/groups, k), "
                              f"got {tuple(x.shape)} and {tuple(w.shape)}")
    s, d = _single(stride), _single(dilation)
    if padding == "valid":
        p = 0
    elif padding == "same":
        p = _same_padding("conv1d", (int(w.shape[2]),), (d,), (s,))[0]
    else:
        p = _single(padding)
    y = conv2d(dsl.expand_dims(x, 2), dsl.expand_dims(w, 2), None, (1, s), (0, p), (1, d), groups)
    y = dsl.squeeze(y, 2)
    return y if bias is None else y + dsl.reshape(bias, (1, -1, 1))


def _single(v) -> int:
    if isinstance(v, (tuple, list)):
        if len(v) != 1:
            raise GraphBuildError(f"{user_frame()}: expected one int or a 1-tuple, got {v!r}")
        v = v[0]
    return int(v)


def _adaptive_matrix(n_in: int, n_out: int, dtype: str) -> np.ndarray:
    """(n_out, n_in): row i averages torch's bin [floor(i n_in / n_out), ceil((i+1) n_in / n_out))."""
    m = np.zeros((n_out, n_in), dtype)
    for i in range(n_out):
        lo, hi = (i * n_in) // n_out, -(-((i + 1) * n_in) // n_out)
        m[i, lo:hi] = 1.0 / (hi - lo)
    return m


def adaptive_avg_pool2d(x, output_size) -> Tensor:
    """Mean over torch's adaptive bins of (N, C, H, W) or (C, H, W) to `output_size` (int, pair;
    None keeps that dim), as torch.nn.functional.adaptive_avg_pool2d.

    A composite: a mean for (1, 1), avg_pool2d where the sizes divide, otherwise two constant
    averaging matrices (bins of unequal or overlapping width). H and W must be static.

    Returns:
        (..., out_h, out_w). Example: ``gc.adaptive_avg_pool2d(x, 1)``.
    """
    x = _tensor(x)
    if x.ndim not in (3, 4):
        raise GraphBuildError(f"{user_frame()}: adaptive_avg_pool2d: needs (N, C, H, W) or (C, H, W), "
                              f"got {tuple(x.shape)}")
    h, w = x.shape[-2:]
    if not (isinstance(h, int) and isinstance(w, int)):
        raise GraphBuildError(f"{user_frame()}: adaptive_avg_pool2d: H and W must be static, got "
                              f"{tuple(x.shape)}")
    size = (output_size, output_size) if not isinstance(output_size, (tuple, list)) else output_size
    oh, ow = (h if size[0] is None else int(size[0])), (w if size[1] is None else int(size[1]))
    if oh <= 0 or ow <= 0:
        raise GraphBuildError(f"{user_frame()}: adaptive_avg_pool2d: output_size must be positive, "
                              f"got {output_size!r}")
    if (oh, ow) == (h, w):
        return x
    if (oh, ow) == (1, 1):
        return dsl.mean(x, (-2, -1), keepdims=True)
    if h % oh == 0 and w % ow == 0:
        k = (h // oh, w // ow)
        x4 = x if x.ndim == 4 else dsl.expand_dims(x, 0)
        y = avg_pool2d(x4, k, k)
        return y if x.ndim == 4 else dsl.squeeze(y, 0)
    ph = dsl.constant(_adaptive_matrix(h, oh, x.dtype), graph=x.graph)
    pw = dsl.constant(_adaptive_matrix(w, ow, x.dtype).T.copy(), graph=x.graph)
    return dsl.matmul(dsl.matmul(ph, x), pw)


def group_norm(x, num_groups: int, weight=None, bias=None, eps: float = 1e-5) -> Tensor:
    """(x - mean) / sqrt(var + eps) per sample over each group of channels of (N, C, *), then
    * weight + bias per channel (torch.nn.functional.group_norm). A composite of reshape and
    means; the variance is the biased one, as in torch.

    Returns:
        x's shape. Example: ``gc.group_norm(x, 4, w, b)``.
    """
    x = _tensor(x)
    if x.ndim < 2:
        raise GraphBuildError(f"{user_frame()}: group_norm: needs (N, C, *), got {tuple(x.shape)}")
    c = x.shape[1]
    if not isinstance(c, int) or c % int(num_groups):
        raise GraphBuildError(f"{user_frame()}: group_norm: {c} channels do not split into "
                              f"{num_groups} groups")
    xs = dsl.reshape(x, (x.shape[0], int(num_groups), -1))
    mu = dsl.mean(xs, -1, keepdims=True)
    xc = xs - mu
    var = dsl.mean(xc * xc, -1, keepdims=True)
    y = dsl.reshape(xc / dsl.sqrt(var + eps), x.shape)
    bshape = (1, c) + (1,) * (x.ndim - 2)
    if weight is not None:
        y = y * dsl.reshape(weight, bshape)
    if bias is not None:
        y = y + dsl.reshape(bias, bshape)
    return y


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


def declare_label_range(labels: Any, num_classes: Any, what: str,
                        ignore_index: int | None = None) -> None:
    """Gives integer `labels` that are a graph input the value range [0, num_classes).

    Every feed of that input is then checked (`graphc.ir.feeds`): an out-of-range label is an
    error naming the input, the label and its index, instead of a silently zero one-hot row.
    A range the user declared is narrowed, never widened. Labels computed inside the graph, or a
    symbolic class count, are left alone.

    Raises:
        GraphBuildError: the declared range and [0, num_classes) do not overlap.

    `ignore_index` is one more value the labels may take (a loss's padding label).

    Example: ``declare_label_range(y, 10, "my_loss")`` -> `y.value.range` is [0, 10)
    """
    v = getattr(labels, "value", None)
    if (v is None or v.kind != "input" or not isinstance(num_classes, (int, np.integer))
            or not v.type.dtype.startswith(("int", "uint"))):
        return
    from ..ir.graph import ValueRange
    where = user_frame()
    origin = f"the class labels of {what} ({int(num_classes)} classes" + (f", {where})" if where else ")")
    if ignore_index is None:
        origin += f"; pass ignore_index= to {what} to skip a padding label"
    try:
        r = (ValueRange(0, int(num_classes), origin) if v.range is None
             else v.range.intersect(0, int(num_classes), origin))
        v.range = r if ignore_index is None else ValueRange(r.lo, r.hi, r.origin, ignore_index)
    except ValueError as exc:
        raise GraphBuildError(f"{where}: {what}: input {v.name!r} was declared with range "
                              f"{v.range}, but the loss has {num_classes} classes: {exc}") from None


def cross_entropy(logits, target, reduction: str = "mean", label_smoothing: float = 0.0,
                  ignore_index: int | None = None) -> Tensor:
    """Softmax cross-entropy of (N, C) logits against int class labels (or probabilities).

    Integer labels that are a graph input get the value range [0, C) (see `gc.spec`), so every
    batch fed to the compiled graph or a training step is checked: a label outside raises a
    FeedError naming the input, the label and its index.

    If an out-of-range label reaches this graph anyway (labels computed in the graph, or a
    backend run without the check), its one-hot row is all zeros: that example contributes 0 to
    the summed loss and gets a zero gradient, while reduction="mean" still divides by N (with
    label smoothing, only the smoothing term is left for it). The fused training step computes
    the same.

    `ignore_index` has torch's meaning: examples with that label contribute nothing, and
    reduction="mean" divides by the number of the other examples. Its default is None, not
    torch's -100: labels are checked where data enters, so a -100 label raises (naming this
    option) instead of being skipped unasked.

    Returns:
        The loss: a scalar ("mean", "sum") or one value per example ("none").

    Raises:
        GraphBuildError: labels whose shape does not match the logits, a bad reduction.

    Example: ``loss = gc.cross_entropy(logits, y)``
    """
    logits = _tensor(logits)
    logp = log_softmax(logits, -1)
    target = _tensor(target) if isinstance(target, Tensor) else target
    if isinstance(target, Tensor) and target.dtype in ("int32", "int64"):
        if target.ndim != logits.ndim - 1:
            raise GraphBuildError(f"{user_frame()}: cross_entropy: labels {tuple(target.shape)} do not "
                                  f"match logits {tuple(logits.shape)}")
        c = logits.shape[-1]
        declare_label_range(target, c, "cross_entropy", ignore_index)
        q = one_hot(target, c, logits.dtype)
    else:
        if ignore_index is not None:
            raise GraphBuildError(f"{user_frame()}: cross_entropy: ignore_index needs integer class "
                                  "labels, not probabilities")
        q = target
    if label_smoothing:
        q = q * (1 - label_smoothing) + label_smoothing / logits.shape[-1]
    per = -dsl.sum(q * logp, -1)
    return _reduce_ignoring(per, target, ignore_index, reduction)


def _reduce_ignoring(per: Tensor, target: Tensor, ignore_index: int | None, reduction: str
                     ) -> Tensor:
    """`per` reduced, leaving out examples labelled `ignore_index` (torch's ignore_index)."""
    if ignore_index is None:
        return _reduce(per, reduction)
    keep = dsl.cast(dsl.logical_not(dsl.equal(target, ignore_index)), per.dtype)
    per = per * keep
    if reduction == "mean":
        return dsl.sum(per) / dsl.sum(keep)
    return _reduce(per, reduction)


def nll_loss(log_probs, target, reduction: str = "mean", ignore_index: int | None = None) -> Tensor:
    """-log_probs[target] averaged: the negative log likelihood of int labels.

    Labels that are a graph input get the value range [0, C), checked on every feed (a FeedError
    names the input, the label and its index). If an out-of-range label reaches this graph
    anyway, its one-hot row is all zeros: the example contributes 0 to the summed loss and gets
    a zero gradient, while reduction="mean" still divides by N. `ignore_index` as for
    `cross_entropy` (torch's meaning; default None).

    Returns:
        The loss: a scalar ("mean", "sum") or one value per example ("none").

    Example: ``loss = gc.nll_loss(gc.log_softmax(logits), y)``
    """
    log_probs = _tensor(log_probs)
    declare_label_range(target, log_probs.shape[-1], "nll_loss", ignore_index)
    q = one_hot(target, log_probs.shape[-1], log_probs.dtype)
    return _reduce_ignoring(-dsl.sum(q * log_probs, -1), _tensor(target), ignore_index, reduction)


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
    """x limited to [a_min, a_max] (numpy.clip); either bound may be None."""
    return dsl._clamp(x, a_min, a_max)


def clamp(x, min=None, max=None) -> Tensor:
    """x limited to [min, max] (torch.clamp); either bound may be None.

    Example: ``gc.clamp(p, min=1e-7)``.
    """
    return dsl._clamp(x, min, max)


def zeros_like(x) -> Tensor:
    """Zeros of x's shape and dtype."""
    x = _tensor(x)
    return dsl.broadcast_to(dsl.constant(np.zeros((), x.dtype), graph=x.graph), x.shape)


def ones_like(x) -> Tensor:
    """Ones of x's shape and dtype."""
    x = _tensor(x)
    return dsl.broadcast_to(dsl.constant(np.ones((), x.dtype), graph=x.graph), x.shape)


def norm(x, axis=None, keepdims=None, eps: float = 0.0, *, dim=None, keepdim=None) -> Tensor:
    """The L2 norm sqrt(sum(x^2)) over `axis` / `dim` (None: all); eps added under the root keeps
    its gradient finite at 0."""
    x = _tensor(x)
    axis = one_of("norm", axis, dim)
    keepdims = one_of("norm", keepdims, keepdim, ("keepdims", "keepdim"), False)
    s = dsl.sum(x * x, axis, keepdims) + eps
    # sqrt'(0) is infinite: take the root of a safe value where s == 0 so no NaN leaks back
    pos = s > 0
    return dsl.where(pos, dsl.sqrt(dsl.where(pos, s, 1.0)), 0.0)


__all__: Sequence[str] = [n for n in dir() if not n.startswith("_") and n not in (
    "annotations", "math", "np", "Any", "Sequence", "GraphBuildError", "user_frame", "dsl", "Tensor",
    "one_of",
    "apply")]
_ = Any
