"""Benchmark of the autodiff pass and the simplification pipeline on the reference models.

For each model of `graphc.models` (MLP, LeNet-5, LSTM unrolled 8 steps, GRU unrolled 8 steps,
one Transformer encoder layer) it prints: forward node count, gradient-graph node count before
and after the pipeline (and the ratio to the forward graph), and the time to build, to
differentiate and to simplify, as the median of `--repeat` runs. It also checks, on random
feeds, that the simplified gradients equal the unsimplified ones (max relative difference).

Run:  .venv/bin/python bench/bench_autodiff.py [--repeat 3] [--dtype float32] [--passes]

Figures are printed, never asserted; timings here vary 1.5-2x between runs of the same job.
"""
from __future__ import annotations

import argparse
import statistics
import time
from collections import Counter
from typing import Callable

import numpy as np

import graphc as gc
from graphc import models
from graphc.passes.pipeline import simplify

MODELS: dict[str, Callable[[str], gc.Graph]] = {
    "mlp 784-256-256-10": lambda dt: models.mlp(dtype=dt),
    "lenet5": lambda dt: models.lenet5(dtype=dt),
    "lstm (8 steps)": lambda dt: models.lstm(steps=8, dtype=dt),
    "gru (8 steps)": lambda dt: models.gru(steps=8, dtype=dt),
    "transformer encoder layer": lambda dt: models.transformer_encoder(dtype=dt),
}


def grad_raw(g: gc.Graph) -> gc.Graph:
    """The gradient graph of the loss wrt all parameters, before any simplification."""
    return gc.grad(g, simplify=False)


def _median_time(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def _max_rel_diff(a: gc.Graph, b: gc.Graph, feeds: dict[str, np.ndarray]) -> float:
    ra = gc.compile(a, "numpy")(**feeds)
    rb = gc.compile(b, "numpy")(**feeds)
    worst = 0.0
    for k in ra:
        scale = max(float(np.max(np.abs(ra[k]))), 1e-30)
        worst = max(worst, float(np.max(np.abs(ra[k] - rb[k]))) / scale)
    return worst


def op_histogram(g: gc.Graph, top: int = 8) -> str:
    """The most frequent ops of a graph, e.g. 'mul 40, add 22, ...'."""
    return ", ".join(f"{k} {v}" for k, v in Counter(n.op.name for n in g.nodes).most_common(top))


def run(repeat: int, dtype: str, show_passes: bool, check: bool) -> list[dict]:
    rows = []
    for name, build in MODELS.items():
        t_build, fwd = _median_time(lambda b=build: b(dtype), repeat)
        t_grad, raw = _median_time(lambda f=fwd: grad_raw(f), repeat)
        t_simp, (opt, report) = _median_time(lambda r=raw: simplify(r, return_report=True), repeat)
        t_total, _ = _median_time(lambda b=build: gc.grad(b(dtype)), repeat)
        row = dict(model=name, fwd=len(fwd.nodes), raw=len(raw.nodes), opt=len(opt.nodes),
                   t_build=t_build, t_grad=t_grad, t_simp=t_simp, t_total=t_total)
        if check:
            feeds = models.example_feeds(fwd, batch=2, seed=0)
            row["diff"] = _max_rel_diff(raw, opt, feeds)
        rows.append(row)
        if show_passes:
            print(f"\n== {name}\n{report}\n  raw ops: {op_histogram(raw)}\n  opt ops: {op_histogram(opt)}")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="runs per measurement (median is shown)")
    ap.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    ap.add_argument("--passes", action="store_true", help="print each model's per-pass report")
    ap.add_argument("--no-check", action="store_true", help="skip the numerical comparison")
    args = ap.parse_args()
    rows = run(args.repeat, args.dtype, args.passes, not args.no_check)
    print(f"\ngraphc {gc.__version__}: gradient graphs of the reference models ({args.dtype}, "
          f"median of {args.repeat}); grad = all parameters' gradients plus the original outputs")
    head = (f"{'model':<27} {'fwd':>5} {'grad raw':>9} {'grad opt':>9} {'opt/fwd':>8} {'build ms':>9} "
            f"{'diff ms':>8} {'simpl ms':>9} {'total ms':>9}")
    head += "" if args.no_check else "  max rel diff"
    print(head)
    print("-" * len(head))
    for r in rows:
        line = (f"{r['model']:<27} {r['fwd']:>5} {r['raw']:>9} {r['opt']:>9} {r['opt'] / r['fwd']:>7.2f}x "
                f"{r['t_build'] * 1e3:>9.1f} {r['t_grad'] * 1e3:>8.1f} {r['t_simp'] * 1e3:>9.1f} "
                f"{r['t_total'] * 1e3:>9.1f}")
        if "diff" in r:
            line += f"  {r['diff']:.1e}"
        print(line)
    print("fwd: forward+loss graph nodes; grad raw/opt: gradient graph before/after gc.simplify; "
          "total: build + gc.grad (which simplifies)")


if __name__ == "__main__":
    main()
