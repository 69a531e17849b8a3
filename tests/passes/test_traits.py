"""Op traits and the attribute-aware, commutative patterns of the rewrite engine."""
import importlib

import numpy as np
import pytest

import graphc as gc
from graphc import models
from graphc.frontends import functional as F
from graphc.ops import OPS, OpTraits, get_op
from graphc.ops.elementwise import Binary, Unary
from graphc.ops.reduce import Reduce
from graphc.passes.rewrite import (Pattern, apply_rules, bind, last_axis, rule, single_axis,
                                   swapped_last_two)


def _ops(g):
    return [n.op.name for n in g.nodes]


def _fused(g, *passes):
    return gc.Pipeline([*passes, "eliminate_dead_code"])(g)


def _graph(build, **inputs):
    with gc.Graph("t") as g:
        vals = [g.input(n, shape, "float64") for n, shape in inputs.items()]
        g.output(y=build(*vals))
    return g


def _feeds(g, seed=0):
    rng = np.random.default_rng(seed)
    return {v.name: rng.normal(size=tuple(5 if isinstance(d, str) else d for d in v.type.shape))
            for v in g.inputs}


def _same_values(g1, g2):
    feeds = _feeds(g1)
    want, got = gc.compile(g1)(**feeds), gc.compile(g2)(**feeds)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-12, atol=1e-12, err_msg=k)


# ---- traits --------------------------------------------------------------------------------------

def test_every_registered_op_declares_traits():
    for name, op in OPS.items():
        assert isinstance(op.traits, OpTraits), name
        generic_tvm = type(op).tvm in (Unary.tvm, Binary.tvm, Reduce.tvm)
        assert bool(op.traits.relax_op) or not generic_tvm, f"{name} lowers by relax_op but names none"


def test_relax_op_names_exist_in_tvm():
    relax = pytest.importorskip("tvm.relax")
    for name, op in OPS.items():
        if op.traits.relax_op:
            fn = relax.op
            for part in op.traits.relax_op.split("."):
                fn = getattr(fn, part, None)
            assert callable(fn), f"{name}: tvm.relax.op has no {op.traits.relax_op}"


def test_trait_groups():
    has = lambda t: {n for n, op in OPS.items() if getattr(op.traits, t)}  # noqa: E731
    assert has("view_like") == {"reshape", "expand", "transpose", "stop_gradient"}
    assert has("constant") == {"constant"} and has("selects") == {"where"}
    assert has("converts_dtype") == {"cast"} and has("concatenates") == {"concat"}
    assert has("reduction") == {"sum", "mean", "max", "min"}
    assert {"add", "mul", "maximum", "minimum", "equal"} <= has("commutative")
    assert not {"sub", "div", "pow", "safe_mul", "less", "matmul"} & has("commutative")
    assert has("commutative") <= has("broadcasting") <= has("elementwise")
    assert all(OPS[n].arity == 2 for n in has("broadcasting"))


@pytest.mark.parametrize("name", sorted(n for n, op in OPS.items() if op.traits.commutative))
def test_commutative_ops_give_the_same_value_either_way(name):
    op = get_op(name)
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(3, 4)), rng.normal(size=(4,))
    if name.startswith("logical_"):
        a, b = a > 0, b > 0
    elif name.startswith("bitwise_"):
        a, b = (a * 100).astype(np.int32), (b * 100).astype(np.int32)
    np.testing.assert_array_equal(op.ref(a, b), op.ref(b, a))


# ---- commuted operands fuse the same --------------------------------------------------------------

def test_commuted_bias_fuses_into_the_same_gemm():
    rng = np.random.default_rng(0)
    outs = []
    for commuted in (False, True):
        with gc.Graph("lin") as g:
            x = g.input("x", ("N", 3), "float64")
            w = g.param("w", init=rng.normal(size=(4, 3)))
            b = g.param("b", init=rng.normal(size=(4,)))
            p = x @ gc.transpose(w)
            g.output(y=b + p if commuted else p + b)
        f = _fused(g, "fuse_gemm")
        (node,) = f.nodes
        outs.append((node.op.name, node.attrs, [v.name for v in node.inputs]))
        _same_values(g, f)
    assert outs[0] == outs[1] == ("gemm", {"trans_b": True}, ["x", "w", "b"])


def test_commuted_layer_norm_weight_and_bias_fold():
    rng = np.random.default_rng(0)
    with gc.Graph("ln") as g:
        x = g.input("x", ("N", 4), "float64")
        w = g.param("w", init=rng.normal(size=(4,)))
        b = g.param("b", init=rng.normal(size=(4,)))
        g.output(y=b + w * F.layer_norm(x, 4))
    f = _fused(g, "fuse_layer_norm")
    (node,) = f.nodes
    assert node.op.name == "layer_norm" and [v.name for v in node.inputs] == ["x", "w", "b"]
    _same_values(g, f)


def test_commuted_cross_entropy_product_fuses():
    with gc.Graph("ce") as g:
        z = g.input("z", ("N", 4), "float64")
        y = g.input("y", ("N",), "int64")
        q = F.one_hot(y, 4, "float64")
        g.output(loss=gc.mean(-gc.sum(F.log_softmax(z, -1) * q, -1)))  # factors swapped
    f = _fused(g, "fuse_losses")
    assert f.outputs["loss"].producer.op.name == "softmax_cross_entropy"
    assert f.outputs["loss"].producer.attrs == {"reduction": "mean"}


