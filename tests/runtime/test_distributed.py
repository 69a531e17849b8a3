"""Data-parallel training on torch.distributed (gloo, 2 processes on localhost).

The workers are this file run as a script (`python test_distributed.py worker ...`) with the
environment torchrun would set (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT), so each test pays
for two interpreter starts, not for a torchrun agent.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve()
ROOT = HERE.parents[2]
OPTIMIZERS = ("sgd", "momentum", "adam")


# ---- the worker ------------------------------------------------------------------------------------
def _build(optimizer: str, dropout: float = 0.0, batchnorm: bool = False):
    sys.path.insert(0, str(ROOT / "examples"))
    import distributed_mlp as ex
    model, loss_fn = ex.build(dropout=dropout, batchnorm=batchnorm)
    return model, loss_fn, ex.OPTIMIZERS[optimizer](), ex.data(160)


def _train(optimizer: str, epochs: int, out: str | None = None, checkpoint: str | None = None,
           resume: str | None = None, kill_rank_at_step: tuple[int, int] | None = None,
           dropout: float = 0.0, batch: int = 32, resume_if_exists: bool = False,
           batchnorm: bool = False, sync_batchnorm: bool = False, every_rank: bool = False,
           perturb_rank_at_step: tuple[int, int] | None = None,
           examples_limit: int | None = None) -> dict:
    import graphc as gc
    from graphc.runtime.checkpoint import checkpoint_exists
    if resume_if_exists and checkpoint and checkpoint_exists(checkpoint):
        resume = checkpoint  # torchrun restarted us after a failure: continue the run
    first_attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0"
    model, loss_fn, opt, train = _build(optimizer, dropout, batchnorm)
    if examples_limit:
        train = {k: v[:examples_limit] for k, v in train.items()}
    trainer = gc.Trainer(loss_fn, model, optimizer=opt, backend="numpy", progress=False,
                         check_sync_every=4, sync_batchnorm=sync_batchnorm)
    if kill_rank_at_step is not None and first_attempt:
        rank, at = kill_rank_at_step
        step = trainer.stepper.step

        def dying_step(b, lr):
            if trainer.dist is not None and trainer.dist.rank == rank and trainer.step == at:
                os.kill(os.getpid(), signal.SIGKILL)
            return step(b, lr)
        trainer.stepper.step = dying_step
    if perturb_rank_at_step is not None:  # a rank-dependent bug: one rank's weights drift
        rank, at = perturb_rank_at_step
        inner = trainer.stepper.step

        def drifting_step(b, lr):
            if trainer.dist.rank == rank and trainer.step == at:
                apply = trainer.stepper.apply
                apply.load_state_dict({"2.bias": apply.state_dict()["2.bias"] + 1e-3}, strict=False)
            return inner(b, lr)
        trainer.stepper.step = drifting_step
    trainer.fit(train, epochs=epochs, batch_size=batch, checkpoint=checkpoint, resume=resume)
    params = trainer.state_dict()
    rank = trainer.dist.rank if trainer.dist is not None else 0
    if out and (rank == 0 or every_rank):
        np.savez(out.replace("{rank}", str(rank)), **params)
    return {"params": params, "steps": trainer.step, "losses": list(trainer.history.steps)}


def _worker(argv: list[str]) -> None:
    cfg = json.loads(argv[0])
    for opt in cfg.pop("optimizers"):
        out = cfg.get("out")
        _train(opt, **{**cfg, "out": out.replace("{opt}", opt) if out else None})


# ---- the launcher ----------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(cfg: dict, world: int = 2, timeout: float = 120.0, **env_extra: str
            ) -> list[subprocess.CompletedProcess]:
    port = _free_port()
    procs = []
    for rank in range(world):
        env = dict(os.environ, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                   LOCAL_WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
                   OMP_NUM_THREADS="1", GRAPHC_DIST_TIMEOUT="20",
                   PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
                   **env_extra)
        procs.append(subprocess.Popen([sys.executable, str(HERE), "worker", json.dumps(cfg)], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    done = []
    deadline = time.monotonic() + timeout
    for p in procs:
        try:
            out, err = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise AssertionError(f"a worker hung for more than {timeout} s")
        done.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    return done


def _torchrun(cfg: dict, world: int = 2, max_restarts: int = 1, timeout: float = 150.0):
    env = dict(os.environ, OMP_NUM_THREADS="1", GRAPHC_DIST_TIMEOUT="20",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc-per-node={world}", f"--max-restarts={max_restarts}", str(HERE), "worker",
           json.dumps(cfg)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def _max_diff(a: dict, b: dict) -> float:
    assert set(a) == set(b)
    return max(float(np.max(np.abs(np.asarray(a[k], np.float64) - np.asarray(b[k], np.float64))))
               for k in a)


needs_torch = pytest.mark.skipif(
    __import__("importlib").util.find_spec("torch") is None,
    reason="torch is not installed (pip install 'graphc[distributed]')")


# ---- tests -----------------------------------------------------------------------------------------
@needs_torch
def test_two_workers_match_one_process_on_the_global_batch(tmp_path):
    """Mean of two half-batch gradients = full-batch gradient: 2 workers == 1 process (20 steps).

    The 2.7 kB gradient buffer is all-reduced in 512-byte buckets, so bucketing is exercised."""
    out = str(tmp_path / "two-{opt}.npz")
    procs = _launch({"optimizers": list(OPTIMIZERS), "epochs": 4, "out": out},
                    GRAPHC_DIST_BUCKET_BYTES="512")
    for p in procs:
        assert p.returncode == 0, p.stderr[-3000:]
    for opt in OPTIMIZERS:
        one = _train(opt, epochs=4)
        assert one["steps"] == 20
        two = dict(np.load(out.format(opt=opt)))
        diff = _max_diff(one["params"], two)
        print(f"{opt}: max |2 workers - 1 process| = {diff:.3g}")
        assert diff <= 1e-6, (opt, diff)


@needs_torch
def test_uneven_shards_and_an_empty_shard_still_match_one_process(tmp_path):
    """Global batch 31 of 160 examples: shards of 16/15 and a last batch of 5 split 3/2; then
    batch 1, where rank 1 gets no examples at all: the weighted sum is still the global mean."""
    for batch, epochs in ((31, 2), (1, 1)):
        out = str(tmp_path / f"b{batch}-{{opt}}.npz")
        cfg = {"optimizers": ["momentum"], "epochs": epochs, "out": out, "batch": batch}
        if batch == 1:
            cfg["examples_limit"] = 6
        for p in _launch(cfg):
            assert p.returncode == 0, p.stderr[-3000:]
        one = _train("momentum", epochs=epochs, batch=batch, examples_limit=cfg.get("examples_limit"))
        diff = _max_diff(one["params"], dict(np.load(out.replace("{opt}", "momentum"))))
        assert diff <= 1e-6, (batch, diff)


@needs_torch
def test_ranks_that_diverge_are_caught_naming_the_tensor():
    """check_sync_every=4: a drift on rank 1 at step 2 is reported at step 4, naming 2.bias."""
    procs = _launch({"optimizers": ["sgd"], "epochs": 2, "perturb_rank_at_step": [1, 2]})
    assert all(p.returncode != 0 for p in procs)
    err = procs[0].stderr + procs[1].stderr
    assert "step 4: parameter '2.bias' differs between rank 0 and rank(s) 1" in err, err[-3000:]


@needs_torch
def test_checkpoint_of_two_workers_resumes_on_one(tmp_path):
    """Rank 0 writes; a 2-worker run resumed by 1 worker ends where an uninterrupted run does."""
    ckpt = str(tmp_path / "run" / "ckpt")
    procs = _launch({"optimizers": ["adam"], "epochs": 2, "checkpoint": ckpt})
    for p in procs:
        assert p.returncode == 0, p.stderr[-3000:]
    files = sorted(os.listdir(tmp_path / "run"))
    assert files == ["ckpt.step-00000005.json", "ckpt.step-00000005.safetensors",
                     "ckpt.step-00000010.json", "ckpt.step-00000010.safetensors"], files
    resumed = _train("adam", epochs=4, resume=ckpt)
    straight = _train("adam", epochs=4)
    assert resumed["steps"] == straight["steps"] == 20
    assert _max_diff(resumed["params"], straight["params"]) <= 1e-6


@needs_torch
def test_a_killed_worker_makes_the_other_fail_with_a_clear_error(tmp_path):
    t0 = time.monotonic()
    procs = _launch({"optimizers": ["sgd"], "epochs": 4, "kill_rank_at_step": [1, 7]}, timeout=90)
    took = time.monotonic() - t0
    assert procs[1].returncode == -signal.SIGKILL
    assert procs[0].returncode != 0
    assert "rank 1 was lost" in procs[0].stderr, procs[0].stderr[-3000:]
    assert "DistributedError" in procs[0].stderr
    assert took < 60, took


@needs_torch
def test_torchrun_restart_after_a_kill_resumes_to_the_uninterrupted_result(tmp_path):
    """Elastic restart: rank 1 dies at step 7; torchrun restarts both, they resume from the
    epoch-1 checkpoint (step 5), and the final parameters equal an uninterrupted run's.
    One restart is allowed: the restarted group must not dial the dead attempt's addresses
    (graphc gives every torchrun attempt its own store prefix)."""
    ckpt, out = str(tmp_path / "ckpt"), str(tmp_path / "final-{opt}.npz")
    p = _torchrun({"optimizers": ["momentum"], "epochs": 4, "checkpoint": ckpt, "out": out,
                   "resume_if_exists": True, "kill_rank_at_step": [1, 7]})
    assert p.returncode == 0, p.stderr[-3000:]
    assert "exitcode: -9" in p.stderr, p.stderr[-2000:]  # rank 1 was killed, and the run recovered
    straight = _train("momentum", epochs=4)
    assert _max_diff(straight["params"], dict(np.load(out.format(opt="momentum")))) <= 1e-6


@needs_torch
@pytest.mark.parametrize("sync", [False, True], ids=["local-bn", "sync-bn"])
def test_dropout_and_batchnorm_are_reproducible_and_bn_is_local_unless_synced(tmp_path, sync):
    """Dropout masks come from (seed + rank, step): two launches agree bitwise; parameters
    agree across ranks; batch-norm running statistics differ per rank unless synced."""
    cfg = {"optimizers": ["sgd"], "epochs": 1, "dropout": 0.3, "batchnorm": True,
           "sync_batchnorm": sync, "every_rank": True}
    runs = []
    for attempt in range(2):
        out = str(tmp_path / f"a{attempt}-{{rank}}.npz")
        for p in _launch({**cfg, "out": out}):
            assert p.returncode == 0, p.stderr[-3000:]
        runs.append([dict(np.load(out.replace("{rank}", str(r)))) for r in range(2)])
    for r in range(2):
        assert all(np.array_equal(runs[0][r][k], runs[1][r][k]) for k in runs[0][r])
    r0, r1 = runs[0]
    stats = [k for k in r0 if "running" in k]
    assert stats, sorted(r0)
    trained = [k for k in r0 if k not in stats and "num_batches" not in k]
    assert all(np.array_equal(r0[k], r1[k]) for k in trained)
    same_stats = all(np.array_equal(r0[k], r1[k]) for k in stats)
    assert same_stats == sync


def test_without_torch_the_error_names_the_extra(monkeypatch):
    from graphc.runtime import distributed
    monkeypatch.setitem(sys.modules, "torch", None)
    monkeypatch.setitem(sys.modules, "torch.distributed", None)
    with pytest.raises(distributed.DistributedError, match=r"graphc\[distributed\]"):
        distributed.require_torch()


def test_one_process_keeps_the_fused_step(monkeypatch):
    import graphc as gc
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    model, loss_fn, opt, _ = _build("sgd")
    trainer = gc.Trainer(loss_fn, model, optimizer=opt, backend="numpy", progress=False)
    assert trainer.dist is None
    assert type(trainer.stepper).__name__ != "SplitStepper"


def test_graphc_train_runs_a_script_and_passes_its_arguments(tmp_path):
    """`graphc train script.py --nproc 1 -- args`: one process, no torch needed."""
    out = tmp_path / "p.npz"
    script = str(ROOT / "examples" / "distributed_mlp.py")
    p = subprocess.run([sys.executable, "-m", "graphc", "train", script,
                        "--nproc", "1", "--", "--epochs", "1", "--save", str(out)],
                       capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "1 worker(s), 8 steps" in p.stdout and out.is_file()


def test_graphc_train_without_torch_names_the_extra(monkeypatch, tmp_path):
    import importlib.util
    from graphc.runtime import distributed
    script = tmp_path / "s.py"
    script.write_text("print('never runs')\n")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "torch" else real(n, *a))
    with pytest.raises(distributed.DistributedError, match=r"graphc\[distributed\]"):
        distributed.launch(str(script), 2)


def test_shards_cover_the_global_batch_in_order():
    from graphc.runtime.distributed import shard_batch
    batch = {"x": np.arange(7)}
    parts = [shard_batch(batch, r, 3)["x"] for r in range(3)]
    assert [len(p) for p in parts] == [3, 2, 2]
    assert np.array_equal(np.concatenate(parts), batch["x"])
    assert len(shard_batch({"x": np.arange(1)}, 1, 2)["x"]) == 0


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "worker":
    _worker(sys.argv[2:])
