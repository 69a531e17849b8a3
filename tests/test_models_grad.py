"""Whole models (graphc.models) pass gc.check_grads in float64: symbolic gradients of the loss
against central finite differences, every parameter (sampled entries for the big ones)."""
from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc import models

CASES = {
    "mlp": lambda dt: models.mlp((6, 5, 4, 3), dtype=dt, seed=1),
    "lenet5_relu_maxpool": lambda dt: models.lenet5(dt, seed=1, classes=4),
    "lenet5_tanh_avgpool": lambda dt: models.lenet5(dt, seed=1, classes=4, activation="tanh"),
    "lstm_8_steps": lambda dt: models.lstm(steps=8, input=3, hidden=4, classes=3, dtype=dt, seed=1),
    "gru_8_steps": lambda dt: models.gru(steps=8, input=3, hidden=4, classes=3, dtype=dt, seed=1),
    "transformer_encoder": lambda dt: models.transformer_encoder(seq=4, d_model=8, heads=2, ffn=6,
                                                                 classes=3, dtype=dt, seed=1),
}


@pytest.mark.parametrize("name", list(CASES))
def test_model_gradients_match_finite_differences(name):
    g = CASES[name]("float64")
    feeds = models.example_feeds(g, batch=3, seed=2)
    # each checked entry costs two forward runs: LeNet's (numpy) convolutions are the slow part
    report = gc.check_grads(g, feeds, samples=5 if name.startswith("lenet") else 12, rtol=1e-6)
    assert report.ok, str(report)
    assert len(report.rows) == len(g.params)


@pytest.mark.parametrize("name", list(CASES))
def test_gradient_graph_on_onnxruntime_agrees_with_numpy(name):
    g = CASES[name]("float32")  # onnxruntime has no float64 Conv / ConvTranspose / AveragePool
    feeds = models.example_feeds(g, batch=3, seed=3)
    dg = gc.grad(g)
    want, got = gc.compile(dg, "numpy")(**feeds), gc.compile(dg, "onnxruntime")(**feeds)
    for k in want:
        scale = np.max(np.abs(want[k])) + 1e-6
        np.testing.assert_allclose(got[k], want[k], rtol=1e-4, atol=1e-5 * scale, err_msg=k)


def test_hvp_of_the_mlp_matches_finite_differences_of_its_gradient():
    g = models.mlp((4, 5, 3), dtype="float64", seed=4)
    feeds = models.example_feeds(g, batch=3, seed=5)
    rng = np.random.default_rng(6)
    names = [p.name for p in g.params]
    vs = {n: rng.normal(size=g.value(n).data.shape) for n in names}
    h = gc.hvp(g)
    out = gc.compile(h)(**feeds, **{h.role_targets(gc.Role.TANGENT)[n]: vs[n] for n in names})
    d = gc.compile(gc.grad(g))
    eps = 1e-5

    def grads(sign):
        params = {n: g.value(n).data + sign * eps * vs[n] for n in names}
        res = d(**feeds, **params)
        return np.concatenate([res[f"d_{n}"].ravel() for n in names])

    num = (grads(1) - grads(-1)) / (2 * eps)
    sym = np.concatenate([out[f"hvp_{n}"].ravel() for n in names])
    assert np.linalg.norm(num - sym) / (np.linalg.norm(num) + np.linalg.norm(sym)) < 1e-6
