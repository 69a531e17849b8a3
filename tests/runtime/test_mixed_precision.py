"""Mixed precision: `gc.training_step(..., precision=)` and `Trainer(precision=)`.

The autocast pass runs products in float16/bfloat16 and the rest in float32; master weights and
optimizer state stay float32; float16 gets dynamic loss scaling as graph code, whose sequence of
scales and skipped steps is torch.amp.GradScaler's on the same overflow pattern.
"""
from __future__ import annotations

import numpy as np
import onnx
import pytest

import graphc as gc
from graphc import nn, optim
from graphc.datasets import digits
from graphc.optim.loss_scaling import SCALE, SKIP_METRIC, SKIPPED, TRACKER, LossScaler
from graphc.passes.pipeline import get_pipeline


def _mlp_loss():
    with gc.init.seeded(0):
        model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))

    @gc.function(x=gc.spec(("N", 64)), y=gc.spec(("N",), "int64"))
    def loss_fn(x, y):
        logits = model(x)
        return {"loss": nn.cross_entropy(logits, y), "logits": logits}
    return model, loss_fn


def test_autocast_runs_products_low_and_the_rest_float32():
    _, loss_fn = _mlp_loss()
    g, _ = get_pipeline("autocast-bf16").run(get_pipeline("fuse-forward").run(loss_fn.graph)[0])
    low = [n for n in g.nodes if n.output.type.dtype == "bfloat16"]
    assert {n.op.name for n in low} == {"cast", "gemm"}
    assert all(n.op.traits.low_precision for n in low if n.op.name != "cast")
    f32 = [n for n in g.nodes if n.op.name not in ("cast", "gemm")]
    assert f32 and all(n.output.type.dtype in ("float32", "int64", "bool") for n in f32)
    assert g.outputs["loss"].type.dtype == "float32"


@pytest.mark.parametrize("precision,low", [("bf16", "bfloat16"), ("fp16", "float16")])
def test_master_weights_and_state_stay_float32(precision, low):
    model, loss_fn = _mlp_loss()
    step = gc.training_step(loss_fn, model, optim.Adam(1e-3), precision=precision)
    for name in step.spec.params + [s for s in step.spec.state if not s.startswith("amp.")]:
        assert step.value(name).type.dtype == "float32", name
    assert any(n.output.type.dtype == low and n.op.name == "gemm" for n in step.nodes)
    assert ("amp.loss_scale" in step.spec.state) == (precision == "fp16")


def test_unknown_precision_is_an_error():
    model, loss_fn = _mlp_loss()
    with pytest.raises(gc.GraphBuildError, match="precision='fp8'"):
        gc.training_step(loss_fn, model, precision="fp8")


@pytest.mark.parametrize("backend", ["numpy", "tvm"])
def test_digits_mlp_in_bf16_and_fp16_within_half_a_percent_of_float32(backend):
    if backend == "tvm":
        pytest.importorskip("tvm")
    train, test = digits()
    acc = {}
    for precision in ("fp32", "bf16", "fp16"):
        model, loss_fn = _mlp_loss()
        tr = gc.Trainer(loss_fn, model, optimizer=optim.Adam(3e-3), backend=backend,
                        precision=precision, progress=False)
        tr.fit(train, epochs=10, batch_size=32)
        acc[precision] = tr.evaluate(test)["accuracy"]
        if precision == "fp16":  # the Trainer reports the steps loss scaling skipped
            assert tr.history.epochs[-1]["skipped_steps"] >= 0
            assert tr.skipped_steps == sum(r["skipped_steps"] for r in tr.history.epochs)
    assert acc["fp32"] >= 0.96, acc
    assert acc["bf16"] >= acc["fp32"] - 0.005, acc
    assert acc["fp16"] >= acc["fp32"] - 0.005, acc


# ---- dynamic loss scaling ------------------------------------------------------------------------

#: steps whose gradient overflows (True), with growth_interval=3: backoffs, growths after three
#: good steps, and a reset of the growth count by an overflow
PATTERN = [False, False, False, True, False, False, True, True, False, False, False, False,
           False, False, True, False]


def _scaling_graph(scaler):
    """loss = mean(x @ w) * m: m = 1e36 makes the float16 backward overflow, m = 1 does not."""
    with gc.Graph("amp") as g:
        x = g.input("x", ("N", 4))
        m = g.input("m", ())
        w = g.param("w", init=np.full((4, 2), 0.1, np.float32))
        g.output(loss=gc.mean(gc.matmul(x, w)) * m)
    return gc.training_step(g, optimizer=optim.SGD(0.1), precision="fp16", loss_scaler=scaler)


