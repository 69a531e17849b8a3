"""Reference models built with the DSL: export to ONNX, check it, and match the numpy reference.

The issue asks for MLP, LeNet-5, an LSTM cell unrolled over 8 steps and one Transformer encoder
layer: each forward graph exports, passes onnx.checker's full check, keeps the batch dim as a
named dim, carries the graph's input/output names, uses only ai.onnx operators, and matches the
numpy reference on onnxruntime within 1e-5 relative (float32) for two batch sizes.
"""
from __future__ import annotations

import re

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import graphc as gc
from graphc import models


RTOL = 1e-5

# small but real configurations; lstm keeps the 8 unrolled steps the issue asks for
FORWARD = {
    "mlp": lambda **kw: models.mlp(**kw),
    "lenet5": lambda **kw: models.lenet5(**kw),
    "lstm": lambda **kw: models.lstm(steps=8, input=12, hidden=16, classes=5, **kw),
    "transformer_encoder": lambda **kw: models.transformer_encoder(seq=6, d_model=16, heads=4, ffn=32,
                                                                   classes=5, **kw),
}
ALL = dict(FORWARD, gru=lambda **kw: models.gru(steps=5, input=6, hidden=8, classes=4, **kw),
           logistic_regression=lambda **kw: models.logistic_regression(features=5, **kw))


def rel_err(got: np.ndarray, ref: np.ndarray) -> float:
    """max |got - ref| / max |ref|."""
    scale = float(np.max(np.abs(ref)))
    return float(np.max(np.abs(np.asarray(got, np.float64) - ref))) / (scale if scale > 0 else 1.0)


@pytest.fixture(scope="module", params=list(FORWARD))
def exported(request, tmp_path_factory):
    """(name, forward graph, path of its exported .onnx, loaded ModelProto)."""
    g = FORWARD[request.param](with_loss=False)
    path = tmp_path_factory.mktemp("onnx") / f"{request.param}.onnx"
    gc.export_onnx(g, path)
    return request.param, g, path, onnx.load(str(path))


def test_passes_full_onnx_check(exported):
    _, _, path, model = exported
    onnx.checker.check_model(model, full_check=True)
    onnx.checker.check_model(str(path), full_check=True)


def test_batch_dim_is_named(exported):
    _, g, _, model = exported
    x = next(i for i in model.graph.input if i.name == "x")
    dims = x.type.tensor_type.shape.dim
    assert dims[0].dim_param == "N" and not dims[0].HasField("dim_value")
    assert [d.dim_value for d in dims[1:]] == [int(d) for d in g.inputs[0].shape[1:]]
    out = model.graph.output[0].type.tensor_type.shape.dim
    assert out[0].dim_param == "N"


def test_names_and_initializers_come_from_the_graph(exported):
    _, g, _, model = exported
    assert [i.name for i in model.graph.input] == [v.name for v in g.inputs]
    assert [o.name for o in model.graph.output] == list(g.outputs)
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    for p in g.params:
        np.testing.assert_array_equal(inits[p.name], p.data)


def test_only_standard_onnx_ops(exported):
    _, _, _, model = exported
    assert {o.domain for o in model.opset_import} <= {"", "ai.onnx"}
    assert {n.domain for n in model.graph.node} <= {"", "ai.onnx"}
    assert not any("com.microsoft" in n.domain for n in model.graph.node)


@pytest.mark.parametrize("batch", [1, 5])
def test_onnxruntime_matches_numpy_reference(exported, batch):
    """The exported file, run by a plain onnxruntime session, agrees with the reference."""
    name, g, path, _ = exported
    feeds = models.example_feeds(g, batch, seed=batch)
    ref = gc.compile(g, "numpy")(**feeds)["logits"]
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(["logits"], feeds)[0]
    assert got.shape == ref.shape == (batch, g.outputs["logits"].shape[1])
    assert got.dtype == np.float32
    assert rel_err(got, ref) <= RTOL, f"{name}: {rel_err(got, ref):.2e}"


@pytest.mark.parametrize("name", list(ALL))
def test_loss_graph_on_onnxruntime_matches_reference(name):
    """Loss graphs (inputs x and y, outputs loss then logits) via gc.compile, two batch sizes."""
    g = ALL[name]()
    assert list(g.outputs) == ["loss", "logits"] and g.outputs["loss"].shape == ()
    assert [v.name for v in g.inputs] == ["x", "y"]
    exe_ref, exe_ort = gc.compile(g, "numpy"), gc.compile(g, "onnxruntime")
    for batch in (2, 7):
        feeds = models.example_feeds(g, batch, seed=batch)
        ref, got = exe_ref(**feeds), exe_ort(**feeds)
        assert list(got) == ["loss", "logits"]
        assert np.isfinite(ref["loss"]) and ref["loss"] > 0
        for k in ref:
            assert rel_err(got[k], ref[k]) <= RTOL, f"{name}.{k}: {rel_err(got[k], ref[k]):.2e}"


