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
Results equal the unfused graph's up to rounding (not part of the bit-exact `simplify`).
"""
from __future__ import annotations

from ..frontends import dsl
from ..ir.graph import Graph, Value
from ..ir.types import broadcast_shapes
from .eliminate_dead_code import eliminate_dead_code
from .pipeline import register_pass
from .rewrite import Match, apply_rules, constant_literal, rule, uniform_scalar

_T2 = {"a": ("A", "B"), "b": ("B", "C")}


def _is_swap(n) -> bool:
    return n.op.name == "transpose" and tuple(n.attrs["axes"]) == (1, 0)


def _rules(single_use: set[str]) -> list:
    def plain(v: Value) -> bool:
        return v.type.rank == 2 and v.type.is_float

    def transposed_operand(m: Match) -> bool:
        prod = m.root
        return all(plain(v) for v in prod.inputs) and any(
            n is not prod and _is_swap(n) for n in m.nodes)

    @rule(lambda a, b: dsl.matmul(dsl.transpose(a), b), when=transposed_operand,
          types={"a": ("B", "A"), "b": ("B", "C")})
    def matmul_ta(m, a, b):
        """matmul(transpose(a), b) -> gemm(a, b, trans_a)"""
        return dsl.apply("gemm", [a, b], {"trans_a": True})

    @rule(lambda a, b: dsl.matmul(a, dsl.transpose(b)), when=transposed_operand,
          types={"a": ("A", "B"), "b": ("C", "B")})
    def matmul_tb(m, a, b):
        """matmul(a, transpose(b)) -> gemm(a, b, trans_b)"""
        return dsl.apply("gemm", [a, b], {"trans_b": True})

    @rule(lambda a, b: dsl.matmul(dsl.transpose(a), dsl.transpose(b)), when=transposed_operand,
          types={"a": ("B", "A"), "b": ("C", "B")})
    def matmul_tab(m, a, b):
        """matmul(transpose(a), transpose(b)) -> gemm(a, b, trans_a, trans_b)"""
        return dsl.apply("gemm", [a, b], {"trans_a": True, "trans_b": True})

    def term_fits(prod: Value, c: Value) -> bool:
        if prod.name not in single_use or c.type.dtype != prod.type.dtype or c.type.rank > 2:
            return False
        try:
            return broadcast_shapes(c.type.shape, prod.type.shape) == prod.type.shape
        except ValueError:
            return False

    def product_plus(side: int):
        def when(m: Match) -> bool:
            prod_v = m.root.inputs[side]
            prod, c = prod_v.producer, m.root.inputs[1 - side]
            if prod.op.name == "matmul":
                ok = all(plain(v) for v in prod.inputs)
            else:  # a gemm without a term yet
                ok = len(prod.inputs) == 2
            return ok and term_fits(prod_v, c)
        return when

    def gemm_term(m: Match, side: int, c, beta: float = 1.0):
        p = m.root.inputs[side].producer
        attrs = dict(p.attrs) if p.op.name == "gemm" else {}
        if beta != 1.0:
            attrs["beta"] = beta
        return dsl.apply("gemm", [*(dsl.Tensor(v) for v in p.inputs), c], attrs)

    def add_term_rule(side: int, kind: str):
        def pat(a, b, c):
            prod = dsl.matmul(a, b) if kind == "matmul" else dsl.apply("gemm", [a, b])
            return prod + c if side == 0 else c + prod

        @rule(pat, when=product_plus(side), types={**_T2, "c": ("A", "C")},
              name=f"{kind}_plus_term" if side == 0 else f"term_plus_{kind}")
        def add_term(m, a, b, c):
            """op(a) @ op(b) + c -> gemm(a, b, c)"""
            return gemm_term(m, side, c)
        return add_term

    rules = [add_term_rule(side, kind) for side in (0, 1) for kind in ("matmul", "gemm")]

    def scaled_term(side: int):
        def when(m: Match) -> bool:
            prod_v, scaled = m.root.inputs[side], m.root.inputs[1 - side]
            mul = scaled.producer
            k = uniform_scalar(constant_literal(mul.inputs[1]))
            return (len(prod_v.producer.inputs) == 2 and k is not None
                    and mul.inputs[1].type.rank == 0 and scaled.name in single_use
                    and mul.inputs[0].type == prod_v.type and term_fits(prod_v, mul.inputs[0]))
        return when

    def scaled_rule(side: int):
        def spat(a, b, c, k):
            prod = dsl.apply("gemm", [a, b])
            return prod + c * k if side == 0 else c * k + prod

        @rule(spat, when=scaled_term(side), types={**_T2, "c": ("A", "C"), "k": ()},
              name="gemm_plus_scaled" if side == 0 else "scaled_plus_gemm")
        def add_scaled(m, a, b, c, k):
            """gemm(a, b) + c * k -> gemm(a, b, c, beta=k)   (k a literal scalar)"""
            return gemm_term(m, side, c, float(m.literal("k")))
        return add_scaled

    # scaled terms first: `k * c` must not be taken as a plain term (k would stay a Mul)
    rules = [scaled_rule(0), scaled_rule(1)] + rules
    return [matmul_tab, matmul_ta, matmul_tb] + rules


@register_pass("fuse_gemm")
def fuse_gemm(graph: Graph) -> Graph:
    """A copy of `graph` with 2-D products, their transposed operands and added terms in gemms."""
    outs = {v.name for v in graph.outputs.values()}
    single = {v.name for v, us in graph.users().items() if len(us) == 1 and v.name not in outs}
    out, _ = apply_rules(graph, _rules(single))
    return eliminate_dead_code(out)


__all__ = ["fuse_gemm"]
