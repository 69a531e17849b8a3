"""The TVM backend: op-table parity with the numpy reference, symbolic dims, lowering coverage,
the compile cache, and device errors.

TVM compiles cost ~0.1-1 s each, so every op row compiles one module holding all of its samples.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

pytest.importorskip("tvm")

import graphc as gc  # noqa: E402
from graphc.frontends.dsl import apply  # noqa: E402
from graphc.ir.errors import GraphcError  # noqa: E402
from graphc.ops.base import Op  # noqa: E402
from ops.op_db import OP_DB, grad_inputs  # noqa: E402

@pytest.fixture(autouse=True)
def _cache_dir(tmp_path_factory, monkeypatch):
    """Every test compiles into one throwaway cache, never the user's."""
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "graphc-cache"))


def _row_graph(info, dtypes, symbolic=False):
    """One graph applying the primitive to every (non-skipped) sample of `dtypes`: outputs
    "<dtype>_y<k>" (a symbolic graph holds only the first symbolic sample)."""
    g = gc.Graph(f"{info.name}_tvm")
    feeds, dts = {}, {}
    with g:
        for dtype in dtypes:
            if info.skip_reason("tvm", dtype):
                continue
            for k, s in enumerate(info.get_samples(dtype)):
                if info.skip_reason("tvm", dtype, s) or (symbolic and s.symbolic is None):
                    continue
                if symbolic and dts:
                    break  # samples may bind one symbol to different sizes: one per graph
                shapes = s.symbolic if symbolic else [a.shape for a in s.inputs]
                attrs = (s.sym_attrs if s.sym_attrs is not None else s.attrs) if symbolic else s.attrs
                xs = []
                for i, (a, shape) in enumerate(zip(s.inputs, shapes)):
                    xs.append(g.input(f"{dtype}_s{k}_x{i}", tuple(shape), a.dtype.name))
                    feeds[f"{dtype}_s{k}_x{i}"] = a
                name = f"{dtype}_y{k}"
                g.output(**{name: apply(info.name, xs, dict(attrs))})
                dts[name] = dtype
    return g, feeds, dts


def _compare(got, want, info, dtypes, what):
    """Outputs equal the reference's: dtype, shape, and values within the row's tolerance."""
    for k in want:
        dtype = dtypes[k] if isinstance(dtypes, dict) else dtypes
        a, b = np.asarray(got[k]), np.asarray(want[k])
        assert a.dtype == b.dtype, f"{what} {k}: dtype {a.dtype}, reference {b.dtype}"
        assert a.shape == b.shape, f"{what} {k}: shape {a.shape}, reference {b.shape}"
        if b.dtype.kind == "f":
            rtol, atol = info.tolerance("tvm", dtype)
            np.testing.assert_allclose(a, b, rtol=max(rtol, 1e-6 if dtype == "float32" else 1e-12),
                                       atol=atol, err_msg=f"{what} {k}")
        else:
            np.testing.assert_array_equal(a, b, err_msg=f"{what} {k}")


@pytest.mark.parametrize("info", [pytest.param(i, id=i.name) for i in OP_DB])
def test_forward_matches_reference(info):
    """Every sample of every dtype of the row, in one module, against the numpy reference."""
    g, feeds, dts = _row_graph(info, info.dtypes)
    if not dts:
        pytest.skip(info.skip_reason("tvm") or "every sample skips tvm")
    want = gc.compile(g, backend="numpy")(**feeds)
    got = gc.compile(g, backend="tvm", cache=False)(**feeds)
    _compare(got, want, info, dts, "forward")


SYM_ROWS = [pytest.param(info, id=info.name) for info in OP_DB
            if any(s.symbolic is not None for s in info.get_samples(info.dtypes[0]))]


@pytest.mark.parametrize("info", SYM_ROWS)
def test_symbolic_dims_stay_symbolic(info):
    """One module, declared with symbolic dims, serves the samples' sizes (and matches numpy)."""
    dtype = info.dtypes[0]
    reason = (info.skip_reason("tvm", dtype) or info.skip_reason("symbolic", dtype)
              or info.skip_reason("tvm_symbolic", dtype))
    if reason:
        pytest.skip(reason)
    g, feeds, dts = _row_graph(info, [dtype], symbolic=True)
    if not dts:
        pytest.skip("no symbolic sample runs on tvm")
    assert any(isinstance(d, str) for v in g.inputs for d in v.type.shape)
    want = gc.compile(g, backend="numpy")(**feeds)
    got = gc.compile(g, backend="tvm", cache=False)(**feeds)
    _compare(got, want, info, dts, "symbolic")


