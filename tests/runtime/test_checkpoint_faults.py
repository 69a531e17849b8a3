"""Checkpoint fault test: kill -9 at random moments (many inside checkpoint writes), damage the
newest checkpoint (truncated, a flipped byte in tensor data, JSON missing), resume, repeat.

Every resume must start from the newest checkpoint that is intact by an independent oracle (its
tensors bitwise equal to the uninterrupted run's state at that step, its JSON present and equal
to the embedded metadata), and every finished run must end bitwise equal to the uninterrupted
run. The counts are printed (run pytest with -s to see them). GRAPHC_FAULT_KILLS sets how many
kills to reach (default 12); GRAPHC_FAULT_SEED replays one sequence of delays and damage.
"""
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

CHILD = r"""
import sys
import numpy as np
import graphc as gc
from graphc import optim

base, resume, epochs, keep = sys.argv[1], sys.argv[2] == "1", int(sys.argv[3]), int(sys.argv[4])
rng = np.random.default_rng(0)
y = rng.integers(0, 3, 96)
x = (rng.normal(size=(96, 6)) + np.eye(3, 6)[y] * 3).astype(np.float32)
tr = gc.Trainer(gc.models.mlp((6, 16, 3), seed=0), optimizer=optim.Adam(0.01), progress=False)
load = tr.load_checkpoint

def reporting_load(path):  # tells the parent which step the resume restored
    meta = load(path)
    print("RESUMED", tr.step, tr.last_checkpoint, flush=True)
    return meta

tr.load_checkpoint = reporting_load
print("READY", flush=True)
tr.fit({"x": x, "y": y}, epochs=epochs, batch_size=8, seed=7, resume=base if resume else None,
       checkpoint=base, keep_checkpoints=keep)
print("DONE", tr.step, flush=True)
np.savez(base + ".final.npz", steps=np.asarray(tr.history.steps, np.float64),
         **tr.stepper.state_dict())
"""
# SLEEP: seconds each checkpoint file write pauses half-way, so that many kills land inside one
EPOCHS, STEPS_PER_EPOCH, SLEEP = 8, 12, 0.04


