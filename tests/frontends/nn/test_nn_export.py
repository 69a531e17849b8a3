"""`model.eval()` traced and exported to ONNX is a plain inference model; training graphs carry
batch-norm state as outputs that the Trainer feeds back."""
import numpy as np
import onnx
import onnxruntime as ort
import pytest

import graphc as gc
from graphc import nn, optim


STANDARD_DOMAINS = {"", "ai.onnx"}


def small_cnn():
    gc.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Dropout(0.5), nn.Flatten(), nn.Linear(4 * 4 * 4, 8),
                         nn.BatchNorm1d(8), nn.GELU(), nn.Dropout(0.3), nn.Linear(8, 3))


def test_eval_model_exports_as_standard_inference_onnx(tmp_path):
    model = small_cnn()
    bn = model[1]
    rng = np.random.default_rng(0)
    bn.running_mean.data[:] = rng.standard_normal(4)
    bn.running_var.data[:] = rng.random(4) + 0.5
    model.eval()

    @gc.function(x=gc.spec(("N", 1, 8, 8)))
    def infer(x):
        return {"logits": model(x)}

    path = tmp_path / "cnn.onnx"
    proto = gc.export_onnx(infer.graph, path)
    ops = {n.op_type for n in proto.graph.node}
    assert {n.domain for n in proto.graph.node} <= STANDARD_DOMAINS
    assert not ops & {"BitwiseXor", "Mod", "RandomUniform", "Dropout"}  # no dropout masks
    assert [i.name for i in proto.graph.input] == ["x"]  # no rng inputs, no state
    assert [o.name for o in proto.graph.output] == ["logits"]
    inits = {i.name for i in proto.graph.initializer}
    assert {"1.running_mean", "1.running_var", "7.running_mean", "0.weight"} <= inits
    x = rng.standard_normal((5, 1, 8, 8)).astype(np.float32)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"x": x})[0]
    y = gc.compile(infer.graph, "numpy")(x=x)["logits"]
    np.testing.assert_allclose(got, y, rtol=1e-5, atol=1e-6)
    # the reference: the same eval computation written out in numpy
    pre = _conv_ref(x, model[0].weight.data, model[0].bias.data)
    h = (pre - bn.running_mean.data[None, :, None, None]) / np.sqrt(
        bn.running_var.data[None, :, None, None] + 1e-5)
    h = h * bn.weight.data[None, :, None, None] + bn.bias.data[None, :, None, None]
    h = np.maximum(h, 0).reshape(5, 4, 4, 2, 4, 2).max(axis=(3, 5)).reshape(5, -1)
    h = h @ model[6].weight.data.T + model[6].bias.data
    bn1 = model[7]
    h = (h - bn1.running_mean.data) / np.sqrt(bn1.running_var.data + 1e-5)
    from math import erf, sqrt
    h = h * 0.5 * (1 + np.vectorize(lambda v: erf(v / sqrt(2)))(h))
    want = h @ model[10].weight.data.T + model[10].bias.data
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-5)


def _conv_ref(x, w, b):
    n, _, hh, ww = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.zeros((n, w.shape[0], hh, ww), np.float64)
    for i in range(3):
        for j in range(3):
            out += np.einsum("nchw,oc->nohw", xp[:, :, i:i + hh, j:j + ww], w[:, :, i, j])
    return out + b[None, :, None, None]


def test_training_mode_graph_exports_with_state_outputs():
    model = small_cnn()

    @gc.function(x=gc.spec(("N", 1, 8, 8)), y=gc.spec(("N",), "int64"))
    def loss_fn(x, y):
        return {"loss": nn.cross_entropy(model(x), y)}

    proto = gc.export_onnx(loss_fn.graph)
    outs = [o.name for o in proto.graph.output]
    assert outs == ["loss", "state:1.running_mean", "state:1.running_var",
                    "state:1.num_batches_tracked", "state:7.running_mean", "state:7.running_var",
                    "state:7.num_batches_tracked"]
    onnx.checker.check_model(proto)


@pytest.mark.parametrize("backend", ["numpy", "onnxruntime"])
def test_trainer_feeds_batch_norm_state_back_and_writes_it_to_the_model(backend):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((64, 3)) * [1.0, 2.0, 0.5] + [3.0, -1.0, 0.0]).astype(np.float32)
    y = (x[:, 0] > 3.0).astype(np.int64)
    gc.manual_seed(0)
    model = nn.Sequential(nn.BatchNorm1d(3, momentum=0.5), nn.Linear(3, 2))

    @gc.function(x=gc.spec(("N", 3)), y=gc.spec(("N",), "int64"))
    def loss_fn(x, y):
        return {"loss": nn.cross_entropy(model(x), y)}

    trainer = gc.Trainer(loss_fn, model, optimizer=optim.SGD(0.1), backend=backend, progress=False)
    assert "1.weight" in trainer.spec.params and "0.running_mean" in trainer.spec.params
    trainer.fit({"x": x, "y": y}, epochs=3, batch_size=64, shuffle=False)
    # three full-batch steps with momentum 0.5 move the running mean 7/8 of the way
    want_mean = x.mean(0) * (1 - 0.5 ** 3)
    want_var = 1 * 0.5 ** 3 + x.var(0, ddof=1) * (1 - 0.5 ** 3)
    np.testing.assert_allclose(model[0].running_mean.data, want_mean, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(model[0].running_var.data, want_var, rtol=1e-4)
    assert model[0].num_batches_tracked.data == 3
    # the Trainer's state dict uses the model's state-dict names
    assert set(trainer.state_dict()) == set(model.state_dict())
    # gradients never touch the buffers; wrt=None skips them
    g = gc.grad(loss_fn.graph)
    assert "d_0.running_mean" not in g.outputs and "d_0.weight" in g.outputs


@pytest.mark.parametrize("kind", ["lstm", "gru", "transformer"])
def test_sequence_models_export_in_eval_mode(kind, tmp_path):
    gc.manual_seed(0)
    if kind == "transformer":
        model = nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16, dropout=0.2,
                                                                 batch_first=True), 2)
    else:
        model = getattr(nn, kind.upper())(8, 8, num_layers=2, batch_first=True, dropout=0.2)
    model.eval()

    @gc.function(x=gc.spec(("N", 5, 8)))
    def infer(x):
        out = model(x)
        return {"y": out[0] if isinstance(out, tuple) else out}

    path = tmp_path / f"{kind}.onnx"
    proto = gc.export_onnx(infer.graph, path)
    assert {n.domain for n in proto.graph.node} <= STANDARD_DOMAINS
    assert [i.name for i in proto.graph.input] == ["x"]
    x = np.random.default_rng(0).standard_normal((3, 5, 8)).astype(np.float32)
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, gc.compile(infer.graph, "numpy")(x=x)["y"], rtol=1e-4,
                               atol=1e-5)
