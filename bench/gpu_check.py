"""One command that checks graphc's CUDA path on a GPU and prints one table.

    python bench/gpu_check.py [--workloads W1,W2,W3,W4] [--seconds 1.0] [--repeats 3]
                              [--skip-ops] [--skip-tvm] [--no-compile] [--no-cuda-graph]
                              [--device cuda|cpu] [--write]

On a machine with CUDA (onnxruntime-gpu's CUDAExecutionProvider, TVM's CUDA target, PyTorch CUDA:
see ../shared/GPU.md for installing the wheels) it prints:

1. op-table forward parity: every primitive's first sample (tests/ops/op_db.py) in float32 and
   bfloat16 on onnxruntime-CUDA and TVM-CUDA against the numpy reference, with the row's
   tolerance; bfloat16 samples enter and leave through float32 casts (onnxruntime's Python
   binding cannot feed numpy bfloat16 arrays). Counts of pass / fail / skip, then each failure.
2. W1-W4 of bench/bench_zoo.py (MLP, LeNet-5, LSTM, Transformer encoder; SGD momentum 0.9):
   training steps per second in fp32 and bf16 (graphc: `precision="bf16"`; PyTorch:
   `torch.autocast("cuda", torch.bfloat16)`) for graphc+onnxruntime-CUDA, graphc+TVM-CUDA,
   PyTorch eager CUDA and torch.compile, each as a ratio to PyTorch eager fp32 of the same
   workload, and the first loss of each relative to PyTorch eager fp32's.
   graphc+onnxruntime runs its io-binding stepper with the batch already on the GPU (an OrtValue:
   no copy per step, as PyTorch's batch stays on the GPU); "graphc+onnxruntime+cudagraph" is the
   same step traced with a fixed batch size (`_static_batch`) and run with `cuda_graph=True`, one
   captured CUDA graph per ping-pong parity (the batch is copied into a fixed buffer each step).

Steps per second are the median of `--repeats` interleaved runs of `--seconds` each, after a
warm-up. Every cell that fails prints its error and the table goes on. On a machine without CUDA
it prints why and exits 0. `--write` puts the table into bench/results.md (section gpu-check).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import traceback
from typing import Callable

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))

import graphc as gc  # noqa: E402
from graphc import optim  # noqa: E402

BEGIN, END = "<!-- gpu-check:begin -->", "<!-- gpu-check:end -->"
#: "cuda"; `--device cpu` runs the same code on the CPU (a dry run of the script itself)
DEVICE = "cuda"


# ---- what this machine has -----------------------------------------------------------------------

def cuda_status() -> dict[str, str | None]:
    """For each runtime, None when it can use CUDA here, else the reason it cannot."""
    out: dict[str, str | None] = {}
    try:
        import onnxruntime as ort
        prov = ort.get_available_providers()
        out["onnxruntime"] = None if "CUDAExecutionProvider" in prov else \
            f"onnxruntime {ort.__version__} has no CUDAExecutionProvider (providers: {', '.join(prov)})"
    except ImportError as exc:
        out["onnxruntime"] = f"onnxruntime is not installed ({exc})"
    try:
        import tvm
        out["tvm"] = None if tvm.cuda(0).exist else "TVM sees no CUDA GPU (tvm.cuda(0).exist is False)"
    except Exception as exc:  # noqa: BLE001 - TVM missing or built without CUDA
        out["tvm"] = f"TVM unavailable ({type(exc).__name__}: {exc})"
    try:
        import torch
        out["torch"] = None if torch.cuda.is_available() else \
            f"PyTorch {torch.__version__} sees no CUDA device (torch.cuda.is_available() is False)"
    except ImportError as exc:
        out["torch"] = f"PyTorch is not installed ({exc})"
    return out


# ---- 1. op-table forward parity ------------------------------------------------------------------

def _op_graph(info, sample, dtype: str):
    """The primitive once, its inputs x0..xk; bfloat16 inputs fed as float32 and cast inside,
    a bfloat16 output cast to float32 (numpy bfloat16 cannot cross onnxruntime's binding)."""
    from graphc.frontends.dsl import apply
    g = gc.Graph(f"{info.name}_{dtype}")
    feeds = {}
    with g:
        xs = []
        for i, a in enumerate(sample.inputs):
            if a.dtype.name == "bfloat16":
                xs.append(gc.cast(g.input(f"x{i}", a.shape, "float32"), "bfloat16"))
                feeds[f"x{i}"] = a.astype(np.float32)
            else:
                xs.append(g.input(f"x{i}", a.shape, a.dtype.name))
                feeds[f"x{i}"] = a
        y = apply(info.name, xs, dict(sample.attrs))
        g.output(y=gc.cast(y, "float32") if y.dtype == "bfloat16" else y)
    return g, feeds


def op_parity(backends: list[str]) -> tuple[list[str], list[str]]:
    """Rows of the parity table and the failure lines."""
    from graphc.ops.interpret import run_ref
    from ops.op_db import OP_DB
    counts = {(b, d): [0, 0, 0] for b in backends for d in ("float32", "bfloat16")}
    failures = []
    for info in OP_DB:
        for dtype in ("float32", "bfloat16"):
            if dtype not in info.dtypes and dtype not in info.low_precision:
                continue
            try:
                sample = info.get_samples(dtype)[0]
                g, feeds = _op_graph(info, sample, dtype)
                out_dtype = [n for n in g.nodes if n.op.name == info.name][-1].output.type.dtype
                want = run_ref(info.op, sample.inputs, dict(sample.attrs), out_dtype)
                want = want.astype(np.float32) if want.dtype.name == "bfloat16" else want
            except Exception as exc:  # noqa: BLE001
                failures.append(f"{info.name} {dtype}: reference: {type(exc).__name__}: {exc}"[:300])
                continue
            for b in backends:
                c = counts[(b, dtype)]
                reason = info.skip_reason("tvm" if b == "tvm" else "onnxruntime_cuda", dtype, sample)
                if reason:
                    c[2] += 1
                    continue
                try:
                    got = np.asarray(gc.compile(g, b, device=DEVICE)(**feeds)["y"])
                    rtol, atol = info.tolerance(b, dtype)
                    if want.dtype.kind in "fc":
                        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)
                    else:
                        np.testing.assert_array_equal(got, want)
                    c[0] += 1
                except Exception as exc:  # noqa: BLE001
                    c[1] += 1
                    msg = str(exc).strip().splitlines()
                    failures.append(f"{b}-cuda {info.name} {dtype}: {type(exc).__name__}: "
                                    f"{' '.join(msg[:3])}"[:300])
    rows = [f"| {b}-cuda | {d} | {p} | {f} | {s} |" for (b, d), (p, f, s) in counts.items()]
    return rows, failures


