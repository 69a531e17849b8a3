"""pool_before_relu: `max_pool2d(relu(x)) -> relu(max_pool2d(x))`, the ReLU on the pooled tensor.

relu is monotone, so the max of the rectified window is the rectified max: the forward values
are the same bit for bit. The gradients are too: where the window's maximum is positive both
forms route g to its first maximum; where it is not, relu's gradient is zero in both. With 2x2
pooling the ReLU and its backward mask then run on a quarter of the elements (LeNet-5: the
mask on conv1's 64x6x28x28 output was 13% of the step's kernel time). Only a ReLU whose sole user
is the pool is moved (otherwise both would have to be computed).
"""
from __future__ import annotations

from ..frontends import dsl
from ..ir.graph import Graph
from .pipeline import register_pass
from .rewrite import Match, RewriteStats, Rule, apply_rules, bind

_POOL_ATTRS = {"kernel_size": bind("kernel_size"), "stride": bind("stride"),
               "padding": bind("padding")}


def _pool(x: dsl.Tensor, attrs: dict) -> dsl.Tensor:
    return dsl.apply("max_pool2d", [x], attrs)


def _rule(single_use: set[str]) -> Rule:
    def when(m: Match) -> bool:
        return m.root.inputs[0].name in single_use  # the ReLU's output

    def swap(m: Match, x: dsl.Tensor) -> dsl.Tensor:
        """max_pool2d(relu(x)) -> relu(max_pool2d(x))"""
        pooled = _pool(x, {k: m.attrs[k] for k in _POOL_ATTRS})
        # the ReLU takes the pool's name (`pool1.max_pool2d`); the pool stays in its module's
        # scope (`pool1`), so per-layer reports charge both to the same layer
        name = m.root.output.name
        g = pooled.value.graph
        g.rename(pooled.value, g.unique_name(f"{name}_before_relu"))
        return dsl.apply("relu", [pooled])

    return Rule("pool_before_relu", lambda x: _pool(dsl.apply("relu", [x]), {
        "kernel_size": (1, 1), "stride": (1, 1), "padding": (0, 0)}), swap, when,
        types={"x": (1, 1, 2, 2)}, attrs={"max_pool2d": _POOL_ATTRS})


#: what the last run did (`last_stats.changed`: whether a ReLU was moved)
last_stats: RewriteStats | None = None


@register_pass("pool_before_relu")
def pool_before_relu(graph: Graph) -> Graph:
    """A copy of `graph` with each single-use ReLU feeding a max pool moved after the pool."""
    global last_stats
    out, last_stats = apply_rules(graph, [_rule(graph.single_use())])
    return out


__all__ = ["pool_before_relu"]
