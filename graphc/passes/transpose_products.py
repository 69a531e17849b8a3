"""transpose_products: moves a transpose below a 2-D matrix product, (A B)^T -> B^T A^T.

The autodiff of `x @ W.T` gives `dW = transpose(x.T @ g)`: one full transpose of every weight
gradient, every step. Rewritten to `g.T @ x`, the inner `(x.T).T` cancels and the transposed
operand of the product is folded into the matmul kernel by onnxruntime (FusedMatMul / Gemm with
transA). The product's summation may be blocked differently, so results can differ in the last
bit: this pass is not in the bit-exact default `simplify` pipeline; the training-step compiler
runs it on step graphs.
"""
from __future__ import annotations

from ..frontends import dsl
from ..ir.graph import Graph
from .pipeline import register_pass
from .rewrite import Rule, RewriteStats, apply_rules, rule
from .simplify_algebra import transpose_identity, transpose_transpose


def _rules(single: set[str]) -> list[Rule]:
    def when(m) -> bool:
        prod = m.nodes[0]
        return prod.output.name in single and all(v.type.rank == 2 for v in prod.inputs)

    @rule(lambda a, b: dsl.transpose(dsl.matmul(a, b)), when=when,
          types={"a": ("A", "B"), "b": ("B", "C")}, attrs={"transpose": {"axes": (1, 0)}})
    def transpose_matmul(m, a, b):
        """transpose(a @ b) -> transpose(b) @ transpose(a)   (2-D, product used only here)"""
        return dsl.matmul(dsl.transpose(b), dsl.transpose(a))
    return [transpose_matmul, transpose_transpose, transpose_identity]


#: what the last run did (`last_stats.changed`: whether anything was moved)
last_stats: RewriteStats | None = None


@register_pass("transpose_products")
def transpose_products(graph: Graph) -> Graph:
    """A copy of `graph` with transposes of single-use 2-D products moved onto the operands.

    The replaced products are left for `eliminate_dead_code` (a pipeline runs it after).
    """
    global last_stats
    out, last_stats = apply_rules(graph, _rules(graph.single_use()))
    return out
