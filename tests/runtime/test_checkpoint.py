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