def test_backtracking_into_a_nested_commutative_node():
    @rule(lambda a, b: a * b + a)
    def factor(m, a, b):
        """a * b + a -> a * (b + 1)"""
        return a * (b + 1.0)

    g = _graph(lambda p, q: q + p * q, p=(3,), q=(3,))  # both products and the sum swapped
    out, stats = apply_rules(g, [factor])
    assert stats.fired["factor"] == 1
    m = factor.match(g.outputs["y"].producer)
    assert m.values["a"] is g.value("q") and m.values["b"] is g.value("p")


def test_a_guard_that_rejects_one_order_sees_the_other():
    seen = []

    @rule(lambda x, y: x * y, when=lambda m: seen.append(m.values["x"].name) or
          m.values["x"].name == "q")
    def q_first(m, x, y):
        """x * y -> y * x   (x named q; a test rule)"""
        return y * x

    g = _graph(lambda p, q: p * q, p=(3,), q=(3,))
    m = q_first.match(g.outputs["y"].producer)
    assert m.values["x"].name == "q" and seen == ["p", "q"]


# ---- attribute constraints reject what does not fit ------------------------------------------------

def test_softmax_over_two_different_axes_is_not_fused():
    def two_axes(x):
        e = gc.exp(x - gc.stop_gradient(gc.max(x, 1, keepdims=True)))
        return e / gc.sum(e, 2, keepdims=True)
    g = _graph(two_axes, x=(2, 3, 3))
    assert "softmax" not in _ops(_fused(g, "fuse_softmax"))
    g = _graph(lambda x: F.softmax(x, 1), x=(2, 3, 3))
    f = _fused(g, "fuse_softmax")
    assert [(n.op.name, n.attrs) for n in f.nodes] == [("softmax", {"axis": 1})]


def test_cross_entropy_needs_the_last_axis():
    with gc.Graph("ce") as g:
        z = g.input("z", (3, 3), "float32")  # square: a wrong axis still type-checks
        y = g.input("y", (3,), "int64")
        g.output(loss=-gc.sum(F.one_hot(y, 3) * F.log_softmax(z, 0), 0))
    assert "softmax_cross_entropy" not in _ops(_fused(g, "fuse_losses"))


def test_identity_transpose_is_not_taken_for_a_transposed_operand():
    g = _graph(lambda a, b: gc.transpose(a, (1, 0)) @ gc.transpose(b, (0, 1)), a=(3, 2), b=(3, 4))
    f = _fused(g, "fuse_gemm")
    gemm = [n for n in f.nodes if n.op.name == "gemm"]
    assert len(gemm) == 1 and gemm[0].attrs == {"trans_a": True}
    _same_values(g, f)


def test_attribute_tests_and_bindings():
    swap = Pattern(lambda x: gc.transpose(x), attrs={"transpose": {"axes": swapped_last_two()}})
    g = _graph(lambda t: gc.transpose(t, (0, 2, 1)) + gc.transpose(t, (1, 0, 2)), t=(3, 3, 3))
    first, second = (n.output for n in g.nodes if n.op.name == "transpose")
    assert swap.match(first) is not None and swap.match(second) is None

    both_last = Pattern(lambda x: gc.sum(x, 0) + gc.max(x, 0),
                        attrs={"sum": {"axes": last_axis("k")}, "max": {"axes": single_axis("k")}})
    g = _graph(lambda t: gc.sum(t, -1) + gc.max(t, 2), t=(2, 3, 4))
    m = both_last.match(g.outputs["y"])
    assert m is not None and m.attrs == {"k": 2}
    g = _graph(lambda t: gc.sum(t, -1) + gc.max(t, 1), t=(2, 3, 3))
    assert both_last.match(g.outputs["y"]) is None  # one axis each, but not the same one

    same_pad = Pattern(lambda x: gc.pad(gc.pad(x, 1), 1), types={"x": (2, 2)},
                       attrs={"pad": {"value": bind("v")}})
    g = _graph(lambda x: gc.pad(gc.pad(x, 1, 2.0), 1, 2.0) + gc.pad(gc.pad(x, 1), 1, 2.0), x=(2, 2))
    left, right = g.outputs["y"].producer.inputs
    assert same_pad.match(left).attrs == {"v": 2.0} and same_pad.match(right) is None


def test_keepdims_follow_the_traced_composite():
    pat = Pattern(lambda x: F.softmax(x, -1), traced_attrs=("keepdims",))
    def flat_max(x):  # max without keepdims broadcasts along the wrong axis of a square input
        e = gc.exp(x - gc.stop_gradient(gc.max(x, 1)))
        return e / gc.sum(e, 1, keepdims=True)
    assert pat.match(_graph(flat_max, x=(3, 3)).outputs["y"]) is None
    assert pat.match(_graph(lambda x: F.softmax(x, 1), x=(3, 3)).outputs["y"]) is not None


def test_constraints_must_name_ops_the_pattern_builds():
    with pytest.raises(ValueError, match="does not build"):
        Pattern(lambda x: gc.exp(x), attrs={"sum": {"keepdims": True}})


def test_fusion_passes_report_changes_and_leave_dead_code():
    module = importlib.import_module("graphc.passes.fuse_softmax")
    g = models.mlp((6, 5, 4), dtype="float64")
    same = module.fuse_softmax(g)
    assert not module.last_stats.changed and len(same.nodes) == len(g.nodes)
    g = _graph(lambda x: F.softmax(x, -1), x=(2, 3))
    out = module.fuse_softmax(g)
    assert module.last_stats.changed and module.last_stats.fired["softmax_rule"] == 1
    assert "exp" in _ops(out)  # dead pieces: eliminate_dead_code (in a pipeline) removes them
    assert _ops(_fused(g, "fuse_softmax")) == ["softmax"]
