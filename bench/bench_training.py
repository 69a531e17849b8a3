"""Training steps per second: graphc + onnxruntime vs PyTorch eager, JAX jit, numpy by hand and a
hand-built ONNX step, all in one process, interleaved, as medians of repeats.

    python bench/bench_training.py [--repeats 7] [--seconds 0.6] [--no-write]

(a) MLP 784-256-256-10 ReLU, batch 128, cross-entropy, SGD momentum 0.9;
(b) logistic regression 100 -> 1, batch 1024, BCE with logits, plain SGD.
Writes the table into bench/results.md between the "training" markers. Peers that are not
installed are skipped. Timing is reported, never asserted.
"""
from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import time

SINGLE = "--single-thread" in sys.argv
if SINGLE:  # before numpy, torch and jax start their thread pools
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    os.environ["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peers  # noqa: E402

import graphc as gc  # noqa: E402
from graphc import optim  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
BEGIN, END = "<!-- training:begin -->", "<!-- training:end -->"
CLOCK = time.perf_counter
if SINGLE:
    # one thread everywhere, timed by this process's CPU time: a measure of the work per step that
    # other jobs on a shared machine disturb far less than wall-clock time
    peers.THREADS = 1
    CLOCK = time.process_time
    BEGIN, END = "<!-- training-1thread:begin -->", "<!-- training-1thread:end -->"
OPTS = {"threads": 1} if SINGLE else {}


def graphc_mlp(x, y, params, backend="onnxruntime", **options):
    g = gc.models.mlp((784, 256, 256, 10), seed=0)
    for p, a in zip(g.params, params):
        p.data = a.copy()
    st = gc.make_stepper(gc.training_step(g, optimizer=optim.SGD(peers.LR, momentum=peers.MOM)), backend,
                         **options)
    batch = {"x": x, "y": y}
    return lambda: float(st.step(batch, peers.LR)["loss"])


def graphc_logreg(x, y, w, b, lr=0.1, **options):
    g = gc.models.logistic_regression(x.shape[1], seed=0)
    g.value("linear.weight").data = w.reshape(1, -1).copy()
    g.value("linear.bias").data = b.reshape(1).copy()
    st = gc.make_stepper(gc.training_step(g, optimizer=optim.SGD(lr)), "onnxruntime", **options)
    batch = {"x": x, "y": y}
    return lambda: float(st.step(batch, lr)["loss"])


def problems():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(128, 784)).astype(np.float32)
    y = rng.integers(0, 10, 128)
    ps = peers.mlp_params((784, 256, 256, 10))
    a = {"graphc+onnxruntime": lambda: graphc_mlp(x, y, ps, **OPTS),
         **({} if SINGLE else {"graphc+onnxruntime, spin=False": lambda: graphc_mlp(x, y, ps, spin=False)}),
         "hand-built ONNX step": lambda: peers.onnx_mlp(x, y, ps),
         "PyTorch eager": lambda: peers.torch_mlp(x, y, ps),
         "JAX jit": lambda: peers.jax_mlp(x, y, ps),
         "numpy by hand": lambda: peers.numpy_mlp(x, y, ps)}
    xl = rng.normal(size=(1024, 100)).astype(np.float32)
    yl = (xl[:, :3].sum(1) > 0).astype(np.float32)
    w = (rng.normal(size=(100,)) * 0.1).astype(np.float32)
    b = np.zeros((), np.float32)
    bl = np.zeros((1,), np.float32)
    b_ = {"graphc+onnxruntime": lambda: graphc_logreg(xl, yl, w, bl, **OPTS),
          **({} if SINGLE else {"graphc+onnxruntime, spin=False":
                                lambda: graphc_logreg(xl, yl, w, bl, spin=False)}),
          "PyTorch eager": lambda: peers.torch_logreg(xl, yl, w, b),
          "JAX jit": lambda: peers.jax_logreg(xl, yl, w, b),
          "numpy by hand": lambda: peers.numpy_logreg(xl, yl, w, b)}
    return {"(a) MLP 784-256-256-10, batch 128, SGD momentum": a,
            "(b) logistic regression 100->1, batch 1024, SGD": b_}


