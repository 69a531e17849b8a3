"""Issue 6's five training workloads: graphc + onnxruntime vs PyTorch eager, torch.compile, JAX jit.

    python bench/bench_zoo.py [--repeats 5] [--seconds 1.0] [--workloads W1,W2] [--no-write]
    python bench/bench_zoo.py --single-thread  # one thread each, steps per CPU-second
    python bench/bench_zoo.py --frontends models,nn,nospin   # more graphc rows (see --help)
    python bench/bench_zoo.py --quick          # a smoke run: few steps, no torch.compile, no file
    python bench/bench_zoo.py --profile W3,W4  # onnxruntime per-node profile of graphc's step
    python bench/bench_zoo.py --w3-loops       # W3 at seq 32 and 256, 1 and 2 threads: ONNX Scan
                                               # vs unrolled lowering vs PyTorch eager, + profile

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
Writes the table into bench/results.md inside the "zoo" section (sub-sections zoo-default,
zoo-1thread and zoo-profile, so each mode replaces only its own table). Timing is reported,
never asserted.
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

SINGLE = "--single-thread" in sys.argv
if SINGLE:  # before numpy, torch and jax start their thread pools
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    os.environ["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import zoo_peers  # noqa: E402

import graphc as gc  # noqa: E402
from graphc import optim  # noqa: E402

BEGIN, END = "<!-- zoo:begin -->", "<!-- zoo:end -->"
# wall-clock time by default; with --single-thread, every implementation runs on one thread and
# is timed by this process's CPU time: the work per step, which other jobs on a shared machine
# disturb far less than wall-clock time (see bench_training.py)
CLOCK = time.process_time if SINGLE else time.perf_counter
GRAPHC = "graphc+onnxruntime"
#: the graphc rows by frontend: the model built with graphc.models, or with graphc.nn layers
GRAPHC_ROWS = {"models": GRAPHC, "nn": "graphc.nn+onnxruntime",
               "nospin": "graphc+onnxruntime spin=False"}
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


def nn_loss_graph(workload: str, params: dict[str, np.ndarray]) -> gc.Graph:
    """The workload written with graphc.nn layers (as a user would), loaded with `params`."""
    from graphc import nn
    kw = peer_config(workload)

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            if workload == "W1":
                sizes = kw["sizes"]
                for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
                    setattr(self, f"fc{i}", nn.Linear(a, b))
            elif workload == "W2":
                self.conv1, self.conv2 = nn.Conv2d(1, 6, 5), nn.Conv2d(6, 16, 5)
                self.fc1, self.fc2, self.fc3 = nn.Linear(400, 120), nn.Linear(120, 84), nn.Linear(84, 10)
            elif workload == "W3":
                self.lstm = nn.LSTM(kw["input"], kw["hidden"], batch_first=True)
                self.fc = nn.Linear(kw["hidden"], kw["classes"])
            elif workload == "W4":
                self.layers = nn.ModuleList([
                    nn.TransformerEncoderLayer(kw["d_model"], kw["heads"], kw["ffn"], dropout=0.0,
                                               batch_first=True) for _ in range(kw["layers"])])
                self.head = nn.Linear(kw["d_model"], kw["classes"])
            else:
                self.linear = nn.Linear(kw["features"], 1)

        def forward(self, x):
            if workload == "W1":
                n = len(kw["sizes"]) - 1
                for i in range(1, n + 1):
                    x = getattr(self, f"fc{i}")(x)
                    x = nn.relu(x) if i < n else x
                return x
            if workload == "W2":
                x = nn.max_pool2d(nn.relu(self.conv1(x)), 2)
                x = nn.max_pool2d(nn.relu(self.conv2(x)), 2).flatten(1)
                return self.fc3(nn.relu(self.fc2(nn.relu(self.fc1(x)))))
            if workload == "W3":
                _, (h, _) = self.lstm(x)
                return self.fc(h[0])
            if workload == "W4":
                for layer in self.layers:
                    x = layer(x)
                return self.head(x.mean(1))
            return gc.reshape(self.linear(x), (x.shape[0],))

    model = Model()
    model.load_state_dict(params)
    x, y = batch_for(workload)
    loss = nn.binary_cross_entropy_with_logits if workload == "W5" else nn.cross_entropy

    @gc.function(x=gc.spec(("N",) + x.shape[1:]), y=gc.spec(("N",), str(y.dtype)))
    def loss_fn(x, y):
        return {"loss": loss(model(x), y)}
    return loss_fn.graph


def graphc_step(workload: str, x: np.ndarray, y: np.ndarray, frontend: str = "models",
                **options) -> tuple[Callable, dict]:
    """graphc's training step on onnxruntime, and the initial parameters (for the peers).

    frontend "models" builds the model with graphc.models, "nn" with graphc.nn layers; both start
    from graphc.models' initial weights.
    """
    _, builder, kw, _ = WORKLOADS[workload]
    g = getattr(gc.models, builder)(**kw)
    params = {p.name: np.array(p.data) for p in g.params}
    if frontend == "nn":
        g = nn_loss_graph(workload, params)
    sg = gc.training_step(g, optimizer=optim.SGD(zoo_peers.LR, momentum=zoo_peers.MOM))
    st = gc.make_stepper(sg, "onnxruntime", **options)
    batch = {"x": x, "y": y}

    def step() -> float:
        return float(st.step(batch, zoo_peers.LR)["loss"])
    step.stepper = st  # for profiling
    return step, params


def make_steps(workload: str, peers: tuple[str, ...], threads: int | None,
               frontends: tuple[str, ...] = ("models",)) -> dict[str, Callable]:
    x, y = batch_for(workload)
    opts = {"threads": threads} if threads else {}
    steps = {}
    params = None
    for fe in frontends:
        # nospin: onnxruntime's idle workers sleep instead of spin-waiting (a stepper option)
        extra = {"spin": False} if fe == "nospin" else {}
        steps[GRAPHC_ROWS[fe]], params = graphc_step(workload, x, y, frontend="nn" if fe == "nn" else "models",
                                                     **opts, **extra)
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
    """Steps per second over about `seconds` of CLOCK (wall clock, or CPU time with
    --single-thread), and at least `min_steps` steps."""
    n, t0 = 0, CLOCK()
    while True:
        step()
        n += 1
        dt = CLOCK() - t0
        if dt >= seconds and n >= min_steps:
            return n / dt


def bench_workload(workload: str, peers: tuple[str, ...], repeats: int, seconds: float,
                   threads: int | None, frontends: tuple[str, ...] = ("models",)) -> dict:
    title = WORKLOADS[workload][0]
    print(f"{workload} {title}", flush=True)
    t0 = time.perf_counter()
    steps = make_steps(workload, peers, threads, frontends)
    first, warm = {}, {}
    for name, s in list(steps.items()):  # first call compiles (jit, torch.compile): timed apart
        t = time.perf_counter()
        try:
            first[name] = s()
            s()
        except Exception as exc:  # e.g. torch.compile without a working C++ toolchain
            if name in GRAPHC_ROWS.values():
                raise
            print(f"  {name}: failed ({type(exc).__name__}: {str(exc)[:200]}), skipped")
            del steps[name]
            continue
        warm[name] = time.perf_counter() - t
    ref = first[next(iter(steps))]
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

#: onnxruntime op types by what they spend time on, for the profile's summary line
KINDS = {"products": ("Gemm", "FusedGemm", "MatMul", "FusedMatMul", "Conv", "FusedConv",
                      "ConvTranspose"),
         "reductions": ("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "MaxPool", "AveragePool",
                        "ArgMax", "Softmax", "LogSoftmax"),
         "data movement": ("Transpose", "Reshape", "Expand", "Concat", "Split", "Slice", "Pad",
                           "Gather", "GatherElements", "ScatterElements", "Squeeze", "Unsqueeze",
                           "Shape", "Identity", "Tile", "Flatten")}


def _kind(op: str) -> str:
    return next((k for k, ops in KINDS.items() if op in ops), "elementwise")


def profile(workload: str, steps: int = 40, top: int = 15, threads: int | None = None) -> str:
    """Where graphc's step spends its time on onnxruntime (its profiler's per-node kernel times),
    as markdown: per op type, per kind (products, elementwise, ...) and the slowest nodes.

    Per-node times are medians over the steps after the first five (which allocate), so that a
    burst of load from other jobs moves them less.
    """
    import onnxruntime as ort
    x, y = batch_for(workload)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    opts.enable_profiling = True
    if threads:
        opts.intra_op_num_threads = threads
    opts.profile_file_prefix = os.path.join("/tmp", f"graphc_zoo_{workload}_{os.getpid()}")
    step, _ = graphc_step(workload, x, y, session_options=opts)
    sess = step.stepper.session
    for _ in range(steps):
        step()
    path = sess.end_profiling()
    with open(path) as f:
        events = json.load(f)
    os.remove(path)
    runs = sorted((e["ts"], e["dur"]) for e in events
                  if e.get("cat") == "Session" and e["name"] == "model_run")
    skip = runs[5][0] if len(runs) > 10 else 0
    times: dict[tuple[str, str], list[float]] = defaultdict(list)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= skip:
            times[(e["args"].get("op_name", "?"), e["name"][:-len("_kernel_time")])].append(e["dur"])
    node_ms = {k: statistics.median(v) / 1e3 for k, v in times.items()}
    by_type: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    by_kind: dict[str, float] = defaultdict(float)
    for (op, _), ms in node_ms.items():
        by_type[op] += ms
        count[op] += 1
        by_kind[_kind(op)] += ms
    total = sum(node_ms.values())
    wall = statistics.median(d for t, d in runs if t >= skip) / 1e3
    kinds = ", ".join(f"{k} {100 * v / total:.0f}%" for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1]))
    lines = [f"{workload} {WORKLOADS[workload][0]}: median step {wall:.2f} ms, of which kernels "
             f"{total:.2f} ms in {len(node_ms)} kernels (after onnxruntime's fusions): {kinds}", "",
             "| op type | ms/step | share | kernels |", "|---|---:|---:|---:|"]
    for op, ms in sorted(by_type.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"| {op} | {ms:.3f} | {100 * ms / total:.1f}% | {count[op]} |")
    lines += ["", "| slowest nodes | ms/step | share |", "|---|---:|---:|"]
    for (op, name), ms in sorted(node_ms.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"| {op} `{name}` | {ms:.3f} | {100 * ms / total:.1f}% |")
    return "\n".join(lines)


# ---- the matmul ceiling -------------------------------------------------------------------------

def w1_flops() -> float:
    """Multiply-add FLOPs of one W1 training step: forward, weight gradients, input gradients
    (none for the first layer); elementwise work not counted."""
    _, _, kw, n = WORKLOADS["W1"]
    prods = [a * b for a, b in zip(kw["sizes"][:-1], kw["sizes"][1:])]
    return 2.0 * n * (2 * sum(prods) + sum(prods[1:]))


def matmul_ceiling(threads: int | None, repeats: int = 5, seconds: float = 0.3) -> float:
    """onnxruntime's GFLOP/s on W1's largest product, (128, 784) @ (784, 256), in this process:
    the best a step made of such products can do (median of `repeats` runs, CLOCK time)."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper
    _, _, kw, n = WORKLOADS["W1"]
    k, m = kw["sizes"][0], kw["sizes"][1]
    g = helper.make_graph([helper.make_node("Gemm", ["a", "b"], ["c"])], "ceiling",
                          [helper.make_tensor_value_info("a", TensorProto.FLOAT, [n, k]),
                           helper.make_tensor_value_info("b", TensorProto.FLOAT, [k, m])],
                          [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, m])])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {"a": rng.normal(size=(n, k)).astype(np.float32),
             "b": rng.normal(size=(k, m)).astype(np.float32)}
    sess.run(None, feeds)
    runs = [rate(lambda: sess.run(None, feeds), seconds) for _ in range(repeats)]
    return statistics.median(runs) * 2.0 * n * k * m / 1e9


