"""random_uniform: a pure function of (seed, counter, index), bit-identical on every runtime."""
from __future__ import annotations

import numpy as np
import pytest
from onnx.reference import ReferenceEvaluator

import graphc as gc

SEEDS = [(0, 0), (0, 1), (1, 0), (123456789, 2**40 + 7), (-3, 5), (2**62, -(2**50))]


def _graph(shape, dtype="float32"):
    with gc.Graph("rand") as g:
        seed = g.input("seed", (), "int64")
        step = g.input("step", (), "int64")
        g.output(u=gc.random_uniform(seed, step, shape, dtype))
    return g


def _feeds(seed, step):
    return {"seed": np.array(seed, np.int64), "step": np.array(step, np.int64)}


@pytest.fixture(scope="module", params=["float32", "float64"])
def runners(request):
    dtype = request.param
    g = _graph((7, 11), dtype)
    np_exe = gc.compile(g, "numpy")
    ort_exe = gc.compile(g, "onnxruntime")
    ref_eval = ReferenceEvaluator(gc.export_onnx(g))
    return dtype, {
        "numpy": lambda s, c: np_exe(**_feeds(s, c))["u"],
        "onnxruntime": lambda s, c: ort_exe(**_feeds(s, c))["u"],
        "onnx_reference": lambda s, c: ref_eval.run(None, _feeds(s, c))[0],
    }


@pytest.mark.parametrize("seed,step", SEEDS)
def test_bit_identical_on_every_runtime(runners, seed, step):
    dtype, run = runners
    want = run["numpy"](seed, step)
    assert want.dtype == np.dtype(dtype) and want.shape == (7, 11)
    for name in ("onnxruntime", "onnx_reference"):
        got = run[name](seed, step)
        assert got.dtype == want.dtype and got.shape == want.shape
        assert np.array_equal(got.view(np.uint8), want.view(np.uint8)), f"{name} differs from numpy"


def test_same_inputs_same_values_and_different_counters_differ(runners):
    _, run = runners
    for name, f in run.items():
        a, b = f(42, 7), f(42, 7)
        assert np.array_equal(a, b), name
        assert not np.array_equal(a, f(42, 8)), f"{name}: counter 7 and 8 give the same values"
        assert not np.array_equal(a, f(43, 7)), f"{name}: seed 42 and 43 give the same values"
    # consecutive counters are not shifted copies of one another
    u0, u1 = run["numpy"](5, 0).ravel(), run["numpy"](5, 1).ravel()
    assert abs(np.corrcoef(u0, u1)[0, 1]) < 0.3
    assert len(np.intersect1d(u0, u1)) < 5


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_distribution(dtype):
    exe = gc.compile(_graph((100, 100), dtype), "onnxruntime")
    u = exe(**_feeds(2024, 3))["u"]
    assert u.min() >= 0.0 and u.max() < 1.0
    assert abs(u.mean() - 0.5) < 0.01
    assert abs(u.std() - np.sqrt(1 / 12)) < 0.01
    hist, _ = np.histogram(u, bins=10, range=(0, 1))
    assert hist.min() > 850 and hist.max() < 1150, hist  # 1000 expected per bin
    assert len(np.unique(u)) > 9900
    # neighbouring elements are uncorrelated
    flat = u.ravel()
    assert abs(np.corrcoef(flat[:-1], flat[1:])[0, 1]) < 0.05


def test_symbolic_shape_is_a_prefix_of_a_longer_draw():
    """Values depend on the element index only, so a batch of 3 is the first rows of a batch of 5."""
    with gc.Graph("rand_sym") as g:
        x = g.input("x", ("N", 4))
        seed, step = gc.rng_inputs()
        g.output(u=gc.random_uniform(seed, step, x.shape))
    feeds = {"rng_seed": np.array(9, np.int64), "rng_step": np.array(1, np.int64)}
    outs = {}
    for backend in ("numpy", "onnxruntime"):
        exe = gc.compile(g, backend)
        outs[backend] = [exe(x=np.zeros((n, 4), np.float32), **feeds)["u"] for n in (3, 5)]
    for backend, (u3, u5) in outs.items():
        assert u3.shape == (3, 4) and u5.shape == (5, 4)
        assert np.array_equal(u3, u5[:3]), backend
    assert np.array_equal(outs["numpy"][1], outs["onnxruntime"][1])


def test_dropout_masks_agree_between_numpy_and_onnxruntime():
    with gc.Graph("drop") as g:
        x = g.input("x", ("N", 16))
        g.output(y=gc.dropout(x, p=0.25))
    x = np.ones((8, 16), np.float32)
    for step in (0, 1):
        feeds = {"x": x, "rng_seed": np.array(1, np.int64), "rng_step": np.array(step, np.int64)}
        a = gc.compile(g, "numpy")(**feeds)["y"]
        b = gc.compile(g, "onnxruntime")(**feeds)["y"]
        assert np.array_equal(a, b)
        assert set(np.unique(a)) <= {0.0, np.float32(1 / 0.75)}
        assert 0.1 < np.mean(a == 0) < 0.4
