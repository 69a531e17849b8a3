"""The step's peak-memory estimate (graphc.inspect.memory) against onnxruntime's measured peak.

How the peak is measured (`measure_ort_peak`, run in a fresh process per case, so nothing else
the test session allocated is in the way):

- glibc is told to serve every allocation of 64 KiB or more with its own mmap and to unmap it on
  free (``MALLOC_MMAP_THRESHOLD_=65536``, which also stops the threshold from adapting), so the
  process's resident set follows the live tensors instead of the heap's high-water mark;
- onnxruntime runs the step through graphc's own `OrtStepper` (io binding, double-buffered
  parameters and state) with the CPU arena off (``enable_cpu_mem_arena=False``), no memory
  pattern (``enable_mem_pattern=False``) and one intra-op thread: every tensor is a malloc of
  its own size, freed when its last reader has run;
- two warm-up steps allocate what stays (kernel state, packed-GEMM buffers, both buffer sets);
  then ``5`` is written to ``/proc/self/clear_refs``, which resets the peak resident set
  ``VmHWM`` to the current ``VmRSS``; one step runs; ``transient = VmHWM - VmRSS_before``;
- the resident part (batch, parameters and state in both buffer sets, metric buffers) is
  measured as the drop in ``VmRSS`` when the stepper's buffers and bindings and the batch are
  released afterwards (the session itself is kept, so its own memory is not counted);
- measured peak = resident + transient.

The resident set size of a process does not depend on machine load, so the figures are stable on
a busy 2-core machine; the batch sizes make the peaks tens of MiB so that allocator noise (a few
hundred KiB) stays small against them.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import graphc as gc
from graphc import optim
from graphc.inspect import summary
from graphc.inspect.memory import step_memory

pytest.importorskip("onnxruntime")

#: name -> (builder of the training step, batch input shape after N)
CASES = {
    "lenet5": (lambda: gc.training_step(gc.models.lenet5(seed=0), None,
                                        optim.SGD(0.1, momentum=0.9)), (1, 32, 32)),
    "mlp": (lambda: gc.training_step(gc.models.mlp((784, 256, 10), seed=0), None,
                                     optim.Adam(1e-3)), (784,)),
}


def _status(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def measure_ort_peak(case: str, n: int) -> dict[str, int]:
    """Runs one training step of `case` at batch `n` on onnxruntime (CPU, arena off) and returns
    its measured resident and transient bytes (see the module docstring). Call it in a fresh
    process started with ``MALLOC_MMAP_THRESHOLD_=65536``."""
    import numpy as np
    import onnxruntime as ort
    from graphc.backends.onnx import OrtStepper
    build, shape = CASES[case]
    step = build()
    rng = np.random.default_rng(0)
    batch = {"x": rng.standard_normal((n, *shape), dtype=np.float32),
             "y": (np.arange(n) % 10).astype(np.int64)}
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL  # as the stepper
    opts.enable_cpu_mem_arena = False
    opts.enable_mem_pattern = False
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    stepper = OrtStepper(step, session_options=opts)
    for _ in range(2):
        stepper.step(batch, 0.01)
    before = _status("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")               # VmHWM := VmRSS
    stepper.step(batch, 0.01)
    transient = _status("VmHWM") - before
    after = _status("VmRSS")
    # release what the step held for its whole run: the stepper's OrtValues and bindings (every
    # attribute but the session and the graph) and the batch
    keep = {"session", "graph", "spec", "model", "_ort", "_checker", "_inputs"}
    for k in list(vars(stepper)):
        if k not in keep:
            setattr(stepper, k, None)
    del batch
    import gc as pygc
    pygc.collect()
    resident = after - _status("VmRSS")
    return {"resident": resident, "transient": transient, "peak": resident + transient}


def _measure(case: str, n: int) -> dict[str, int]:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, __file__, case, str(n)], env=env, capture_output=True,
                         text=True, timeout=600, cwd=os.path.dirname(os.path.abspath(__file__)))
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux /proc")
@pytest.mark.parametrize("case,n", [
    ("lenet5", 512),    # activations dominate (conv1's outputs: 9.2 MiB each)
    ("mlp", 2048),      # parameters, Adam state and the batch dominate
    ("mlp", 8192),      # a batch large enough that activations dominate
])
def test_peak_estimate_is_within_25_percent_of_onnxruntime(case: str, n: int) -> None:
    est = step_memory(CASES[case][0](), {"N": n})
    got = _measure(case, n)
    ratio = est.peak_bytes / got["peak"]
    mib = 2.0 ** 20
    print(f"\n{case} N={n}: estimate {est.peak_bytes / mib:.2f} MiB (resident "
          f"{est.resident_bytes / mib:.2f} + transient {est.transient_peak_bytes / mib:.2f} at "
          f"%{est.peak_node}); measured {got['peak'] / mib:.2f} MiB (resident "
          f"{got['resident'] / mib:.2f} + transient {got['transient'] / mib:.2f}); "
          f"ratio {ratio:.3f}, transient ratio {est.transient_peak_bytes / got['transient']:.3f}")
    assert got["peak"] > 8 * mib, got          # the allocation dominates allocator noise
    assert 0.75 <= ratio <= 1.25
    # the part the liveness analysis is about, on its own
    assert 0.75 <= est.transient_peak_bytes / got["transient"] <= 1.25


def test_summary_carries_the_estimate_in_text_json_and_per_node():
    s = summary(CASES["lenet5"][0](), {"N": 64})
    assert s.memory is not None and s.step_peak_bytes == s.memory.peak_bytes
    assert s.step_peak_bytes == s.memory.resident_bytes + s.memory.transient_peak_bytes
    assert "peak of the step" in str(s) and f"%{s.step_peak_node}" in str(s)
    d = s.to_dict()
    assert d["step_memory"]["peak_bytes"] == s.step_peak_bytes
    assert max(n["live_bytes"] for n in d["nodes"]) == s.step_peak_bytes
    peak = next(n for n in s.nodes if n.name == s.step_peak_node)
    assert peak.live_bytes == s.step_peak_bytes
    from graphc.inspect import graph_data     # the HTML viewer's side panel
    marked = [n for n in graph_data(CASES["lenet5"][0](), {"N": 64})["nodes"] if n.get("peak")]
    assert [(n["name"], n["live"]) for n in marked] == [(s.step_peak_node, s.step_peak_bytes)]


def test_reshape_is_a_view_and_relu_writes_in_place():
    with gc.Graph("views") as g:
        x = g.input("x", ("N", 256))
        h = (x * 2.0).relu()
        g.output(y=h.reshape((-1,)).sum())
    m = step_memory(g, {"N": 1024})
    mib = 1024 * 256 * 4
    # x resident; the product, then relu in its buffer, then the reshape's view: one buffer
    assert m.resident_bytes == mib + 4 and m.transient_peak_bytes == mib + 4
    assert step_memory(g, {"N": 1024}, inplace=False).transient_peak_bytes == 2 * mib


@pytest.mark.parametrize("side,kernel,stride,lowered_to", [
    (8, 2, 2, "MaxUnpool"),           # 2x2 windows, stride 2, tiling 8x8 exactly
    (9, 3, 2, "ScatterElements"),     # overlapping windows
])
def test_max_pool2d_grad_still_lowers_the_way_the_memory_model_assumes(side, kernel, stride,
                                                                       lowered_to):
    from graphc.backends.onnx import to_onnx
    from graphc.frontends import dsl
    attrs = {"kernel_size": (kernel, kernel), "stride": (stride, stride), "padding": (0, 0)}
    o = (side - kernel) // stride + 1
    with gc.Graph("pool_grad") as g:
        x = g.input("x", ("N", 3, side, side))
        dy = g.input("dy", ("N", 3, o, o))
        g.output(dx=dsl.apply("max_pool2d_grad", [x, dy], attrs))
    assert lowered_to in {n.op_type for n in to_onnx(g).graph.node}
    m = step_memory(g, {"N": 4})
    (i,) = [k for k, n in enumerate(g.nodes) if n.op.name == "max_pool2d_grad"]
    xb, gb = 4 * 3 * side * side * 4, 4 * 3 * o * o * 4
    # MaxPool: pooled values (gb) and int64 indices (2 gb) before the output (xb) exists; then
    # the indices and the output, plus zeros the size of x when scattering (x, an input, stays)
    pool, place = 3 * gb - xb, 2 * gb + (0 if lowered_to == "MaxUnpool" else xb)
    assert m.extra_bytes[i] == max(pool, place)


if __name__ == "__main__":
    print(json.dumps(measure_ort_peak(sys.argv[1], int(sys.argv[2]))))
