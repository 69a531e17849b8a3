"""graphc.inspect.stats: FLOPs from the ops' cost rules, parameters, activation memory, report."""
from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc.inspect import flops, node_flops, param_count, peak_memory, summary
from ops.op_db import OP_DB, single_op_graph


def _graph(build):
    g = gc.Graph("t")
    with g:
        build(g)
    return g


def test_batched_matmul_counts_2mnk_per_batch():
    g = _graph(lambda g: g.output(y=g.input("a", ("B", 5, 7)) @ g.input("b", (7, 3))))
    assert flops(g, {"B": 4}) == 2 * 4 * 5 * 3 * 7
    # a vector operand is promoted as numpy does: (7,) @ (7, 3) is 2 * 3 * 7
    v = _graph(lambda g: g.output(y=g.input("a", (7,)) @ g.input("b", (7, 3))))
    assert flops(v) == 2 * 3 * 7


@pytest.mark.parametrize("groups", [1, 2])
def test_conv2d_counts_multiply_adds_per_output(groups):
    def build(g):
        x = g.input("x", ("N", 4, 9, 9))
        w = g.param("w", init=np.zeros((6, 4 // groups, 3, 3), np.float32))
        g.output(y=gc.conv2d(x, w, stride=2, padding=1, groups=groups))
    g = _graph(build)
    out = g.outputs["y"].type.shape  # (N, 6, 5, 5)
    assert out[1:] == (6, 5, 5)
    assert flops(g, {"N": 3}) == 2 * (3 * 6 * 5 * 5) * (4 // groups) * 3 * 3


def test_elementwise_reductions_and_shape_ops():
    def build(g):
        x = g.input("x", ("N", 10))
        e = gc.exp(x)                        # N*10
        s = gc.sum(e, axis=1)                # reads N*10
        r = gc.reshape(gc.transpose(e), (-1,))  # no arithmetic
        g.output(s=s, r=r)
    g = _graph(build)
    by_op = {n.op.name: node_flops(n, {"N": 8}) for n in g.nodes}
    assert by_op == {"exp": 80, "sum": 80, "transpose": 0, "reshape": 0}
    assert flops(g, {"N": 8}) == 160


def test_mlp_totals_match_the_formula():
    sizes = (784, 256, 256, 10)
    g = gc.models.mlp(sizes)
    s = summary(g, {"N": 128})
    mm = 2 * 128 * sum(a * b for a, b in zip(sizes, sizes[1:]))
    assert s.op_histogram["matmul"] == (3, mm)
    assert s.flops == sum(n.flops for n in s.nodes) and s.flops > mm
    assert s.param_count == param_count(g) == sum(a * b + b for a, b in zip(sizes, sizes[1:]))
    assert s.param_bytes == 4 * s.param_count
    assert summary(gc.models.mlp(sizes, dtype="float64")).param_bytes == 8 * s.param_count
    assert not s.unbound and s.backward_flops == 0


def test_unbound_symbols_count_as_one_and_are_reported():
    g = gc.models.mlp((8, 4, 2))
    s = summary(g)
    assert s.unbound == ["N"]
    assert s.flops * 16 == summary(g, {"N": 16}).flops  # every cost here is linear in N
    assert "N not bound" in str(s)


def test_peak_memory_follows_liveness():
    def build(g):
        x = g.input("x", ("N", 100))
        a = gc.exp(x)
        b = gc.exp(a)   # x is dead after a
        g.output(c=a + b)  # a, b and c are live together
    g = _graph(build)
    size = 10 * 100 * 4
    peak, at = peak_memory(g, {"N": 10})
    assert (peak, at) == (3 * size, 2)
    s = summary(g, {"N": 10})
    assert s.peak_bytes == 3 * size and s.peak_node == g.nodes[2].output.name
    assert s.activation_bytes == 3 * size


def test_gradient_graph_splits_forward_and_backward():
    g = gc.grad(gc.models.mlp((8, 4, 2)))
    s = summary(g, {"N": 5})
    assert s.forward_flops > 0 and s.backward_flops > 0
    assert s.flops == s.forward_flops + s.backward_flops
    assert any(n.backward for n in s.nodes) and any(not n.backward for n in s.nodes)
    assert "backward" in str(s)


def test_report_and_node_table_are_readable_text():
    g = gc.models.lenet5()
    s = summary(g, {"N": 2})
    text = str(s)
    for piece in ("graph 'lenet5' with N=2", "FLOPs", "conv2d", "peak live activations",
                  "parameter", "conv1.weight", "top 10 nodes by FLOPs"):
        assert piece in text, piece
    table = s.node_table().splitlines()
    assert len(table) == 2 + len(g.nodes)  # header, rule, one row per node
    assert table[0].split()[:3] == ["node", "op", "shape"]
    d = s.to_dict()
    assert d["flops"] == s.flops and len(d["nodes"]) == len(g.nodes)


def test_every_registered_primitive_has_a_working_cost_rule():
    seen = set()
    for info in OP_DB:
        dtype = info.dtypes[0]
        for sample in info.get_samples(dtype)[:2]:
            g, _ = single_op_graph(info, sample, dtype)
            node = g.nodes[-1]
            f = node_flops(node)
            assert isinstance(f, int) and f >= 0, info.name
            seen.add(info.name)
    assert seen  # the op table is not empty


def test_by_scope_groups_layers_and_their_gradients():
    sizes = (6, 5, 4, 3)
    s = summary(gc.grad(gc.models.mlp(sizes)), {"N": 7})
    rows = {scope: (n, f, b, p) for scope, n, f, b, p in s.by_scope()}
    assert list(rows) == ["fc1", "fc2", "fc3", "loss"]
    for k, (a, b) in enumerate(zip(sizes, sizes[1:]), start=1):
        n, fwd, bwd, params = rows[f"fc{k}"]
        assert params == a * b + b
        assert fwd >= 2 * 7 * a * b   # the layer's matmul at least
        assert bwd >= 2 * 7 * a * b   # and the weight gradient's matmul
    assert sum(r[1] for r in rows.values()) == s.forward_flops
    assert sum(r[2] for r in rows.values()) == s.backward_flops
    assert "scope" in str(s)


@pytest.mark.parametrize("stride,padding,groups", [(1, 0, 1), (2, 1, 1), (2, 1, 3)])
def test_conv_gradient_costs_as_much_as_the_convolution(stride, padding, groups):
    # the input gradient of conv2d is a transposed convolution doing the same multiply-adds
    def build(g):
        x = g.param("x", init=np.ones((2, 6, 9, 9), np.float32))
        w = g.param("w", init=np.ones((3 * groups, 6 // groups, 3, 3), np.float32))
        g.output(y=gc.sum(gc.conv2d(x, w, stride=stride, padding=padding, groups=groups)))
    gg = gc.grad(_graph(build))
    conv = [n for n in gg.nodes if n.op.name == "conv2d" and n.origin is None]
    tconv = [n for n in gg.nodes if n.op.name == "conv_transpose2d"]
    assert len(conv) == 1 and len(tconv) == 1
    assert node_flops(tconv[0]) == node_flops(conv[0]) > 0


def test_pool_costs_one_operation_per_window_element():
    def build(g):
        x = g.input("x", ("N", 3, 8, 8))
        g.output(m=gc.max_pool2d(x, 2), a=gc.avg_pool2d(x, 3, stride=1, padding=1))
    g = _graph(build)
    costs = [node_flops(n, {"N": 2}) for n in g.nodes]
    assert costs == [2 * 3 * 4 * 4 * 4, 2 * 3 * 8 * 8 * 9]
