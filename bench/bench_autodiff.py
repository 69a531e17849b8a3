"""Benchmark of the autodiff pass and the simplification pipeline on the reference models.

For each model of `graphc.models` (MLP, LeNet-5, LSTM unrolled 8 steps, GRU unrolled 8 steps,
one Transformer encoder layer) it prints: forward node count, gradient-graph node count before
and after the pipeline (and the ratio to the forward graph), and the time to build, to
differentiate and to simplify, as the median of `--repeat` runs. It also checks, on random
feeds, that the simplified gradients equal the unsimplified ones (max relative difference).

Run:  .venv/bin/python bench/bench_autodiff.py [--repeat 3] [--dtype float32] [--passes]
      .venv/bin/python bench/bench_autodiff.py --lstm-steps 32 128 512 2048 [--unrolled-limit 60]
          [--write]    # the table also into bench/results.md (section autodiff-lstm-sizes)

`--lstm-steps` prints instead, for the LSTM classifier (`models.lstm`, input 28, hidden 64) at
each sequence length T, scan vs unrolled: node counts of the forward graph and of the forward +
backward graph (`gc.grad`, simplified), each as outer nodes plus the nodes of the loop bodies
(counted once), and the build and differentiate times. The unrolled graph is skipped at a T where
the previous T's time, scaled linearly, predicts more than `--unrolled-limit` seconds.

Figures are printed, never asserted; timings here vary 1.5-2x between runs of the same job.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
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


def body_nodes(g: gc.Graph) -> int:
    """Nodes in the loop bodies of `g` (each body counted once, nested bodies included)."""
    seen: set[int] = set()

    def walk(graph: gc.Graph) -> int:
        total = 0
        for n in graph.nodes:
            for a in n.attrs.values():
                if isinstance(a, gc.Graph) and id(a) not in seen:
                    seen.add(id(a))
                    total += len(a.nodes) + walk(a)
        return total
    return walk(g)


def lstm_sizes(steps: list[int], unrolled_limit: float) -> list[dict]:
    """One row per (T, scan or unrolled): node counts and build / differentiate seconds."""
    rows: list[dict] = []
    last_unrolled: tuple[int, float] | None = None
    for T in steps:
        for unroll in (False, True):
            if unroll and last_unrolled is not None:
                t_prev, s_prev = last_unrolled
                predicted = s_prev * T / t_prev
                if predicted > unrolled_limit:
                    rows.append(dict(T=T, graph="unrolled", skipped=predicted))
                    continue
            t0 = time.perf_counter()
            g = models.lstm(steps=T, unroll=unroll)
            t1 = time.perf_counter()
            gg = gc.grad(g)
            t2 = time.perf_counter()
            rows.append(dict(T=T, graph="unrolled" if unroll else "scan", fwd=len(g.nodes),
                             fwd_body=body_nodes(g), grad=len(gg.nodes), grad_body=body_nodes(gg),
                             build=t1 - t0, diff=t2 - t1))
            if unroll:
                last_unrolled = (T, t2 - t0)
    return rows


def print_lstm_sizes(rows: list[dict]) -> None:
    print("LSTM classifier (input 28, hidden 64, 10 classes): outer nodes + loop-body nodes")
    head = (f"{'T':>5} {'graph':>9} {'fwd':>6} {'(body)':>7} {'fwd+bwd':>8} {'(bodies)':>9} "
            f"{'build s':>8} {'diff s':>8}")
    print(head)
    print("-" * len(head))
    for r in rows:
        if "skipped" in r:
            print(f"{r['T']:>5} {r['graph']:>9}   skipped: about {r['skipped']:.0f} s predicted")
            continue
        print(f"{r['T']:>5} {r['graph']:>9} {r['fwd']:>6} {r['fwd_body']:>7} {r['grad']:>8} "
              f"{r['grad_body']:>9} {r['build']:>8.2f} {r['diff']:>8.2f}")


def lstm_sizes_markdown(rows: list[dict], command: str) -> str:
    """The `lstm_sizes` rows as a markdown table with a line saying how they were measured."""
    lines = ["### LSTM graph sizes and build + differentiate times, scan vs unrolled", "",
             f"Command: `{command}`. `models.lstm` (input 28, hidden 64, 10 classes, float32); "
             "nodes of the outer graph, plus those of the loop bodies (each counted once); "
             "fwd+bwd is `gc.grad(g)` (simplified). Times are one run each, wall clock, on a "
             f"shared 2-core machine (1-minute load average {os.getloadavg()[0]:.1f}).", "",
             "| T | graph | fwd nodes | (+ body) | fwd+bwd nodes | (+ bodies) | build s | "
             "differentiate s |", "|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['T']} | {r['graph']} | skipped: about {r['skipped']:.0f} s "
                         "predicted from the previous T | | | | | |")
        else:
            lines.append(f"| {r['T']} | {r['graph']} | {r['fwd']} | {r['fwd_body']} | "
                         f"{r['grad']} | {r['grad_body']} | {r['build']:.2f} | {r['diff']:.2f} |")
    return "\n".join(lines)


def write_section(text: str, key: str) -> str:
    """Puts `text` between `<!-- key:begin -->` and `<!-- key:end -->` in bench/results.md (the
    section is appended where it is missing); the rest of the file stays as it is."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results.md")
    old = open(path).read() if os.path.exists(path) else "# Benchmark results\n"
    b, e = f"<!-- {key}:begin -->", f"<!-- {key}:end -->"
    block = f"{b}\n{text}\n{e}"
    if b in old and e in old and old.index(b) < old.index(e):
        new = old[:old.index(b)] + block + old[old.index(e) + len(e):]
    else:
        new = old.rstrip("\n") + "\n\n" + block + "\n"
    with open(path, "w") as f:
        f.write(new)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lstm-steps", type=int, nargs="*",
                    help="instead: LSTM node counts and times at these sequence lengths")
    ap.add_argument("--write", action="store_true",
                    help="with --lstm-steps: also write the table into bench/results.md")
    ap.add_argument("--unrolled-limit", type=float, default=60.0,
                    help="skip the unrolled LSTM where it is predicted to take longer (seconds)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per measurement (median is shown)")
    ap.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    ap.add_argument("--passes", action="store_true", help="print each model's per-pass report")
    ap.add_argument("--no-check", action="store_true", help="skip the numerical comparison")
    args = ap.parse_args()
    if args.lstm_steps:
        sizes = lstm_sizes(args.lstm_steps, args.unrolled_limit)
        print_lstm_sizes(sizes)
        if args.write:
            cmd = "python bench/bench_autodiff.py " + " ".join(sys.argv[1:])
            print(f"wrote {write_section(lstm_sizes_markdown(sizes, cmd), 'autodiff-lstm-sizes')}")
        return
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
