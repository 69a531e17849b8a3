"""Trainer and data fixes of issue 10: empty data, bad batch sizes, (X, Y) tuples, checkpoint
paths, weights after an exception, bad learning rates, NaN/Inf in the data."""
import math
import os

import numpy as np
import pytest

import graphc as gc
from graphc import nn, optim
from graphc.runtime.checkpoint import CheckpointError


def blobs(n=96, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = (rng.normal(size=(n, 6)) + np.eye(3, 6)[y] * 3).astype(np.float32)
    return {"x": x, "y": y}


def make(backend="numpy", opt=None, **kw):
    g = gc.models.mlp((6, 8, 3), seed=0)
    return gc.Trainer(g, optimizer=opt or optim.Adam(0.01), backend=backend, progress=False, **kw)


def nn_trainer(backend="numpy", **kw):
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))

    @gc.function(x=gc.spec(("N", 6)), y=gc.spec(("N",), "int64"))
    def loss_fn(x, y):
        logits = model(x)
        return {"loss": nn.cross_entropy(logits, y), "logits": logits}
    return gc.Trainer(loss_fn, model, optimizer=optim.SGD(0.1), backend=backend, progress=False, **kw), model


# ---- empty data, batch sizes ------------------------------------------------------------------------

@pytest.mark.parametrize("empty", [{"x": np.zeros((0, 6), np.float32), "y": np.zeros(0, np.int64)}, []])
def test_fit_on_an_empty_dataset_raises(empty):
    tr = make()
    with pytest.raises(ValueError, match="training data is empty"):
        tr.fit(empty, epochs=2)
    assert tr.epoch == 0 and len(tr.history) == 0


def test_fit_on_an_iterable_that_yields_nothing_raises():
    class Nothing:
        def __iter__(self):
            return iter(())
    tr = make()
    with pytest.raises(ValueError, match="gave no examples in epoch 1"):
        tr.fit(Nothing(), epochs=2)
    assert tr.epoch == 0


def test_evaluate_on_empty_data_raises():
    tr = make()
    with pytest.raises(ValueError, match="evaluation data is empty"):
        tr.evaluate({"x": np.zeros((0, 6), np.float32), "y": np.zeros(0, np.int64)})
    with pytest.raises(ValueError, match="evaluation data is empty"):
        tr.evaluate([])


@pytest.mark.parametrize("bs,err", [(0, ValueError), (-4, ValueError), (2.5, TypeError),
                                    ("32", TypeError), (True, TypeError), (None, TypeError)])
def test_batch_size_zero_negative_or_not_an_int_raises_at_fit_and_evaluate_start(bs, err):
    tr = make()
    with pytest.raises(err, match="batch_size must be a positive int"):
        tr.fit(blobs(), batch_size=bs)
    with pytest.raises(err, match="batch_size must be a positive int"):
        tr.evaluate(blobs(), batch_size=bs)
    assert tr.step == 0
    assert tr.fit(blobs(8), batch_size=np.int64(4)).last()["step"] == 2


# ---- data given as (X, Y) -------------------------------------------------------------------------

def test_fit_and_evaluate_accept_an_x_y_tuple_in_input_order():
    d = blobs()
    a, b = make(), make()
    ha = a.fit(d, epochs=2, batch_size=16, validation=blobs(30, 1), shuffle=False)
    hb = b.fit((d["x"], d["y"]), epochs=2, batch_size=16, validation=[blobs(30, 1)["x"], blobs(30, 1)["y"]],
               shuffle=False)
    assert ha.steps == hb.steps and ha["val_loss"] == hb["val_loss"]
    assert a.evaluate(d) == b.evaluate((d["x"], d["y"]))


def test_a_tuple_of_the_wrong_length_says_to_pass_a_dict():
    d = blobs()
    with pytest.raises(ValueError, match=r"tuple of 1 arrays, but the graph has 2 batch input\(s\) \(x, y\); "
                                         r"pass a dict \{name: array\}"):
        make().fit((d["x"],))
    with pytest.raises(ValueError, match="pass a dict"):
        make().fit((d["x"], d["y"], d["y"]))


