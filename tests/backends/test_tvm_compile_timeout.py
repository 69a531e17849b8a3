"""A time limit on TVM compiles (compile_timeout=, GRAPHC_TVM_COMPILE_TIMEOUT), and the graph
that used to hang TVM's pipeline (the gradient of softmax(softmax(x)) over one element)."""
from __future__ import annotations

import multiprocessing

import numpy as np
import pytest

pytest.importorskip("tvm")

import graphc as gc  # noqa: E402
from graphc.backends.tvm import (DEFAULT_COMPILE_TIMEOUT, CompileTimeoutError,  # noqa: E402
                                 compile_timeout_s)
from graphc.ir.errors import GraphcError  # noqa: E402


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("GRAPHC_TVM_COMPILE_TIMEOUT", raising=False)


def _mlp_graph(name="timed"):
    rng = np.random.default_rng(0)
    with gc.Graph(name) as g:
        x = g.input("x", ("N", 8))
        w = g.param("w", init=rng.standard_normal((8, 4)).astype(np.float32))
        g.output(y=gc.sum(gc.tanh(gc.matmul(x, w))))
    return g


def _softmax_softmax_grad(n):
    with gc.Graph("softmax_softmax") as g:
        x = g.input("x", (n,))
        g.output(y=gc.sum(gc.softmax(gc.softmax(x, 0), 0)))
    return gc.grad(g, wrt=["x"])


def test_compile_past_its_time_limit_raises_naming_graph_and_stage():
    with pytest.raises(CompileTimeoutError) as err:
        gc.compile(_mlp_graph("tiny_limit"), "tvm", compile_timeout=0.05)
    msg = str(err.value)
    assert "graph 'tiny_limit'" in msg and "0.05 s" in msg and "stage:" in msg
    assert "compile_timeout=" in msg and "GRAPHC_TVM_COMPILE_TIMEOUT" in msg
    assert not multiprocessing.active_children(), "the compiler process was left running"


def test_time_limit_from_the_environment(monkeypatch):
    monkeypatch.setenv("GRAPHC_TVM_COMPILE_TIMEOUT", "0.05")
    with pytest.raises(CompileTimeoutError, match="within 0.05 s"):
        gc.compile(_mlp_graph("env_limit"), "tvm")


def test_compile_within_the_limit_runs_and_fills_the_cache(tmp_path):
    g = _mlp_graph()
    x = np.random.default_rng(1).standard_normal((3, 8)).astype(np.float32)
    exe = gc.compile(g, "tvm", compile_timeout=300)
    assert exe.compile_info["cached"] is False
    np.testing.assert_allclose(exe(x=x)["y"], gc.compile(g, "numpy")(x=x)["y"], rtol=1e-5)
    again = gc.compile(g, "tvm", compile_timeout=300)  # compiled by the child, stored, reused
    assert again.compile_info["cached"] is True
    off = gc.compile(g, "tvm", cache=False, compile_timeout=300)  # a throwaway cache
    np.testing.assert_allclose(off(x=x)["y"], exe(x=x)["y"], rtol=1e-6)


def test_compile_timeout_parsing(monkeypatch):
    assert compile_timeout_s() == DEFAULT_COMPILE_TIMEOUT == 300
    assert compile_timeout_s(12) == 12.0
    assert compile_timeout_s(0) is None and compile_timeout_s(float("inf")) is None
    monkeypatch.setenv("GRAPHC_TVM_COMPILE_TIMEOUT", "600")
    assert compile_timeout_s() == 600.0 and compile_timeout_s(5) == 5.0
    monkeypatch.setenv("GRAPHC_TVM_COMPILE_TIMEOUT", "none")
    assert compile_timeout_s() is None
    monkeypatch.setenv("GRAPHC_TVM_COMPILE_TIMEOUT", "ten minutes")
    with pytest.raises(GraphcError, match="GRAPHC_TVM_COMPILE_TIMEOUT='ten minutes'"):
        compile_timeout_s()


def test_compiler_errors_in_the_child_are_reported(monkeypatch):
    import graphc.backends.tvm_schedule as ts

    def broken(target):
        raise RuntimeError("a pipeline that breaks")
    monkeypatch.setattr(ts, "optimize", broken)
    with pytest.raises(GraphcError, match="TVM failed to compile it.*a pipeline that breaks"):
        gc.compile(_mlp_graph("broken"), "tvm", cache=False)


@pytest.mark.parametrize("n", [1, 2])
def test_softmax_of_softmax_gradient_on_one_element_compiles_within_a_bound(n):
    """The symptom: over 4 minutes inside TVM (StmtSimplify) for shape (1,), 1.5 s for (2,). The
    schedule inlined a ~30-step chain that reads each step twice (safe_mul) into one expression
    of millions of nodes; inlining is now bounded (tvm_schedule.INLINE_MAX_LOADS)."""
    gg = _softmax_softmax_grad(n)
    x = np.linspace(-1, 1, n).astype(np.float32)
    exe = gc.compile(gg, "tvm", cache=False, compile_timeout=120)
    want = gc.compile(gg, "numpy")(x=x)
    got = exe(x=x)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-6, err_msg=k)
