"""ONNX random ops (RandomUniform/Normal, their *Like forms, Bernoulli, training Dropout) imported
onto graphc's counter-based generator: the values differ from onnx's generator by design, so
the distributions are checked, by their moments over 200,000 draws within 6 standard errors, on
the numpy backend and on onnxruntime (the graph exported by gc.compile)."""
from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto as TP  # noqa: E402
from onnx import helper as h  # noqa: E402

import graphc as gc  # noqa: E402
from graphc.frontends.onnx_import import OnnxImportError, import_onnx  # noqa: E402

N = 200_000
SIGMAS = 6.0
BACKENDS = ["numpy", pytest.param("onnxruntime", marks=pytest.mark.skipif(
    not __import__("importlib").util.find_spec("onnxruntime"), reason="onnxruntime missing"))]


def _model(nodes, inputs, outputs, opset=17):
    return h.make_model(h.make_graph(nodes, "g", inputs, outputs),
                        opset_imports=[h.make_opsetid("", opset)])


def _out(name, elem=TP.FLOAT, shape=(N,)):
    return h.make_tensor_value_info(name, elem, list(shape))


def _run(model, feeds=None, seed=0, step=0, backend="numpy"):
    g = import_onnx(model)
    feeds = dict(feeds or {})
    feeds.update({"rng_seed": np.int64(seed), "rng_step": np.int64(step)})
    return list(gc.compile(g, backend).run(feeds).values())


def _check_mean(x, mean, var):
    se = np.sqrt(var / x.size)
    assert abs(float(x.mean(dtype=np.float64)) - mean) < SIGMAS * se, (x.mean(), mean, se)


def _check_var(x, var, fourth):
    """The sample variance against `var`; `fourth` is the central fourth moment."""
    se = np.sqrt((fourth - var ** 2) / x.size)
    assert abs(float(x.astype(np.float64).var()) - var) < SIGMAS * se, (x.var(), var, se)


@pytest.mark.parametrize("backend", BACKENDS)
def test_random_uniform_moments_and_range(backend):
    lo, hi = -2.0, 3.0
    m = _model([h.make_node("RandomUniform", [], ["y"], shape=[N], low=lo, high=hi)], [],
               [_out("y")])
    (y,) = _run(m, backend=backend)
    assert y.shape == (N,) and y.dtype == np.float32
    assert y.min() >= lo and y.max() < hi
    _check_mean(y, (lo + hi) / 2, (hi - lo) ** 2 / 12)
    _check_var(y, (hi - lo) ** 2 / 12, (hi - lo) ** 4 / 80)


@pytest.mark.parametrize("backend", BACKENDS)
def test_random_normal_moments(backend):
    mean, scale = 1.5, 0.5
    m = _model([h.make_node("RandomNormal", [], ["y"], shape=[400, 500], mean=mean, scale=scale)],
               [], [_out("y", shape=(400, 500))])
    (y,) = _run(m, backend=backend)
    assert y.shape == (400, 500) and y.dtype == np.float32 and np.isfinite(y).all()
    _check_mean(y, mean, scale ** 2)
    _check_var(y, scale ** 2, 3 * scale ** 4)
    # a normal's third central moment is 0 (symmetry)
    z = (y.astype(np.float64) - mean) / scale
    assert abs((z ** 3).mean()) < SIGMAS * np.sqrt(15 / z.size)


@pytest.mark.parametrize("backend", BACKENDS)
def test_like_ops_take_shape_and_dtype_from_the_input(backend):
    x = h.make_tensor_value_info("x", TP.DOUBLE, [N])
    m = _model([h.make_node("RandomUniformLike", ["x"], ["u"], low=1.0, high=2.0),
                h.make_node("RandomNormalLike", ["x"], ["z"], scale=2.0)],
               [x], [_out("u", TP.DOUBLE), _out("z", TP.DOUBLE)])
    u, z = _run(m, {"x": np.zeros(N)}, backend=backend)
    assert u.dtype == np.float64 and z.dtype == np.float64 and u.shape == z.shape == (N,)
    assert u.min() >= 1.0 and u.max() < 2.0
    _check_mean(u, 1.5, 1 / 12)
    _check_mean(z, 0.0, 4.0)
    _check_var(z, 4.0, 3 * 16.0)


def test_dtype_attribute_is_respected():
    m = _model([h.make_node("RandomUniform", [], ["a"], shape=[1000], dtype=TP.DOUBLE),
                h.make_node("RandomNormal", [], ["b"], shape=[1000], dtype=TP.FLOAT16),
                h.make_node("RandomUniformLike", ["x"], ["c"], dtype=TP.FLOAT16)],
               [h.make_tensor_value_info("x", TP.FLOAT, [1000])],
               [_out("a", TP.DOUBLE, (1000,)), _out("b", TP.FLOAT16, (1000,)),
                _out("c", TP.FLOAT16, (1000,))])
    a, b, c = _run(m, {"x": np.zeros(1000, np.float32)})
    assert (a.dtype, b.dtype, c.dtype) == (np.float64, np.float16, np.float16)
    assert np.isfinite(b).all() and c.min() >= 0 and c.max() < 1  # half-open after rounding


