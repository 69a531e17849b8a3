"""Data-parallel scaling on one machine: 1 vs N processes (gloo, CPU), graphc on onnxruntime.

    python bench/bench_distributed.py [--workloads W1,W4] [--nproc 2] [--steps 40] [--no-write]

For each workload of bench_zoo (W1: MLP 784-256-256-10, batch 128; W4: Transformer encoder,
batch 16) it trains `--steps` steps of the same global batch with 1 process (the fused step) and
with N processes (split step + one all-reduce per step), and reports total throughput
(examples/s), scaling efficiency (throughput_N / (N * throughput_1)), the all-reduce's share of
the step time and the bytes all-reduced per step. On a 2-core machine shared with other jobs the
ideal is about 1x total throughput (the two processes share the cores): read the all-reduce
share and the volume, not the speed-up. Results go to bench/results_distributed.md.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parent))


NOTE = """\
Reading it. On this 2-core machine, shared with other jobs, two processes share the same two cores,
so total throughput near 1x is the ideal and the scaling efficiency (throughput_N / (N x
throughput_1)) is about 0.5 at best. The all-reduce share is the time from entering the
all-reduce to leaving it: it includes waiting for the slower rank (load imbalance from other jobs),
not only the transfer. The volume is one flat buffer per dtype per step: every gradient (float32),
plus the metrics and the example count (a few bytes).

On a real cluster. One process per GPU with NCCL (`Trainer(device="cuda")` picks it) instead of
gloo on CPU; gradients would be all-reduced from device memory, while here they come back to the
host between the gradient and apply graphs (onnxruntime has no torch-visible device buffers). DDP
overlaps the all-reduce of gradient buckets with the rest of the backward pass; graphc's split step
all-reduces after the whole gradient graph (bucketing only caps the message size), so on fast
networks and big models the communication is not hidden: overlap needs the gradient graph split
into stages. Tested here: gloo on localhost, 2 processes, parameters equal to one process within
1e-6 (SGD, momentum, Adam), checkpoints written by rank 0 and resumed with another worker count, a
killed worker failing the other with an error naming it, and a torchrun restart resuming to the
uninterrupted result. Not tested here: NCCL, several machines, a slow (not dead) worker.
"""


def _worker(workload: str, steps: int) -> None:
    import graphc as gc
    from graphc import optim
    from bench_zoo import WORKLOADS, batch_for
    _, builder, kw, _ = WORKLOADS[workload]
    g = getattr(gc.models, builder)(**kw)
    x, y = batch_for(workload)
    trainer = gc.Trainer(g, optimizer=optim.SGD(0.01, momentum=0.9), backend="onnxruntime",
                         progress=False)
    data = {"x": np.concatenate([x] * steps), "y": np.concatenate([y] * steps)}
    warm = {"x": x, "y": y}
    trainer.fit(warm, epochs=1, batch_size=len(x), shuffle=False)  # compile / first-run costs
    st = trainer.stepper
    if hasattr(st, "allreduce_total_s"):
        st.allreduce_total_s = 0.0
    t0 = time.perf_counter()
    trainer.fit(data, epochs=2, batch_size=len(x), shuffle=False)
    dt = time.perf_counter() - t0
    rank = trainer.dist.rank if trainer.dist else 0
    if rank == 0:
        print("RESULT " + json.dumps({
            "workload": workload, "world": trainer.dist.world_size if trainer.dist else 1,
            "steps": steps, "seconds": dt, "examples_per_s": steps * len(x) / dt,
            "allreduce_share": getattr(st, "allreduce_total_s", 0.0) / dt,
            "bytes_per_step": getattr(st, "bytes_per_step", 0)}), flush=True)


def _run(workload: str, nproc: int, steps: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(HERE.parents[1]), os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, str(HERE), "--worker", workload, "--steps", str(steps)]
    if nproc > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc-per-node={nproc}"] + cmd[1:]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    for line in p.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"{workload} x{nproc} failed:\n{p.stderr[-3000:]}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workloads", default="W1,W4")
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        _worker(args.worker, args.steps)
        return
    rows = ["| workload | processes | examples/s (total) | scaling efficiency | all-reduce share "
            "| all-reduced per step |", "|---|---|---|---|---|---|"]
    for w in args.workloads.split(","):
        one = _run(w, 1, args.steps)
        many = _run(w, args.nproc, args.steps)
        eff = many["examples_per_s"] / (args.nproc * one["examples_per_s"])
        rows.append(f"| {w} | 1 | {one['examples_per_s']:.0f} | - | - | - |")
        rows.append(f"| {w} | {args.nproc} | {many['examples_per_s']:.0f} | {eff:.2f} "
                    f"(total {many['examples_per_s'] / one['examples_per_s']:.2f}x) | "
                    f"{many['allreduce_share'] * 100:.1f}% | {many['bytes_per_step'] / 1e6:.2f} MB |")
    text = "\n".join(rows)
    print(text)
    if not args.no_write:
        out = HERE.parent / "results_distributed.md"
        out.write_text(f"# Data-parallel scaling (bench/bench_distributed.py)\n\n"
                       f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} CPU "
                       f"cores (shared), gloo on localhost, onnxruntime, SGD momentum, "
                       f"{args.steps} steps of each workload's global batch.\n\n{text}\n\n{NOTE}")
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
