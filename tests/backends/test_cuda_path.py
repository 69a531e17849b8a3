"""The CUDA path on a real GPU: io binding with device feeds, CUDA graphs in the stepper, TVM CUDA.

Skipped where onnxruntime has no CUDA provider (CI, CPU machines). On the GPU machine (see
../shared/GPU.md) run it with pytest, or without pytest as a script:

    PYTHONPATH=/tmp/site:. python tests/backends/test_cuda_path.py
"""
from __future__ import annotations

import importlib
import types

import numpy as np

try:
    import pytest
except ImportError:  # run as a script where pytest is missing: the few names used here
    class _Skipped(Exception):
        pass

    def _skip(reason: str = "") -> None:
        raise _Skipped(reason)

    def _importorskip(name: str):
        try:
            return importlib.import_module(name)
        except ImportError:
            _skip(f"{name} is not installed")

    _skip.Exception = _Skipped
    _keep = types.SimpleNamespace(skipif=lambda *a, **k: (lambda f: f),
                                  parametrize=lambda *a, **k: (lambda f: f))
    pytest = types.SimpleNamespace(skip=_skip, importorskip=_importorskip, mark=_keep)

import graphc as gc
from graphc import nn, optim

ort = pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.skipif("CUDAExecutionProvider" not in ort.get_available_providers(),
                                reason="onnxruntime has no CUDAExecutionProvider here")

BATCH = 32


def _data(i, n=BATCH, d=20, classes=5):
    rng = np.random.default_rng(i)
    return {"x": rng.normal(size=(n, d)).astype(np.float32), "y": rng.integers(0, classes, n)}


def _step_graph(batch=BATCH, seed=0):
    gc.manual_seed(seed)
    model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 5))

    @gc.function(x=gc.spec((batch, 20)), y=gc.spec((batch,), "int64"))
    def loss_fn(x, y):
        return {"loss": nn.cross_entropy(model(x), y)}

    return gc.training_step(loss_fn.graph, model.parameters(), optimizer=optim.Adam(0.01))


def _cuda(a):
    return ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(a), "cuda", 0)


def test_executable_on_cuda_matches_the_cpu():
    g = gc.models.mlp((20, 64, 5), seed=0)
    feeds = _data(0)
    cpu, gpu = gc.compile(g, "onnxruntime", "cpu"), gc.compile(g, "onnxruntime", "cuda")
    want, got = cpu(**feeds), gpu(**feeds)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-6)


def test_cuda_ortvalue_feeds_and_outputs_stay_on_the_device():
    g = gc.models.mlp((20, 64, 5), seed=0)
    feeds = _data(1)
    want = gc.compile(g, "onnxruntime", "cpu")(**feeds)
    exe = gc.compile(g, "onnxruntime", "cuda", outputs="ortvalue")
    got = exe.run({k: _cuda(v) for k, v in feeds.items()})
    assert all(v.device_name() == "cuda" for v in got.values())
    np.testing.assert_allclose(got["logits"].numpy(), want["logits"], rtol=1e-5, atol=1e-6)
    # a parameter changed on the device is picked up by later runs
    w = np.zeros_like(g.value("fc1.weight").data)
    exe.set_params({"fc1.weight": _cuda(w)})
    assert np.array_equal(exe.params()["fc1.weight"], w)
    ref = gc.compile(g, "onnxruntime", "cpu")(**feeds, **{"fc1.weight": w})
    np.testing.assert_allclose(exe.run(feeds)["logits"].numpy(), ref["logits"],
                               rtol=1e-5, atol=1e-6)


def test_a_torch_cuda_tensor_is_bound_through_dlpack():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("PyTorch sees no CUDA device")
    g = gc.models.mlp((20, 64, 5), seed=0)
    feeds = _data(2)
    want = gc.compile(g, "onnxruntime", "cpu")(**feeds)
    exe = gc.compile(g, "onnxruntime", "cuda")
    got = exe.run({k: torch.from_numpy(v).cuda() for k, v in feeds.items()})
    np.testing.assert_allclose(got["loss"], want["loss"], rtol=1e-5)


@pytest.mark.parametrize("batch_on", ["host", "ortvalue"])
def test_stepper_with_cuda_graphs_takes_the_same_steps(batch_on):
    sg = _step_graph()
    plain, graphed = (gc.make_stepper(sg, "onnxruntime", "cuda"),
                      gc.make_stepper(sg, "onnxruntime", "cuda", cuda_graph=True))
    cpu = gc.make_stepper(sg, "onnxruntime", "cpu")
    # parameters, optimizer state and the fixed batch buffers live on the GPU
    for st in (plain, graphed):
        assert all(v.device_name() == "cuda" for bufs in st._bufs for v in bufs.values())
    assert all(v.device_name() == "cuda" for v in graphed._batch_bufs.values())
    for i in range(12):
        b = _data(i)
        dev = {k: _cuda(v) for k, v in b.items()} if batch_on == "ortvalue" else b
        lr = 0.01 * (1 + i % 3)
        a, c = plain.step(dev, lr)["loss"], graphed.step(dev, lr)["loss"]
        h = cpu.step(b, lr)["loss"]
        np.testing.assert_allclose(c, a, rtol=1e-6)
        np.testing.assert_allclose(c, h, rtol=1e-4)
    # rollback and load_state_dict keep the captured graphs' addresses
    assert graphed.rollback() and plain.rollback()
    graphed.load_state_dict(plain.state_dict())
    b = _data(99)
    np.testing.assert_allclose(graphed.step(b, 0.01)["loss"], plain.step(b, 0.01)["loss"],
                               rtol=1e-6)


def test_tvm_cuda_runs_an_mlp():
    tvm = pytest.importorskip("tvm")
    if not tvm.cuda(0).exist:
        pytest.skip("TVM sees no CUDA GPU")
    g = gc.models.mlp((20, 64, 5), seed=0)
    feeds = _data(3)
    want = gc.compile(g, "numpy")(**feeds)
    got = gc.compile(g, "tvm", "cuda")(**feeds)
    np.testing.assert_allclose(got["logits"], want["logits"], rtol=1e-4, atol=1e-5)


if __name__ == "__main__":  # the GPU machine may lack pytest
    import sys
    import traceback
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        print("no CUDAExecutionProvider: nothing to check")
        sys.exit(0)
    failed = 0
    cases = [(test_stepper_with_cuda_graphs_takes_the_same_steps, (on,))
             for on in ("host", "ortvalue")]
    cases = [(f, ()) for f in (test_executable_on_cuda_matches_the_cpu,
                               test_cuda_ortvalue_feeds_and_outputs_stay_on_the_device,
                               test_a_torch_cuda_tensor_is_bound_through_dlpack)] + cases + \
        [(test_tvm_cuda_runs_an_mlp, ())]
    for f, args in cases:
        try:
            f(*args)
            print(f"PASS {f.__name__}{args}")
        except pytest.skip.Exception as exc:
            print(f"SKIP {f.__name__}{args}: {exc}")
        except Exception:  # noqa: BLE001
            failed += 1
            print(f"FAIL {f.__name__}{args}")
            traceback.print_exc()
    sys.exit(1 if failed else 0)
