"""A PyTorch-exported LSTM classifier imports onto `gc.scan` and fine-tunes in graphc (issue 11)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import graphc as gc
from graphc import nn, optim

torch = pytest.importorskip("torch", reason="exports the classifier with torch.onnx")


class _Classifier(torch.nn.Module):
    def __init__(self, layers: int = 1, bidirectional: bool = False):
        super().__init__()
        self.lstm = torch.nn.LSTM(5, 8, num_layers=layers, batch_first=True,
                                  bidirectional=bidirectional)
        self.fc = torch.nn.Linear(8 * (2 if bidirectional else 1), 3)

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.fc(out[:, -1])


def _export(tmp_path, layers: int = 1, bidirectional: bool = False):
    torch.manual_seed(0)
    net = _Classifier(layers, bidirectional).eval()
    path = tmp_path / "lstm.onnx"
    # the TorchScript exporter (dynamo=False) runs offline and writes ONNX LSTM nodes; its
    # tracer warnings (shape checks traced as constants, batch size of h0) do not apply here
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.zeros(2, 7, 5),), str(path), dynamo=False,
                          input_names=["x"], output_names=["logits"],
                          dynamic_axes={"x": {0: "N", 1: "T"}})
    return net, path


def _module_graph(m: nn.Module) -> gc.Graph:
    @gc.function(x=gc.spec(("N", 7, 5)))
    def f(x):
        return m(x)
    return f


def _data(n: int = 48):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((n, 7, 5)).astype(np.float32)
    y = (x[:, :, 0].sum(1) > 0).astype(np.int64) + (x[:, -1, 1] > 1).astype(np.int64)
    return x, y


@pytest.mark.parametrize("layers,bidirectional", [(1, False), (2, True)])
def test_exported_lstm_imports_onto_scan_with_pytorchs_outputs(tmp_path, layers, bidirectional):
    net, path = _export(tmp_path, layers, bidirectional)
    g = gc.import_onnx(path)
    assert any(n.op.name == "scan" for n in g.nodes)
    assert not any(n.op.name == "lstm" for n in g.nodes)
    m = gc.import_onnx(path, trainable=True)
    x, _ = _data(6)
    want = net(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(_module_graph(m)(x), want, rtol=1e-5, atol=1e-5)
    got = gc.compile(g, "onnxruntime")(x=x)["logits"]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_exported_lstm_fine_tunes_in_graphc(tmp_path):
    _, path = _export(tmp_path)
    m = gc.import_onnx(path, trainable=True)
    x, y = _data()

    @gc.function(x=gc.spec(("N", 7, 5)), y=gc.spec(("N",), "int64"))
    def loss_fn(x, y):
        return {"loss": nn.cross_entropy(m(x), y)}

    assert any(n.op.name == "scan" for n in loss_fn.graph.nodes)
    before = {k: v.copy() for k, v in m.state_dict().items()}
    tr = gc.Trainer(loss_fn, m, optimizer=optim.Adam(m.parameters(), lr=2e-2), progress=False)
    first = tr.evaluate({"x": x, "y": y})["loss"]
    history = tr.fit({"x": x, "y": y}, epochs=6, batch_size=16)
    last = tr.evaluate({"x": x, "y": y})["loss"]
    assert last < 0.8 * first, (first, history["loss"], last)
    assert any(not np.array_equal(before[k], v) for k, v in m.state_dict().items())