def test_a_single_array_or_a_list_of_non_dicts_is_a_clear_error():
    d = blobs()
    with pytest.raises(ValueError, match=r"is one array, but the graph has 2 batch inputs \(x, y\); pass a dict"):
        make().fit(d["x"])
    with pytest.raises(TypeError, match="batch 0 of the data is a int; an iterable of batches must yield dicts"):
        make().fit(iter([1, 2]))


def test_a_dict_with_other_names_says_which_are_missing():
    d = blobs()
    with pytest.raises(ValueError, match=r"training data has no 'x', 'y': the graph's batch inputs are x, y, "
                                         r"and the dict has keys X, Y"):
        make().fit({"X": d["x"], "Y": d["y"]})


def test_whole_dataset_errors_give_the_row():
    d = blobs()
    d["y"][50] = 3
    with pytest.raises(gc.FeedError, match=r"training data: input 'y': label 3 at index 50 is outside \[0, 3\)"):
        make().fit(d, batch_size=16)
    with pytest.raises(gc.FeedError, match=r"training data: input 'x' has shape \(96, 5\)"):
        make().fit({"x": d["x"][:, :5], "y": d["y"] % 3}, batch_size=16)


# ---- checkpoint paths -------------------------------------------------------------------------------

def test_checkpoint_that_is_an_existing_directory_raises(tmp_path):
    tr = make()
    with pytest.raises(ValueError, match=r"is a directory.*checkpoint='.*ckpt'"):
        tr.fit(blobs(), checkpoint=str(tmp_path))
    assert tr.step == 0
    assert not list(tmp_path.parent.glob(tmp_path.name + ".*"))  # nothing written beside it