# ---- 2. training steps per second ----------------------------------------------------------------

def _static_batch(graph, sizes: dict[str, int]):
    """A copy of `graph` with the symbolic dims in `sizes` ("N" -> 128) made static, in every
    value's type and every attribute (a loop body too); checked by `graphc.ir.verify`."""
    from graphc.ir.graph import Graph
    from graphc.ir.types import TensorType, parse_dim
    from graphc.ir.verify import verify

    def dim(d):
        if not isinstance(d, str):
            return d
        try:
            coef, syms = parse_dim(d)
        except Exception:  # noqa: BLE001 - a string attribute, not a dim
            return d
        if not syms or any(s not in sizes for s in syms):
            return d
        return int(coef * np.prod([sizes[s] ** k for s, k in syms.items()], dtype=np.int64))

    def sub(a):
        if isinstance(a, TensorType):
            return TensorType(tuple(dim(d) for d in a.shape), a.dtype)
        if isinstance(a, Graph):
            return _static_batch(a, sizes)
        if isinstance(a, tuple):
            return tuple(sub(e) for e in a)
        if isinstance(a, list):
            return [sub(e) for e in a]
        if isinstance(a, dict):
            return {k: sub(v) for k, v in a.items()}
        return dim(a)

    g = Graph(graph.name)
    g.meta, g.spec = dict(graph.meta), graph.spec
    vmap = {}
    for v in graph.inputs:
        vmap[v] = g.add_input(v.name, sub(v.type), v.role, v.target, v.range)
    for v in graph.params:
        vmap[v] = g.add_param(v.name, v.data, v.role)
    for n in graph.nodes:
        vmap[n.output] = g.add_node(n.op, [vmap[i] for i in n.inputs], sub(dict(n.attrs)),
                                    sub(n.output.type), n.output.name, n.source, n.origin)
    g.outputs = {k: vmap[v] for k, v in graph.outputs.items()}
    g.updates = dict(graph.updates)
    verify(g)
    return g


