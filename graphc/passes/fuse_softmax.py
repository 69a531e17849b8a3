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
from .eliminate_dead_code import eliminate_dead_code
from .pipeline import register_pass
from .rewrite import Match, apply_rules, rule


def _one_axis(m: Match) -> bool:
    """Both reductions (max, sum) run over the same single axis; returns it via m.values."""
    axes = set()
    for n in m.nodes:
        if "axes" in n.attrs:
            rank = n.inputs[0].type.rank
            a = n.attrs["axes"]
            a = (a,) if isinstance(a, int) else a
            if a is None or len(a) != 1 or not n.attrs.get("keepdims"):
                return False
            axes.add(a[0] % rank)
    return len(axes) == 1


@rule(lambda x: F.softmax(x, -1), when=_one_axis)
def softmax_rule(m, x):
    """exp(x - max x) / sum(exp(x - max x)) -> softmax(x)   (one axis)"""
    axis = next(n.attrs["axes"] for n in m.nodes if "axes" in n.attrs)
    axis = axis if isinstance(axis, int) else axis[0]
    return dsl.apply("softmax", [x], {"axis": axis % x.ndim})


@register_pass("fuse_softmax")
def fuse_softmax(graph: Graph) -> Graph:
    """A copy of `graph` with softmax composites replaced by the `softmax` primitive."""
    out, _ = apply_rules(graph, [softmax_rule])
    return eliminate_dead_code(out)


__all__ = ["fuse_softmax"]