def test_cross_entropy_loss_of_untrained_model_is_near_log_classes():
    """Fresh PyTorch-style init gives near-uniform predictions, so loss ~ log(classes)."""
    g = models.mlp((20, 32, 10), seed=3)
    feeds = models.example_feeds(g, 64)
    out = gc.compile(g)(**feeds)
    logits = out["logits"].astype(np.float64)
    logp = logits - logits.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    np.testing.assert_allclose(out["loss"], -logp[np.arange(64), feeds["y"]].mean(), rtol=1e-5)
    assert abs(out["loss"] - np.log(10)) < 0.5


def test_same_seed_same_params_other_seed_other_params():
    a, b, c = models.lenet5(seed=1), models.lenet5(seed=1), models.lenet5(seed=2)
    for pa, pb, pc in zip(a.params, b.params, c.params):
        assert pa.name == pb.name == pc.name
        np.testing.assert_array_equal(pa.data, pb.data)
        assert not np.array_equal(pa.data, pc.data)


def test_pytorch_layouts_and_names():
    g = models.lenet5()
    shapes = {p.name: p.shape for p in g.params}
    assert shapes["conv1.weight"] == (6, 1, 5, 5) and shapes["conv2.weight"] == (16, 6, 5, 5)
    assert shapes["fc1.weight"] == (120, 400) and shapes["fc3.weight"] == (10, 84)
    lstm = models.lstm(steps=8, input=12, hidden=16)
    assert {p.name: p.shape for p in lstm.params}["lstm.weight_ih_l0"] == (64, 12)
    assert g.outputs["logits"].shape == ("N", 10)
    assert any(n.output.name.startswith("conv1.") for n in g.nodes)


def test_seed_gives_the_values_graphc_nn_layers_draw_after_manual_seed():
    from graphc import nn
    gc.manual_seed(3)
    layers = [nn.Linear(5, 4), nn.Linear(4, 3)]
    got = models.mlp((5, 4, 3), seed=3).param_data()
    for i, layer in enumerate(layers, start=1):
        np.testing.assert_array_equal(got[f"fc{i}.weight"], layer.weight.data)
        np.testing.assert_array_equal(got[f"fc{i}.bias"], layer.bias.data)


def test_building_a_model_leaves_the_callers_init_generator_alone():
    from graphc import nn
    gc.manual_seed(11)
    want = nn.Linear(3, 2).weight.data
    gc.manual_seed(11)
    models.transformer_encoder(seq=3, d_model=4, heads=2, ffn=5, seed=1)
    np.testing.assert_array_equal(nn.Linear(3, 2).weight.data, want)


def test_params_are_listed_in_state_dict_order():
    from graphc import nn
    g = models.transformer_encoder(seq=3, d_model=8, heads=2, ffn=16, layers=2)
    layer_keys = list(nn.TransformerEncoderLayer(8, 2, 16).state_dict())
    assert [p.name for p in g.params] == [f"layers.{i}.{k}" for i in range(2) for k in layer_keys] \
        + ["head.weight", "head.bias"]
    g = models.lstm(steps=3, input=2, hidden=4)
    assert [p.name for p in g.params] == ["lstm.weight_ih_l0", "lstm.weight_hh_l0", "lstm.bias_ih_l0",
                                          "lstm.bias_hh_l0", "fc.weight", "fc.bias"]


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_recurrent_models_name_each_step_and_keep_no_unused_nodes(kind):
    g = getattr(models, kind)(steps=4, input=3, hidden=4, classes=2, unroll=True)
    steps = {m.group(1) for n in g.nodes if (m := re.match(rf"{kind}\.(t\d+)\.", n.output.name))}
    assert steps == {"t0", "t1", "t2", "t3"}
    assert len(g.live_nodes()) == len(g.nodes)  # the unread output sequence is not left behind


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_recurrent_models_scan_by_default_with_as_many_nodes_for_any_length(kind):
    small, big = (getattr(models, kind)(steps=s, input=3, hidden=4, classes=2) for s in (4, 64))
    assert "scan" in {n.op.name for n in small.nodes}
    assert len(small.nodes) == len(big.nodes)
    assert len(small.live_nodes()) == len(small.nodes)


def test_nn_recurrent_steps_are_named_by_layer_direction_and_time():
    from graphc import nn
    lstm = nn.LSTM(3, 4, num_layers=2, bidirectional=True, unroll=True)

    @gc.function(x=gc.spec((3, "N", 3)))
    def f(x):
        return lstm(x)[0]
    prefixes = {n.output.name.rsplit(".", 1)[0] for n in f.graph.nodes}
    assert {"t0", "t2", "l0_reverse.t0", "l0_reverse.t2", "l1.t1", "l1_reverse.t1"} <= prefixes


