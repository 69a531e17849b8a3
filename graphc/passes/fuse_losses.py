"""fuse_losses: replaces the composite losses of graphc.nn.functional by fused loss primitives.

- `-sum(onehot(y) * log_softmax(z), -1)` (cross_entropy against int labels, with or without
  label smoothing) becomes `softmax_cross_entropy(z, q)`, and a `mean` / `sum` over all of its
  rows folds into the op's `reduction`;
- the stable BCE-with-logits composite becomes `bce_with_logits(z, t)`.

Run on a forward graph before autodiff, so the backward pass gets the fused ops' closed-form
gradients (`softmax(z) - q`, `sigmoid(z) - t`) instead of the chain rule through every piece of
the composite. The patterns are traced from the composites themselves, so they follow any change
to them. Results equal the composites' up to rounding (they are not in the bit-exact `simplify`).
"""
from __future__ import annotations

import numpy as np

from ..frontends import dsl
from ..frontends import functional as F
from ..ir.graph import Graph, Value
from .eliminate_dead_code import eliminate_dead_code
from .pipeline import register_pass
from .rewrite import Match, apply_rules, constant_literal, rule, uniform_scalar


def _last_axis_only(m: Match) -> bool:
    """Every reduction of the matched composite runs over the last axis (patterns ignore attrs)."""
    for n in m.nodes:
        if "axes" in n.attrs:
            rank = n.inputs[0].type.rank
            axes = n.attrs["axes"]
            axes = (axes,) if isinstance(axes, int) else axes
            if axes is None or tuple(sorted(a % rank for a in axes)) != (rank - 1,):
                return False
    return True


def _one_hot_rows(q: Value, classes: int) -> bool:
    """True when q is `one_hot(labels, classes)` as graphc builds it: cast(reshape(y) == arange)."""
    cast = q.producer
    if cast is None or cast.op.name != "cast" or not cast.inputs:
        return False
    eq = cast.inputs[0].producer
    if eq is None or eq.op.name != "equal":
        return False
    lab, ar = eq.inputs
    arr = constant_literal(ar)
    return (arr is not None and arr.shape == (classes,) and np.array_equal(arr, np.arange(classes))
            and lab.type.dtype in ("int32", "int64") and lab.type.shape[-1:] == (1,))


def _unit_rows(q: Value, classes: int) -> bool:
    """True when every row of q provably sums to 1: a one-hot, or a label-smoothed one-hot."""
    if _one_hot_rows(q, classes):
        return True
    add = q.producer
    if add is None or add.op.name != "add":
        return False
    mul, off = add.inputs
    mul_p = mul.producer
    if mul_p is None or mul_p.op.name != "mul" or not _one_hot_rows(mul_p.inputs[0], classes):
        return False
    keep, spread = (uniform_scalar(constant_literal(v)) for v in (mul_p.inputs[1], off))
    if keep is None or spread is None:
        return False
    eps = float(np.finfo(q.type.dtype).eps)
    return abs(float(keep) + classes * float(spread) - 1.0) <= 8 * eps


def _ce_when(m: Match) -> bool:
    z, q = m.values["z"], m.values["q"]
    c = z.type.shape[-1]
    return (z.type.rank >= 1 and q.type == z.type and isinstance(c, int) and _last_axis_only(m)
            and _unit_rows(q, c))


@rule(lambda z, q: -dsl.sum(q * F.log_softmax(z, -1), -1), when=_ce_when)
def softmax_cross_entropy_rows(m, z, q):
    """-sum(q * log_softmax(z), -1) -> softmax_cross_entropy(z, q)   (rows of q sum to 1)"""
    return dsl.apply("softmax_cross_entropy", [z, q], {"reduction": "none"})


def _reduce_rule(op: str, single_use: set[str]):
    def when(m: Match) -> bool:
        inner, outer = m.nodes
        rank = inner.output.type.rank
        axes = outer.attrs.get("axes")
        every = axes is None or tuple(sorted(a % rank for a in (
            (axes,) if isinstance(axes, int) else axes))) == tuple(range(rank))
        return (inner.attrs.get("reduction") == "none" and every
                and not outer.attrs.get("keepdims", False)
                and inner.output.name in single_use)

    @rule(lambda z, q: getattr(dsl, op)(dsl.apply("softmax_cross_entropy", [z, q],
                                                  {"reduction": "none"})),
          when=when, name=f"{op}_softmax_cross_entropy")
    def fold(m, z, q):
        """reduce(softmax_cross_entropy(z, q)) -> softmax_cross_entropy(z, q, reduction)"""
        return dsl.apply("softmax_cross_entropy", [z, q], {"reduction": op})
    return fold


@rule(lambda z, t: F.binary_cross_entropy_with_logits(z, t, "none"))
def bce_with_logits_rule(m, z, t):
    """where(z >= 0, z + log(1 + e^-z), log(1 + e^z)) - z * t -> bce_with_logits(z, t)"""
    return dsl.apply("bce_with_logits", [z, t])


def _single_use(graph: Graph) -> set[str]:
    outs = {v.name for v in graph.outputs.values()}
    return {v.name for v, us in graph.users().items() if len(us) == 1 and v.name not in outs}


@register_pass("fuse_losses")
def fuse_losses(graph: Graph) -> Graph:
    """A copy of `graph` with cross-entropy and BCE-with-logits composites fused into primitives."""
    single = _single_use(graph)
    rules = [softmax_cross_entropy_rows, bce_with_logits_rule,
             _reduce_rule("mean", single), _reduce_rule("sum", single)]
    out, _ = apply_rules(graph, rules)
    return eliminate_dead_code(out)


__all__ = ["fuse_losses"]