def _graphc_step(workload: str, x, y, backend: str, precision: str, cuda_graph: bool = False
                 ) -> tuple[Callable, dict]:
    import bench_zoo
    import zoo_peers
    _, builder, kw, _ = bench_zoo.WORKLOADS[workload]
    g = getattr(gc.models, builder)(**kw)
    params = {p.name: np.array(p.data) for p in g.params}
    if cuda_graph:
        g = _static_batch(g, {"N": len(x)})
    sg = gc.training_step(g, optimizer=optim.SGD(zoo_peers.LR, momentum=zoo_peers.MOM),
                          precision=precision)
    options = {}
    if cuda_graph:  # on the CPU (a dry run) the same fixed-buffer path, without the capture
        options = {"cuda_graph": True} if DEVICE == "cuda" else {"fixed_buffers": True}
    st = gc.make_stepper(sg, backend, device=DEVICE, **options)
    batch = {"x": x, "y": y}
    if backend == "onnxruntime" and DEVICE == "cuda":  # on the GPU once, as PyTorch's batch is
        import onnxruntime as ort
        batch = {k: ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(v), "cuda", 0)
                 for k, v in batch.items()}

    def step() -> float:
        return float(st.step(batch, zoo_peers.LR)["loss"])
    return step, params


def _torch_step(workload: str, x, y, params, precision: str, compile: bool) -> Callable:
    import torch
    import zoo_peers
    from bench_zoo import peer_config
    torch.manual_seed(0)
    model = zoo_peers._torch_module(workload, peer_config(workload))
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in params.items()})
    model = model.to(DEVICE)
    opt = torch.optim.SGD(model.parameters(), lr=zoo_peers.LR, momentum=zoo_peers.MOM)
    xt, yt = torch.from_numpy(x).to(DEVICE), torch.from_numpy(y).to(DEVICE)
    lossf = torch.nn.functional.cross_entropy
    dtype = torch.bfloat16 if precision == "bf16" else None

    def train(xb, yb):
        with torch.autocast(DEVICE, dtype=torch.bfloat16, enabled=dtype is not None):
            loss = lossf(model(xb), yb)
        loss.backward()
        return loss

    if compile:
        train = torch.compile(train)

    def step() -> float:
        opt.zero_grad(set_to_none=True)
        loss = train(xt, yt)
        opt.step()
        return float(loss.detach())  # synchronizes, as graphc's steppers return the loss
    return step


def _rate(step: Callable, seconds: float) -> float:
    n, t0 = 0, time.perf_counter()
    while True:
        step()
        n += 1
        dt = time.perf_counter() - t0
        if dt >= seconds and n >= 3:
            return n / dt


def bench(workloads: list[str], impls: list[str], seconds: float, repeats: int
          ) -> tuple[list[str], list[str]]:
    import bench_zoo
    rows, errors = [], []
    for w in workloads:
        x, y = bench_zoo.batch_for(w)
        steps: dict[str, Callable] = {}
        first: dict[str, float] = {}
        params = None
        for prec in ("fp32", "bf16"):
            for impl in impls:
                key = f"{impl} {prec}"
                try:
                    if impl.startswith("graphc"):
                        backend = "onnxruntime" if "onnxruntime" in impl else "tvm"
                        s, p = _graphc_step(w, x, y, backend, prec,
                                            cuda_graph=impl.endswith("+cudagraph"))
                        params = params or p
                    else:
                        if params is None:
                            _, builder, kw, _ = bench_zoo.WORKLOADS[w]
                            g = getattr(gc.models, builder)(**kw)
                            params = {q.name: np.array(q.data) for q in g.params}
                        s = _torch_step(w, x, y, params, prec, compile=impl == "torch.compile")
                    first[key] = s()  # the first step: compiles, and its loss is compared
                    for _ in range(2):
                        s()
                    steps[key] = s
                except Exception as exc:  # noqa: BLE001
                    errors.append(f"{w} {key}: {type(exc).__name__}: "
                                  f"{' '.join(str(exc).split())[:240]}")
        rates: dict[str, list[float]] = {k: [] for k in steps}
        for _ in range(repeats):  # interleaved, so drifts of the machine hit everyone alike
            for k, s in steps.items():
                rates[k].append(_rate(s, seconds))
        base_key = "PyTorch eager fp32"
        base = statistics.median(rates[base_key]) if base_key in rates else None
        base_loss = first.get(base_key)
        for prec in ("fp32", "bf16"):
            for impl in impls:
                key = f"{impl} {prec}"
                if key not in rates:
                    rows.append(f"| {w} | {impl} | {prec} | error | | |")
                    continue
                r = statistics.median(rates[key])
                ratio = f"{r / base:.2f}" if base else ""
                dl = (f"{abs(first[key] - base_loss) / max(abs(base_loss), 1e-12):.1e}"
                      if base_loss is not None else "")
                rows.append(f"| {w} | {impl} | {prec} | {r:.1f} | {ratio} | {first[key]:.6f} ({dl}) |")
        print(f"  {w} done", flush=True)
    return rows, errors


