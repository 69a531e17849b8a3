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
from .eliminate_dead_code import eliminate_dead_code
from .pipeline import register_pass
from .rewrite import Match, apply_rules, rule


def _trailing_axis(m: Match) -> int | None:
    """The first normalized axis when both means reduce the same trailing axes, else None."""
    found = set()
    for n in m.nodes:
        if n.op.name == "mean":
            rank = n.inputs[0].type.rank
            axes = n.attrs.get("axes")
            axes = (axes,) if isinstance(axes, int) else axes
            if axes is None or not n.attrs.get("keepdims"):
                return None
            ax = tuple(sorted(a % rank for a in axes))
            if ax != tuple(range(rank - len(ax), rank)):
                return None
            found.add(ax[0])
    return found.pop() if len(found) == 1 else None


def _norm_when(m: Match) -> bool:
    x = m.values["x"]
    a = _trailing_axis(m)
    return (a is not None and m.literal("eps") is not None and m.literal("eps").size == 1
            and x.type.is_float and all(isinstance(d, int) for d in x.type.shape[a:]))


@rule(lambda x, eps: F.layer_norm(x, 1, eps=eps), when=_norm_when, types={"eps": ()})
def layer_norm_rule(m, x, eps):
    """(x - mean x) / sqrt(var x + eps) -> layer_norm(x)   (trailing axes, literal eps)"""
    return dsl.apply("layer_norm", [x], {"axis": _trailing_axis(m),
                                         "eps": float(m.literal("eps").reshape(()))})


def _affine_rule(kind: str, single_use: set[str]):
    def when(m: Match) -> bool:
        ln, other = m.nodes[0], m.values["t"]
        n_in = 1 if kind == "weight" else 2
        a = ln.attrs["axis"] % ln.output.type.rank
        return (len(ln.inputs) == n_in and ln.output.name in single_use
                and other.type.shape == ln.output.type.shape[a:]
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
        """layer_norm(x, ...) * w or + b -> layer_norm(x, ..., w or b)"""
        ln = m.nodes[0]
        return dsl.apply("layer_norm", [*(dsl.Tensor(v) for v in ln.inputs), args[-1]], ln.attrs)
    return fold


@register_pass("fuse_layer_norm")
def fuse_layer_norm(graph: Graph) -> Graph:
    """A copy of `graph` with layer-norm composites (and their affine part) as `layer_norm`."""
    outs = {v.name for v in graph.outputs.values()}
    # the affine rules test names of the nodes the first rule makes: they keep the names of the
    # divisions they replace, whose users are the original graph's
    single = {v.name for v, us in graph.users().items() if len(us) == 1 and v.name not in outs}
    rules = [layer_norm_rule, _affine_rule("weight", single), _affine_rule("bias", single)]
    out, _ = apply_rules(graph, rules)
    return eliminate_dead_code(out)


__all__ = ["fuse_layer_norm"]