@pytest.mark.parametrize("backend", BACKENDS)
def test_bernoulli_mean_is_p(backend):
    p = np.where(np.arange(N) % 2 == 0, 0.2, 0.7).astype(np.float32)
    m = _model([h.make_node("Bernoulli", ["p"], ["y"], dtype=TP.INT32)],
               [h.make_tensor_value_info("p", TP.FLOAT, [N])], [_out("y", TP.INT32)])
    (y,) = _run(m, {"p": p}, backend=backend)
    assert y.dtype == np.int32 and set(np.unique(y)) <= {0, 1}
    for q, sel in ((0.2, y[0::2]), (0.7, y[1::2])):
        _check_mean(sel, q, q * (1 - q))


@pytest.mark.parametrize("backend", BACKENDS)
def test_training_dropout_keeps_one_minus_ratio_scaled(backend):
    ratio = 0.3
    init = [h.make_tensor("r", TP.FLOAT, [], [ratio]), h.make_tensor("t", TP.BOOL, [], [True])]
    graph = h.make_graph([h.make_node("Dropout", ["x", "r", "t"], ["y", "mask"])], "g",
                         [h.make_tensor_value_info("x", TP.FLOAT, [N])],
                         [_out("y"), _out("mask", TP.BOOL)], initializer=init)
    m = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    x = np.linspace(1.0, 2.0, N, dtype=np.float32)
    y, mask = _run(m, {"x": x}, backend=backend)
    assert mask.dtype == np.bool_ and y.dtype == np.float32
    _check_mean(mask, 1 - ratio, ratio * (1 - ratio))
    np.testing.assert_allclose(y[mask], x[mask] / (1 - ratio), rtol=1e-6)
    assert (y[~mask] == 0).all()


def test_same_seed_and_step_replay_others_differ():
    m = _model([h.make_node("RandomUniform", [], ["y"], shape=[1000])], [], [_out("y", shape=(1000,))])
    first = _run(m, seed=3, step=5)[0]
    np.testing.assert_array_equal(first, _run(m, seed=3, step=5)[0])
    assert not np.array_equal(first, _run(m, seed=4, step=5)[0])
    assert not np.array_equal(first, _run(m, seed=3, step=6)[0])


def test_onnx_seed_attribute_and_sites_give_distinct_streams():
    nodes = [h.make_node("RandomUniform", [], ["a"], shape=[1000], seed=1.0),
             h.make_node("RandomUniform", [], ["b"], shape=[1000], seed=2.0),
             h.make_node("RandomUniform", [], ["c"], shape=[1000])]
    a, b, c = _run(_model(nodes, [], [_out(n, shape=(1000,)) for n in "abc"]))
    assert not np.array_equal(a, b) and not np.array_equal(a, c)
    # the two draws of one site are independent: correlation near 0
    assert abs(np.corrcoef(a, c)[0, 1]) < SIGMAS / np.sqrt(1000)
    alone = _run(_model(nodes[:1], [], [_out("a", shape=(1000,))]))[0]
    np.testing.assert_array_equal(a, alone)  # the seed fixes the stream, the step the draw


def test_inference_dropout_is_the_identity_and_draws_nothing():
    m = _model([h.make_node("Dropout", ["x"], ["y", "mask"])],
               [h.make_tensor_value_info("x", TP.FLOAT, [4])], [_out("y", shape=(4,)),
                                                                _out("mask", TP.BOOL, (4,))])
    g = import_onnx(m)
    assert not [v for v in g.inputs if v.name.startswith("rng_")]
    y, mask = gc.compile(g).run({"x": np.arange(4, dtype=np.float32)}).values()
    np.testing.assert_array_equal(y, np.arange(4)) and np.testing.assert_array_equal(mask, True)


@pytest.mark.parametrize("node, pattern", [
    # onnx.checker refuses a missing required attribute first, naming the op after the reason
    (h.make_node("RandomUniform", [], ["y"]), "(?s)'shape' is missing.*RandomUniform"),
    (h.make_node("RandomUniform", [], ["y"], shape=[3], low=2.0, high=1.0),
     r"RandomUniform\): low=2.0 and high=1.0"),
    (h.make_node("RandomNormal", [], ["y"], shape=[3], scale=-1.0), r"RandomNormal\).*scale=-1"),
    (h.make_node("RandomNormal", [], ["y"], shape=[3], dtype=TP.INT32),
     r"RandomNormal\): dtype int32 is not a floating-point type"),
])
def test_bad_attributes_raise_naming_the_node(node, pattern):
    m = _model([node], [], [_out("y", shape=(3,))])
    with pytest.raises(OnnxImportError, match=pattern):
        import_onnx(m)


def test_dropout_ratio_out_of_range_raises():
    init = [h.make_tensor("r", TP.FLOAT, [], [1.5]), h.make_tensor("t", TP.BOOL, [], [True])]
    graph = h.make_graph([h.make_node("Dropout", ["x", "r", "t"], ["y"])], "g",
                         [h.make_tensor_value_info("x", TP.FLOAT, [3])], [_out("y", shape=(3,))],
                         initializer=init)
    with pytest.raises(OnnxImportError, match="Dropout.*ratio 1.5"):
        import_onnx(h.make_model(graph, opset_imports=[h.make_opsetid("", 17)]))
