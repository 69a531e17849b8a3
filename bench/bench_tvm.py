"""TVM backend benchmark: training steps/s on TVM vs onnxruntime vs PyTorch eager, and compile times.

Models: MLP 784-256-256-10 (batch 128) and LeNet-5 (batch 64), one SGD-momentum training step
(forward, backward, update) per call, parameters kept on the backend between steps. Also the
same TVM step compiled with TVM's default (untuned) pipeline, the floor this backend must beat
10x, and the TVM compile time cold and from the on-disk cache.

    python bench/bench_tvm.py                    # wall clock, all cores
    python bench/bench_tvm.py --single-thread    # CPU time of one thread: steadier on a busy box
    python bench/bench_tvm.py --ab               # also TVM with symbolic shapes, and untuned

graphc + TVM is the default stepper: a static-shape module for the batch size, graphc's schedule
rules, and the shipped MetaSchedule records where they match (graphc/backends/tvm_tuned).
`--ab` adds, interleaved in the same process, the same step with `static_shapes=False` (one
module for every batch size) and with GRAPHC_TVM_TUNED=0 (graphc's rules only).

Results are printed and written between markers into bench/results_tvm.md; nothing is asserted.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

SINGLE = "--single-thread" in sys.argv
if SINGLE:  # before tvm / torch / onnxruntime start their thread pools
    os.environ["TVM_NUM_THREADS"] = "1"
    os.environ["OMP_NUM_THREADS"] = "1"

import numpy as np  # noqa: E402

import graphc as gc  # noqa: E402
from graphc import optim  # noqa: E402

LR, MOM = 0.01, 0.9
HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results_tvm.md")
CLOCK = time.process_time if SINGLE else time.perf_counter


def models():
    """name -> (loss graph, batch dict)."""
    rng = np.random.default_rng(0)
    return {
        "MLP 784-256-256-10, batch 128": (
            gc.models.mlp((784, 256, 256, 10), seed=0),
            {"x": rng.standard_normal((128, 784)).astype(np.float32), "y": rng.integers(0, 10, 128)}),
        "LeNet-5, batch 64": (
            gc.models.lenet5(seed=0),
            {"x": rng.standard_normal((64, 1, 32, 32)).astype(np.float32),
             "y": rng.integers(0, 10, 64)}),
    }


# ---- peers -------------------------------------------------------------------------------------

def torch_step(name: str, batch):
    try:
        import torch
    except ImportError:
        return None
    torch.manual_seed(0)
    torch.set_num_threads(1 if SINGLE else (os.cpu_count() or 1))
    nn = torch.nn
    if name.startswith("MLP"):
        model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                              nn.Linear(256, 10))
    else:
        model = nn.Sequential(nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5),
                              nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(400, 120),
                              nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOM)
    x, y = torch.from_numpy(batch["x"]), torch.from_numpy(batch["y"])
    lossf = nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=True)
        loss = lossf(model(x), y)
        loss.backward()
        opt.step()
        return float(loss.detach())
    return step


def graphc_step(step_graph, batch, backend, **options):
    st = gc.make_stepper(step_graph, backend, **options)
    return lambda: float(st.step(batch, LR)["loss"])


def untuned_tvm_step(step_graph, batch):
    """The same step graph through TVM's default Relax pipeline: unscheduled serial loops."""
    import tvm
    from tvm import relax

    from graphc.backends.tvm import lower_to_relax, make_target
    from graphc.runtime.training import training_spec
    ex = tvm.compile(lower_to_relax(step_graph), target=make_target())
    vm = relax.VirtualMachine(ex, tvm.cpu())
    spec = training_spec(step_graph)
    vals = dict(spec.initial, **batch)
    vals[spec.step] = np.asarray(0, np.int64)
    vals[spec.lr] = np.asarray(LR, np.float32)
    if spec.rng_seed:
        vals[spec.rng_seed] = np.asarray(0, np.int64)
    args = [tvm.runtime.tensor(np.asarray(vals[v.name])) for v in step_graph.inputs]
    main = vm["main"]
    return lambda: main(*args)


# ---- measuring ---------------------------------------------------------------------------------

def rate(step, seconds: float) -> float:
    """Steps per second over about `seconds`, after a warm-up."""
    for _ in range(3):
        step()
    n, t0 = 0, CLOCK()
    while True:
        for _ in range(5):
            step()
        n += 5
        dt = CLOCK() - t0
        if dt >= seconds:
            return n / dt


def compile_times(step_graph) -> dict:
    """TVM compile of the step graph: cold (empty cache) and from the cache, in this process."""
    from graphc.backends.tvm import TvmExecutable
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        TvmExecutable(step_graph, cache_dir=d)
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        exe = TvmExecutable(step_graph, cache_dir=d)
        cached = time.perf_counter() - t0
        assert exe.compile_info["cached"]
    return {"cold": cold, "cached": cached}


