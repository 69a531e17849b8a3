"""mask_by_multiply: the ReLU gradient `where(relu(x) > 0, g, 0) -> g * cast(relu(x) > 0)`.

onnxruntime's CPU Where is a general three-way broadcast: on LeNet-5's 64x6x28x28 mask it took
2.2 ms against 0.35 ms for Greater + Cast + Mul, and on the MLP 14% of the step. The product
equals the selection for every finite g (a masked negative g gives -0.0, which adds like 0.0);
a masked inf or NaN in g would give NaN instead of 0. So the rule only takes selections that
autodiff made (origin "grad of ...") on a ReLU's output, never a user's `where(x > 0, log(x), 0)`,
and it runs on training steps ("fuse-step") only, not in `gc.grad`.
"""
from __future__ import annotations

from ..frontends import dsl
from ..ir.graph import Graph
from .pipeline import register_pass
from .rewrite import Match, RewriteStats, apply_rules, rule


def _gradient_mask(m: Match) -> bool:
    """A float selection that autodiff made (the ReLU rule's), not one the user wrote."""
    return (m.values["g"].type.is_float and m.values["x"].type.dtype == m.values["g"].type.dtype
            and (m.root.origin or "").startswith("grad of "))


@rule(lambda x, g: dsl.where(dsl.apply("relu", [x]) > 0.0, g, 0.0), when=_gradient_mask)
def mask_by_multiply_rule(m: Match, x: dsl.Tensor, g: dsl.Tensor) -> dsl.Tensor:
    """where(relu(x) > 0, g, 0) -> g * cast(relu(x) > 0, dtype of g)"""
    mask = dsl.Tensor(m.root.inputs[0])  # the matched relu(x) > 0, not a copy of it
    return g * dsl.cast(mask, g.dtype)


#: what the last run did (`last_stats.changed`: whether a mask was rewritten)
last_stats: RewriteStats | None = None


@register_pass("mask_by_multiply")
def mask_by_multiply(graph: Graph) -> Graph:
    """A copy of `graph` with ReLU-gradient selections written as products with the mask."""
    global last_stats
    out, last_stats = apply_rules(graph, [mask_by_multiply_rule])
    return out


__all__ = ["mask_by_multiply"]
