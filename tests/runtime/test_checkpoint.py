"""Checkpoints: round trip, atomic writes, and errors that name mismatching tensors."""
import json
import os

import numpy as np
import pytest

from graphc.runtime import checkpoint as ck


def test_round_trip_bitwise(tmp_path):
    rng = np.random.default_rng(0)
    t = {"fc1.weight": rng.normal(size=(3, 4)).astype(np.float32), "step0": np.zeros((), np.float64),
         "fc1.weight.exp_avg": rng.normal(size=(3, 4)).astype(np.float32)}
    path = ck.save_checkpoint(tmp_path / "run" / "ckpt", t, {"step": 7, "epoch": 2, "loss": float("nan")})
    assert path.endswith(".safetensors") and os.path.exists(tmp_path / "run" / "ckpt.json")
    back, meta = ck.load_checkpoint(tmp_path / "run" / "ckpt")
    assert meta["step"] == 7 and meta["epoch"] == 2 and meta["loss"] == "nan"
    for k, v in t.items():
        assert back[k].dtype == v.dtype and back[k].tobytes() == v.tobytes()
    assert json.loads((tmp_path / "run" / "ckpt.json").read_text())["step"] == 7


def test_crash_mid_write_keeps_last_good(tmp_path, monkeypatch):
    good = {"w": np.arange(4, dtype=np.float32)}
    ck.save_checkpoint(tmp_path / "c", good, {"step": 1})

    def boom(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        ck.save_checkpoint(tmp_path / "c", {"w": np.full(4, 9, np.float32)}, {"step": 2})
    monkeypatch.undo()
    back, meta = ck.load_checkpoint(tmp_path / "c")
    assert meta["step"] == 1 and np.array_equal(back["w"], good["w"])


def test_truncated_file_is_reported(tmp_path):
    p = ck.save_checkpoint(tmp_path / "c", {"w": np.ones(8, np.float32)}, {})
    data = open(p, "rb").read()
    open(p, "wb").write(data[: len(data) // 2])
    with pytest.raises(ck.CheckpointError, match="not a readable"):
        ck.load_checkpoint(tmp_path / "c")
    with pytest.raises(ck.CheckpointError, match="no checkpoint"):
        ck.load_checkpoint(tmp_path / "nope")


def test_mismatch_names_tensors():
    t = {"a": np.zeros((2, 3), np.float32), "b": np.zeros(3, np.float32), "x": np.zeros(1, np.float32)}
    want = {"a": ((2, 4), "float32"), "b": ((3,), "float32"), "c": ((1,), "float32")}
    with pytest.raises(ck.CheckpointError) as e:
        ck.check_compatible(t, want, "ckpt")
    msg = str(e.value)
    assert "missing from the checkpoint: c" in msg and "not in the model: x" in msg
    assert "a (checkpoint float32[2, 3], model float32[2, 4])" in msg and "b (" not in msg


# ---- issue 10: 0-d tensors, checksums, history, fallback, leftovers -----------------------------
def test_zero_d_arrays_keep_their_shape(tmp_path):
    # np.ascontiguousarray made every 0-d array shape (1,), so batch norm could never resume
    t = {"num_batches_tracked": np.asarray(7, np.int64), "lr": np.float32(0.5),
         "w": np.arange(6, dtype=np.float32).reshape(2, 3).T}  # not C-contiguous
    ck.save_checkpoint(tmp_path / "c", t, {})
    back, _ = ck.load_checkpoint(tmp_path / "c")
    assert back["num_batches_tracked"].shape == () and back["num_batches_tracked"] == 7
    assert back["lr"].shape == () and back["lr"].dtype == np.float32
    assert np.array_equal(back["w"], t["w"])


def _bn_trainer(backend):
    import graphc as gc
    from graphc import nn, optim
    gc.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))

    @gc.function(x=gc.spec(("N", 6)), y=gc.spec(("N",), "int64"))
    def loss_fn(x, y):
        logits = model(x)
        return {"loss": nn.cross_entropy(logits, y), "logits": logits}
    return gc.Trainer(loss_fn, model, optimizer=optim.Adam(0.02), backend=backend, progress=False)


@pytest.mark.parametrize("backend", ["onnxruntime", "numpy"])
def test_batch_norm_model_resumes_bitwise(tmp_path, backend):
    # was: CheckpointError ... 1.num_batches_tracked (checkpoint int64[1], model int64[])
    rng = np.random.default_rng(0)
    data = {"x": rng.normal(size=(48, 6)).astype(np.float32), "y": rng.integers(0, 3, 48)}
    full = _bn_trainer(backend)
    full.fit(data, epochs=3, batch_size=16, seed=1)
    first = _bn_trainer(backend)
    first.fit(data, epochs=1, batch_size=16, seed=1, checkpoint=str(tmp_path / "ck"))
    resumed = _bn_trainer(backend)
    resumed.fit(data, epochs=3, batch_size=16, resume=str(tmp_path / "ck"))
    assert resumed.history.steps == full.history.steps
    a, b = resumed.stepper.state_dict(), full.stepper.state_dict()
    assert a["1.num_batches_tracked"].shape == () and int(a["1.num_batches_tracked"]) == 9
    for k in b:
        assert a[k].shape == b[k].shape and a[k].tobytes() == b[k].tobytes(), k


def _save_series(base, steps, keep=2):
    for s in steps:
        ck.save_checkpoint(base, {"w": np.full(4, s, np.float32), "n": np.asarray(s)},
                           {"step": s}, keep=keep)


def _flip_tensor_byte(st_path, name):
    """Flips one byte inside tensor `name`'s data (not the header)."""
    raw = bytearray(open(st_path, "rb").read())
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    start, _ = header[name]["data_offsets"]
    raw[8 + n + start] ^= 0x40
    open(st_path, "wb").write(bytes(raw))


def test_flipped_byte_in_tensor_data_names_tensor_and_file(tmp_path):
    p = ck.save_checkpoint(tmp_path / "c", {"fc1.weight": np.ones((3, 4), np.float32),
                                            "fc1.bias": np.zeros(3, np.float32)}, {"step": 1})
    _flip_tensor_byte(p, "fc1.weight")
    with pytest.raises(ck.CheckpointError, match=r"c\.safetensors: tensor 'fc1.weight' does not "
                                                 r"match its checksum"):
        ck.load_checkpoint(tmp_path / "c")
    # the checksums are in both the safetensors header and the JSON
    meta = json.loads((tmp_path / "c.json").read_text())
    assert len(meta["tensors"]["fc1.bias"]["sha256"]) == 64


def test_flipped_byte_in_metadata_is_detected(tmp_path):
    p = ck.save_checkpoint(tmp_path / "c", {"w": np.ones(3, np.float32)}, {"step": 12})
    raw = open(p, "rb").read()
    i = raw.index(b'\\"step\\": 12')  # the metadata JSON is a string inside the header JSON
    raw = raw[:i + 10] + b"3" + raw[i + 11:]
    open(p, "wb").write(raw)
    with pytest.raises(ck.CheckpointError, match="metadata does not match its checksum"):
        ck.load_checkpoint(tmp_path / "c")


def test_history_keeps_last_k(tmp_path):
    base = tmp_path / "run" / "ckpt"
    _save_series(base, [5, 10, 15, 20], keep=2)
    names = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert names == ["ckpt.step-00000015.json", "ckpt.step-00000015.safetensors",
                     "ckpt.step-00000020.json", "ckpt.step-00000020.safetensors"]
    _save_series(base, [25], keep=3)
    assert [p.name for p in ck.list_checkpoints(base)] == [
        "ckpt.step-00000025.safetensors", "ckpt.step-00000020.safetensors",
        "ckpt.step-00000015.safetensors"]
    t, meta = ck.load_checkpoint(base)
    assert meta["step"] == 25 and t["n"].shape == ()
    # one entry, named with or without its suffix, is read alone
    assert ck.load_checkpoint(tmp_path / "run" / "ckpt.step-00000020")[1]["step"] == 20
    assert ck.load_checkpoint(ck.series_path(base, 15))[1]["step"] == 15
    with pytest.raises(ValueError, match="keep must be at least 1"):
        ck.save_checkpoint(base, {}, {"step": 1}, keep=0)


def test_new_run_replaces_newer_checkpoints_of_an_old_one(tmp_path):
    base = tmp_path / "ckpt"
    _save_series(base, [40, 50])
    _save_series(base, [10])  # a fresh run over the same path: 40 and 50 would shadow it
    assert [p.name for p in ck.list_checkpoints(base)] == ["ckpt.step-00000010.safetensors"]


def _corrupt(st_path, how, tensor="w"):
    if how == "truncated":
        data = open(st_path, "rb").read()
        open(st_path, "wb").write(data[: len(data) * 2 // 3])
    elif how == "flipped":
        _flip_tensor_byte(st_path, tensor)
    elif how == "no json":
        os.remove(str(st_path)[: -len(".safetensors")] + ".json")
    elif how == "stale json":  # the JSON of another write of the same step
        js = str(st_path)[: -len(".safetensors")] + ".json"
        meta = json.loads(open(js).read())
        meta["history"] = {"steps": [1.0]}
        open(js, "w").write(json.dumps(meta))


@pytest.mark.parametrize("how", ["truncated", "flipped", "no json", "stale json"])
def test_corrupt_newest_falls_back_with_warning(tmp_path, how):
    base = tmp_path / "ckpt"
    _save_series(base, [3, 6])
    newest = ck.series_path(base, 6)
    _corrupt(newest, how)
    with pytest.warns(ck.CheckpointWarning, match=r"ckpt\.step-00000006\.safetensors") as rec:
        t, meta = ck.load_checkpoint(base)
    assert meta["step"] == 3 and t["w"][0] == 3
    assert "step-00000003" in str(rec[0].message)
    # a file named explicitly is read alone, with no fallback; it needs no JSON beside it
    if how in ("truncated", "flipped"):
        with pytest.raises(ck.CheckpointError, match="step-00000006"):
            ck.load_checkpoint(newest)
    else:
        assert ck.load_checkpoint(newest)[1]["step"] == 6


def test_no_intact_checkpoint_names_every_file(tmp_path):
    base = tmp_path / "ckpt"
    _save_series(base, [3, 6])
    _corrupt(ck.series_path(base, 6), "flipped")
    _corrupt(ck.series_path(base, 3), "truncated")
    with pytest.raises(ck.CheckpointError) as e:
        ck.load_checkpoint(base)
    msg = str(e.value)
    assert "no intact checkpoint" in msg and "step-00000006" in msg and "step-00000003" in msg
    assert "tensor 'w' does not match its checksum" in msg and "not a readable" in msg


def test_leftovers_of_killed_writes_are_removed(tmp_path):
    import subprocess
    import sys
    base = tmp_path / "ckpt"
    _save_series(base, [3, 6])
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    tmp_dead = tmp_path / f".ckpt.step-00000009.safetensors.tmp-{dead}"
    tmp_live = tmp_path / f".ckpt.step-00000009.json.tmp-{os.getpid()}"  # a write in progress
    stale = tmp_path / "ckpt.step-00000002.json"
    for p in (tmp_dead, tmp_live, stale):
        p.write_bytes(b"partial")
    removed = ck.remove_leftovers(base)
    assert sorted(removed) == sorted([tmp_dead, stale])
    assert tmp_live.exists() and ck.load_checkpoint(base)[1]["step"] == 6


def test_failed_write_removes_its_temp_file(tmp_path, monkeypatch):
    def boom(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        ck.save_checkpoint(tmp_path / "c", {"w": np.ones(2, np.float32)}, {"step": 1})
    monkeypatch.undo()
    assert os.listdir(tmp_path) == []


def test_trainer_resume_falls_back_and_cleans_up(tmp_path):
    import graphc as gc
    from graphc import optim

    def make():
        return gc.Trainer(gc.models.mlp((6, 8, 3), seed=0), optimizer=optim.Adam(0.01),
                          progress=False)
    rng = np.random.default_rng(0)
    data = {"x": rng.normal(size=(32, 6)).astype(np.float32), "y": rng.integers(0, 3, 32)}
    base = str(tmp_path / "ck")
    full = make()
    full.fit(data, epochs=4, batch_size=16, seed=2)
    first = make()
    first.fit(data, epochs=3, batch_size=16, seed=2, checkpoint=base, keep_checkpoints=2)
    assert first.last_checkpoint.endswith("ck.step-00000006.safetensors")
    assert [p.name for p in ck.list_checkpoints(base)] == ["ck.step-00000006.safetensors",
                                                           "ck.step-00000004.safetensors"]
    _corrupt(ck.series_path(base, 6), "flipped", "fc2.weight")
    leftover = tmp_path / ".ck.step-00000008.safetensors.tmp-999999999"
    leftover.write_bytes(b"x")
    resumed = make()
    with pytest.warns(ck.CheckpointWarning, match=r"ck\.step-00000006\.safetensors.*tensor"):
        resumed.fit(data, epochs=4, batch_size=16, resume=base, checkpoint=base)
    assert not leftover.exists()
    assert resumed.history.steps == full.history.steps  # epochs 3 and 4 redone, bit for bit
    for k, v in full.stepper.state_dict().items():
        assert resumed.stepper.state_dict()[k].tobytes() == v.tobytes()
    with pytest.raises(ValueError, match="keep_checkpoints must be at least 1"):
        make().fit(data, epochs=1, keep_checkpoints=0)