@pytest.mark.parametrize("name", ["mlp", "lstm", "transformer_encoder"])
def test_float64_models_run_on_onnxruntime(name):
    # (not lenet5: onnxruntime's CPU provider has no float64 Conv kernel)
    g = FORWARD[name](dtype="float64")
    assert all(p.dtype == "float64" for p in g.params)
    feeds = models.example_feeds(g, 3)
    assert feeds["x"].dtype == np.float64
    ref, got = gc.compile(g)(**feeds), gc.compile(g, "onnxruntime")(**feeds)
    assert got["logits"].dtype == np.float64
    assert rel_err(got["logits"], ref["logits"]) <= 1e-12


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="float32 or float64"):
        models.mlp(dtype="int64")
    with pytest.raises(ValueError, match="divisible"):
        models.transformer_encoder(d_model=10, heads=3)


# ---- against plain numpy written from the papers' equations (runs everywhere) ---------------

def _sig(z):
    return 1 / (1 + np.exp(-z))


def test_lstm_matches_numpy_equations():
    g = models.lstm(steps=8, input=3, hidden=4, classes=2, dtype="float64", seed=7)
    feeds = models.example_feeds(g, 5)
    p = {k.split(".")[-1]: v for k, v in g.param_data().items()}  # weight_ih_l0, ..., weight, bias
    h = c = np.zeros((5, 4))
    for t in range(8):
        z = feeds["x"][:, t] @ p["weight_ih_l0"].T + p["bias_ih_l0"] + h @ p["weight_hh_l0"].T + p["bias_hh_l0"]
        i, f, gg, o = np.split(z, 4, axis=1)
        c = _sig(f) * c + _sig(i) * np.tanh(gg)
        h = _sig(o) * np.tanh(c)
    np.testing.assert_allclose(gc.compile(g)(**feeds)["logits"], h @ p["weight"].T + p["bias"], rtol=1e-12)


def test_gru_matches_numpy_equations():
    g = models.gru(steps=8, input=3, hidden=4, classes=2, dtype="float64", seed=8)
    feeds = models.example_feeds(g, 5)
    p = {k.split(".")[-1]: v for k, v in g.param_data().items()}
    h = np.zeros((5, 4))
    for t in range(8):
        gi = feeds["x"][:, t] @ p["weight_ih_l0"].T + p["bias_ih_l0"]
        gh = h @ p["weight_hh_l0"].T + p["bias_hh_l0"]
        r, z = _sig(gi[:, :4] + gh[:, :4]), _sig(gi[:, 4:8] + gh[:, 4:8])
        n = np.tanh(gi[:, 8:] + r * gh[:, 8:])
        h = (1 - z) * n + z * h
    np.testing.assert_allclose(gc.compile(g)(**feeds)["logits"], h @ p["weight"].T + p["bias"], rtol=1e-12)


def test_transformer_encoder_matches_numpy_equations():
    g = models.transformer_encoder(seq=5, d_model=6, heads=2, ffn=7, classes=3, dtype="float64", seed=9)
    feeds = models.example_feeds(g, 4)
    p = {k.removeprefix("layers.0."): v for k, v in g.param_data().items()}
    x = feeds["x"]

    def ln(v, w, b):
        mu, var = v.mean(-1, keepdims=True), v.var(-1, keepdims=True)
        return (v - mu) / np.sqrt(var + 1e-5) * w + b

    q, k, v = np.split(x @ p["self_attn.in_proj_weight"].T + p["self_attn.in_proj_bias"], 3, axis=-1)
    heads = lambda a: a.reshape(4, 5, 2, 3).transpose(0, 2, 1, 3)  # noqa: E731
    s = heads(q) @ heads(k).transpose(0, 1, 3, 2) / np.sqrt(3)
    a = np.exp(s - s.max(-1, keepdims=True))
    ctx = ((a / a.sum(-1, keepdims=True)) @ heads(v)).transpose(0, 2, 1, 3).reshape(4, 5, 6)
    x = ln(x + ctx @ p["self_attn.out_proj.weight"].T + p["self_attn.out_proj.bias"],
           p["norm1.weight"], p["norm1.bias"])
    ff = np.maximum(x @ p["linear1.weight"].T + p["linear1.bias"], 0) @ p["linear2.weight"].T + p["linear2.bias"]
    x = ln(x + ff, p["norm2.weight"], p["norm2.bias"])
    want = x.mean(1) @ p["head.weight"].T + p["head.bias"]
    np.testing.assert_allclose(gc.compile(g)(**feeds)["logits"], want, rtol=1e-10)


