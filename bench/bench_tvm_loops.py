"""W3 (LSTM) on TVM: the rolled IR (one scan, unrolled when lowered to Relax) against the same
model built unrolled (`unroll=True`), at several sequence lengths: IR size, Relax size, compile
time and training steps per second, interleaved in one process. Nothing is asserted.

    .venv/bin/python bench/bench_tvm_loops.py [--seqs 8,32] [--seconds 0.5] [--rounds 3]

The TVM backend has no Relax loop yet: it repeats the scan body once per step when it lowers the
graph (graphc/backends/tvm_control.py). This measures what that costs against building the model
unrolled in the first place: the graphc IR stays constant-size in the sequence length either way.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import graphc as gc  # noqa: E402
from graphc import optim  # noqa: E402
import zoo_peers  # noqa: E402

SIZES = {"input": 64, "hidden": 128, "classes": 10}
BATCH = 32


def _step_graph(seq: int, unroll: bool) -> gc.Graph:
    g = gc.models.lstm(steps=seq, unroll=unroll, **SIZES)
    return gc.training_step(g, optimizer=optim.SGD(zoo_peers.LR, momentum=zoo_peers.MOM))


def _nodes(g: gc.Graph) -> int:
    return len(g.nodes)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seqs", default="8,32")
    p.add_argument("--seconds", type=float, default=0.5)
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args(argv)
    rng = np.random.default_rng(1)
    rows = []
    for seq in (int(s) for s in a.seqs.split(",")):
        x = rng.normal(size=(BATCH, seq, SIZES["input"])).astype(np.float32)
        y = rng.integers(0, SIZES["classes"], BATCH).astype(np.int64)
        steppers, info = {}, {}
        for label, unroll in (("scan (unrolled when lowered)", False), ("built unrolled", True)):
            sg = _step_graph(seq, unroll)
            t0 = time.perf_counter()
            st = gc.make_stepper(sg, "tvm")
            first = float(st.step({"x": x, "y": y}, zoo_peers.LR)["loss"])
            info[label] = (_nodes(sg), time.perf_counter() - t0, first)
            steppers[label] = st
        rates: dict[str, list[float]] = {k: [] for k in steppers}
        for _ in range(a.rounds):
            for label, st in steppers.items():
                n, t0 = 0, time.perf_counter()
                while time.perf_counter() - t0 < a.seconds:
                    st.step({"x": x, "y": y}, zoo_peers.LR)
                    n += 1
                rates[label].append(n / (time.perf_counter() - t0))
        for label in steppers:
            nodes, compile_s, first = info[label]
            rows.append((seq, label, nodes, compile_s, statistics.median(rates[label]), first))
    print(f"load average {os.getloadavg()[0]:.1f}; TVM threads {os.environ.get('TVM_NUM_THREADS')}")
    print("| seq | graph | step IR nodes | compile + first step s | steps/s | first loss |")
    print("|---:|---|---:|---:|---:|---:|")
    for seq, label, nodes, cs, rate, first in rows:
        print(f"| {seq} | {label} | {nodes} | {cs:.1f} | {rate:.1f} | {first:.5f} |")


if __name__ == "__main__":
    main()
