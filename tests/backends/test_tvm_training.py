"""Training on TVM: the same model, seed and data give the same loss curve on numpy, onnxruntime
and TVM (within 1e-4 relative over 50 steps); the Trainer takes backend="tvm"; parameters stay in
TVM arrays between steps."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tvm")

import graphc as gc  # noqa: E402
from graphc import optim  # noqa: E402

STEPS = 50
BATCH = 4


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "graphc-cache"))


MODELS = {
    "mlp": lambda: gc.models.mlp((12, 16, 16, 5), seed=0),
    "lenet5": lambda: gc.models.lenet5(seed=0),
    "lstm": lambda: gc.models.lstm(steps=4, input=6, hidden=8, classes=5, seed=0),
    "transformer": lambda: gc.models.transformer_encoder(seq=6, d_model=8, heads=2, ffn=16,
                                                         classes=5, seed=0),
}


def _batches(g, n):
    return [gc.models.example_feeds(g, batch=BATCH, seed=k) for k in range(n)]


def _curve(step_graph, backend, batches, lr):
    st = gc.make_stepper(step_graph, backend)
    return np.array([float(st.step(b, lr)["loss"]) for b in batches]), st


@pytest.mark.slow
@pytest.mark.parametrize("name", list(MODELS))
def test_same_loss_curve_on_numpy_onnxruntime_and_tvm(name):
    g = MODELS[name]()
    step = gc.training_step(g, optimizer=optim.SGD(0.05, momentum=0.9))
    batches = _batches(g, STEPS)
    ref, ref_st = _curve(step, "numpy", batches, 0.05)
    ort, _ = _curve(step, "onnxruntime", batches, 0.05)
    tvm_curve, tvm_st = _curve(step, "tvm", batches, 0.05)
    assert np.all(np.isfinite(ref))
    assert ref[-1] != ref[0]  # it trains: the curve moves
    np.testing.assert_allclose(ort, ref, rtol=1e-4, err_msg="onnxruntime vs numpy")
    np.testing.assert_allclose(tvm_curve, ref, rtol=1e-4, err_msg="tvm vs numpy")
    # and the trained parameters agree too
    for k, v in ref_st.params().items():
        np.testing.assert_allclose(tvm_st.params()[k], v, rtol=1e-3, atol=1e-5, err_msg=k)


def test_tvm_stepper_keeps_state_on_device_and_round_trips():
    import tvm
    g = MODELS["mlp"]()
    step = gc.training_step(g, optimizer=optim.SGD(1e-2, momentum=0.9))
    st = gc.make_stepper(step, "tvm")
    assert all(isinstance(v, tvm.runtime.Tensor) for v in st._carried.values())
    batches = _batches(g, 3)
    st.step(batches[0], 1e-2)
    saved = st.state_dict()
    a = float(st.step(batches[1], 1e-2)["loss"])
    st.load_state_dict(saved)
    b = float(st.step(batches[1], 1e-2)["loss"])
    assert a == b
    assert set(saved) == set(st.spec.carried)


def test_trainer_takes_backend_tvm():
    g = MODELS["mlp"]()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 12)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) + 2 * (x[:, 1] > 0).astype(np.int64)
    trainer = gc.Trainer(g, optimizer=optim.SGD(0.1, momentum=0.9), backend="tvm", progress=False)
    assert trainer.stepper.backend == "tvm"
    hist = trainer.fit({"x": x, "y": y}, epochs=15, batch_size=8)
    losses = hist["loss"]
    assert len(losses) == 15 and losses[-1] < losses[0]