def ceiling_note(results: dict[str, dict], threads: int | None) -> str:
    """W1's achieved GFLOP/s as a share of the matmul ceiling measured now, as one line."""
    if "W1" not in results or GRAPHC not in results["W1"]["median"]:
        return ""
    ceiling = matmul_ceiling(threads)
    achieved = w1_flops() * results["W1"]["median"][GRAPHC] / 1e9
    return (f"Matmul ceiling (onnxruntime Gemm (128, 784) @ (784, 256), measured after the runs "
            f"above): {ceiling:.1f} GFLOP/s; W1 on {GRAPHC} does {w1_flops() / 1e6:.0f} MFLOP per "
            f"step, {achieved:.1f} GFLOP/s, {achieved / ceiling:.2f} of the ceiling.")


# ---- the table --------------------------------------------------------------------------------

def _fmt(v: float) -> str:
    return f"{v:,.0f}" if v >= 100 else f"{v:,.1f}"


def table(results: dict[str, dict], args: argparse.Namespace, load: str) -> str:
    """The results as markdown: one row per workload, ratios graphc / peer."""
    import onnxruntime
    versions = [f"onnxruntime {onnxruntime.__version__}"]
    for mod in ("torch", "jax"):
        try:
            versions.append(f"{mod} {__import__(mod).__version__}")
        except ImportError:
            versions.append(f"{mod} not installed")
    ours_rows = [n for n in GRAPHC_ROWS.values() if any(n in r["median"] for r in results.values())]
    peers = [p for p in PEERS if any(p in r["median"] for r in results.values())]
    cmd = "python bench/bench_zoo.py " + " ".join(sys.argv[1:])
    unit = "steps per CPU-second, one thread each" if SINGLE else "steps per second"
    lines = [f"### {'One thread, CPU time' if SINGLE else 'Default threads, wall clock'}: {unit}", "",
             f"Command: `{cmd.strip()}`. Machine: {platform.processor() or platform.machine()}, "
             f"{os.cpu_count()} cores, no GPU, shared with other jobs; {', '.join(versions)}. Median "
             f"of {args.repeats} interleaved runs of ~{args.seconds:g} s each, all in one process; "
             f"1-minute load average {load} (before, after). Ratios are {ours_rows[0]} / peer "
             "(> 1: graphc faster).", "",
             "| workload | " + " | ".join(ours_rows + peers) + " | "
             + " | ".join(f"vs {p}" for p in peers) + " |",
             "|---|" + "---:|" * (len(ours_rows) + 2 * len(peers))]
    for w, r in results.items():
        med = r["median"]
        ours = med.get(ours_rows[0])
        cells = [_fmt(med[n]) if n in med else "-" for n in ours_rows + peers]
        ratios = [f"{ours / med[n]:.2f}x" if n in med and ours else "-" for n in peers]
        lines.append(f"| {w} {r['title']} | " + " | ".join(cells + ratios) + " |")
    lines += ["", "Spread (min-max over the repeats):", ""]
    for w, r in results.items():
        lines.append(f"- {w}: " + "; ".join(f"{n} {_fmt(lo)}-{_fmt(hi)}" for n, (lo, hi) in
                                             r["spread"].items()))
    return "\n".join(lines)


