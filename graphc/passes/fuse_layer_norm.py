"""fuse_layer_norm: the layer-norm composite, and its affine weight and bias, -> `layer_norm`.

    (x - mean x) / sqrt(mean((x - mean x)^2) + eps)   over trailing axes  -> layer_norm(x)
    layer_norm(x) * w                                   (w of the normalized shape) -> layer_norm(x, w)
    layer_norm(x, w) + b                                (b likewise)     -> layer_norm(x, w, b)

One ONNX LayerNormalization (opset 17) instead of about ten nodes, and a closed-form gradient
(`(g - mean g - xhat mean(g xhat)) / sigma`) instead of the chain rule through sqrt and division.
The pattern is traced from graphc.frontends.functional.layer_norm with eps as a variable, so any
eps matches. Batch norm (reduced over non-trailing axes) is left alone. Results equal the
composite's up to rounding (not part of the bit-exact `simplify`).
"""
from __future__ import annotations

from ..frontends import dsl
from ..frontends import functional as F
from ..ir.graph import Graph
from .pipeline import register_pass
from .rewrite import Match, RewriteStats, Rule, apply_rules, rule, trailing_axes


def _norm_when(m: Match) -> bool:
    """eps is one literal number and the normalized dims are static (layer_norm needs both)."""
    x, eps = m.values["x"], m.literal("eps")
    return (eps is not None and eps.size == 1 and x.type.is_float
            and all(isinstance(d, int) for d in x.type.shape[m.attrs["axis"]:]))


# both means keep dims and reduce the same trailing axes (a batch norm reduces leading ones)
@rule(lambda x, eps: F.layer_norm(x, 1, eps=eps), when=_norm_when, types={"eps": ()},
      attrs={"mean": {"axes": trailing_axes("axis"), "keepdims": True}})
def layer_norm_rule(m, x, eps):
    """(x - mean x) / sqrt(var x + eps) -> layer_norm(x)   (trailing axes, literal eps)"""
    return dsl.apply("layer_norm", [x], {"axis": m.attrs["axis"],
                                         "eps": float(m.literal("eps").reshape(()))})


def _affine_rule(kind: str, single_use: set[str]) -> Rule:
    def when(m: Match) -> bool:
        ln, other = m.nodes[0], m.values["t"]
        a = ln.attrs["axis"] % ln.output.type.rank
        return (ln.output.name in single_use and other.type.shape == ln.output.type.shape[a:]
                and other.type.dtype == ln.output.type.dtype)

    if kind == "weight":
        def pattern(x, t):
            return dsl.apply("layer_norm", [x]) * t
    else:
        def pattern(x, w, t):
            return dsl.apply("layer_norm", [x, w]) + t

    @rule(pattern, when=when, name=f"layer_norm_{kind}",
          types={"x": (2, 3), "w": (3,), "t": (3,)})
    def fold(m, *args):
        """layer_norm(x, ...) * w or + b -> layer_norm(x, ..., w or b)   (either order)"""
        ln = m.nodes[0]
        return dsl.apply("layer_norm", [*(dsl.Tensor(v) for v in ln.inputs), args[-1]], ln.attrs)
    return fold


#: what the last run did (`last_stats.changed`: whether anything was fused)
last_stats: RewriteStats | None = None


@register_pass("fuse_layer_norm")
def fuse_layer_norm(graph: Graph) -> Graph:
    """A copy of `graph` with layer-norm composites (and their affine part) as `layer_norm`.

    The composites' pieces are left for `eliminate_dead_code` (a pipeline runs it after).
    """
    global last_stats
    # the affine rules test names of the nodes the first rule makes: they keep the names of the
    # divisions they replace, whose users are the original graph's
    single = graph.single_use()
    rules = [layer_norm_rule, _affine_rule("weight", single), _affine_rule("bias", single)]
    out, last_stats = apply_rules(graph, rules)
    return out


__all__ = ["fuse_layer_norm"]