def test_one_module_serves_every_batch_size():
    with gc.Graph("batch_sizes") as g:
        x = g.input("x", ("N", 6))
        w = g.param("w", init=np.linspace(-1, 1, 24, dtype=np.float32).reshape(6, 4))
        g.output(y=gc.relu(x @ w).sum(axis=1))
    exe = gc.compile(g, backend="tvm")
    ref = gc.compile(g, backend="numpy")
    rng = np.random.default_rng(0)
    for n in (1, 3, 4, 7, 130):
        x = rng.standard_normal((n, 6)).astype(np.float32)
        np.testing.assert_allclose(exe(x=x)["y"], ref(x=x)["y"], rtol=1e-5, atol=1e-6)


def _grad_available():
    try:
        from graphc.passes import autodiff  # noqa: F401
    except ImportError:
        return False
    return True


GRAD_ROWS = [pytest.param(info, id=info.name) for info in OP_DB if info.grad]


@pytest.mark.slow
@pytest.mark.parametrize("info", GRAD_ROWS)
def test_gradient_graph_matches_reference(info):
    """The backward graph of each differentiable op (made by gc.grad) runs on TVM like numpy."""
    if not _grad_available():
        pytest.skip("gc.grad (graphc.passes.autodiff) is not available yet")
    dtype = "float64" if "float64" in info.dtypes else info.dtypes[0]
    for check in ("tvm", "grad"):
        if info.skip_reason(check, dtype):
            pytest.skip(info.skip_reason(check, dtype))
    rng = np.random.default_rng(1)
    g = gc.Graph(f"grad_{info.name}")
    feeds, wrt = {}, []
    with g:
        total = None
        for k, s in enumerate(info.get_samples(dtype)):
            if info.skip_reason("tvm", dtype, s) or info.skip_reason("grad", dtype, s):
                continue
            diff = set(grad_inputs(info, s))
            if not diff:
                continue
            xs = []
            for i, a in enumerate(s.inputs):
                if i in diff:
                    xs.append(g.param(f"s{k}_x{i}", init=a.copy()))
                    wrt.append(f"s{k}_x{i}")
                else:
                    xs.append(g.input(f"s{k}_x{i}", a.shape, a.dtype.name))
                    feeds[f"s{k}_x{i}"] = a
            y = apply(info.name, xs, dict(s.attrs))
            # a random cotangent per sample, folded into one scalar
            cot = rng.uniform(0.5, 1.5, size=tuple(int(d) for d in y.shape)).astype(y.dtype)
            term = (y * gc.constant(cot)).sum()
            total = term if total is None else total + term
        if total is None:
            pytest.skip("no sample has a differentiable input on tvm")
        g.output(loss=total)
    gg = gc.grad(g, wrt=wrt)
    want = gc.compile(gg, backend="numpy")(**feeds)
    got = gc.compile(gg, backend="tvm", cache=False)(**feeds)
    _compare(got, want, info, dtype, "grad")


# ---- coverage up front ----------------------------------------------------------------------

class _NoLowering(Op):
    """y = x, with no TVM (or ONNX) lowering: stands for an op a backend lacks."""
    name = "no_lowering_for_test"

    def infer(self, x):
        return x

    def ref(self, x):
        return x


def _graph_with_unlowerable_ops():
    op = _NoLowering()
    with gc.Graph("unlowerable") as g:
        x = g.input("x", (3,))
        a = g.add_node(op, [x.value], {}, x.type, source="model.py:11")
        b = gc.exp(gc.Tensor(a))
        c = g.add_node(op, [b.value], {}, x.type, source="model.py:12")
        g.output(y=gc.Tensor(c))
    return g


@pytest.mark.parametrize("backend", ["tvm", "onnxruntime"])
def test_check_lowering_lists_every_missing_op(backend):
    g = _graph_with_unlowerable_ops()
    missing = gc.check_lowering(g, backend=backend)
    assert [m.source for m in missing] == ["model.py:11", "model.py:12"]
    assert {m.op for m in missing} == {"no_lowering_for_test"}
    with pytest.raises(GraphcError) as err:
        gc.check_lowering(g, backend=backend, raise_on_missing=True)
    assert "model.py:11" in str(err.value) and "model.py:12" in str(err.value)


