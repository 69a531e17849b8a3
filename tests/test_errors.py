"""Bad input raises a clear error: it names the problem and, at build time, the user's file:line."""
from __future__ import annotations

import inspect
import os

import numpy as np
import pytest

import graphc as gc
from graphc import GraphBuildError, GraphcError, FeedError, VerifyError

HERE = os.path.basename(__file__)


def next_line() -> str:
    """'test_errors.py:<line after the caller's line>', where the failing call sits."""
    return f"{HERE}:{inspect.currentframe().f_back.f_lineno + 1}"


def small_graph() -> gc.Graph:
    with gc.Graph("small") as g:
        x = g.input("x", ("N", 3))
        y = g.input("y", ("N",), "int64")
        w = g.param("w", (3, 4), init=np.ones((3, 4), np.float32))
        logits = x @ w
        g.output(loss=gc.cross_entropy(logits, y), logits=logits)
    return g


BACKENDS = ["numpy", "onnxruntime"]


# ---- build time: shapes and dtypes ------------------------------------------------------------

def test_shape_mismatch_names_op_shapes_and_caller_line():
    with gc.Graph("mlp") as g:
        x = g.input("x", ("N", 784))
        w = g.param("w", (128, 10))
        with pytest.raises(GraphBuildError) as info:
            where = next_line()
            x @ w
    msg = str(info.value)
    assert where in msg, msg
    assert "matmul" in msg and "(N, 784) @ (128, 10)" in msg and "784 and 128 differ" in msg


def test_shape_mismatch_inside_traced_function_points_into_it():
    lines = {}

    @gc.function(x=gc.spec(("N", 5)), b=gc.spec((4,)))
    def f(x, b):
        lines["add"] = next_line()
        return x + b

    with pytest.raises(GraphBuildError) as info:
        f.graph
    msg = str(info.value)
    assert lines["add"] in msg and "add" in msg and "cannot broadcast" in msg


def test_shape_mismatch_in_a_composite_points_at_the_user_line():
    """conv2d is a DSL function inside graphc; the error still names the user's line."""
    with gc.Graph("cnn") as g:
        x = g.input("x", ("N", 3, 8, 8))
        w = g.param("w", (4, 2, 3, 3))
        with pytest.raises(GraphBuildError) as info:
            where = next_line()
            gc.conv2d(x, w)
    msg = str(info.value)
    assert where in msg and "conv2d" in msg and "3 channels" in msg


def test_wrong_dtype_at_build_time():
    with gc.Graph("g") as g:
        x = g.input("x", (2, 3))
        i = g.input("i", (2, 3), "int64")
        with pytest.raises(GraphBuildError) as info:
            where = next_line()
            x + i
        msg = str(info.value)
        assert where in msg and "float32" in msg and "int64" in msg and "cast" in msg
        with pytest.raises(GraphBuildError, match="must be float32 or float64, got int64"):
            gc.exp(i)
        with pytest.raises(GraphBuildError, match="unknown dtype|unsupported dtype"):
            g.input("z", (2,), "complex128")


# ---- run time: feeds -----------------------------------------------------------------------------

def feeds(n: int = 2) -> dict[str, np.ndarray]:
    return {"x": np.ones((n, 3), np.float32), "y": np.zeros(n, np.int64)}


