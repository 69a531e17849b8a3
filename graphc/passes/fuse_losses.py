"""fuse_losses: replaces the composite losses of graphc.nn.functional by fused loss primitives.

- `-sum(onehot(y) * log_softmax(z), -1)` (cross_entropy against int labels, with or without
  label smoothing) becomes `softmax_cross_entropy(z, q)`, and a `mean` / `sum` over all of its
  rows folds into the op's `reduction`;
- the stable BCE-with-logits composite becomes `bce_with_logits(z, t)`.

Run on a forward graph before autodiff, so the backward pass gets the fused ops' closed-form
gradients (`softmax(z) - q`, `sigmoid(z) - t`) instead of the chain rule through every piece of
the composite. The patterns are traced from the composites themselves, so they follow any change
to them. Results equal the composites' up to rounding (they are not in the bit-exact `simplify`),
for every target: the fused cross-entropy is `sum(q * (logsumexp(z) - z))`, so the all-zero
one-hot row of a label outside [0, C) gives 0 and a zero gradient, as the composite does.
"""
from __future__ import annotations

import numpy as np

from ..frontends import dsl
from ..frontends import functional as F
from ..ir.graph import Graph, Value
from ..ir.types import TensorType
from .pipeline import register_pass
from .rewrite import (Match, Pattern, RewriteStats, Rule, apply_rules, every_axis, last_axis, rule,
                      uniform_scalar)

_LABELS = {"y": TensorType(("N", 1), "int64"), "classes": TensorType(("C",), "int64")}

#: `one_hot(labels, C)` as graphc builds it: 1.0 where the label equals the class index
ONE_HOT = Pattern(lambda y, classes: dsl.cast(dsl.equal(y, classes), "float32"), types=_LABELS,
                  name="one_hot")
#: a label-smoothed one-hot: `one_hot * keep + spread`
SMOOTHED_ONE_HOT = Pattern(
    lambda y, classes, keep, spread: dsl.cast(dsl.equal(y, classes), "float32") * keep + spread,
    types={**_LABELS, "keep": (), "spread": ()}, name="smoothed_one_hot")


def _one_hot_of(m: Match, classes: int) -> bool:
    """True when the one-hot in `m` compares int labels (..., 1) with arange(classes)."""
    lab, arr = m.values["y"], m.literal("classes")
    return (arr is not None and arr.shape == (classes,) and np.array_equal(arr, np.arange(classes))
            and lab.type.dtype in ("int32", "int64") and lab.type.shape[-1:] == (1,))


def _unit_rows(q: Value, classes: int) -> bool:
    """True when every row of q provably sums to 1: a one-hot, or a label-smoothed one-hot."""
    m = ONE_HOT.match(q)
    if m is not None:
        return _one_hot_of(m, classes)
    m = SMOOTHED_ONE_HOT.match(q)
    if m is None or not _one_hot_of(m, classes):
        return False
    keep, spread = (uniform_scalar(m.literal(k)) for k in ("keep", "spread"))
    if keep is None or spread is None:
        return False
    eps = float(np.finfo(q.type.dtype).eps)
    return abs(float(keep) + classes * float(spread) - 1.0) <= 8 * eps


def _ce_when(m: Match) -> bool:
    z, q = m.values["z"], m.values["q"]
    c = z.type.shape[-1]
    return z.type.rank >= 1 and q.type == z.type and isinstance(c, int) and _unit_rows(q, c)


# every reduction of the composite runs over the last axis, keeping dims where the composite does
@rule(lambda z, q: -dsl.sum(q * F.log_softmax(z, -1), -1), when=_ce_when,
      attrs={"max": {"axes": last_axis()}, "sum": {"axes": last_axis()}}, traced_attrs=("keepdims",))
def softmax_cross_entropy_rows(m, z, q):
    """-sum(q * log_softmax(z), -1) -> softmax_cross_entropy(z, q)   (q a one-hot, maybe smoothed)"""
    return dsl.apply("softmax_cross_entropy", [z, q], {"reduction": "none"})


def _reduce_rule(op: str, single: set[str]) -> Rule:
    @rule(lambda z, q: dsl.apply(op, [dsl.apply("softmax_cross_entropy", [z, q],
                                                {"reduction": "none"})]),
          when=lambda m: m.nodes[0].output.name in single, name=f"{op}_softmax_cross_entropy",
          attrs={op: {"axes": every_axis()}}, traced_attrs=("reduction", "keepdims"))
    def fold(m, z, q):
        """reduce(softmax_cross_entropy(z, q)) -> softmax_cross_entropy(z, q, reduction)"""
        return dsl.apply("softmax_cross_entropy", [z, q], {"reduction": op})
    return fold


@rule(lambda z, t: F.binary_cross_entropy_with_logits(z, t, "none"))
def bce_with_logits_rule(m, z, t):
    """where(z >= 0, z + log(1 + e^-z), log(1 + e^z)) - z * t -> bce_with_logits(z, t)"""
    return dsl.apply("bce_with_logits", [z, t])


#: what the last run did (`last_stats.changed`: whether anything was fused)
last_stats: RewriteStats | None = None


@register_pass("fuse_losses")
def fuse_losses(graph: Graph) -> Graph:
    """A copy of `graph` with cross-entropy and BCE-with-logits composites fused into primitives.

    The composites' pieces are left for `eliminate_dead_code` (a pipeline runs it after).
    """
    global last_stats
    single = graph.single_use()
    rules = [softmax_cross_entropy_rows, bce_with_logits_rule,
             _reduce_rule("mean", single), _reduce_rule("sum", single)]
    out, last_stats = apply_rules(graph, rules)
    return out


__all__ = ["fuse_losses"]