def _graphc_sequence(backend):
    scaler = LossScaler(init_scale=1024.0, growth_interval=3)
    step = _scaling_graph(scaler)
    st = gc.make_stepper(step, backend)
    x = np.random.default_rng(0).uniform(0, 1, (4, 4)).astype(np.float32)
    scales, skips, ws = [], [], []
    for bad in PATTERN:
        before = st.state_dict()["w"].copy()
        out = st.step({"x": x, "m": np.float32(1e36 if bad else 1.0)}, 0.1)
        after = st.state_dict()
        skips.append(bool(out[SKIP_METRIC]))
        scales.append(float(after[SCALE]))
        if bad:
            np.testing.assert_array_equal(after["w"], before)  # the update was skipped
        ws.append(after["w"])
    assert int(st.state_dict()[SKIPPED]) == sum(PATTERN)
    return scales, skips


def _rule_sequence(init=1024.0, growth=2.0, backoff=0.5, interval=3):
    """GradScaler's documented update rule, reimplemented."""
    scale, tracker, scales, skips = init, 0, [], []
    for bad in PATTERN:
        if bad:
            scale, tracker = scale * backoff, 0
        else:
            tracker += 1
            if tracker == interval:
                scale, tracker = scale * growth, 0
        scales.append(scale)
        skips.append(bad)
    return scales, skips


def _torch_sequence():
    torch = pytest.importorskip("torch")
    w = torch.nn.Parameter(torch.full((4, 2), 0.1))
    opt = torch.optim.SGD([w], lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0, growth_interval=3)
    x = torch.rand(4, 4)
    scales, skips = [], []
    for bad in PATTERN:
        opt.zero_grad()
        loss = (x @ w).mean() * (float("inf") if bad else 1.0)
        scaler.scale(loss).backward()
        before = w.detach().clone()
        scaler.step(opt)
        scaler.update()
        skips.append(bool(torch.equal(before, w.detach())))
        scales.append(float(scaler.get_scale()))
    return scales, skips


@pytest.mark.parametrize("backend", ["numpy", "onnxruntime"])
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_loss_scaling_skips_and_backs_off_as_grad_scaler_does(backend):
    got = _graphc_sequence(backend)
    assert got == _rule_sequence()
    assert got == _torch_sequence()


def test_fp16_step_exported_to_onnx_carries_loss_scaling(tmp_path):
    model, loss_fn = _mlp_loss()
    step = gc.training_step(loss_fn, model, optim.Adam(1e-3), precision="fp16")
    path = tmp_path / "fp16_step.onnx"
    gc.export_onnx(step, path)
    m = onnx.load(str(path))
    onnx.checker.check_model(m, full_check=True)
    inputs = {i.name for i in m.graph.input}
    outputs = {o.name for o in m.graph.output}
    assert {SCALE, TRACKER, SKIPPED} <= inputs
    assert {f"new.{SCALE}", f"new.{TRACKER}", f"new.{SKIPPED}", SKIP_METRIC} <= outputs
    ops = {n.op_type for n in m.graph.node}
    assert {"Where", "Cast"} <= ops
    f16 = onnx.TensorProto.FLOAT16
    assert any(n.op_type == "Cast" and any(a.name == "to" and a.i == f16 for a in n.attribute)
               for n in m.graph.node)
    # and stock onnxruntime runs it: one overflowing step is skipped, one good step is not
    import onnxruntime as ort
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {k: np.asarray(v) for k, v in step.spec.initial.items()}
    train, _ = digits()
    feeds.update(x=train["x"][:8], y=train["y"][:8], step=np.asarray(0, np.int64),
                 lr=np.asarray(1e-3, np.float32))
    feeds = {k: v for k, v in feeds.items() if k in inputs}
    out = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))
    assert out[SKIP_METRIC] in (0.0, 1.0)
    assert np.isfinite(out["loss"])


def test_bf16_lenet_step_exports_convolutions_through_float32_below_opset_22():
    """ONNX's Conv and MaxPool take bfloat16 from opset 22 only: below it the exporter casts."""
    g = gc.models.lenet5()
    step = gc.training_step(g, optimizer=optim.SGD(0.1, momentum=0.9), precision="bf16")
    model = gc.to_onnx(step)
    onnx.checker.check_model(model, full_check=True)
    convs = [n for n in step.nodes if n.op.name == "conv2d"]
    assert convs and all(n.output.type.dtype == "bfloat16" for n in convs)
    losses = {}
    for backend in ("numpy", "tvm"):
        if backend == "tvm" and pytest.importorskip("tvm") is None:
            continue
        st = gc.make_stepper(step, backend)
        feeds = gc.models.example_feeds(g, batch=4)
        losses[backend] = [float(st.step(feeds, 0.1)["loss"]) for _ in range(3)]
    assert losses["numpy"][-1] < losses["numpy"][0]
    np.testing.assert_allclose(losses["tvm"], losses["numpy"], rtol=2e-3)