@pytest.mark.parametrize("backend", BACKENDS)
def test_good_feeds_run(backend):
    out = gc.compile(small_graph(), backend)(**feeds())
    np.testing.assert_allclose(out["logits"], np.full((2, 4), 3.0))
    np.testing.assert_allclose(out["loss"], np.log(4), rtol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_unknown_input_name(backend):
    exe = gc.compile(small_graph(), backend)
    with pytest.raises(FeedError) as info:
        exe(**feeds(), z=np.ones(3, np.float32))
    msg = str(info.value)
    assert "no input named 'z'" in msg and "its inputs are x, y" in msg


@pytest.mark.parametrize("backend", BACKENDS)
def test_missing_feed(backend):
    exe = gc.compile(small_graph(), backend)
    with pytest.raises(FeedError, match="missing feed for input 'y'"):
        exe(x=np.ones((2, 3), np.float32))


@pytest.mark.parametrize("backend", BACKENDS)
def test_feed_of_wrong_shape(backend):
    exe = gc.compile(small_graph(), backend)
    with pytest.raises(FeedError) as info:
        exe(x=np.ones((2, 5), np.float32), y=np.zeros(2, np.int64))
    msg = str(info.value)
    assert "'x'" in msg and "(2, 5)" in msg and "f32[N, 3]" in msg and "dim 1 is 5, expected 3" in msg
    with pytest.raises(FeedError, match="rank 2"):
        exe(x=np.ones(3, np.float32), y=np.zeros(2, np.int64))


@pytest.mark.parametrize("backend", BACKENDS)
def test_feeds_disagree_on_a_symbolic_dim(backend):
    exe = gc.compile(small_graph(), backend)
    with pytest.raises(FeedError) as info:
        exe(x=np.ones((4, 3), np.float32), y=np.zeros(3, np.int64))
    msg = str(info.value)
    assert "(N) is 3" in msg and "N = 4" in msg


@pytest.mark.parametrize("backend", BACKENDS)
def test_feed_of_wrong_dtype(backend):
    exe = gc.compile(small_graph(), backend)
    with pytest.raises(FeedError) as info:
        exe(x=np.ones((2, 3), np.float32), y=np.zeros(2, np.float32))
    msg = str(info.value)
    assert "'y'" in msg and "dtype float32" in msg and "expected int64" in msg


def test_feeding_an_unknown_parameter_name_is_an_error_but_a_known_one_is_not():
    exe = gc.compile(small_graph(), "numpy")
    out = exe(**feeds(), w=np.zeros((3, 4), np.float32))
    np.testing.assert_array_equal(out["logits"], 0)
    with pytest.raises(FeedError, match="no input named 'w2'"):
        exe(**feeds(), w2=np.zeros((3, 4), np.float32))


# ---- values crossing graphs ---------------------------------------------------------------------

def test_value_from_another_graph_while_building():
    with gc.Graph("first") as g1:
        a = g1.input("a", (3,))
    with gc.Graph("second") as g2:
        b = g2.input("b", (3,))
        with pytest.raises(GraphBuildError) as info:
            where = next_line()
            b + a
        msg = str(info.value)
        assert where in msg and "belongs to graph 'first'" in msg and "cannot cross graphs" in msg
        with pytest.raises(GraphBuildError, match="belongs to graph 'first'"):
            gc.exp(a)
        with pytest.raises(GraphBuildError, match="belongs to graph 'first'"):
            g2.output(out=a)


def test_verify_catches_a_value_smuggled_into_another_graph():
    with gc.Graph("first") as g1:
        a = g1.input("a", (3,))
    with gc.Graph("second") as g2:
        b = g2.input("b", (3,))
        c = gc.exp(b)
        g2.output(c=c)
    g2.nodes[0].inputs[0] = a.value  # what a buggy pass might do
    with pytest.raises(VerifyError) as info:
        gc.verify(g2)
    msg = str(info.value)
    assert "belongs to another graph ('first')" in msg
    assert f"{HERE}:" in msg  # the node's source line
    assert "> %" in msg  # the offending node, marked in context


def test_verify_shows_the_node_in_context_for_a_type_error():
    g = small_graph()
    node = next(n for n in g.nodes if n.op.name == "matmul")
    node.output.type = gc.TensorType(("N", 5))
    with pytest.raises(VerifyError) as info:
        gc.verify(g)
    msg = str(info.value)
    assert "typed f32[N, 5] but inference gives f32[N, 4]" in msg
    assert f"> %{node.output.name}" in msg


# ---- devices and backends -----------------------------------------------------------------------

def test_cuda_without_cuda_provider_is_a_clear_error():
    import onnxruntime as ort
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    with pytest.raises(GraphcError) as info:
        gc.compile(small_graph(), "onnxruntime", device="cuda")
    msg = str(info.value)
    assert "device='cuda'" in msg and "CPUExecutionProvider" in msg and "onnxruntime-gpu" in msg


def test_numpy_backend_refuses_cuda_and_unknown_names_are_rejected():
    g = small_graph()
    with pytest.raises(ValueError, match="CPU only"):
        gc.compile(g, "numpy", device="cuda")
    with pytest.raises(ValueError, match="unknown backend 'torch'"):
        gc.compile(g, "torch")
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        gc.compile(g, "numpy", device="tpu")


def test_run_time_kernel_failure_names_the_source_line():
    with gc.Graph("emb") as g:
        table = g.param("table", (5, 2), init=np.ones((5, 2), np.float32))
        idx = g.input("idx", ("N",), "int64")
        where = next_line()
        g.output(rows=gc.take(table, idx, axis=0))
    with pytest.raises(GraphcError) as info:
        gc.compile(g, "numpy")(idx=np.array([1, 9]))
    msg = str(info.value)
    assert where in msg and "gather" in msg and "out of range" in msg
