"""gc.Trainer: fit/evaluate/predict, checkpoints and bitwise resume, the NaN guard, nn modules."""
import math
import os

import numpy as np
import pytest

import graphc as gc
from graphc import optim
from graphc.runtime.checkpoint import CheckpointError


def blobs(n=96, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = (rng.normal(size=(n, 6)) + np.eye(3, 6)[y] * 3).astype(np.float32)
    return {"x": x, "y": y}


def make(backend="onnxruntime", opt=None, **kw):
    g = gc.models.mlp((6, 8, 3), seed=0)
    return gc.Trainer(g, optimizer=opt or optim.Adam(0.01), backend=backend, progress=False, **kw)


def test_fit_evaluate_predict_and_writeback():
    data = blobs()
    tr = make()
    g = tr.user_graph
    w0 = g.value("fc1.weight").data.copy()
    h = tr.fit(data, epochs=8, batch_size=20, validation=blobs(48, 1))
    assert len(h) == 8 and h["loss"][-1] < h["loss"][0]
    assert h.last()["val_accuracy"] > 0.9 and h.last()["step"] == 8 * 5  # 96 = 4*20 + 16
    res = tr.evaluate(data)
    assert set(res) == {"loss", "accuracy"} and res["accuracy"] > 0.9
    logits = tr.predict({"x": data["x"]})
    assert logits.shape == (96, 3)
    assert np.mean(logits.argmax(1) == data["y"]) == pytest.approx(res["accuracy"])
    # trained values are written back into the graph and match state_dict()
    sd = tr.state_dict()
    assert not np.array_equal(g.value("fc1.weight").data, w0)
    assert np.array_equal(g.value("fc1.weight").data, sd["fc1.weight"])
    assert set(sd) == {p.name for p in g.params}


def test_numpy_and_onnxruntime_train_alike():
    data = blobs(40)
    a, b = make("numpy"), make("onnxruntime")
    ha = a.fit(data, epochs=2, batch_size=16)
    hb = b.fit(data, epochs=2, batch_size=16)
    np.testing.assert_allclose(ha.steps, hb.steps, rtol=1e-4)


@pytest.mark.parametrize("backend", ["onnxruntime", "numpy"])
def test_kill_and_resume_is_bitwise(tmp_path, backend):
    data = blobs(64)
    opt = lambda: optim.AdamW(0.02)  # noqa: E731
    sched = optim.schedules.linear_warmup(optim.schedules.cosine(0.02, 16), 3)
    full = make(backend, opt(), schedule=sched).fit(data, epochs=4, batch_size=16, seed=5)
    first = make(backend, opt(), schedule=sched)
    first.fit(data, epochs=2, batch_size=16, seed=5, checkpoint=str(tmp_path / "ck"))
    del first  # "killed" after epoch 2
    resumed = make(backend, opt(), schedule=sched)
    h = resumed.fit(data, epochs=4, batch_size=16, resume=str(tmp_path / "ck"))
    assert h["epoch"] == [1, 2, 3, 4]
    assert h.steps == full.steps  # every step's loss, bit for bit
    assert h.last()["loss"] == full.last()["loss"]


def test_checkpoint_of_another_model_names_tensors(tmp_path):
    tr = make()
    tr.fit(blobs(32), epochs=1, batch_size=16)
    tr.save_checkpoint(str(tmp_path / "a"))
    other = gc.Trainer(gc.models.mlp((6, 5, 3), seed=0), optimizer=optim.Adam(0.01), progress=False)
    with pytest.raises(CheckpointError) as e:
        other.load_checkpoint(str(tmp_path / "a"))
    msg = str(e.value)
    assert "fc1.weight (checkpoint float32[8, 6], model float32[5, 6])" in msg
    assert "fc2.weight.exp_avg" in msg and "fc1.bias" in msg
    sgd = gc.Trainer(gc.models.mlp((6, 8, 3), seed=0), optimizer=optim.SGD(0.1), progress=False)
    with pytest.raises(CheckpointError, match="not in the model: .*fc1.weight.exp_avg.*written with Adam"):
        sgd.load_checkpoint(str(tmp_path / "a"))


def test_nan_guard_names_step_and_checkpoint(tmp_path):
    data = blobs(32)
    tr = make(opt=optim.SGD(0.1))
    tr.fit(data, epochs=1, batch_size=16, checkpoint=str(tmp_path / "good"))
    x = data["x"].copy()
    x[20, 0] = np.nan
    # a list of batches: a dict with NaN is refused when fit starts (test_trainer_robustness.py)
    bad = [{"x": x[:16], "y": data["y"][:16]}, {"x": x[16:], "y": data["y"][16:]}]
    with pytest.raises(gc.NonFiniteLossError) as e:
        tr.fit(bad, epochs=2, batch_size=16, shuffle=False, checkpoint=str(tmp_path / "good"))
    msg = str(e.value)
    assert "loss is nan at step 4 (epoch 2, batch 2)" in msg  # 1-based: the 4th step
    assert "good.step-00000002.safetensors" in msg  # the newest file of the series
    # the last good checkpoint is intact and loads
    tensors, meta = gc.load_checkpoint(tmp_path / "good")
    assert meta["step"] == 2 and all(np.isfinite(v).all() for v in tensors.values())
    fresh = make(opt=optim.SGD(0.1))
    with pytest.raises(gc.NonFiniteLossError, match="no checkpoint was written"):
        fresh.fit(bad, epochs=1, batch_size=16, shuffle=False)


def test_early_stopping_restores_best():
    tr = make(opt=optim.SGD(0.5))
    stop = gc.EarlyStopping(monitor="val_loss", patience=1)
    val = blobs(32, 7)
    h = tr.fit(blobs(), epochs=50, batch_size=32, validation=val, early_stopping=stop)
    assert len(h) < 50
    best = min(h["val_loss"])
    assert tr.evaluate(val)["loss"] == pytest.approx(best, rel=1e-6)


def test_iterable_data_user_metric_and_schedule():
    data = blobs(32)
    batches = [{"x": data["x"][i:i + 8], "y": data["y"][i:i + 8]} for i in range(0, 32, 8)]
    tr = make(opt=optim.SGD(0.1), schedule=optim.schedules.step_decay(0.1, 2, 0.5),
              metrics={"mean_logit": lambda v: gc.mean(v["logits"])})
    h = tr.fit(batches, epochs=2)
    assert tr.spec.metrics == ["loss", "accuracy", "mean_logit"]
    assert "mean_logit" in h.keys() and math.isfinite(h.last()["mean_logit"])
    assert h["lr"] == [0.05, 0.0125]  # lr of each epoch's last step: 0.1*0.5**(3//2), 0.1*0.5**(7//2)
    assert h.last()["step"] == 8


def test_trains_a_gc_function_of_nn_modules_and_updates_the_model():
    nn = pytest.importorskip("graphc.nn")
    gc.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, 3))

    @gc.function(x=gc.spec(("N", 6)), y=gc.spec(("N",), "int64"))
    def loss_fn(x, y):
        logits = model(x)
        return {"loss": nn.cross_entropy(logits, y), "logits": logits}
    before = model.state_dict()
    tr = gc.Trainer(loss_fn, model, optimizer=optim.Adam(0.02), progress=False)
    assert tr.spec.rng_seed == "rng_seed"
    tr.fit(blobs(), epochs=5, batch_size=16)
    after = model.state_dict()
    assert set(after) == {"0.weight", "0.bias", "3.weight", "3.bias"}
    for k in after:
        assert not np.array_equal(after[k], before[k])
        np.testing.assert_array_equal(after[k], tr.state_dict()[k])
    # evaluation runs the model in eval mode: no dropout, so it is deterministic
    assert tr.evaluate(blobs(32, 3)) == tr.evaluate(blobs(32, 3))
    assert model.training


