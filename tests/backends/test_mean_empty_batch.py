"""The mean of no element is NaN on every backend, as in numpy and PyTorch (0 / 0)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import graphc as gc

BACKENDS = ["numpy", "onnxruntime", pytest.param("tvm", marks=pytest.mark.slow)]


def _graph():
    with gc.Graph("empty_mean") as g:
        x = g.input("x", ("N", 3))
        z = g.input("z", ("N", 4))
        q = g.input("q", ("N", 4))
        g.output(all=gc.mean(x), rows=gc.mean(x, 0), keep=gc.mean(x, 0, keepdims=True),
                 per_row=gc.mean(x, 1),
                 ce=gc.apply("softmax_cross_entropy", [z, q], {"reduction": "mean"}))
    return g


@pytest.mark.parametrize("backend", BACKENDS)
def test_mean_over_empty_batch_is_nan(backend, tmp_path, monkeypatch):
    """The symptom: 0.0 on onnxruntime, NaN on numpy and TVM."""
    if backend == "tvm":
        pytest.importorskip("tvm")
        monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    feeds = {"x": np.zeros((0, 3), np.float32), "z": np.zeros((0, 4), np.float32),
             "q": np.zeros((0, 4), np.float32)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # numpy: "Mean of empty slice"
        out = gc.compile(_graph(), backend)(**feeds)
    assert np.isnan(out["all"]) and out["all"].shape == ()
    assert out["rows"].shape == (3,) and np.isnan(out["rows"]).all()
    assert out["keep"].shape == (1, 3) and np.isnan(out["keep"]).all()
    assert out["per_row"].shape == (0,)
    assert np.isnan(out["ce"]), f"softmax_cross_entropy mean of no row: {out['ce']}"


def test_mean_of_a_static_empty_dim_is_nan_on_onnxruntime():
    with gc.Graph("static_empty") as g:
        x = g.input("x", (0, 2))
        g.output(m=gc.mean(x, 0))
    out = gc.compile(g, "onnxruntime")(x=np.zeros((0, 2), np.float32))
    assert out["m"].shape == (2,) and np.isnan(out["m"]).all()


def test_mean_over_a_nonempty_batch_is_unchanged_on_onnxruntime(rng):
    x = rng.standard_normal((5, 3)).astype(np.float32)
    z = rng.standard_normal((5, 4)).astype(np.float32)
    q = np.eye(4, dtype=np.float32)[[0, 1, 2, 3, 0]]
    want = gc.compile(_graph(), "numpy")(x=x, z=z, q=q)
    got = gc.compile(_graph(), "onnxruntime")(x=x, z=z, q=q)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-6, atol=1e-7, err_msg=k)
