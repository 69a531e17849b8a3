"""The per-batch cost of input validation (graphc/ir/feeds.py) against a W5 training step.

    python bench/bench_feed_check.py [--rounds 30]

W5 is bench_zoo's logistic regression 100 -> 1, batch 1024, on the onnxruntime stepper (float
0/1 targets: names, dtypes and shapes are checked). "W5 int labels" is the same batch through a
100 -> 2 Linear with cross_entropy on int64 labels, so the label range [0, 2) is checked too.
Each round times the step and `Stepper.check_batch` back to back (so both see the same machine
load); the report gives the minima and the median of the per-round ratios. Printed, not written,
and never asserted.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_zoo  # noqa: E402

import graphc as gc  # noqa: E402
from graphc import nn, optim  # noqa: E402


def per_call(fn, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=30)
    args = ap.parse_args()
    x, y = bench_zoo.batch_for("W5")
    step, _ = bench_zoo.graphc_step("W5", x, y)
    w5 = step.stepper
    batch = {"x": x, "y": y}

    lin = nn.Linear(100, 2)

    @gc.function(x=gc.spec(("N", 100)), y=gc.spec(("N",), "int64"))
    def labelled(x, y):
        return nn.cross_entropy(lin(x), y)
    st2 = gc.make_stepper(gc.training_step(labelled.graph, optimizer=optim.SGD(0.01, momentum=0.9)),
                          "onnxruntime")
    b2 = {"x": x, "y": y.astype(np.int64)}
    cases = {"W5": (step, lambda: w5.check_batch(batch)),
             "W5 int labels": (lambda: st2.step(b2, 0.01), lambda: st2.check_batch(b2))}
    for name, (run_step, check) in cases.items():
        for _ in range(300):
            run_step()
        steps, checks, ratios = [], [], []
        for _ in range(args.rounds):
            ts = min(per_call(run_step, 50) for _ in range(3))
            tc = min(per_call(check, 500) for _ in range(3))
            steps.append(ts)
            checks.append(tc)
            ratios.append(tc / ts)
        print(f"{name:14s} step {min(steps) * 1e6:7.1f} us   check_batch {min(checks) * 1e6:5.2f} us   "
              f"{100 * min(checks) / min(steps):.2f}% (of minima), median per round "
              f"{100 * statistics.median(ratios):.2f}%")


if __name__ == "__main__":
    main()