def rate(step, seconds: float) -> float:
    """Steps per second over about `seconds` (after a short warm-up)."""
    for _ in range(3):
        step()
    n, t0 = 0, CLOCK()
    while True:
        for _ in range(10):
            step()
        n += 10
        dt = CLOCK() - t0
        if dt >= seconds:
            return n / dt


def run(repeats: int, seconds: float) -> dict:
    results = {}
    for title, makers in problems().items():
        steps = {}
        for name, mk in makers.items():
            s = mk()
            if s is not None:
                steps[name] = s
        losses = {name: s() for name, s in steps.items()}
        ref = losses["numpy by hand"]
        for name, loss in losses.items():  # every peer computes the same step
            if abs(loss - ref) > 1e-3 * max(1.0, abs(ref)):
                print(f"warning: {name} first loss {loss} differs from numpy's {ref}")
        rates = {n: [] for n in steps}
        rnd = random.Random(0)
        for r in range(repeats):
            order = list(steps)
            rnd.shuffle(order)  # interleave, so drifting machine load hits everyone alike
            for n in order:
                rates[n].append(rate(steps[n], seconds))
        results[title] = {n: statistics.median(v) for n, v in rates.items()}
        results[title + " spread"] = {n: (min(v), max(v)) for n, v in rates.items()}
        print(title)
        for n, v in sorted(results[title].items(), key=lambda kv: -kv[1]):
            lo, hi = results[title + " spread"][n]
            print(f"  {n:22s} {v:10.0f} steps/s  (min {lo:.0f}, max {hi:.0f})")
    return results


def table(results: dict, repeats: int, seconds: float) -> str:
    import onnxruntime
    head = ("## Training steps per CPU-second, one thread each (bench/bench_training.py "
            "--single-thread)" if SINGLE else "## Training steps per second (bench/bench_training.py)")
    lines = [BEGIN, head, "",
             f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; onnxruntime "
             f"{onnxruntime.__version__}; median of {repeats} interleaved runs of ~{seconds:g} s each "
             "in one process; ratios are graphc+onnxruntime / peer (> 1: graphc faster). "
             f"1-minute load average {results.get('load', '?')} (before, after): other jobs on "
             "the machine slow thread-pool runtimes (onnxruntime, PyTorch) far more than JAX.", ""]
    for title, rates in results.items():
        if title.endswith(" spread") or title == "load":
            continue
        spread = results[title + " spread"]
        ours = rates["graphc+onnxruntime"]
        lines += [f"### {title}", "", "| implementation | steps/s (median) | min-max | graphc / this |",
                  "|---|---:|---:|---:|"]
        for n, v in sorted(rates.items(), key=lambda kv: -kv[1]):
            lo, hi = spread[n]
            lines.append(f"| {n} | {v:,.0f} | {lo:,.0f}-{hi:,.0f} | {ours / v:.2f}x |")
        lines.append("")
    lines.append(END)
    return "\n".join(lines)


def write(text: str) -> str:
    path = os.path.join(HERE, "results.md")
    old = open(path).read() if os.path.exists(path) else "# Benchmark results\n"
    if BEGIN in old and END in old:
        new = old[:old.index(BEGIN)] + text + old[old.index(END) + len(END):]
    else:
        new = old.rstrip("\n") + "\n\n" + text + "\n"
    with open(path, "w") as f:
        f.write(new)
    return path


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--seconds", type=float, default=0.6)
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--single-thread", action="store_true",
                    help="every implementation on one thread, timed by process CPU time")
    args = ap.parse_args(argv)
    before = os.getloadavg()[0]
    res = run(args.repeats, args.seconds)
    res["load"] = f"{before:.1f}, {os.getloadavg()[0]:.1f}"
    text = table(res, args.repeats, args.seconds)
    if not args.no_write:
        print(f"wrote {write(text)}")


if __name__ == "__main__":
    main()
