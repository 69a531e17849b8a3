"""float16 and bfloat16 rows of the op table: each primitive's samples drawn in the low-precision
dtypes (`OpInfo.low_precision`) run on numpy, onnxruntime (where its CPU build has the kernel;
the op declares what it lacks in `onnxruntime_cpu_missing`) and TVM, against the reference, which
computes them in float32 and rounds once (`graphc.ops.interpret.run_ref`), with the row's
low-precision tolerance; the exported models pass onnx's full check."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

import graphc as gc
from graphc.ops.interpret import run_ref
from ops.op_db import OP_DB, OpInfo, Sample, sample_id, single_op_graph



def _cases():
    return [pytest.param(info, dtype, s, id=f"{info.name}-{dtype}-{sample_id(s, k)}")
            for info in OP_DB for dtype in info.low_precision
            for k, s in enumerate(info.get_samples(dtype))]


CASES = _cases()


def _reference(info: OpInfo, g, sample: Sample) -> np.ndarray:
    return run_ref(info.op, sample.inputs, dict(sample.attrs), g.outputs["y"].type.dtype)


def _assert_matches(got, want, info, check, dtype):
    got = np.asarray(got)
    assert got.dtype == want.dtype, f"{check}: dtype {got.dtype}, reference {want.dtype}"
    assert got.shape == want.shape, f"{check}: shape {got.shape}, reference {want.shape}"
    if want.dtype.kind in "fV" or want.dtype.name == "bfloat16":
        rtol, atol = info.tolerance(check, dtype)
        np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64),
                                   rtol=rtol, atol=atol, err_msg=check)
    else:
        np.testing.assert_array_equal(got, want, err_msg=check)


def _skip(info, check, dtype, sample):
    reason = info.skip_reason(check, dtype, sample)
    if reason:
        pytest.skip(reason)


def test_the_mixed_precision_ops_have_low_precision_rows():
    rows = {i.name: i.low_precision for i in OP_DB}
    for name in ("matmul", "gemm", "conv2d", "cast", "softmax", "layer_norm", "sum", "add"):
        assert rows[name] == ("float16", "bfloat16"), name
    assert rows["random_uniform"] == ()


@pytest.mark.parametrize("info,dtype,sample", CASES)
def test_numpy_infers_the_low_precision_type(info, dtype, sample):
    g, feeds = single_op_graph(info, sample, dtype)
    gc.verify(g)
    want = _reference(info, g, sample)
    assert tuple(g.outputs["y"].type.shape) == want.shape
    _assert_matches(gc.compile(g, "numpy")(**feeds)["y"], want, info, "numpy", dtype)


@pytest.mark.parametrize("info,dtype,sample", CASES)
def test_onnxruntime_matches_reference(info, dtype, sample):
    _skip(info, "onnxruntime", dtype, sample)
    g, feeds = single_op_graph(info, sample, dtype)
    got = gc.compile(g, "onnxruntime")(**feeds)["y"]
    _assert_matches(got, _reference(info, g, sample), info, "onnxruntime", dtype)


@pytest.mark.parametrize("info,dtype,sample", CASES)
def test_tvm_matches_reference(info, dtype, sample):
    pytest.importorskip("tvm")
    _skip(info, "tvm", dtype, sample)
    g, feeds = single_op_graph(info, sample, dtype)
    got = gc.compile(g, "tvm")(**feeds)["y"]
    _assert_matches(got, _reference(info, g, sample), info, "tvm", dtype)


@pytest.mark.parametrize("info,dtype,sample", CASES)
def test_exported_model_passes_full_check(info, dtype, sample):
    _skip(info, "onnx_checker", dtype, sample)
    g, _ = single_op_graph(info, sample, dtype)
    model = gc.to_onnx(g)
    onnx.checker.check_model(model, full_check=True)
    elem = {"float16": onnx.TensorProto.FLOAT16, "bfloat16": onnx.TensorProto.BFLOAT16}[dtype]
    assert elem in {i.type.tensor_type.elem_type
                    for i in [*model.graph.input, *model.graph.output, *model.graph.value_info]} \
        or elem in {t.data_type for t in model.graph.initializer} or not g.inputs


def test_onnxruntime_refuses_bfloat16_naming_the_kernel():
    with gc.Graph("bf16") as g:
        x = g.input("x", (2, 3), "float32")
        g.output(y=gc.cast(gc.exp(gc.cast(x, "bfloat16")), "float32"))
    with pytest.raises(gc.GraphcError, match=r"exp \(bfloat16\)"):
        gc.compile(g, "onnxruntime")
