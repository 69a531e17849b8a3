"""OnnxExecutable and OrtStepper through io binding: the same results as `session.run`, resident
parameters, and device feeds (OrtValues, DLPack / CUDA-array-interface objects) bound uncopied."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

import graphc as gc
from graphc import nn, optim
from graphc.backends import ort_device
from graphc.backends.onnx import OnnxExecutable, OrtStepper
from graphc.ir.errors import FeedError, GraphcError


class NoHostCopy(ort.OrtValue):
    """An OrtValue that fails if anything reads it into numpy (a copy on a device)."""

    def __init__(self, v: ort.OrtValue):
        super().__init__(v._ortvalue, v._numpy_obj)

    def numpy(self):
        raise AssertionError("an OrtValue feed was read back to the host")

    def __array__(self, *a, **k):
        raise AssertionError("an OrtValue feed was converted to numpy")


def _session_run(exe: OnnxExecutable, feeds: dict) -> dict:
    """What OnnxExecutable did before io binding: `session.run` on the model with initializers."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    sess = ort.InferenceSession(exe.model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])
    return dict(zip(exe.output_names, sess.run(exe.output_names, feeds)))


def _mlp_data(n=16, d=6, classes=3, dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    return {"x": rng.normal(size=(n, d)).astype(dtype), "y": rng.integers(0, classes, n)}


def _dsl_graph():
    with gc.Graph("mixed") as g:
        x = g.input("x", ("N", 5))
        w = g.param("w", init=np.linspace(-1, 1, 15, dtype=np.float32).reshape(5, 3))
        b = g.param("b", init=np.array([0.5, -0.25, 0.0], np.float32))
        h = gc.matmul(x, w) + b
        g.output(y=gc.exp(h - h.max(axis=1, keepdims=True)), s=(h * h).sum())
    return g, {"x": np.random.default_rng(3).normal(size=(7, 5)).astype(np.float32)}


GRAPHS = {
    "mlp32": lambda: (gc.models.mlp((6, 5, 4, 3), seed=0), _mlp_data()),
    "mlp64": lambda: (gc.models.mlp((6, 8, 3), dtype="float64", seed=1),
                      _mlp_data(d=6, dtype=np.float64, seed=2)),
    "dsl": _dsl_graph,
}


@pytest.mark.parametrize("name", list(GRAPHS))
def test_io_binding_outputs_equal_session_run_bitwise(name):
    g, feeds = GRAPHS[name]()
    exe = OnnxExecutable(g)
    got, want = exe.run(feeds), _session_run(exe, feeds)
    assert set(got) == set(want)
    for k in want:
        assert got[k].dtype == want[k].dtype and got[k].shape == want[k].shape
        assert np.array_equal(got[k], want[k]), k


def test_results_of_earlier_runs_are_not_overwritten():
    g, feeds = _dsl_graph()
    exe = OnnxExecutable(g)
    first = exe.run(feeds)
    kept = {k: v.copy() for k, v in first.items()}
    exe.run({"x": feeds["x"] * 3})
    for k in kept:
        assert np.array_equal(first[k], kept[k])


def test_a_parameter_fed_by_name_is_used_for_that_run_only():
    g, feeds = _dsl_graph()
    exe = OnnxExecutable(g)
    before = exe.run(feeds)
    w2 = np.full((5, 3), 0.1, np.float32)
    fed = exe.run({**feeds, "w": w2})
    assert np.array_equal(fed["y"], _session_run(exe, {**feeds, "w": w2})["y"])
    assert not np.array_equal(fed["y"], before["y"])
    after = exe.run(feeds)  # back to the resident value
    assert np.array_equal(after["y"], before["y"])


def test_set_params_changes_the_resident_parameters_for_later_runs():
    g, feeds = _dsl_graph()
    exe = OnnxExecutable(g)
    w2 = np.arange(15, dtype=np.float32).reshape(5, 3) / 10
    exe.set_params({"w": w2})
    assert np.array_equal(exe.params()["w"], w2)
    want = _session_run(exe, {**feeds, "w": w2})
    for _ in range(2):
        got = exe.run(feeds)
        assert all(np.array_equal(got[k], want[k]) for k in want)
    exe.set_params({"w": ort.OrtValue.ortvalue_from_numpy(w2 * 2)})  # an OrtValue too
    assert np.array_equal(exe.params()["w"], w2 * 2)
    with pytest.raises(FeedError, match="parameter 'w'.*expected"):
        exe.set_params({"w": np.zeros((3, 5), np.float32)})
    with pytest.raises(FeedError, match="no parameter named 'v'"):
        exe.set_params({"v": w2})


def test_an_ortvalue_feed_is_bound_without_a_copy():
    g, feeds = _dsl_graph()
    exe = OnnxExecutable(g)
    x = np.array(feeds["x"], copy=True)
    ov = ort.OrtValue.ortvalue_from_numpy(x)  # on the CPU it shares x's memory
    got = exe.run({"x": NoHostCopy(ov)})
    assert np.array_equal(got["y"], exe.run({"x": x})["y"])
    x *= 2  # the next run reads the OrtValue's memory as it is now: nothing was copied
    assert np.array_equal(exe.run({"x": NoHostCopy(ov)})["y"], exe.run({"x": x})["y"])


def test_outputs_ortvalue_returns_ortvalues_with_the_same_values():
    g, feeds = _dsl_graph()
    exe, ref = OnnxExecutable(g, outputs="ortvalue"), OnnxExecutable(g)
    got, want = exe.run(feeds), ref.run(feeds)
    assert all(isinstance(v, ort.OrtValue) for v in got.values())
    assert all(np.array_equal(got[k].numpy(), want[k]) for k in want)
    first = exe.run(feeds)["y"]
    exe.run({"x": feeds["x"] * 2})
    assert np.array_equal(first.numpy(), want["y"])  # a later run does not write into it
    with pytest.raises(GraphcError, match="outputs must be 'numpy' or 'ortvalue'"):
        OnnxExecutable(g, outputs="torch")


def test_device_feeds_are_checked_for_shape_and_dtype():
    g, feeds = _dsl_graph()
    exe = OnnxExecutable(g)
    with pytest.raises(FeedError, match="'x' is a device array of dtype float64, expected float32"):
        exe.run({"x": ort.OrtValue.ortvalue_from_numpy(feeds["x"].astype(np.float64))})
    with pytest.raises(FeedError, match="'x' has shape \\(7, 4\\)"):
        exe.run({"x": ort.OrtValue.ortvalue_from_numpy(np.zeros((7, 4), np.float32))})


def test_bfloat16_parameters_live_on_the_device_as_their_bits():
    w0 = np.array([1.5, -2.25, 3.0], dtype=np.dtype("bfloat16"))
    with gc.Graph("bf16") as g:
        x = g.input("x", (3,))
        w = g.param("w", init=w0, dtype="bfloat16")
        g.output(y=x * gc.cast(w, "float32"), z=gc.cast(x, "bfloat16"))
    exe = OnnxExecutable(g)
    assert exe.params()["w"].dtype == np.dtype("bfloat16")
    assert np.array_equal(exe.params()["w"], w0)
    got = exe.run({"x": np.ones(3, np.float32)})
    assert np.array_equal(got["y"], w0.astype(np.float32))
    # a bfloat16 output comes back as ml_dtypes' bfloat16 (onnxruntime's own conversion fails)
    assert got["z"].dtype == np.dtype("bfloat16") and np.array_equal(got["z"], np.ones(3, w0.dtype))


# ---- which feeds count as device arrays, and how they are bound -------------------------------

class FakeCudaArray:
    """Just `__cuda_array_interface__` (as numba or an old CuPy give), over host memory here."""

    def __init__(self, a: np.ndarray, strides=None):
        self.a = a
        self.__cuda_array_interface__ = {"shape": a.shape, "typestr": a.dtype.str,
                                         "strides": strides, "data": (a.ctypes.data, False),
                                         "version": 3}


class FakeDlpackOnGpu:
    def __dlpack__(self, stream=None):
        raise RuntimeError("not on this machine")

    def __dlpack_device__(self):
        return (2, 0)  # kDLCUDA


def test_device_arrays_are_recognised_and_host_arrays_are_not():
    a = np.zeros((2, 3), np.float32)
    assert not ort_device.is_device_array(a)
    assert not ort_device.is_device_array(3.0)
    assert not ort_device.is_device_array([1, 2])
    assert ort_device.is_device_array(ort.OrtValue.ortvalue_from_numpy(a))
    assert ort_device.is_device_array(FakeCudaArray(a))
    assert ort_device.is_device_array(FakeDlpackOnGpu())
    torch = pytest.importorskip("torch")
    assert not ort_device.is_device_array(torch.zeros(2))  # a CPU tensor takes the host path


def test_another_librarys_device_array_makes_the_run_wait_for_its_producer():
    a = np.zeros((2, 3), np.float32)
    own = {"x": ort.OrtValue.ortvalue_from_numpy(a)}
    theirs = {"x": FakeCudaArray(a)}
    assert not ort_device.foreign(own, own)
    assert ort_device.foreign(theirs, theirs)


def test_a_cuda_array_interface_object_is_bound_by_its_pointer():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    raw = ort_device.to_bindable(FakeCudaArray(a))
    assert isinstance(raw, ort_device.RawDeviceBuffer)
    assert (raw.ptr, raw.shape, raw.dtype) == (a.ctypes.data, (2, 3), np.dtype(np.float32))
    calls = []

    class Binding:
        def bind_input(self, *args):
            calls.append(args)

    ort_device.bind_input(Binding(), "x", raw)
    assert calls == [("x", "cuda", 0, np.dtype(np.float32), [2, 3], a.ctypes.data)]
    with pytest.raises(FeedError, match="strides"):
        ort_device.to_bindable(FakeCudaArray(a, strides=(4, 8)))


# ---- the training stepper ------------------------------------------------------------------------

def _step_graph(batch="N", seed=0):
    gc.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))

    @gc.function(x=gc.spec((batch, 6)), y=gc.spec((batch,), "int64"))
    def loss_fn(x, y):
        return {"loss": nn.cross_entropy(model(x), y)}

    return gc.training_step(loss_fn.graph, model.parameters(), optimizer=optim.Adam(0.01))


def test_stepper_takes_an_ortvalue_batch_without_a_copy():
    sg = _step_graph()
    host, dev = OrtStepper(sg), OrtStepper(sg)
    seen = []
    for i in range(5):
        data = _mlp_data(seed=i)
        ovs = {k: NoHostCopy(ort.OrtValue.ortvalue_from_numpy(v)) for k, v in data.items()}
        seen.append(ovs["x"])
        a, b = host.step(data, 0.01), dev.step(ovs, 0.01)
        assert np.array_equal(a["loss"], b["loss"])
    sa, sb = host.state_dict(), dev.state_dict()
    assert all(np.array_equal(sa[k], sb[k]) for k in sa)
    with pytest.raises(FeedError, match="batch input 'y' is a device array of dtype int32"):
        y32 = ort.OrtValue.ortvalue_from_numpy(np.zeros(16, np.int32))
        dev.step({"x": seen[0], "y": y32}, 0.01)