def test_unwritable_checkpoint_directory_is_detected_when_fit_starts(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    tr = make()
    with pytest.raises(CheckpointError, match=r"cannot write checkpoints to .*a_file/ckpt.*not writable"):
        tr.fit(blobs(), epochs=2, checkpoint=str(blocker / "ckpt"))
    assert tr.step == 0  # found before the first epoch, not after it


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes to read-only dirs")
def test_read_only_checkpoint_directory_is_detected_when_fit_starts(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        tr = make()
        with pytest.raises(CheckpointError, match="not writable"):
            tr.fit(blobs(), checkpoint=str(ro / "ckpt"))
        assert tr.step == 0
    finally:
        ro.chmod(0o755)


def test_checkpoint_in_a_new_directory_still_works(tmp_path):
    tr = make()
    tr.fit(blobs(), epochs=1, checkpoint=str(tmp_path / "new" / "deeper" / "ckpt"))
    assert tr.last_checkpoint and os.path.exists(tr.last_checkpoint)
    assert not [p for p in (tmp_path / "new" / "deeper").iterdir() if "write-check" in p.name]


# ---- the model holds the last completed step's weights when fit raises --------------------------------

@pytest.mark.parametrize("backend", ["numpy", "onnxruntime"])
def test_keyboard_interrupt_in_fit_leaves_model_with_last_step_weights(backend):
    def schedule(step):
        if step == 7:
            raise KeyboardInterrupt
        return 0.1
    tr, model = nn_trainer(backend, schedule=schedule)
    w0 = model.state_dict()["0.weight"].copy()
    with pytest.raises(KeyboardInterrupt):
        tr.fit(blobs(), epochs=3, batch_size=16)
    assert tr.step == 7
    trained = tr.stepper.params()
    sd = model.state_dict()
    assert not np.array_equal(sd["0.weight"], w0)
    for k, v in trained.items():
        np.testing.assert_array_equal(sd[k], v)
        np.testing.assert_array_equal(tr.user_graph.value(k).data, v)


def test_os_error_while_checkpointing_leaves_model_with_last_step_weights(tmp_path, monkeypatch):
    tr, model = nn_trainer()

    def disk_full(*a, **k):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(tr, "save_checkpoint", disk_full)
    with pytest.raises(OSError, match="No space left"):
        tr.fit(blobs(), epochs=2, batch_size=32, checkpoint=str(tmp_path / "ck"))
    assert tr.step == 3
    for k, v in tr.stepper.params().items():
        np.testing.assert_array_equal(model.state_dict()[k], v)


@pytest.mark.parametrize("backend", ["numpy", "onnxruntime", "tvm"])
def test_nonfinite_loss_leaves_model_with_the_finite_weights_before_that_step(backend):
    tr, model = nn_trainer(backend, schedule=lambda s: 0.1 if s < 4 else 1e38)
    with pytest.raises(gc.NonFiniteLossError) as info:
        tr.fit(blobs(), epochs=3, batch_size=16)
    assert "the model keeps the weights from before this step" in str(info.value)
    sd = model.state_dict()
    assert all(np.isfinite(v).all() for v in sd.values())
    for k, v in tr.stepper.params().items():
        np.testing.assert_array_equal(sd[k], v)


@pytest.mark.parametrize("backend", ["numpy", "onnxruntime", "tvm"])
def test_stepper_rolls_back_one_step_only(backend):
    g = gc.models.mlp((6, 8, 3), seed=0)
    st = gc.make_stepper(gc.training_step(g, optimizer=optim.SGD(0.1, momentum=0.9)), backend)
    b = blobs(8)
    st.step(b, 0.1)
    before = st.state_dict()
    st.step(b, 0.1)
    assert st.rollback() and st.step_count == 1
    for k, v in st.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
    assert not st.rollback()
    st.step(b, 0.1)  # and training goes on from there
    assert st.step_count == 2


# ---- learning rates -----------------------------------------------------------------------------------

@pytest.mark.parametrize("lr", [-1.0, float("nan"), float("inf")])
def test_negative_or_nonfinite_constant_schedule_raises(lr):
    with pytest.raises(ValueError, match="learning rate must be a finite number >= 0"):
        make(schedule=lr)


@pytest.mark.parametrize("lr", [-0.5, float("nan")])
def test_schedule_returning_a_bad_lr_raises_naming_the_step(lr):
    tr = make(schedule=lambda s: 0.01 if s < 3 else lr)
    with pytest.raises(ValueError, match=r"the schedule at step 3: the learning rate must be a finite number >= 0"):
        tr.fit(blobs(), epochs=2, batch_size=16)
    assert tr.step == 3


# ---- NaN / Inf in the data -------------------------------------------------------------------------------

def test_nan_in_validation_data_raises_naming_the_input():
    val = blobs(30, 1)
    val["x"][7, 2] = np.nan
    tr = make()
    with pytest.raises(gc.FeedError, match=r"validation data: input 'x' has nan at index \(7, 2\)"):
        tr.fit(blobs(), epochs=2, validation=val)
    assert tr.step == 0  # checked before training, not after the first epoch
    with pytest.raises(gc.FeedError, match=r"input 'x' has nan at index \(7, 2\)"):
        tr.evaluate(val)


def test_nan_in_a_validation_batch_list_raises_naming_the_input():
    val = blobs(30, 1)
    val["x"][3, 0] = np.inf
    tr = make()
    with pytest.raises(gc.FeedError, match=r"evaluation data \(examples 0 to 29\): input 'x' has inf at index \(3, 0\)"):
        tr.evaluate([val])


def test_nan_in_training_data_raises_naming_the_input_before_any_step():
    d = blobs()
    d["x"][40, 1] = np.nan
    tr, model = nn_trainer()
    w0 = {k: v.copy() for k, v in model.state_dict().items()}
    with pytest.raises(gc.FeedError, match=r"training data: input 'x' has nan at index \(40, 1\)"):
        tr.fit(d, batch_size=16)
    assert tr.step == 0
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, w0[k])


def test_nan_in_a_training_batch_list_is_named_in_the_nonfinite_loss_error():
    good, bad = blobs(16, 1), blobs(16, 2)
    bad["x"][5, 3] = np.nan
    tr, model = nn_trainer()
    with pytest.raises(gc.NonFiniteLossError, match=r"batch input 'x' has nan at index \(5, 3\) of this batch"):
        tr.fit([good, bad], shuffle=False)
    assert all(np.isfinite(v).all() for v in model.state_dict().values())
    assert math.isfinite(tr.history.steps[-1])