def test_compile_fails_before_compiling_naming_every_missing_op(monkeypatch):
    import tvm

    def no_compile(*a, **k):  # pragma: no cover - reached only if the check is missing
        raise AssertionError("tvm.compile was called before the lowering check")

    monkeypatch.setattr(tvm, "compile", no_compile)
    with pytest.raises(GraphcError) as err:
        gc.compile(_graph_with_unlowerable_ops(), backend="tvm", cache=False)
    msg = str(err.value)
    assert "2 node(s)" in msg and "model.py:11" in msg and "model.py:12" in msg
    assert "no_lowering_for_test" in msg


def test_check_lowering_passes_a_real_model():
    g = gc.models.mlp(sizes=(8, 6, 3))
    assert gc.check_lowering(g, backend="tvm") == []
    assert gc.check_lowering(g, backend="onnxruntime") == []


# ---- the compile cache ----------------------------------------------------------------------

def _small_graph(name="cached"):
    with gc.Graph(name) as g:
        x = g.input("x", ("N", 5))
        w = g.param("w", init=np.arange(15, dtype=np.float32).reshape(5, 3) / 10)
        g.output(y=gc.tanh(x @ w))
    return g


def test_cache_hit_on_second_compile(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("GRAPHC_LOG", "cache")
    x = np.ones((2, 5), np.float32)
    first = gc.compile(_small_graph(), backend="tvm")
    assert first.compile_info["cached"] is False
    assert "miss" in capsys.readouterr().err
    second = gc.compile(_small_graph(), backend="tvm")
    assert second.compile_info["cached"] is True
    assert "hit" in capsys.readouterr().err
    np.testing.assert_array_equal(first(x=x)["y"], second(x=x)["y"])


def test_cache_miss_is_explained(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("GRAPHC_LOG", "cache")
    gc.compile(_small_graph(), backend="tvm")
    capsys.readouterr()
    with gc.Graph("cached") as g:  # same name, different structure
        x = g.input("x", ("N", 5))
        w = g.param("w", init=np.ones((5, 3), np.float32))
        g.output(y=gc.sigmoid(x @ w))
    gc.compile(g, backend="tvm")
    err = capsys.readouterr().err
    assert "miss" in err and "graph changed" in err


def test_cache_key_ignores_param_values_and_source_lines(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    gc.compile(_small_graph(), backend="tvm")
    with gc.Graph("cached") as g:
        x = g.input("x", ("N", 5))
        w = g.param("w", init=np.full((5, 3), 0.5, np.float32))
        g.output(y=gc.tanh(x @ w))
    exe = gc.compile(g, backend="tvm")
    assert exe.compile_info["cached"] is True
    np.testing.assert_allclose(exe(x=np.ones((1, 5), np.float32))["y"], np.tanh(np.full((1, 3), 2.5)),
                               rtol=1e-6)


def test_corrupt_cache_entry_is_rebuilt(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("GRAPHC_LOG", "cache")
    x = np.full((3, 5), 0.25, np.float32)
    want = gc.compile(_small_graph(), backend="tvm")(x=x)["y"]
    libs = [os.path.join(r, f) for r, _, fs in os.walk(tmp_path) for f in fs if f == "module.so"]
    assert len(libs) == 1
    with open(libs[0], "r+b") as f:  # flip bytes in the middle of the shared library
        f.seek(os.path.getsize(libs[0]) // 2)
        f.write(b"\x00garbage\x00" * 8)
    capsys.readouterr()
    exe = gc.compile(_small_graph(), backend="tvm")
    assert exe.compile_info["cached"] is False
    assert "corrupt" in capsys.readouterr().err
    np.testing.assert_array_equal(exe(x=x)["y"], want)
    assert gc.compile(_small_graph(), backend="tvm").compile_info["cached"] is True


# ---- devices and parameters -------------------------------------------------------------------

def test_cuda_without_gpu_is_a_clear_error():
    import tvm
    if tvm.cuda(0).exist:
        pytest.skip("this machine has a CUDA GPU")
    with pytest.raises(GraphcError, match="no CUDA GPU"):
        gc.compile(_small_graph(), backend="tvm", device="cuda")


def test_params_stay_on_device_and_can_be_fed():
    exe = gc.compile(_small_graph(), backend="tvm")
    import tvm
    assert all(isinstance(p, tvm.runtime.Tensor) for p in exe.params)
    x = np.ones((2, 5), np.float32)
    w2 = np.zeros((5, 3), np.float32)
    np.testing.assert_array_equal(exe(x=x, w=w2)["y"], np.zeros((2, 3), np.float32))
    # feeding a parameter for one call does not replace the stored one
    assert np.abs(exe(x=x)["y"]).sum() > 0
    exe.set_params({"w": w2})
    np.testing.assert_array_equal(exe(x=x)["y"], np.zeros((2, 3), np.float32))
