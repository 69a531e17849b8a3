"""Issue 6's five training workloads: graphc + onnxruntime vs PyTorch eager, torch.compile, JAX jit.

    python bench/bench_zoo.py [--repeats 5] [--seconds 1.0] [--workloads W1,W2] [--no-write]
    python bench/bench_zoo.py --quick          # a smoke run: few steps, nothing written
    python bench/bench_zoo.py --profile W4     # onnxruntime per-node profile of graphc's step

CPU, float32, one full training step (forward, backward, SGD momentum 0.9) per call, on a fixed
batch; steps per second as the median of interleaved repeats, every implementation in one process:

    W1  MLP 784-256-256-10, batch 128
    W2  LeNet-5 (32x32, ReLU, max pooling), batch 64
    W3  LSTM, seq 32, input 64, hidden 128, 10 classes, batch 32
    W4  Transformer encoder, 2 layers, d 128, 4 heads, ffn 512, seq 64, 10 classes, batch 16
    W5  logistic regression 100 -> 1, batch 1024

graphc builds the models with graphc.models and trains them with gc.training_step and the
onnxruntime stepper (gc.make_stepper), the path the Trainer uses. Every peer starts from the same
weights and batch, and the first losses are compared. Peers that are not installed are skipped.
Writes the table into bench/results.md between the "zoo" markers. Timing is reported, never
asserted.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from collections import defaultdict
from typing import Callable

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import zoo_peers  # noqa: E402

import graphc as gc  # noqa: E402
from graphc import optim  # noqa: E402

BEGIN, END = "<!-- zoo:begin -->", "<!-- zoo:end -->"
GRAPHC = "graphc+onnxruntime"
PEERS = ("PyTorch eager", "torch.compile", "JAX jit")

#: name -> (title, graphc.models builder, its keyword arguments, batch size)
WORKLOADS: dict[str, tuple[str, str, dict, int]] = {
    "W1": ("MLP 784-256-256-10, batch 128", "mlp", {"sizes": (784, 256, 256, 10)}, 128),
    "W2": ("LeNet-5, batch 64", "lenet5", {}, 64),
    "W3": ("LSTM seq 32, input 64, hidden 128, batch 32", "lstm",
           {"steps": 32, "input": 64, "hidden": 128, "classes": 10}, 32),
    "W4": ("Transformer encoder 2x(d 128, 4 heads, ffn 512), seq 64, batch 16",
           "transformer_encoder",
           {"seq": 64, "d_model": 128, "heads": 4, "ffn": 512, "layers": 2, "classes": 10}, 16),
    "W5": ("logistic regression 100->1, batch 1024", "logistic_regression", {"features": 100}, 1024),
}


def batch_for(workload: str) -> tuple[np.ndarray, np.ndarray]:
    """The fixed batch (x float32, y labels or 0/1 targets) of a workload."""
    _, _, kw, n = WORKLOADS[workload]
    rng = np.random.default_rng(1)
    shape = {"W1": (n, 784), "W2": (n, 1, 32, 32), "W3": (n, kw.get("steps", 0), kw.get("input", 0)),
             "W4": (n, kw.get("seq", 0), kw.get("d_model", 0)), "W5": (n, kw.get("features", 0))}[workload]
    x = rng.normal(size=shape).astype(np.float32)
    if workload == "W5":
        return x, (x[:, :3].sum(1) > 0).astype(np.float32)
    return x, rng.integers(0, 10, n).astype(np.int64)


def peer_config(workload: str) -> dict:
    """The model sizes the peers need, from the graphc builder's keyword arguments."""
    kw = dict(WORKLOADS[workload][2])
    kw.setdefault("classes", 10)
    return kw


def graphc_step(workload: str, x: np.ndarray, y: np.ndarray, **options) -> tuple[Callable, dict]:
    """graphc's training step on onnxruntime, and the initial parameters (for the peers)."""
    _, builder, kw, _ = WORKLOADS[workload]
    g = getattr(gc.models, builder)(**kw)
    params = {p.name: np.array(p.data) for p in g.params}
    sg = gc.training_step(g, optimizer=optim.SGD(zoo_peers.LR, momentum=zoo_peers.MOM))
    st = gc.make_stepper(sg, "onnxruntime", **options)
    batch = {"x": x, "y": y}

    def step() -> float:
        return float(st.step(batch, zoo_peers.LR)["loss"])
    step.stepper = st  # for profiling
    return step, params