def _child(base, resume, keep=2, sleep=SLEEP):
    env = dict(os.environ, GRAPHC_TEST_CHECKPOINT_SLEEP=str(sleep))
    return subprocess.Popen([sys.executable, "-c", CHILD, str(base), "1" if resume else "0",
                             str(EPOCHS), str(keep)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def _series(base: Path) -> dict[int, Path]:
    out = {}
    for p in base.parent.glob(base.name + ".step-*.safetensors"):
        out[int(p.name.split(".step-")[1].split(".")[0])] = p
    return out


def _leftovers(base: Path, pid: int) -> list[str]:
    """Temporary files of other processes than `pid`."""
    return [p.name for p in base.parent.glob(".*.tmp-*") if not p.name.endswith(f".tmp-{pid}")]


def _oracle_intact(st: Path, step: int, reference: dict[int, dict[str, np.ndarray]]) -> bool:
    """Intact by the reference run, not by graphc's own checksums."""
    from safetensors import safe_open
    js = st.with_suffix(".json")
    try:
        with safe_open(str(st), framework="numpy") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
            embedded = json.loads(f.metadata()["graphc"])
        side = json.loads(js.read_text())
    except Exception:  # noqa: BLE001 - unreadable or missing means not intact
        return False
    want = reference[step]
    return (side == embedded and set(tensors) == set(want)
            and all(tensors[k].shape == want[k].shape and tensors[k].tobytes() == want[k].tobytes()
                    for k in want))


def _corrupt(st: Path, how: str) -> None:
    if how == "truncated":
        data = st.read_bytes()
        st.write_bytes(data[: len(data) * 2 // 3])
    elif how == "flipped":  # one byte inside tensor data, not the header
        raw = bytearray(st.read_bytes())
        n = int.from_bytes(raw[:8], "little")
        header = json.loads(raw[8:8 + n])
        name = sorted(k for k in header if k != "__metadata__")[0]
        start, end = header[name]["data_offsets"]
        raw[8 + n + (start + end) // 2] ^= 0x10
        st.write_bytes(bytes(raw))
    else:  # "no json"
        st.with_suffix(".json").unlink()


@pytest.mark.slow
def test_kill_9_and_damaged_checkpoints_resume_bitwise(tmp_path):
    seed = int(os.environ.get("GRAPHC_FAULT_SEED", random.randrange(1 << 30)))
    want_kills = int(os.environ.get("GRAPHC_FAULT_KILLS", 12))
    rnd = random.Random(seed)
    print(f"\ncheckpoint fault test: GRAPHC_FAULT_SEED={seed}")

    # the uninterrupted run, keeping every checkpoint: the oracle of every step's state
    ref_base = tmp_path / "ref" / "ck"
    proc = _child(ref_base, False, keep=1000)
    assert proc.stdout.readline().strip() == "READY", proc.communicate()[1]
    t0 = time.perf_counter()
    done = proc.stdout.readline()
    # how long training takes, checkpoint writes included: kills are drawn inside it
    train_time = time.perf_counter() - t0
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0 and done.startswith("DONE"), err
    from safetensors.numpy import load_file
    reference = {s: load_file(str(p)) for s, p in _series(ref_base).items()}
    assert sorted(reference) == [STEPS_PER_EPOCH * (e + 1) for e in range(EPOCHS)]
    final_ref = dict(np.load(str(ref_base) + ".final.npz"))

    counts = dict(kills=0, kills_in_write=0, damaged=0, resumes=0, fallbacks=0, fresh_starts=0,
                  finishes=0, bitwise_equal=0)
    damage_kinds = ["truncated", "flipped", "no json"]
    rounds = 0
    while counts["kills"] < want_kills or rounds < 2:
        assert rounds < 10, f"only {counts['kills']} kills in 10 rounds: {counts}"
        rounds += 1
        base = tmp_path / f"round{rounds}" / "ck"
        base.parent.mkdir()
        kills_this_round = 0
        while True:
            series = _series(base)
            intact = sorted((s for s, p in series.items() if _oracle_intact(p, s, reference)),
                            reverse=True)
            # damage the newest intact checkpoint now and then; keep one to fall back to
            if len(intact) >= 2 and rnd.random() < 0.5:
                how = damage_kinds[counts["damaged"] % len(damage_kinds)]
                _corrupt(series[intact[0]], how)
                counts["damaged"] += 1
                intact = intact[1:]
            expected = intact[0] if intact else None
            newer = [p for s, p in series.items() if expected is None or s > expected]
            launched = time.time()
            proc = _child(base, expected is not None)
            assert proc.stdout.readline().strip() == "READY", proc.communicate()[1]
            if expected is not None:
                line = proc.stdout.readline().split()
                assert line[:2] == ["RESUMED", str(expected)], (line, proc.communicate()[1], seed)
                counts["resumes"] += 1
                # the resume removed what killed runs left (this run's own writes may be going on)
                assert not _leftovers(base, proc.pid), (_leftovers(base, proc.pid), seed)
            else:
                counts["fresh_starts"] += 1
            kill = kills_this_round < 4  # then let the round finish
            if kill:
                left = (EPOCHS - (expected or 0) / STEPS_PER_EPOCH) / EPOCHS
                time.sleep(rnd.uniform(0, train_time * left))
                proc.send_signal(signal.SIGKILL)
            _, err = proc.communicate(timeout=300)
            if expected is not None and newer:  # the damaged newer files are named
                counts["fallbacks"] += 1
                assert "CheckpointWarning" in err and all(p.name in err for p in newer), (err, seed)
            mine = list(base.parent.glob(f".*.tmp-{proc.pid}"))
            written = [p for p in _series(base).values() if p.stat().st_mtime >= launched]
            if mine or written:  # it got past fit's start, which removes what killed runs left
                assert not _leftovers(base, proc.pid), (_leftovers(base, proc.pid), seed)
            if proc.returncode == -signal.SIGKILL:
                counts["kills"] += 1
                kills_this_round += 1
                half = [p for p in written if not p.with_suffix(".json").exists()]
                counts["kills_in_write"] += bool(mine or half)
                continue
            assert proc.returncode == 0, (err, seed)
            counts["finishes"] += 1
            final = dict(np.load(str(base) + ".final.npz"))
            assert set(final) == set(final_ref)
            same = all(final[k].tobytes() == final_ref[k].tobytes() for k in final_ref)
            counts["bitwise_equal"] += same
            assert same, (seed, [k for k in final_ref if final[k].tobytes() != final_ref[k].tobytes()])
            break
    print("checkpoint fault test counts:", json.dumps(counts))
    assert counts["kills"] >= 10 and counts["kills_in_write"] >= 1
    assert counts["finishes"] == counts["bitwise_equal"] == rounds
