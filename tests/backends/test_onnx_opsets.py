"""Every supported ONNX opset, over the whole op table: the exported model passes onnx's full
check and onnxruntime matches the numpy reference; other opsets are refused by name.

Each (row, opset) builds one model holding all of the row's samples (and one with the first
symbolic sample, where a row has one), so the table costs one session per row and opset.
"""
from __future__ import annotations

import numpy as np
import onnx
import pytest

import graphc as gc
from graphc.backends.onnx import DEFAULT_OPSET, SUPPORTED_OPSETS
from graphc.frontends.dsl import apply
from graphc.ir.errors import GraphcError
from ops.op_db import OP_DB


def _row_graph(info, symbolic=False):
    """One graph applying the primitive to every sample onnxruntime runs: outputs "<dtype>_y<k>"
    (a symbolic graph holds only the first symbolic sample)."""
    g = gc.Graph(f"{info.name}_opsets")
    feeds, dts = {}, {}
    with g:
        for dtype in info.dtypes:
            if info.skip_reason("onnxruntime", dtype):
                continue
            for k, s in enumerate(info.get_samples(dtype)):
                if info.skip_reason("onnxruntime", dtype, s) or (symbolic and s.symbolic is None):
                    continue
                if symbolic and dts:
                    break
                shapes = s.symbolic if symbolic else [a.shape for a in s.inputs]
                attrs = (s.sym_attrs if s.sym_attrs is not None else s.attrs) if symbolic else s.attrs
                xs = []
                for i, (a, shape) in enumerate(zip(s.inputs, shapes)):
                    xs.append(g.input(f"{dtype}_s{k}_x{i}", tuple(shape), a.dtype.name))
                    feeds[f"{dtype}_s{k}_x{i}"] = a
                g.output(**{f"{dtype}_y{k}": apply(info.name, xs, dict(attrs))})
                dts[f"{dtype}_y{k}"] = dtype
    return g, feeds, dts


CASES = [pytest.param(info, opset, sym, id=f"{info.name}-{opset}{'-sym' if sym else ''}")
         for info in OP_DB for opset in SUPPORTED_OPSETS for sym in (False, True)
         if not sym or any(s.symbolic is not None for s in info.get_samples(info.dtypes[0]))]


@pytest.mark.parametrize("info,opset,symbolic", CASES)
def test_every_supported_opset_passes_full_check_and_matches_reference(info, opset, symbolic):
    g, feeds, dts = _row_graph(info, symbolic)
    if not dts:
        pytest.skip(info.skip_reason("onnxruntime") or "every sample skips onnxruntime")
    model = gc.export_onnx(g, opset=opset)  # runs onnx.checker.check_model(full_check=True)
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [opset]
    want = gc.compile(g, "numpy")(**feeds)
    got = gc.compile(g, "onnxruntime", opset=opset)(**feeds)
    for k, ref in want.items():
        a, b = np.asarray(got[k]), np.asarray(ref)
        assert a.dtype == b.dtype and a.shape == b.shape, (k, a.dtype, a.shape, b.dtype, b.shape)
        if b.dtype.kind == "f":
            rtol, atol = info.tolerance("onnxruntime", dts[k])
            np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=f"opset {opset} {k}")
        else:
            np.testing.assert_array_equal(a, b, err_msg=f"opset {opset} {k}")


def _reduce_graph():
    with gc.Graph("reductions") as g:
        x = g.input("x", ("N", 3))
        g.output(hi=gc.max(x, 1), lo=gc.min(x, 0), avg=gc.mean(x, 1), tot=gc.sum(x, 0))
    return g


def test_export_onnx_opset_17_writes_a_valid_model():
    """The symptom: opset=17 wrote ReduceMax with an axes input ('ReduceMax:13 has input size 2')."""
    model = gc.export_onnx(_reduce_graph(), opset=17)
    onnx.checker.check_model(model, full_check=True)
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    out = gc.compile(_reduce_graph(), "onnxruntime", opset=17)(x=x)
    np.testing.assert_array_equal(out["hi"], x.max(1))
    np.testing.assert_allclose(out["avg"], x.mean(1))


@pytest.mark.parametrize("opset", [7, 12, 29, 30, "18", 18.0])
def test_unsupported_opset_is_refused_naming_the_supported_ones(opset):
    with pytest.raises(GraphcError) as err:
        gc.export_onnx(_reduce_graph(), opset=opset)
    msg = str(err.value)
    assert f"opset {opset!r} is not supported" in msg
    assert f"{SUPPORTED_OPSETS[0]} to {SUPPORTED_OPSETS[-1]}" in msg and str(DEFAULT_OPSET) in msg


def test_default_opset_is_supported():
    assert DEFAULT_OPSET in SUPPORTED_OPSETS
    model = gc.export_onnx(_reduce_graph())
    assert [o.version for o in model.opset_import] == [DEFAULT_OPSET]