def test_history_plot(tmp_path):
    tr = make()
    h = tr.fit(blobs(32), epochs=2, batch_size=16, validation=blobs(16, 2))
    png = h.plot(tmp_path / "curve.png")
    assert open(png, "rb").read(4) == b"\x89PNG"


def test_one_shot_iterator_is_rejected_for_several_epochs():
    data = blobs(16)
    gen = ({"x": data["x"][i:i + 8], "y": data["y"][i:i + 8]} for i in (0, 8))
    with pytest.raises(ValueError, match="one-shot iterator"):
        make().fit(gen, epochs=2)


KILLED_RUN = r"""
import os, signal, sys
import numpy as np
import graphc as gc
from graphc import optim
sys.path.insert(0, {tests!r})
from runtime.test_trainer import blobs, make

def die(trainer, row):
    if row["epoch"] == 2:  # the checkpoint of epoch 2 is on disk: kill -9, no cleanup at all
        os.kill(os.getpid(), signal.SIGKILL)

make(opt=optim.Adam(0.02)).fit(blobs(64), epochs=4, batch_size=16, seed=3,
                               checkpoint={ckpt!r}, callbacks=[die])
"""


def test_killed_process_resumes_bitwise(tmp_path):
    import subprocess
    import sys
    tests = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = KILLED_RUN.format(tests=tests, ckpt=str(tmp_path / "ck"))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr  # SIGKILL
    full = make(opt=optim.Adam(0.02)).fit(blobs(64), epochs=4, batch_size=16, seed=3)
    resumed = make(opt=optim.Adam(0.02)).fit(blobs(64), epochs=4, batch_size=16,
                                             resume=str(tmp_path / "ck"))
    assert resumed.steps == full.steps and resumed.last()["loss"] == full.last()["loss"]
