"""W3 (LSTM seq 32, input 64, hidden 128, batch 32) training step on onnxruntime: the rolled graph
(one ONNX Scan per loop) vs the unrolled one vs PyTorch eager, interleaved in one process.

    .venv/bin/python bench/bench_scan_w3.py [--threads 1] [--seq 32] [--seconds 2]

Prints steps per second (median of interleaved repeats); nothing is asserted.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))

import numpy as np  # noqa: E402

import graphc as gc  # noqa: E402
from graphc import optim  # noqa: E402
import zoo_peers  # noqa: E402


def graphc_step(seq: int, unroll: bool, threads: int, x, y, loops: str = "scan"):
    g = gc.models.lstm(steps=seq, input=64, hidden=128, classes=10, unroll=unroll)
    sg = gc.training_step(g, optimizer=optim.SGD(zoo_peers.LR, momentum=zoo_peers.MOM))
    st = gc.make_stepper(sg, "onnxruntime", threads=threads, loops=loops)
    params = {p.name: np.array(p.data) for p in g.params}
    return (lambda: float(st.step({"x": x, "y": y}, zoo_peers.LR)["loss"])), params, len(sg.nodes)


def rate(step, seconds):
    step()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or n < 3:
        step()
        n += 1
    return n / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seq", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    rng = np.random.default_rng(1)
    x = rng.normal(size=(32, a.seq, 64)).astype(np.float32)
    y = rng.integers(0, 10, 32).astype(np.int64)
    steps = {}
    for unroll, loops, label in ((False, "scan", "IR scan, ONNX Scan"),
                                 (False, "unroll", "IR scan, unrolled when lowered"),
                                 (True, "scan", "IR unrolled")):
        s, params, n = graphc_step(a.seq, unroll, a.threads, x, y, loops)
        steps[f"graphc {label} ({n} step nodes)"] = s
    cfg = {"steps": a.seq, "input": 64, "hidden": 128, "classes": 10}
    t = zoo_peers.torch_step("W3", cfg, params, x, y, threads=a.threads)
    if t is not None:
        steps["PyTorch eager"] = t
    res = {k: [] for k in steps}
    for _ in range(a.repeats):
        for k, s in steps.items():
            res[k].append(rate(s, a.seconds))
    print(f"W3 seq {a.seq}, {a.threads} thread(s): steps/s, median of {a.repeats}")
    for k, v in res.items():
        print(f"  {k:<52} {statistics.median(v):8.1f}")


if __name__ == "__main__":
    main()
