"""W3 (LSTM, input 64, hidden 128, batch 32) training step on onnxruntime: the rolled IR lowered
to an ONNX Scan vs the same IR unrolled when lowered vs PyTorch eager, at one and two threads and
at several sequence lengths, all interleaved in one process; and onnxruntime's profile of the
Scan lowering split into the loops' bodies and the rest.

    .venv/bin/python bench/bench_scan_w3.py [--seqs 32,256] [--threads 1,2] [--seconds 1]
    .venv/bin/python bench/bench_scan_w3.py --profile [--seqs 32]
    .venv/bin/python bench/bench_zoo.py --w3-loops     # the same, written into bench/results.md

One thread is timed by this process's CPU time (steps per CPU-second: other jobs on a shared
machine disturb it far less), two threads by the wall clock. Both sides flush denormal floats to
zero (onnxruntime's "session.set_denormal_as_zero", torch.set_flush_denormal): at seq 256 the
gradients reaching the first steps are denormal, and every implementation ran ~10x slower on
them (1.1-1.2 steps per CPU-second for all three). At two threads graphc's idle onnxruntime
workers sleep instead of spinning (spin=False), so that they do not take the CPU from the
PyTorch runs interleaved with them in this process. Nothing is asserted.
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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import graphc as gc  # noqa: E402
from graphc import optim  # noqa: E402
import zoo_peers  # noqa: E402

SIZES = {"input": 64, "hidden": 128, "classes": 10}
BATCH = 32
ROWS = ("graphc, ONNX Scan", "graphc, unrolled when lowered", "PyTorch eager")


def batch(seq: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    return (rng.normal(size=(BATCH, seq, SIZES["input"])).astype(np.float32),
            rng.integers(0, SIZES["classes"], BATCH).astype(np.int64))


def step_graph(seq: int) -> gc.Graph:
    """W3's training step (SGD momentum), its IR rolled: one scan forward, one backward."""
    g = gc.models.lstm(steps=seq, **SIZES)
    return gc.training_step(g, optimizer=optim.SGD(zoo_peers.LR, momentum=zoo_peers.MOM))


def session_options(profile: bool = False):
    """onnxruntime's options for these runs: all graph optimizations, denormals flushed."""
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    opts.add_session_config_entry("session.set_denormal_as_zero", "1")
    if profile:
        opts.enable_profiling = True
        opts.profile_file_prefix = os.path.join("/tmp", f"graphc_w3_scan_{os.getpid()}")
    return opts


def graphc_step(sg: gc.Graph, loops: str, threads: int, x, y, profile: bool = False
                ) -> Callable[[], float]:
    st = gc.make_stepper(sg, "onnxruntime", threads=threads, loops=loops,
                         session_options=session_options(profile),
                         spin=None if threads == 1 else False)
    feeds = {"x": x, "y": y}

    def step() -> float:
        return float(st.step(feeds, zoo_peers.LR)["loss"])
    step.stepper = st  # type: ignore[attr-defined]
    return step


def torch_step(seq: int, params: dict, x, y, threads: int) -> Callable[[], float] | None:
    s = zoo_peers.torch_step("W3", dict(SIZES, steps=seq), params, x, y, threads=threads)
    if s is None:
        return None
    import torch
    torch.set_flush_denormal(True)

    def step() -> float:  # its thread count is process-wide: set it for each timed run
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        return s()
    return step


def rate(step: Callable[[], float], seconds: float, clock: Callable[[], float]) -> float:
    step()
    n, t0 = 0, clock()
    while clock() - t0 < seconds or n < 3:
        step()
        n += 1
    return n / (clock() - t0)


def measure(seqs: list[int], threads: list[int], repeats: int, seconds: float) -> dict:
    """{(seq, threads): {row: [steps/s per repeat]}}, everything interleaved in random order."""
    steps: dict[tuple[int, int], dict[str, Callable]] = {}
    first: dict[tuple[int, int], dict[str, float]] = {}
    for seq in seqs:
        x, y = batch(seq)
        sg = step_graph(seq)
        params = {p.name: np.array(p.data) for p in gc.models.lstm(steps=seq, **SIZES).params}
        for t in threads:
            row = {ROWS[0]: graphc_step(sg, "scan", t, x, y),
                   ROWS[1]: graphc_step(sg, "unroll", t, x, y)}
            ts = torch_step(seq, params, x, y, t)
            if ts is not None:
                row[ROWS[2]] = ts
            steps[seq, t] = row
            first[seq, t] = {k: s() for k, s in row.items()}
    rates: dict[tuple[int, int], dict[str, list[float]]] = {
        k: {r: [] for r in row} for k, row in steps.items()}
    rnd = random.Random(0)
    for _ in range(repeats):
        order = [(k, r) for k, row in steps.items() for r in row]
        rnd.shuffle(order)
        for k, r in order:
            clock = time.process_time if k[1] == 1 else time.perf_counter
            rates[k][r].append(rate(steps[k][r], seconds, clock))
    return {"rates": rates, "first": first}


