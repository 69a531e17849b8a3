"""onnxruntime session settings for graphc's zoo training steps, A/B against the default session.

    python bench/bench_ort_settings.py [--workloads W1,W2,W5] [--repeats 5] [--seconds 0.4]
    python bench/bench_ort_settings.py --single-thread   # one intra-op thread, CPU time

Each setting is a separate onnxruntime session over the same graphc step (bench_zoo.graphc_step),
all in one process, timed in shuffled interleaved rounds; prints the median steps per second and
the ratio to the first (default) session. Timing is reported, never asserted.
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench_zoo  # noqa: E402

#: name -> session settings (see `options`); the first is the reference
SETTINGS: dict[str, dict] = {
    "default (ALL, default threads, spinning)": {},
    "spinning off": {"spin": False},
    "intra-op threads 1": {"intra": 1},
    "ORT_PARALLEL, inter 2, intra 1": {"parallel": True, "inter": 2, "intra": 1},
    "ORT_ENABLE_EXTENDED": {"level": "EXTENDED"},
    "ORT_ENABLE_BASIC": {"level": "BASIC"},
    "memory pattern off": {"mem": False},
    "CPU arena off": {"arena": False},
}
ONE_THREAD = ("default (ALL, default threads, spinning)", "ORT_ENABLE_EXTENDED", "ORT_ENABLE_BASIC",
              "memory pattern off", "CPU arena off")


def options(level: str = "ALL", intra: int | None = None, inter: int | None = None,
            parallel: bool = False, spin: bool | None = None, mem: bool = True, arena: bool = True):
    """An onnxruntime SessionOptions with these settings (None: onnxruntime's default)."""
    import onnxruntime as ort
    o = ort.SessionOptions()
    o.graph_optimization_level = getattr(ort.GraphOptimizationLevel, f"ORT_ENABLE_{level}")
    o.log_severity_level = 3
    if intra:
        o.intra_op_num_threads = intra
    if inter:
        o.inter_op_num_threads = inter
    if parallel:
        o.execution_mode = ort.ExecutionMode.ORT_PARALLEL
    if spin is not None:
        for pool in ("intra_op", "inter_op"):
            o.add_session_config_entry(f"session.{pool}.allow_spinning", "1" if spin else "0")
    o.enable_mem_pattern = mem
    o.enable_cpu_mem_arena = arena
    return o


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workloads", default="W1,W2,W5")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=0.4)
    ap.add_argument("--single-thread", action="store_true",
                    help="every session on one intra-op thread, timed by process CPU time")
    args = ap.parse_args(argv)
    clock = time.process_time if args.single_thread else time.perf_counter
    names = list(ONE_THREAD if args.single_thread else SETTINGS)
    print(f"load average before {os.getloadavg()[0]:.1f}")
    for w in args.workloads.split(","):
        x, y = bench_zoo.batch_for(w)
        steps = {}
        for n in names:
            kw = dict(SETTINGS[n], **({"intra": 1} if args.single_thread else {}))
            steps[n], _ = bench_zoo.graphc_step(w, x, y, session_options=options(**kw))
            steps[n]()
        rates: dict[str, list[float]] = {n: [] for n in names}
        rnd = random.Random(1)
        for _ in range(args.repeats):
            for n in rnd.sample(names, len(names)):
                k, t0 = 0, clock()
                while clock() - t0 < args.seconds or k < 3:
                    steps[n]()
                    k += 1
                rates[n].append(k / (clock() - t0))
        ref = statistics.median(rates[names[0]])
        for n in names:
            m = statistics.median(rates[n])
            lo, hi = min(rates[n]), max(rates[n])
            print(f"{w} | {n} | {m:,.1f} | {lo:,.1f}-{hi:,.1f} | {m / ref:.2f}x", flush=True)
    print(f"load average after {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