def write(text: str) -> str:
    path = os.path.join(HERE, "results.md")
    old = open(path).read() if os.path.exists(path) else ""
    block = f"{BEGIN}\n{text}\n{END}"
    if BEGIN in old and END in old:
        new = old[:old.index(BEGIN)] + block + old[old.index(END) + len(END):]
    else:
        new = old.rstrip() + "\n\n## GPU check (bench/gpu_check.py)\n\n" + block + "\n"
    with open(path, "w") as f:
        f.write(new)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workloads", default="W1,W2,W3,W4")
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-ops", action="store_true")
    ap.add_argument("--skip-tvm", action="store_true")
    ap.add_argument("--no-compile", action="store_true", help="leave torch.compile out")
    ap.add_argument("--no-cuda-graph", action="store_true",
                    help="leave out graphc+onnxruntime with cuda_graph=True")
    ap.add_argument("--write", action="store_true", help="write the table into bench/results.md")
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"),
                    help="cpu: a dry run of this script on the CPU (numbers mean nothing)")
    args = ap.parse_args(argv)

    global DEVICE
    DEVICE = args.device
    status = cuda_status() if DEVICE == "cuda" else {"onnxruntime": None, "tvm": None, "torch": None}
    if all(v is not None for v in status.values()):
        print("gpu_check: no CUDA on this machine; nothing to check. Each runtime says:")
        for name, why in status.items():
            print(f"  {name}: {why}")
        print("Run it on a machine with an NVIDIA GPU (see ../shared/GPU.md for the wheels).")
        return 0
    print("gpu_check: " + "; ".join(f"{k}: {'CUDA' if v is None else v}" for k, v in status.items()),
          flush=True)
    t0 = time.perf_counter()
    backends = [b for b in ("onnxruntime", "tvm") if status[b] is None
                and not (b == "tvm" and args.skip_tvm)]
    lines = []
    if not args.skip_ops and backends:
        rows, failures = op_parity(backends)
        lines += ["### Op-table forward parity (first sample of each row, vs the numpy reference)", "",
                  "| backend | dtype | pass | fail | skip |", "|---|---|---|---|---|", *rows, ""]
        if failures:
            lines += ["Failures:", "", *[f"- {f}" for f in failures], ""]
        print(f"  op parity done ({time.perf_counter() - t0:.0f} s)", flush=True)
    impls = [f"graphc+{b}" for b in backends]
    if "onnxruntime" in backends and not args.no_cuda_graph:
        impls.insert(1, "graphc+onnxruntime+cudagraph")
    if status["torch"] is None:
        impls += ["PyTorch eager"] + ([] if args.no_compile else ["torch.compile"])
    rows, errors = bench(args.workloads.split(","), impls, args.seconds, args.repeats)
    lines += ["### Training steps per second (SGD momentum; ratio to PyTorch eager fp32; first loss "
              "and its relative difference to PyTorch eager fp32's)", "",
              "| workload | implementation | precision | steps/s | ratio | first loss (rel. diff) |",
              "|---|---|---|---|---|---|", *rows, ""]
    if errors:
        lines += ["Errors:", "", *[f"- {e}" for e in errors], ""]
    lines.append(f"Command: `python bench/gpu_check.py {' '.join(argv or sys.argv[1:])}`; "
                 f"{time.perf_counter() - t0:.0f} s.")
    text = "\n".join(lines)
    print(text)
    if args.write:
        print(f"written to {write(text)}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception:  # noqa: BLE001 - a crash still says where
        traceback.print_exc()
        sys.exit(1)
