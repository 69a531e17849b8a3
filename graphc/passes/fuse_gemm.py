"""fuse_gemm: 2-D matrix products with transposed operands and added terms -> one `gemm`.

    matmul(transpose(a), b)         -> gemm(a, b, trans_a=True)          (likewise for b)
    matmul(a, b) + c                -> gemm(a, b, c)                     (c broadcasts to the product)
    gemm(a, b) + k * c              -> gemm(a, b, c, beta=k)             (k a literal scalar)

On a forward graph before autodiff, `x @ W.T + b` becomes `gemm(x, W, b, trans_b=True)`, whose
gradient rule makes the backward products Gemms with transA/transB too: no transposed copies,
nothing left for onnxruntime to fuse (it will not fold a Transpose whose input has other users).
On a training-step graph, the last rule folds an optimizer's `momentum * buf + grad` into the
weight gradient's Gemm (`beta * C` accumulates in the output), saving two passes over every
weight matrix per step. A product or term used elsewhere is left alone, so no work is duplicated.
The first rule is also where a transposed matmul operand is read in place: the TVM backend
lowers `gemm(a, b, trans_a)` with a kernel reading a as stored (matmul's own lowering no longer
peeks at its producer). Operands are matched in either order of the commutative `+` and `*`.
Results equal the unfused graph's up to rounding (not part of the bit-exact `simplify`).
"""
from __future__ import annotations

from ..frontends import dsl
from ..ir.graph import Graph, Value
from ..ir.types import broadcast_shapes
from .pipeline import register_pass
from .rewrite import Match, RewriteStats, Rule, apply_rules, rule

_T2 = {"a": ("A", "B"), "b": ("B", "C")}
#: a 2-D matrix transpose (a rank-2 transpose with axes (0, 1) is the identity: not this)
_SWAP = {"transpose": {"axes": (1, 0)}}


def _plain(v: Value) -> bool:
    return v.type.rank == 2 and v.type.is_float


def _transpose_rules() -> list[Rule]:
    def when(m: Match) -> bool:
        return all(_plain(v) for v in m.root.inputs)

    @rule(lambda a, b: dsl.matmul(dsl.transpose(a), b), when=when, attrs=_SWAP,
          types={"a": ("B", "A"), "b": ("B", "C")})
    def matmul_ta(m, a, b):
        """matmul(transpose(a), b) -> gemm(a, b, trans_a)"""
        return dsl.apply("gemm", [a, b], {"trans_a": True})

    @rule(lambda a, b: dsl.matmul(a, dsl.transpose(b)), when=when, attrs=_SWAP,
          types={"a": ("A", "B"), "b": ("C", "B")})
    def matmul_tb(m, a, b):
        """matmul(a, transpose(b)) -> gemm(a, b, trans_b)"""
        return dsl.apply("gemm", [a, b], {"trans_b": True})

    @rule(lambda a, b: dsl.matmul(dsl.transpose(a), dsl.transpose(b)), when=when, attrs=_SWAP,
          types={"a": ("B", "A"), "b": ("C", "B")})
    def matmul_tab(m, a, b):
        """matmul(transpose(a), transpose(b)) -> gemm(a, b, trans_a, trans_b)"""
        return dsl.apply("gemm", [a, b], {"trans_a": True, "trans_b": True})

    return [matmul_tab, matmul_ta, matmul_tb]


def _term_rules(single: set[str]) -> list[Rule]:
    def term_fits(prod: Value, c: Value) -> bool:
        if prod.name not in single or c.type.dtype != prod.type.dtype or c.type.rank > 2:
            return False
        try:
            return broadcast_shapes(c.type.shape, prod.type.shape) == prod.type.shape
        except ValueError:
            return False

    def gemm_term(m: Match, kind: str, c: dsl.Tensor, beta: float = 1.0) -> dsl.Tensor:
        p = m.nodes[0]  # the product: the pattern builds it first
        attrs = dict(p.attrs) if kind == "gemm" else {}
        if beta != 1.0:
            attrs["beta"] = beta
        return dsl.apply("gemm", [*(dsl.Tensor(v) for v in p.inputs), c], attrs)

    def product(kind: str, a: dsl.Tensor, b: dsl.Tensor) -> dsl.Tensor:
        return dsl.matmul(a, b) if kind == "matmul" else dsl.apply("gemm", [a, b])

    def add_term_rule(kind: str) -> Rule:
        def when(m: Match) -> bool:
            prod = m.nodes[0]
            return ((kind == "gemm" or all(_plain(v) for v in prod.inputs))
                    and term_fits(prod.output, m.values["c"]))

        @rule(lambda a, b, c: product(kind, a, b) + c, when=when, types={**_T2, "c": ("A", "C")},
              name=f"{kind}_plus_term")
        def add_term(m, a, b, c):
            """op(a) @ op(b) + c -> gemm(a, b, c)   (either order)"""
            return gemm_term(m, kind, c)
        return add_term

    def scaled_when(m: Match) -> bool:
        prod, scaled = m.nodes[0], m.nodes[1]
        c, k = m.values["c"], m.values["k"]
        return (m.literal("k") is not None and k.type.rank == 0 and scaled.output.name in single
                and c.type == prod.output.type and term_fits(prod.output, c))

    @rule(lambda a, b, c, k: dsl.apply("gemm", [a, b]) + c * k, when=scaled_when,
          types={**_T2, "c": ("A", "C"), "k": ()})
    def gemm_plus_scaled(m, a, b, c, k):
        """gemm(a, b) + c * k -> gemm(a, b, c, beta=k)   (k a literal scalar; either order)"""
        return gemm_term(m, "gemm", c, float(m.literal("k")))

    # scaled terms first: `k * c` must not be taken as a plain term (k would stay a Mul)
    return [gemm_plus_scaled, add_term_rule("matmul"), add_term_rule("gemm")]


#: what the last run did (`last_stats.changed`: whether anything was fused)
last_stats: RewriteStats | None = None


@register_pass("fuse_gemm")
def fuse_gemm(graph: Graph) -> Graph:
    """A copy of `graph` with 2-D products, their transposed operands and added terms in gemms.

    The replaced products and additions are left for `eliminate_dead_code` (a pipeline runs it).
    """
    global last_stats
    out, last_stats = apply_rules(graph, _transpose_rules() + _term_rules(graph.single_use()))
    return out


__all__ = ["fuse_gemm"]