# ---- parity with PyTorch (skipped where torch is not installed) -----------------------------

def _torch_state(g):
    torch = pytest.importorskip("torch")
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in g.param_data().items()}


def _sub(state, prefix):
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_recurrent_models_match_pytorch(kind):
    torch = pytest.importorskip("torch")
    g = getattr(models, kind)(steps=8, input=5, hidden=7, classes=3, dtype="float64", seed=4)
    feeds = models.example_feeds(g, 4)
    ours = gc.compile(g)(**feeds)
    sd = _torch_state(g)
    rnn = getattr(torch.nn, kind.upper())(5, 7, batch_first=True, dtype=torch.float64)
    fc = torch.nn.Linear(7, 3, dtype=torch.float64)
    rnn.load_state_dict(_sub(sd, f"{kind}."))
    fc.load_state_dict(_sub(sd, "fc."))
    with torch.no_grad():
        seq, _ = rnn(torch.from_numpy(feeds["x"]))
        logits = fc(seq[:, -1])
        loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(feeds["y"]))
    np.testing.assert_allclose(ours["logits"], logits.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ours["loss"], loss.item(), rtol=1e-10)


def test_transformer_encoder_matches_pytorch():
    torch = pytest.importorskip("torch")
    g = models.transformer_encoder(seq=6, d_model=8, heads=2, ffn=16, classes=3, dtype="float64",
                                   layers=2, seed=5)
    feeds = models.example_feeds(g, 3)
    ours = gc.compile(g)(**feeds)
    sd = _torch_state(g)
    layer = torch.nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True, dtype=torch.float64)
    enc = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
    head = torch.nn.Linear(8, 3, dtype=torch.float64)
    enc.load_state_dict({k: v for k, v in sd.items() if k.startswith("layers.")})
    head.load_state_dict(_sub(sd, "head."))
    enc.eval()
    with torch.no_grad():
        logits = head(enc(torch.from_numpy(feeds["x"])).mean(1))
    np.testing.assert_allclose(ours["logits"], logits.numpy(), rtol=1e-10, atol=1e-12)


def test_lenet5_matches_pytorch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    g = models.lenet5(dtype="float64", seed=6)
    feeds = models.example_feeds(g, 2)
    sd = _torch_state(g)
    with torch.no_grad():
        h = F.max_pool2d(F.relu(F.conv2d(torch.from_numpy(feeds["x"]), sd["conv1.weight"], sd["conv1.bias"])), 2)
        h = F.max_pool2d(F.relu(F.conv2d(h, sd["conv2.weight"], sd["conv2.bias"])), 2).flatten(1)
        h = F.relu(F.linear(h, sd["fc1.weight"], sd["fc1.bias"]))
        h = F.relu(F.linear(h, sd["fc2.weight"], sd["fc2.bias"]))
        logits = F.linear(h, sd["fc3.weight"], sd["fc3.bias"])
    np.testing.assert_allclose(gc.compile(g)(**feeds)["logits"], logits.numpy(), rtol=1e-10, atol=1e-12)


def test_logistic_regression_matches_closed_form():
    g = models.logistic_regression(features=4, dtype="float64", seed=2)
    feeds = models.example_feeds(g, 6)
    out = gc.compile(g)(**feeds)
    w, b = g.param_data()["linear.weight"], g.param_data()["linear.bias"]
    z = feeds["x"] @ w[0] + b[0]
    p = 1 / (1 + np.exp(-z))
    bce = -(feeds["y"] * np.log(p) + (1 - feeds["y"]) * np.log(1 - p)).mean()
    np.testing.assert_allclose(out["logits"], z, rtol=1e-12)
    np.testing.assert_allclose(out["loss"], bce, rtol=1e-10)


# ---- the models are differentiable: gc.grad against finite differences ----------------------

SMALL64 = {
    "mlp": lambda: models.mlp((5, 4, 3), dtype="float64"),
    "lenet5": lambda: models.lenet5(dtype="float64", classes=3),
    "lstm": lambda: models.lstm(steps=3, input=3, hidden=4, classes=3, dtype="float64"),
    "gru": lambda: models.gru(steps=3, input=3, hidden=4, classes=3, dtype="float64"),
    "transformer_encoder": lambda: models.transformer_encoder(seq=3, d_model=4, heads=2, ffn=5,
                                                              classes=3, dtype="float64"),
    "logistic_regression": lambda: models.logistic_regression(features=3, dtype="float64"),
}


@pytest.mark.parametrize("name", list(SMALL64))
def test_loss_gradients_match_finite_differences(name):
    g = SMALL64[name]()
    report = gc.check_grads(g, models.example_feeds(g, 2, seed=1), samples=4, raise_on_fail=True)
    assert report.ok and len(report.rows) == len(g.params)
