"""Nodes whose kernel onnxruntime's CPU build lacks (float64 erf/gelu, conv2d, conv_transpose2d,
avg_pool2d) are refused in graphc's words before a session is created, naming the op and the
user's line and suggesting the numpy or TVM backend. The ops declare it
(`op.onnxruntime_cpu_missing`); the declarations are checked against onnxruntime itself."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

import graphc as gc
from graphc.backends.onnx import check_kernels, missing_cpu_kernels
from graphc.ir.errors import GraphcError
from graphc.ops import OPS
from ops.op_db import OP_BY_NAME, single_op_graph

# bfloat16 is declared by (nearly) every op, since the CPU build has Cast alone for it, and its
# Python binding cannot feed bfloat16 arrays: tests/ops/test_ops_low_precision.py covers it
DECLARED = [pytest.param(name, dtype, id=f"{name}-{dtype}") for name, op in sorted(OPS.items())
            for dtype in op.onnxruntime_cpu_missing if dtype != "bfloat16"]


def _float64_graphs():
    """One graph per symptom of the issue, each with its line."""
    def gelu(g):
        x = g.input("x", (2, 3), "float64")
        return gc.gelu(x)

    def conv(g):
        x = g.input("x", (1, 2, 5, 5), "float64")
        w = g.param("w", init=np.ones((3, 2, 3, 3)))
        return gc.conv2d(x, w)

    def conv_t(g):
        x = g.input("x", (1, 2, 4, 4), "float64")
        w = g.param("w", init=np.ones((2, 3, 3, 3)))
        return gc.conv_transpose2d(x, w)

    def avg(g):
        x = g.input("x", (1, 2, 4, 4), "float64")
        return gc.avg_pool2d(x, 2)
    return {"erf": gelu, "conv2d": conv, "conv_transpose2d": conv_t, "avg_pool2d": avg}


@pytest.mark.parametrize("op,build", list(_float64_graphs().items()))
def test_float64_op_without_cpu_kernel_is_refused_naming_op_line_and_alternatives(op, build):
    """The symptom: a raw NOT_IMPLEMENTED error from onnxruntime's session creation."""
    with gc.Graph(f"{op}_f64") as g:
        g.output(y=build(g))
    node = next(n for n in g.nodes if n.op.name == op)
    with pytest.raises(GraphcError) as err:
        gc.compile(g, "onnxruntime")
    msg = str(err.value)
    assert f"{op} (float64)" in msg and node.source in msg and "test_onnxruntime_missing" in msg
    assert "backend='numpy'" in msg and "backend='tvm'" in msg
    assert "NOT_IMPLEMENTED" in msg and "[ONNXRuntimeError]" not in msg
    # the numpy backend runs it
    feeds = {v.name: np.full(v.type.shape, 0.5) for v in g.inputs}
    assert np.isfinite(gc.compile(g, "numpy")(**feeds)["y"]).all()


def test_training_step_stepper_is_refused_too():
    with gc.Graph("gelu_loss") as g:
        x = g.input("x", (4, 3), "float64")
        w = g.param("w", init=np.ones((3, 3)))
        g.output(loss=gc.mean(gc.gelu(gc.matmul(x, w))))
    step = gc.training_step(g, optimizer=gc.optim.SGD(0.1))
    with pytest.raises(GraphcError, match=r"erf \(float64\)"):
        gc.make_stepper(step, "onnxruntime")


def test_float32_versions_are_not_refused():
    with gc.Graph("gelu32") as g:
        x = g.input("x", (2, 3))
        g.output(y=gc.gelu(x))
    assert missing_cpu_kernels(g) == []
    out = gc.compile(g, "onnxruntime")(x=np.ones((2, 3), np.float32))
    assert out["y"].dtype == np.float32


def test_the_cuda_provider_is_not_refused_by_the_cpu_list():
    """onnxruntime's CUDA provider has float64 Erf, Conv, ConvTranspose and AveragePool kernels."""
    with gc.Graph("gelu64") as g:
        x = g.input("x", (2, 3), "float64")
        g.output(y=gc.gelu(x))
    assert [n.op.name for n in missing_cpu_kernels(g)] == ["erf"]
    check_kernels(g, "cuda")  # no error
    with pytest.raises(GraphcError):
        check_kernels(g, "cpu")
    if "CUDAExecutionProvider" in ort.get_available_providers():
        out = gc.compile(g, "onnxruntime", device="cuda")(x=np.full((2, 3), 0.5))
        np.testing.assert_allclose(out["y"], gc.compile(g, "numpy")(x=np.full((2, 3), 0.5))["y"],
                                   rtol=1e-12)


@pytest.mark.parametrize("name,dtype", DECLARED)
def test_declared_missing_kernel_is_still_missing(name, dtype):
    """Each declaration is true of this onnxruntime: when a release adds the kernel, this fails,
    so the declaration (and the op table's skip) is removed."""
    info = OP_BY_NAME[name]
    assert info.skip_reason("onnxruntime", dtype), f"the op table runs {name} {dtype} on onnxruntime"
    s = info.get_samples(dtype)[0]
    g, feeds = single_op_graph(info, s, dtype)
    # float16 ScatterElements/ScatterND with reduction="add" fail when run ("not supported")
    with pytest.raises(Exception, match="NOT_IMPLEMENTED|Could not find an implementation|"
                                        "data type is not supported"):
        ort.InferenceSession(gc.to_onnx(g).SerializeToString(),
                             providers=["CPUExecutionProvider"]).run(None, feeds)


def test_every_missing_kernel_skip_of_the_op_table_is_declared_by_its_op():
    for info in OP_BY_NAME.values():
        for key, reason in info.skips.items():
            if key.startswith("onnxruntime/") and "has no" in reason:
                dtype = key.split("/")[1]
                assert dtype in info.op.onnxruntime_cpu_missing, \
                    f"{info.name}: the op table skips {dtype} on onnxruntime ({reason}), but the op " \
                    "does not declare it in onnxruntime_cpu_missing"
