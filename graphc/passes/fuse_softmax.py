"""fuse_softmax: the softmax composite `e / sum(e)`, `e = exp(x - stop_gradient(max x))`, -> `softmax`.

The primitive lowers to one ONNX Softmax (one Relax softmax) instead of five nodes, and its
gradient is `y * (g - sum(g * y))` instead of the chain rule through the division (a safe_mul
per factor). Attention weights in graphc.nn are built this way. The pattern is traced from the
composite (graphc.frontends.functional.softmax), so it follows any change to it. Results equal
the composite's up to rounding (not part of the bit-exact `simplify`).
"""
from __future__ import annotations

from ..frontends import dsl
from ..frontends import functional as F
from ..ir.graph import Graph
from .pipeline import register_pass
from .rewrite import RewriteStats, apply_rules, rule, single_axis

#: both reductions (the max and the sum) keep dims and run over the same single axis
_ONE_AXIS = {"axes": single_axis("axis"), "keepdims": True}


@rule(lambda x: F.softmax(x, -1), attrs={"max": _ONE_AXIS, "sum": _ONE_AXIS})
def softmax_rule(m, x):
    """exp(x - max x) / sum(exp(x - max x)) -> softmax(x)   (one axis)"""
    return dsl.apply("softmax", [x], {"axis": m.attrs["axis"]})


#: what the last run did (`last_stats.changed`: whether any composite was fused)
last_stats: RewriteStats | None = None


@register_pass("fuse_softmax")
def fuse_softmax(graph: Graph) -> Graph:
    """A copy of `graph` with softmax composites replaced by the `softmax` primitive.

    The composites' pieces are left for `eliminate_dead_code` (a pipeline runs it after).
    """
    global last_stats
    out, last_stats = apply_rules(graph, [softmax_rule])
    return out


__all__ = ["fuse_softmax"]