def import_time() -> float:
    """Seconds a fresh Python process spends importing tvm (paid once per process)."""
    code = "import time; t = time.perf_counter(); import tvm; from tvm import relax; " \
           "print(time.perf_counter() - t)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def untuned_graphc_step(step_graph, batch):
    """graphc + TVM without the shipped MetaSchedule records (GRAPHC_TVM_TUNED=0)."""
    old = os.environ.get("GRAPHC_TVM_TUNED")
    os.environ["GRAPHC_TVM_TUNED"] = "0"
    try:
        st = gc.make_stepper(step_graph, "tvm")
        st.step(batch, LR)  # compiles now, while the switch is off
    finally:
        if old is None:
            del os.environ["GRAPHC_TVM_TUNED"]
        else:
            os.environ["GRAPHC_TVM_TUNED"] = old
    return lambda: float(st.step(batch, LR)["loss"])


def run(rounds: int, seconds: float, untuned: bool, ab: bool = False) -> tuple[dict, dict]:
    rates: dict = {}
    compiles: dict = {}
    for name, (g, batch) in models().items():
        step_graph = gc.training_step(g, optimizer=optim.SGD(LR, momentum=MOM))
        compiles[name] = compile_times(step_graph)
        ort_opts = {"threads": 1} if SINGLE else {}
        impls = {"graphc + TVM": graphc_step(step_graph, batch, "tvm"),
                 "graphc + onnxruntime": graphc_step(step_graph, batch, "onnxruntime", **ort_opts)}
        if ab:
            impls["graphc + TVM, symbolic shapes"] = graphc_step(step_graph, batch, "tvm",
                                                                 static_shapes=False)
            impls["graphc + TVM, no tuned records"] = untuned_graphc_step(step_graph, batch)
        t = torch_step(name, batch)
        if t is not None:
            impls["PyTorch eager"] = t
        if untuned:
            impls["TVM untuned (default pipeline)"] = untuned_tvm_step(step_graph, batch)
        got = {k: [] for k in impls}
        for _ in range(rounds):  # interleaved, so a slow spell hits every implementation
            for k, f in impls.items():
                got[k].append(rate(f, seconds if "untuned" not in k else max(seconds, 1.0)))
        rates[name] = got
    return rates, compiles


def table(rates: dict, compiles: dict, rounds: int, seconds: float, imp: float) -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    clock = ("CPU time of one thread (TVM_NUM_THREADS=1, onnxruntime and PyTorch 1 thread)"
             if SINGLE else f"wall clock, {os.cpu_count()} threads")
    import onnxruntime
    import tvm
    lines = [f"{platform.machine()}, {os.cpu_count()} cores; apache-tvm {tvm.__version__}, "
             f"onnxruntime {onnxruntime.__version__}; {clock}; median of {rounds} interleaved runs "
             f"of ~{seconds} s in one process; 1-minute load average {load:.1f} at the end.",
             "Command: `python bench/bench_tvm.py" + (" --single-thread" if SINGLE else "")
             + (" --ab" if "--ab" in sys.argv else "") + "`", ""]
    for name, got in rates.items():
        med = {k: statistics.median(v) for k, v in got.items()}
        tvm_rate = med["graphc + TVM"]
        lines += [f"### {name}", "", "| implementation | steps/s (median) | min-max | TVM / this |",
                  "|---|---:|---:|---:|"]
        for k in sorted(med, key=lambda k: -med[k]):
            lines.append(f"| {k} | {med[k]:,.1f} | {min(got[k]):,.1f}-{max(got[k]):,.1f} | "
                         f"{tvm_rate / med[k]:.2f}x |")
        c = compiles[name]
        lines += ["", f"TVM compile of the step graph: cold {c['cold']:.2f} s, from the on-disk "
                  f"cache {c['cached']:.3f} s (in a process that has imported tvm; importing tvm "
                  f"takes {imp:.2f} s once per process).", ""]
    return "\n".join(lines)


def write(text: str) -> None:
    begin = "<!-- tvm-single:begin -->" if SINGLE else "<!-- tvm:begin -->"
    end = begin.replace("begin", "end")
    old = open(RESULTS).read() if os.path.exists(RESULTS) else "# TVM backend benchmark results\n"
    block = f"{begin}\n{text}\n{end}"
    if begin in old and end in old:
        new = old[:old.index(begin)] + block + old[old.index(end) + len(end):]
    else:
        new = old.rstrip("\n") + "\n\n" + block + "\n"
    with open(RESULTS, "w") as f:
        f.write(new)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seconds", type=float, default=0.5)
    p.add_argument("--single-thread", action="store_true")
    p.add_argument("--no-untuned", action="store_true", help="skip the (slow) untuned TVM step")
    p.add_argument("--no-write", action="store_true")
    p.add_argument("--ab", action="store_true",
                   help="also TVM with symbolic shapes and without the tuned records")
    a = p.parse_args(argv)
    imp = import_time()
    rates, compiles = run(a.rounds, a.seconds, not a.no_untuned, a.ab)
    text = table(rates, compiles, a.rounds, a.seconds, imp)
    print(text)
    if not a.no_write:
        write(text)


if __name__ == "__main__":
    main()
