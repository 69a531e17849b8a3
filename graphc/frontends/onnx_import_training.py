"""ONNX import of ai.onnx.preview.training's optimizer steps (Adagrad, Momentum, Adam) as
graphc composites: elementwise update rules, the step count T read at run time.

Each op updates one or more tensors with one rule: inputs R, T, then the tensors X1..Xn, their
gradients G1..Gn and their states (one or two per tensor); outputs the new tensors, then the new
states, in that order.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from . import dsl
from .dsl import Tensor
from .onnx_import_ops import Val, handler

if TYPE_CHECKING:  # pragma: no cover
    from .onnx_import import _Ctx

_DOMAIN = "ai.onnx.preview.training."


def _apply(c: _Ctx, n_states: int, rule: Callable[..., tuple[Tensor, ...]]) -> Sequence[Val]:
    """Runs `rule(r, t, x, g, *states)` on each tensor; returns the outputs in ONNX order."""
    per = 2 + n_states
    n, extra = divmod(len(c.inputs) - 2, per)
    if extra or n < 1:
        raise c.fail(f"takes R, T and {per} inputs per tensor, got {len(c.inputs)} inputs")
    r, t = c.t(0), c.t(1)
    if r.type.rank != 0 or t.type.rank != 0:
        raise c.fail(f"R and T must be scalars, got shapes {tuple(r.shape)} and {tuple(t.shape)}")
    outs = [rule(r, t, *(c.t(2 + k * n + i) for k in range(per))) for i in range(n)]
    return [o[j] for j in range(len(outs[0])) for o in outs]


def _like(v: float | Tensor, x: Tensor) -> Tensor:
    """A scalar (or a scalar tensor) in x's dtype."""
    if isinstance(v, Tensor):
        return v if v.dtype == x.dtype else dsl.cast(v, x.dtype)
    return dsl.constant(np.asarray(v, x.dtype))


@handler(_DOMAIN + "Adagrad")
def _adagrad(c: _Ctx) -> Sequence[Val]:
    decay = float(c.attr("decay_factor", 0.0))
    eps, norm = float(c.attr("epsilon", 0.0)), float(c.attr("norm_coefficient", 0.0))

    def rule(r, t, x, g, h):
        lr = _like(r, x) / (1.0 + _like(t, x) * decay)
        g = x * norm + g
        h_new = h + g * g
        return x - lr * g / (dsl.sqrt(h_new) + eps), h_new
    return _apply(c, 1, rule)


@handler(_DOMAIN + "Momentum")
def _momentum(c: _Ctx) -> Sequence[Val]:
    mode = c.only("mode", ("standard", "nesterov"), "standard")
    alpha, beta = c.attr("alpha"), c.attr("beta")
    if alpha is None or beta is None:
        raise c.fail("needs the attributes alpha and beta")
    norm = float(c.attr("norm_coefficient", 0.0))

    def rule(r, t, x, g, v):
        g = x * norm + g
        # the gradient's coefficient is 1 at the first step (T == 0)
        b = dsl.where(t > np.asarray(0, t.dtype), _like(float(beta), x), _like(1.0, x))
        v_new = v * float(alpha) + b * g
        step = v_new if mode == "standard" else g + v_new * float(alpha)
        return x - _like(r, x) * step, v_new
    return _apply(c, 1, rule)


@handler(_DOMAIN + "Adam")
def _adam(c: _Ctx) -> Sequence[Val]:
    alpha, beta = float(c.attr("alpha", 0.9)), float(c.attr("beta", 0.999))
    eps, norm = float(c.attr("epsilon", 0.0)), float(c.attr("norm_coefficient", 0.0))
    post = float(c.attr("norm_coefficient_post", 0.0))

    def rule(r, t, x, g, v, h):
        g = x * norm + g
        v_new = v * alpha + g * (1.0 - alpha)
        h_new = h * beta + (g * g) * (1.0 - beta)
        tf, lr = _like(t, x), _like(r, x)
        # bias correction from the first step on (T > 0); T == 0 takes R as it is
        corrected = lr * dsl.sqrt(1.0 - dsl.power(_like(beta, x), tf)) / \
            (1.0 - dsl.power(_like(alpha, x), tf))
        lr = dsl.where(t > np.asarray(0, t.dtype), corrected, lr)
        x_new = x - lr * (v_new / (dsl.sqrt(h_new) + eps))
        return x_new * (1.0 - post), v_new, h_new
    return _apply(c, 2, rule)
