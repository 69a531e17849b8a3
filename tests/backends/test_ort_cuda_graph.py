"""OrtStepper(cuda_graph=True): its refusals, and the fixed-buffer path a CUDA graph needs, run on
the CPU provider with `fixed_buffers=True` (same steps, same losses, bit for bit)."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

import graphc as gc
from graphc import nn, optim
from graphc.backends.onnx import OrtStepper
from graphc.ir.errors import FeedError, GraphcError

BATCH = 16


def _step_graph(batch=BATCH, seed=0, dropout=False):
    gc.manual_seed(seed)
    layers = [nn.Linear(6, 8), nn.ReLU()] + ([nn.Dropout(0.25)] if dropout else [])
    layers.append(nn.Linear(8, 3))
    model = nn.Sequential(*layers)

    @gc.function(x=gc.spec((batch, 6)), y=gc.spec((batch,), "int64"))
    def loss_fn(x, y):
        return {"loss": nn.cross_entropy(model(x), y)}

    return gc.training_step(loss_fn.graph, model.parameters(), optimizer=optim.Adam(0.01))


def _batch(i):
    rng = np.random.default_rng(i)
    return {"x": rng.normal(size=(BATCH, 6)).astype(np.float32), "y": rng.integers(0, 3, BATCH)}


@pytest.fixture(scope="module")
def static_step():
    return _step_graph()


def test_cuda_graph_on_the_cpu_is_refused(static_step):
    with pytest.raises(GraphcError, match="cuda_graph=True needs device='cuda'.*device='cpu'"):
        OrtStepper(static_step, "cpu", cuda_graph=True)


def test_cuda_graph_with_symbolic_shapes_is_refused_naming_the_inputs():
    sg = _step_graph(batch="N")
    with pytest.raises(GraphcError, match="needs static shapes.*input 'x' is f32\\[N, 6\\].*fixed "
                                          "batch size"):
        OrtStepper(sg, "cuda", cuda_graph=True)
    with pytest.raises(GraphcError, match="fixed_buffers=True needs static shapes"):
        OrtStepper(sg, "cpu", fixed_buffers=True)


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(),
                    reason="this onnxruntime has the CUDA provider")
def test_cuda_graph_without_the_cuda_provider_says_what_to_install(static_step):
    with pytest.raises(GraphcError, match="install onnxruntime-gpu"):
        OrtStepper(static_step, "cuda", cuda_graph=True)


def test_the_cuda_provider_gets_enable_cuda_graph():
    from graphc.backends import onnx_session
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("no CUDA provider in this onnxruntime")
    assert onnx_session.ort_providers("cuda", cuda_graph=True)[0] == \
        ("CUDAExecutionProvider", {"enable_cuda_graph": "1"})


def _run(stepper, steps=12, lr=0.01, device_batch=False):
    losses = []
    for i in range(steps):
        b = _batch(i)
        if device_batch:
            b = {k: ort.OrtValue.ortvalue_from_numpy(v) for k, v in b.items()}
        losses.append(stepper.step(b, lr * (1 + i % 3))["loss"])
    return np.array(losses)


def test_fixed_buffers_give_the_same_steps_as_rebinding(static_step):
    ref, fixed = OrtStepper(static_step), OrtStepper(static_step, fixed_buffers=True)
    assert np.array_equal(_run(ref), _run(fixed))
    a, b = ref.state_dict(), fixed.state_dict()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    # a device batch is copied into the fixed buffers (device to device on CUDA)
    again = OrtStepper(static_step, fixed_buffers=True)
    assert np.array_equal(_run(again, device_batch=True), _run(OrtStepper(static_step)))


def test_fixed_buffers_keep_every_binding_after_construction(static_step, monkeypatch):
    st = OrtStepper(static_step, fixed_buffers=True)
    ptrs = {n: v.data_ptr() for n, v in st._batch_bufs.items()}
    for name in ("bind_cpu_input", "bind_input", "bind_ortvalue_input", "bind_output",
                 "bind_ortvalue_output", "clear_binding_inputs", "clear_binding_outputs"):
        def refuse(*a, _name=name, **k):
            raise AssertionError(f"{_name} after capture: a replayed CUDA graph would not see it")
        monkeypatch.setattr(ort.IOBinding, name, refuse)
    ids = []
    real = st.session.run_with_iobinding

    def record(binding, run_options=None):
        ids.append(run_options.get_run_config_entry("gpu_graph_id"))
        return real(binding, run_options)

    monkeypatch.setattr(st.session, "run_with_iobinding", record)
    _run(st, steps=4)
    assert st.rollback()
    st.load_state_dict(st.state_dict())  # in place, at the same addresses
    _run(st, steps=2)
    assert ids == ["0", "1", "0", "1", "1", "0"]  # one captured graph per ping-pong parity
    assert {n: v.data_ptr() for n, v in st._batch_bufs.items()} == ptrs


def test_repeated_runs_before_capture_do_not_change_the_step(static_step, monkeypatch):
    # onnxruntime runs a graph twice more, with the same bindings, before it captures it; the
    # ping-pong buffers (no run writes what it reads) make that repeat the same step
    st = OrtStepper(static_step, fixed_buffers=True)
    real, captured = st.session.run_with_iobinding, set()

    def capture_like_onnxruntime(binding, run_options=None):
        gid = run_options.get_run_config_entry("gpu_graph_id")
        for _ in range(1 if gid in captured else 3):
            real(binding, run_options)
        captured.add(gid)

    monkeypatch.setattr(st.session, "run_with_iobinding", capture_like_onnxruntime)
    assert np.array_equal(_run(st), _run(OrtStepper(static_step)))


def test_dropout_steps_replay_in_fixed_buffers():
    sg = _step_graph(dropout=True)
    fixed = OrtStepper(sg, seed=3, fixed_buffers=True)
    assert np.array_equal(_run(OrtStepper(sg, seed=3)), _run(fixed))


def test_a_batch_given_only_by_cuda_array_interface_cannot_fill_a_fixed_buffer(static_step):
    class OnlyCai:
        def __init__(self, a):
            self.a = a
            self.__cuda_array_interface__ = {"shape": a.shape, "typestr": a.dtype.str,
                                             "data": (a.ctypes.data, False), "version": 3}

    st = OrtStepper(static_step, fixed_buffers=True)
    b = _batch(0)
    with pytest.raises(FeedError, match="batch input 'x'.*__cuda_array_interface__.*__dlpack__"):
        st.step({"x": OnlyCai(b["x"]), "y": b["y"]}, 0.01)
