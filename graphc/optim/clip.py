"""Gradient clipping by global norm, as graph code."""
from __future__ import annotations

from ..frontends import dsl
from ..frontends.dsl import Tensor


def clip_by_global_norm(grads: list[Tensor], max_norm: float, eps: float = 1e-6
                        ) -> tuple[list[Tensor], Tensor]:
    """`g *= min(1, max_norm / (||(g_1, ..., g_k)||_2 + eps))` (`torch.nn.utils.clip_grad_norm_`).

    Returns the clipped gradients and the total norm before clipping (a scalar tensor).
    """
    if not grads:
        return grads, None  # type: ignore[return-value]
    dt = grads[0].dtype
    sq = [dsl.sum(g * g) if g.dtype == dt else dsl.cast(dsl.sum(g * g), dt) for g in grads]
    total = sq[0]
    for s in sq[1:]:
        total = total + s
    total = dsl.sqrt(total)
    coef = dsl.minimum(max_norm / (total + eps), 1.0)
    return [g * (coef if g.dtype == dt else dsl.cast(coef, g.dtype)) for g in grads], total
