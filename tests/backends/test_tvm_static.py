"""The TVM backend's static-shape modules, thread count, shipped tuning records and statically
empty tensors."""
from __future__ import annotations

import os

import numpy as np
import pytest

pytest.importorskip("tvm")

import graphc as gc  # noqa: E402
from graphc import optim  # noqa: E402
from graphc.backends import tvm_static, tvm_threads  # noqa: E402
from graphc.backends.tvm import TvmExecutable  # noqa: E402


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path_factory, monkeypatch):
    """Every test compiles into one throwaway cache, never the user's."""
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "graphc-cache"))


def _graph():
    with gc.Graph("static") as g:
        x = g.input("x", ("N", 5))
        w = g.param("w", init=np.arange(15, dtype=np.float32).reshape(5, 3) / 10)
        g.output(y=gc.tanh(x @ w).sum(axis=1))
    return g


def test_solve_finds_symbol_sizes_from_input_shapes():
    with gc.Graph("s") as g:
        g.input("x", ("N", "2*T", 3))
        g.input("y", ("N*T",))
    assert tvm_static.solve(g, [(4, 6, 3), (12,)]) == {"N": 4, "T": 3}
    assert tvm_static.solve(g, [(4, 5, 3), (10,)]) is None  # 5 is not 2*T
    assert tvm_static.solve(g, [(4, 6, 3), (11,)]) is None  # N*T disagrees
    assert tvm_static.solve(g, [(4, 6, 2), (12,)]) is None  # a static dim differs


def test_each_batch_size_gets_its_own_module_up_to_a_limit(monkeypatch):
    monkeypatch.setattr(tvm_static, "MAX_STATIC", 2)
    g = _graph()
    exe = TvmExecutable(g, static_shapes=True)
    ref = gc.compile(g, "numpy")
    for n in (3, 4, 3, 5, 6):
        x = np.linspace(-1, 1, n * 5, dtype=np.float32).reshape(n, 5)
        np.testing.assert_allclose(exe(x=x)["y"], ref(x=x)["y"], rtol=1e-5, atol=1e-6)
    # sizes 3 and 4 static; 5 and 6 past the limit share the symbolic module
    assert sorted(k for k in exe._mains if k is not None) == [(("N", 3),), (("N", 4),)]
    assert None in exe._mains


def test_static_module_is_cached_per_size(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    x = np.ones((3, 5), np.float32)
    first = TvmExecutable(_graph(), static_shapes=True)
    first(x=x)
    assert first.compile_info["cached"] is False
    again = TvmExecutable(_graph(), static_shapes=True)
    again(x=x)
    assert again.compile_info["cached"] is True
    other = TvmExecutable(_graph(), static_shapes=True)
    other(x=np.ones((4, 5), np.float32))
    assert other.compile_info["cached"] is False  # another size, another module


def test_stepper_uses_static_shapes_by_default_and_matches_symbolic():
    step = gc.training_step(gc.models.mlp((6, 8, 3), seed=0), optimizer=optim.SGD(0.1, momentum=0.9))
    rng = np.random.default_rng(0)
    batch = {"x": rng.standard_normal((4, 6)).astype(np.float32), "y": rng.integers(0, 3, 4)}
    static = gc.make_stepper(step, "tvm")
    symbolic = gc.make_stepper(step, "tvm", static_shapes=False)
    assert static.exe.static.enabled and not symbolic.exe.static.enabled
    for _ in range(3):
        a, b = static.step(batch, 0.1)["loss"], symbolic.step(batch, 0.1)["loss"]
        np.testing.assert_allclose(a, b, rtol=1e-5)


def test_static_shapes_switch_from_the_environment(monkeypatch):
    monkeypatch.setenv("GRAPHC_TVM_STATIC_SHAPES", "0")
    assert tvm_static.static_shapes_enabled(None, True) is False
    assert tvm_static.static_shapes_enabled(True, False) is True
    monkeypatch.setenv("GRAPHC_TVM_STATIC_SHAPES", "maybe")
    with pytest.raises(gc.GraphcError, match="GRAPHC_TVM_STATIC_SHAPES"):
        tvm_static.static_shapes_enabled(None, True)


def test_tvm_threads_default_to_the_physical_cores(monkeypatch):
    monkeypatch.delenv("TVM_NUM_THREADS", raising=False)
    tvm_threads.configure_threads()
    assert os.environ["TVM_NUM_THREADS"] == str(tvm_threads.physical_cores())
    monkeypatch.setenv("TVM_NUM_THREADS", "1")
    tvm_threads.configure_threads()
    assert os.environ["TVM_NUM_THREADS"] == "1"  # the user's setting stays


def test_tuned_records_switch_off_and_change_the_cache_key(monkeypatch):
    from graphc.backends import tvm_tuned
    from graphc.backends.tvm import make_target
    on = tvm_tuned.fingerprint()
    monkeypatch.setenv("GRAPHC_TVM_TUNED", "0")
    assert tvm_tuned.apply_tuned(make_target()) == []
    assert tvm_tuned.fingerprint() != on


@pytest.mark.parametrize("shape, fn, want", [
    ((0, 3), gc.exp, (0, 3)),
    ((0, 1, 3, 3), lambda x: gc.transpose(x, (1, 0, 2, 3)), (1, 0, 3, 3)),
    ((0, 4), lambda x: (x * 2.0).sum(axis=0), (4,)),
])
def test_statically_empty_tensors_compile(shape, fn, want):
    """Zero-extent loops are left unscheduled (no vectorizing a loop of extent 0) and empty
    results are zeros (TVM's RewriteDataflowReshape rejected a transpose of an empty tensor)."""
    with gc.Graph("empty") as g:
        g.output(y=fn(g.input("x", shape, "float32")))
    got = gc.compile(g, "tvm")(x=np.ones(shape, np.float32))["y"]
    assert got.shape == want
    np.testing.assert_array_equal(got, np.zeros(want, np.float32))