def make_steps(workload: str, peers: tuple[str, ...], threads: int | None) -> dict[str, Callable]:
    x, y = batch_for(workload)
    opts = {"threads": threads} if threads else {}
    ours, params = graphc_step(workload, x, y, **opts)
    steps = {GRAPHC: ours}
    cfg = peer_config(workload)
    makers = {"PyTorch eager": lambda: zoo_peers.torch_step(workload, cfg, params, x, y, threads=threads),
              "torch.compile": lambda: zoo_peers.torch_step(workload, cfg, params, x, y, compile=True,
                                                            threads=threads),
              "JAX jit": lambda: zoo_peers.jax_step(workload, cfg, params, x, y)}
    for name in peers:
        s = makers[name]()
        if s is None:
            print(f"  {name}: not installed, skipped")
        else:
            steps[name] = s
    return steps


def rate(step: Callable, seconds: float, min_steps: int = 3) -> float:
    """Steps per second over about `seconds` wall-clock time (at least `min_steps` steps)."""
    n, t0 = 0, time.perf_counter()
    while True:
        step()
        n += 1
        dt = time.perf_counter() - t0
        if dt >= seconds and n >= min_steps:
            return n / dt


def bench_workload(workload: str, peers: tuple[str, ...], repeats: int, seconds: float,
                   threads: int | None) -> dict:
    title = WORKLOADS[workload][0]
    print(f"{workload} {title}", flush=True)
    t0 = time.perf_counter()
    steps = make_steps(workload, peers, threads)
    first, warm = {}, {}
    for name, s in steps.items():  # first call compiles (jit, torch.compile): time it apart
        t = time.perf_counter()
        first[name] = s()
        s()
        warm[name] = time.perf_counter() - t
    ref = first[GRAPHC]
    for name, loss in first.items():  # every peer computes the same step from the same weights
        if abs(loss - ref) > 2e-3 * max(1.0, abs(ref)):
            print(f"  warning: {name} first loss {loss:.6f} differs from graphc's {ref:.6f}")
    rates: dict[str, list[float]] = {n: [] for n in steps}
    rnd = random.Random(0)
    for _ in range(repeats):
        order = list(steps)
        rnd.shuffle(order)  # interleaved, so drifting machine load hits everyone alike
        for n in order:
            rates[n].append(rate(steps[n], seconds))
    res = {"title": title, "first_loss": first, "warmup_s": warm,
           "median": {n: statistics.median(v) for n, v in rates.items()},
           "spread": {n: (min(v), max(v)) for n, v in rates.items()},
           "setup_s": time.perf_counter() - t0}
    for n, v in sorted(res["median"].items(), key=lambda kv: -kv[1]):
        lo, hi = res["spread"][n]
        print(f"  {n:20s} {v:10.1f} steps/s  (min {lo:.1f}, max {hi:.1f})  first loss "
              f"{first[n]:.5f}  first 2 steps {warm[n]:.2f} s", flush=True)
    return res


# ---- onnxruntime profile of graphc's step ----------------------------------------------------------

def profile(workload: str, steps: int = 30, top: int = 15) -> str:
    """Per-op-type and per-node kernel time of graphc's step on onnxruntime, as text."""
    import onnxruntime as ort
    x, y = batch_for(workload)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    opts.enable_profiling = True
    opts.profile_file_prefix = os.path.join("/tmp", f"graphc_zoo_{workload}")
    step, _ = graphc_step(workload, x, y, session_options=opts)
    sess = step.stepper.session
    for _ in range(steps):
        step()
    path = sess.end_profiling()
    with open(path) as f:
        events = json.load(f)
    os.remove(path)
    by_type: dict[str, float] = defaultdict(float)
    by_node: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    runs = []
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            op = e["args"].get("op_name", "?")
            by_type[op] += e["dur"]
            by_node[f"{op} {e['name'][:-len('_kernel_time')]}"] += e["dur"]
            count[op] += 1
        elif e.get("cat") == "Session" and e["name"] == "model_run":
            runs.append(e["dur"])
    total = sum(by_type.values())
    runs = runs[3:] or runs  # the first runs allocate
    lines = [f"{workload} {WORKLOADS[workload][0]}: {steps} steps; median step {statistics.median(runs) / 1e3:.2f} ms"
             f" wall, of which kernels {total / steps / 1e3:.2f} ms/step "
             f"({sum(count.values()) // steps} kernels/step after onnxruntime's fusions)", "",
             "| op type | ms/step | share | kernels/step |", "|---|---:|---:|---:|"]
    for op, d in sorted(by_type.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"| {op} | {d / steps / 1e3:.3f} | {100 * d / total:.1f}% | {count[op] // steps} |")
    lines += ["", "| node (slowest) | ms/step | share |", "|---|---:|---:|"]
    for n, d in sorted(by_node.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"| {n} | {d / steps / 1e3:.3f} | {100 * d / total:.1f}% |")
    return "\n".join(lines)


