"""Fine-tuning an imported ONNX model: import_onnx(trainable=True) is an nn Module."""
from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc import nn, optim


def _exported_cnn(path):
    """A small CNN built and exported by graphc itself (the torch export is tested below)."""
    gc.manual_seed(0)
    cnn = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                        nn.Linear(4 * 4 * 4, 10))

    @gc.function(x=gc.spec(("batch", 1, 8, 8)))
    def fwd(x):
        return cnn(x)

    gc.export_onnx(fwd.graph, str(path))
    return cnn, fwd


def test_trainable_import_is_a_module_with_readable_names_and_the_same_outputs(tmp_path):
    cnn, fwd = _exported_cnn(tmp_path / "cnn.onnx")
    m = gc.import_onnx(tmp_path / "cnn.onnx", trainable=True)
    assert isinstance(m, nn.Module)
    assert sorted(m.state_dict()) == sorted(cnn.state_dict())  # '0.weight', '4.bias', ...

    @gc.function(x=gc.spec(("N", 1, 8, 8)))
    def again(x):
        return m(x)

    x = np.random.default_rng(0).standard_normal((3, 1, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(again(x), fwd(x), rtol=1e-5, atol=1e-6)


def test_fine_tune_with_the_trainer_then_export_again(tmp_path):
    _exported_cnn(tmp_path / "cnn.onnx")
    m = gc.import_onnx(tmp_path / "cnn.onnx", trainable=True)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((64, 1, 8, 8)).astype(np.float32)
    y = (x[:, 0, :4].mean((1, 2)) > 0).astype(np.int64)

    @gc.function(x=gc.spec(("N", 1, 8, 8)), y=gc.spec(("N",), "int64"))
    def loss_fn(x, y):
        logits = m(x)
        return {"loss": nn.cross_entropy(logits, y), "logits": logits}

    before = {k: v.copy() for k, v in m.state_dict().items()}
    tr = gc.Trainer(loss_fn, m, optimizer=optim.Adam(m.parameters(), lr=1e-2), progress=False)
    first = tr.evaluate({"x": x, "y": y})["loss"]
    tr.fit({"x": x, "y": y}, epochs=20, batch_size=16)
    assert tr.evaluate({"x": x, "y": y})["loss"] < 0.5 * first
    assert any(not np.array_equal(before[k], v) for k, v in m.state_dict().items())

    @gc.function(x=gc.spec(("N", 1, 8, 8)))
    def tuned(x):
        return m(x)

    gc.export_onnx(tuned.graph, str(tmp_path / "tuned.onnx"))
    back = gc.import_onnx(tmp_path / "tuned.onnx")
    np.testing.assert_allclose(gc.compile(back, "onnxruntime")(x=x[:5])[next(iter(back.outputs))],
                               tuned(x[:5]), rtol=1e-5, atol=1e-5)


def test_exporter_names_become_readable(tmp_path):
    torch = pytest.importorskip("torch", reason="exports a model with torch.onnx")
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                              torch.nn.Linear(2 * 6 * 6, 3))
    path = tmp_path / "t.onnx"
    torch.onnx.export(net, (torch.zeros(2, 1, 8, 8),), str(path), dynamo=False,
                      input_names=["x"], dynamic_axes={"x": {0: "N"}})
    m = gc.import_onnx(path, trainable=True)
    names = list(m.state_dict())
    assert all(n.replace(".", "").replace("_", "").isalnum() for n in names), names
    x = np.random.default_rng(0).standard_normal((2, 1, 8, 8)).astype(np.float32)

    @gc.function(x=gc.spec(("N", 1, 8, 8)))
    def f(x):
        return m(x)

    np.testing.assert_allclose(f(x), net(torch.from_numpy(x)).detach().numpy(), rtol=1e-4, atol=1e-5)