def write(text: str, key: str) -> str:
    """Puts `text` into bench/results.md between the `zoo-<key>` markers, inside the zoo section
    (made at the end of the file if missing); the rest of the file stays as it is."""
    path = os.path.join(HERE, "results.md")
    old = open(path).read() if os.path.exists(path) else "# Benchmark results\n"
    if BEGIN not in old or END not in old:
        old = old.rstrip("\n") + f"\n\n{BEGIN}\n## Zoo workloads (bench/bench_zoo.py)\n\n{END}\n"
    b, e = f"<!-- zoo-{key}:begin -->", f"<!-- zoo-{key}:end -->"
    block = f"{b}\n{text}\n{e}"
    if b in old and e in old and old.index(BEGIN) < old.index(b) < old.index(e) < old.index(END):
        new = old[:old.index(b)] + block + old[old.index(e) + len(e):]
    else:
        new = old[:old.index(END)] + block + "\n\n" + old[old.index(END):]
    with open(path, "w") as f:
        f.write(new)
    return path


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workloads", default="W1,W2,W3,W4,W5", help="comma-separated, of W1..W5")
    ap.add_argument("--peers", default=",".join(PEERS),
                    help="comma-separated subset of: " + ", ".join(PEERS))
    ap.add_argument("--repeats", type=int, default=5, help="interleaved rounds per workload")
    ap.add_argument("--seconds", type=float, default=1.0, help="length of each timed run")
    ap.add_argument("--threads", type=int, default=None,
                    help="intra-op threads for onnxruntime and PyTorch (default: theirs)")
    ap.add_argument("--single-thread", action="store_true",
                    help="everything on one thread, timed by process CPU time (steps per CPU-second)")
    ap.add_argument("--frontends", default="models",
                    help="graphc rows, comma-separated: models (graphc.models), nn (graphc.nn "
                         "layers), nospin (graphc.models, onnxruntime threads not spin-waiting)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 1 repeat of ~0.1 s, no torch.compile, nothing written")
    ap.add_argument("--profile", metavar="W", default=None,
                    help="onnxruntime's per-node profile of graphc's step for these workloads "
                         "(comma-separated), printed and written to bench/results.md")
    ap.add_argument("--no-write", action="store_true", help="print only; leave results.md alone")
    ap.add_argument("--w3-loops", action="store_true",
                    help="W3 (seq 32 and 256, 1 and 2 threads) with graphc's loop lowered to an "
                         "ONNX Scan vs unrolled vs PyTorch eager, and the Scan lowering's profile "
                         "(bench_scan_w3.py); written to the zoo-w3-loops section")
    args = ap.parse_args(argv)
    if args.w3_loops:
        import bench_scan_w3
        before = os.getloadavg()[0]
        res = bench_scan_w3.measure([32, 256], [1, 2], args.repeats, args.seconds)
        load = f"{before:.1f}, {os.getloadavg()[0]:.1f}"
        text = (f"### W3 on loops (`python bench/bench_zoo.py {' '.join(sys.argv[1:])}`)\n\n"
                + bench_scan_w3.table(res, args.repeats, args.seconds, load) + "\n\n"
                + bench_scan_w3.profile(32))
        print(text)
        if not args.no_write:
            print(f"wrote {write(text, 'w3-loops')}")
        return
    if args.profile:
        cmd = "python bench/bench_zoo.py " + " ".join(sys.argv[1:])
        parts = [f"### Where graphc's step spends its time (`{cmd.strip()}`)", "",
                 "onnxruntime's profiler, per-node kernel times (medians over steps 6-40), "
                 f"{'one thread' if SINGLE else 'default threads'}; load average "
                 f"{os.getloadavg()[0]:.1f}. The profiler itself adds tens of microseconds per "
                 "kernel (W3's step takes ~4x longer profiled): read the shares, not the "
                 "absolute times.", ""]
        for w in args.profile.split(","):
            text = profile(w.strip(), threads=1 if SINGLE else args.threads)
            print(text, "\n", flush=True)
            parts += [text, ""]
        if not args.no_write:
            print(f"wrote {write(chr(10).join(parts).rstrip(), 'profile')}")
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
    frontends = tuple(f.strip() for f in args.frontends.split(",") if f.strip())
    if not frontends or any(f not in GRAPHC_ROWS for f in frontends):
        ap.error(f"--frontends: choose from {', '.join(GRAPHC_ROWS)}")
    threads = 1 if SINGLE else args.threads
    results = {w.strip(): bench_workload(w.strip(), peers, args.repeats, args.seconds, threads,
                                         frontends)
               for w in args.workloads.split(",")}
    load = f"{before:.1f}, {os.getloadavg()[0]:.1f}"
    text = table(results, args, load)
    note = ceiling_note(results, threads)
    text = text + ("\n\n" + note if note else "")
    print("\n" + text)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")
    if not args.no_write:
        print(f"wrote {write(text, '1thread' if SINGLE else 'default')}")


if __name__ == "__main__":
    main()