# ---- the table --------------------------------------------------------------------------------

def _fmt(v: float) -> str:
    return f"{v:,.0f}" if v >= 100 else f"{v:,.1f}"


def table(results: dict[str, dict], args: argparse.Namespace, load: str) -> str:
    import onnxruntime
    versions = [f"onnxruntime {onnxruntime.__version__}"]
    for mod in ("torch", "jax"):
        try:
            versions.append(f"{mod} {__import__(mod).__version__}")
        except ImportError:
            versions.append(f"{mod} not installed")
    cmd = "python bench/bench_zoo.py " + " ".join(sys.argv[1:])
    lines = [BEGIN, "## Zoo workloads: training steps per second (bench/bench_zoo.py)", "",
             f"Command: `{cmd.strip()}`. Machine: {platform.processor() or platform.machine()}, "
             f"{os.cpu_count()} cores, no GPU; {', '.join(versions)}. CPU, float32, forward + "
             "backward + SGD momentum 0.9 on a fixed batch; every implementation starts from the "
             "same weights (first losses agree). Median of "
             f"{args.repeats} interleaved runs of ~{args.seconds:g} s each, all in one process; "
             f"1-minute load average {load} (before, after). Ratios are graphc / peer (> 1: graphc "
             "faster).", "",
             "| workload | " + " | ".join([GRAPHC] + list(PEERS)) + " | vs eager | vs compile | vs JAX |",
             "|---|" + "---:|" * (len(PEERS) + 4)]
    for w, r in results.items():
        med, ours = r["median"], r["median"][GRAPHC]
        cells = [_fmt(med[n]) if n in med else "-" for n in (GRAPHC,) + PEERS]
        ratios = [f"{ours / med[n]:.2f}x" if n in med else "-" for n in PEERS]
        lines.append(f"| {w} {r['title']} | " + " | ".join(cells + ratios) + " |")
    lines += ["", "Spread (min-max steps/s over the repeats):", ""]
    for w, r in results.items():
        lines.append(f"- {w}: " + "; ".join(f"{n} {_fmt(lo)}-{_fmt(hi)}" for n, (lo, hi) in
                                             r["spread"].items()))
    if getattr(args, "notes", None):
        lines += ["", args.notes]
    lines.append(END)
    return "\n".join(lines)


def write(text: str) -> str:
    """Replaces the zoo section of bench/results.md (appends it if missing); the rest stays."""
    path = os.path.join(HERE, "results.md")
    old = open(path).read() if os.path.exists(path) else "# Benchmark results\n"
    if BEGIN in old and END in old:
        new = old[:old.index(BEGIN)] + text + old[old.index(END) + len(END):]
    else:
        new = old.rstrip("\n") + "\n\n" + text + "\n"
    with open(path, "w") as f:
        f.write(new)
    return path


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workloads", default="W1,W2,W3,W4,W5")
    ap.add_argument("--peers", default=",".join(PEERS),
                    help="comma-separated subset of: " + ", ".join(PEERS))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=None,
                    help="intra-op threads for onnxruntime and PyTorch (default: theirs)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 1 repeat of ~0.1 s, no torch.compile, nothing written")
    ap.add_argument("--profile", metavar="W", default=None,
                    help="print onnxruntime's per-node profile of graphc's step for these workloads")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--notes", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.profile:
        for w in args.profile.split(","):
            print(profile(w.strip()), "\n", flush=True)
        return
    peers = tuple(p.strip() for p in args.peers.split(",") if p.strip())
    unknown = [p for p in peers if p not in PEERS]
    if unknown:
        ap.error(f"unknown peer(s) {unknown}; choose from {', '.join(PEERS)}")
    if args.quick:
        args.repeats, args.seconds, args.no_write = 1, 0.1, True
        peers = tuple(p for p in peers if p != "torch.compile")  # its compiles alone take minutes
    before = os.getloadavg()[0]
    t0 = time.perf_counter()
    results = {w.strip(): bench_workload(w.strip(), peers, args.repeats, args.seconds, args.threads)
               for w in args.workloads.split(",")}
    load = f"{before:.1f}, {os.getloadavg()[0]:.1f}"
    text = table(results, args, load)
    print("\n" + text.replace(BEGIN + "\n", "").replace("\n" + END, ""))
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")
    if not args.no_write:
        print(f"wrote {write(text)}")


if __name__ == "__main__":
    main()
