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
from .eliminate_dead_code import eliminate_dead_code
from .pipeline import register_pass
from .rewrite import apply_rules, rule
from .simplify_algebra import transpose_identity, transpose_transpose


def _rules(single_use: set[str]) -> list:
    def when(m) -> bool:
        prod = m.nodes[0]
        return (prod.output.name in single_use and all(v.type.rank == 2 for v in prod.inputs)
                and tuple(m.root.attrs["axes"]) == (1, 0))

    @rule(lambda a, b: dsl.transpose(dsl.matmul(a, b)), when=when,
          types={"a": ("A", "B"), "b": ("B", "C")})
    def transpose_matmul(m, a, b):
        """transpose(a @ b) -> transpose(b) @ transpose(a)   (2-D, product used only here)"""
        return dsl.matmul(dsl.transpose(b), dsl.transpose(a))
    return [transpose_matmul, transpose_transpose, transpose_identity]


@register_pass("transpose_products")
def transpose_products(graph: Graph) -> Graph:
    """A copy of `graph` with transposes of single-use 2-D products moved onto the operands."""
    users = graph.users()
    outs = {v.name for v in graph.outputs.values()}
    single = {v.name for v, us in users.items() if len(us) == 1 and v.name not in outs}
    out, _ = apply_rules(graph, _rules(single))
    return eliminate_dead_code(out)