def table(res: dict, repeats: int, seconds: float, load: str) -> str:
    import onnxruntime
    try:
        import torch
        tv = f"torch {torch.__version__}"
    except ImportError:
        tv = "torch not installed"
    lines = ["| seq | threads | clock | " + " | ".join(ROWS) + " | Scan / PyTorch | "
             "unrolled / PyTorch |", "|---:|---:|---|" + "---:|" * (len(ROWS) + 2)]
    for (seq, t), row in res["rates"].items():
        med = {r: statistics.median(v) for r, v in row.items()}
        torch_r = med.get(ROWS[2])
        ratio = [f"{med[r] / torch_r:.2f}x" if torch_r else "-" for r in ROWS[:2]]
        cells = [f"{med[r]:.1f}" if r in med else "-" for r in ROWS]
        lines.append(f"| {seq} | {t} | {'CPU' if t == 1 else 'wall'} | " + " | ".join(cells + ratio)
                     + " |")
    spread = "; ".join(f"seq {s} x{t}: " + ", ".join(f"{r.split(',')[-1].strip()} "
                                                    f"{min(v):.0f}-{max(v):.0f}"
                                                    for r, v in row.items())
                       for (s, t), row in res["rates"].items())
    first = "; ".join(f"seq {s} x{t}: " + ", ".join(f"{v:.5f}" for v in f.values())
                      for (s, t), f in res["first"].items())
    return "\n".join([
        f"Steps per second (per CPU-second at one thread), median of {repeats} interleaved runs "
        f"of ~{seconds:g} s, all in one process; {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores shared with other jobs, 1-minute load average {load} (before, "
        f"after); onnxruntime {onnxruntime.__version__}, {tv}. The graphc IR is rolled in both "
        "graphc columns; only the ONNX lowering differs (`loops=`). Denormals flushed on both "
        "sides; graphc's workers do not spin at two threads.", "", *lines, "",
        f"Spread (min-max): {spread}.", "", f"First losses (same weights and batch): {first}."])


# ---- onnxruntime's profile, split by loop ------------------------------------------------------

def profile(seq: int = 32, steps: int = 30, threads: int = 1) -> str:
    """The Scan lowering's kernel time per training step: each loop body by op type (all its
    iterations summed), the Scan nodes' own overhead, and the kernels outside the loops."""
    x, y = batch(seq)
    step = graphc_step(step_graph(seq), "scan", threads, x, y, profile=True)
    for _ in range(steps):
        step()
    path = step.stepper.session.end_profiling()  # type: ignore[attr-defined]
    with open(path) as f:
        events = json.load(f)
    os.remove(path)
    runs = sorted((e["ts"], e["dur"]) for e in events
                  if e.get("cat") == "Session" and e["name"] == "model_run")
    skip = runs[5][0]
    n_runs = sum(1 for t, _ in runs if t >= skip)
    ms: dict[tuple[str, str], float] = defaultdict(float)
    count: dict[tuple[str, str], int] = defaultdict(int)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= skip:
            name = e["name"][:-len("_kernel_time")]
            where = name.split("/scan_body")[0] if "/scan_body" in name else "outside"
            key = (where, e["args"].get("op_name", "?"))
            ms[key] += e["dur"] / 1e3 / n_runs
            count[key] += 1
    wall = statistics.median(d for t, d in runs if t >= skip) / 1e3
    loops = sorted({w for w, _ in ms if w != "outside"})
    body = {w: sum(v for (o, _), v in ms.items() if o == w) for w in loops}
    scan_total = sum(v for (o, op), v in ms.items() if o == "outside" and op == "Scan")
    outside = sum(v for (o, op), v in ms.items() if o == "outside" and op != "Scan")
    total = scan_total + outside
    lines = [f"W3 seq {seq}, Scan lowering, {threads} thread(s), profiled step {wall:.2f} ms "
             f"(medians over steps 6-{steps}; load average {os.getloadavg()[0]:.1f}):", "",
             "| where | op type | ms/step | share of step | kernels/step | us/kernel |",
             "|---|---|---:|---:|---:|---:|"]
    for w in loops + ["outside"]:
        items = sorted(((op, v) for (o, op), v in ms.items() if o == w and op != "Scan"),
                       key=lambda kv: -kv[1])
        label = {"outside": "outside the loops"}.get(w, f"body of `{w}`")
        for op, v in items[:8]:
            k = count[w, op] / n_runs
            lines.append(f"| {label} | {op} | {v:.3f} | {100 * v / total:.1f}% | {k:.0f} | "
                         f"{1e3 * v / max(k, 1):.1f} |")
    over = scan_total - sum(body.values())
    lines += ["", f"Loop bodies' kernels {sum(body.values()):.2f} ms "
              f"({100 * sum(body.values()) / total:.0f}%: "
              + ", ".join(f"`{w}` {v:.2f} ms" for w, v in body.items())
              + f"); the Scan nodes' own time beyond their bodies' kernels {over:.2f} ms "
              f"({100 * over / total:.0f}%); kernels outside the loops {outside:.2f} ms "
              f"({100 * outside / total:.0f}%)."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seqs", default="32,256")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--profile", action="store_true", help="the Scan lowering's profile instead")
    a = ap.parse_args(argv)
    seqs = [int(s) for s in a.seqs.split(",")]
    if a.profile:
        text = "\n\n".join(profile(s) for s in seqs)
    else:
        before = os.getloadavg()[0]
        res = measure(seqs, [int(t) for t in a.threads.split(",")], a.repeats, a.seconds)
        text = table(res, a.repeats, a.seconds, f"{before:.1f}, {os.getloadavg()[0]:.1f}")
    print(text)
    return text


if __name__ == "__main__":
    main()
