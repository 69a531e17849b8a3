"""autocast: the mixed-precision policy, as casts inserted into a forward (loss) graph.

graphc's policy, run on the loss graph *before* autodiff (so the gradients follow the casts: the
vjp of ``cast`` is a cast back, and a low-precision product's gradient products run in the same
low precision):

- **low precision** (float16 or bfloat16, accumulating in float32 where the backend does): the
  ops whose trait ``low_precision`` is set: ``matmul``, ``gemm``, ``conv2d``,
  ``conv_transpose2d``. Their float32 operands are cast down, and their output is cast back to
  float32 at once. A gemm's added term (the bias) is added in float32 after the cast back, so
  the bias gradient (a sum over the batch) is a float32 reduction. This is PyTorch autocast's ``lower_precision_fp`` list (mm, matmul, linear,
  addmm, conv*, bmm, baddbmm) restricted to graphc's primitives.
- **float32**: everything else. That covers PyTorch's ``fp32`` list (exp, log, pow, softmax,
  log_softmax, cross_entropy / nll_loss, layer_norm / group_norm statistics, sum, mean, norm,
  the losses) and its "promote" ops (add, mul, where, concat): elementwise work, reductions,
  softmax, normalisation statistics and the loss all run in float32, because every
  low-precision product's output is cast back before anything else reads it.
- The parameters (master weights) and the optimizer state stay float32: a parameter feeding a
  product is cast down inside the step, and its gradient is cast back up before the update.

Unlike PyTorch, which keeps a product's output in low precision until an fp32-list op reads it,
graphc casts back right after each product: one extra cast per product, simpler to reason
about, and it never runs a bias add or activation in float16. A product whose operands are not
float32 (float64, or already low precision) is left alone.

Two passes are registered, ``autocast_bf16`` and ``autocast_fp16``, run through the pipelines
"autocast-bf16" and "autocast-fp16" (`gc.training_step(..., precision="bf16")`).
"""
from __future__ import annotations

from ..frontends.dsl import Tensor
from ..ir.graph import Graph, Value
from ..ops import get_op
from .pipeline import register_pass

#: what `autocast` changed in its last run: the number of products it cast down
last_count = 0


def autocast(graph: Graph, dtype: str) -> Graph:
    """A copy of `graph` whose float32 low-precision-trait products run in `dtype`.

    Returns the new graph (`last_count` holds how many products were cast).

    Example: ``autocast(loss_graph, "bfloat16")``.
    """
    global last_count
    cast = get_op("cast")
    g, vmap = graph.clone(nodes=False)
    down: dict[Value, Value] = {}  # one cast per value, shared by all of its products
    count = 0

    def to_low(v: Value) -> Value:
        if v not in down:
            down[v] = g.add_node(cast, [v], {"dtype": dtype}, v.type.with_dtype(dtype),
                                 f"{v.name}.{dtype}")
        return down[v]

    for n in graph.nodes:
        floats = [v for v in n.inputs if v.type.is_float]
        if not (n.op.traits.low_precision and floats and n.output.type.dtype == "float32"
                and all(v.type.dtype == "float32" for v in floats)):
            g.copy_node(n, vmap)
            continue
        # a gemm's added term (the bias) stays float32: added after the product is cast back, so
        # its gradient (a sum over the batch) is a float32 reduction
        prod_inputs, term = list(n.inputs), None
        attrs = dict(n.attrs)
        k = n.op.traits.added_term
        if k is not None and len(n.inputs) > k:
            prod_inputs, term = prod_inputs[:k] + prod_inputs[k + 1:], n.inputs[k]
            beta = attrs.pop("beta", 1.0)
        ins = [to_low(vmap[v]) if v.type.is_float else vmap[v] for v in prod_inputs]
        low_type = n.op.infer_checked([v.type for v in ins], attrs)
        low = g.add_node(n.op, ins, attrs, low_type, f"{n.output.name}.{dtype}", n.source, n.origin)
        if term is None:
            vmap[n.output] = g.add_node(cast, [low], {"dtype": "float32"}, n.output.type,
                                        n.output.name, n.source, n.origin)
        else:
            up = g.add_node(cast, [low], {"dtype": "float32"}, low_type.with_dtype("float32"),
                            f"{n.output.name}.product", n.source, n.origin)
            with g:
                c = Tensor(vmap[term]) if beta == 1.0 else Tensor(vmap[term]) * float(beta)
                total = Tensor(up) + c
            vmap[n.output] = total.value
        count += 1
    last_count = count
    return g.finish_copy(graph, vmap)


@register_pass("autocast_bf16")
def autocast_bf16(graph: Graph) -> Graph:
    """Products (matmul, gemm, convolutions) in bfloat16, the rest float32 (see the module)."""
    return autocast(graph, "bfloat16")


@register_pass("autocast_fp16")
def autocast_fp16(graph: Graph) -> Graph:
    """Products (matmul, gemm, convolutions) in float16, the rest float32 (see the module)."""
    return autocast(graph, "float16")
