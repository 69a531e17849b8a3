"""The bitwise primitives and the storage dtypes' casts against onnx's own reference kernels,
on the cases the op table leaves out (signed shifts, shifts past the width, float8_e8m0fnu)."""
from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from onnx import TensorProto, helper
from onnx.numpy_helper import to_float8e8m0
from onnx.reference import ReferenceEvaluator

import graphc as gc
from graphc.ops import OPS


def _onnx_bitshift(a: np.ndarray, b: np.ndarray, direction: str) -> np.ndarray:
    t = helper.np_dtype_to_tensor_dtype(a.dtype)
    node = helper.make_node("BitShift", ["a", "b"], ["y"], direction=direction)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("a", t, a.shape),
                                        helper.make_tensor_value_info("b", t, b.shape)],
                          [helper.make_tensor_value_info("y", t, None)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 28)])
    return ReferenceEvaluator(m).run(None, {"a": a, "b": b})[0]


@pytest.mark.parametrize("dtype", ["int8", "int32", "int64", "uint8", "uint16"])
@pytest.mark.parametrize("direction", ["LEFT", "RIGHT"])
def test_shifts_match_onnx_including_signed_and_out_of_range(dtype, direction):
    rng = np.random.default_rng(0)
    info = np.iinfo(dtype)
    a = rng.integers(info.min, info.max, (40,), endpoint=True, dtype=dtype)
    b = rng.integers(0 if info.min == 0 else -3, info.bits + 4, (40,), dtype=dtype)
    op = OPS["shift_left" if direction == "LEFT" else "shift_right"]
    np.testing.assert_array_equal(op.ref(a, b), _onnx_bitshift(a, b, direction))


def test_cast_to_e8m0_rounds_up_and_saturates_like_onnx():
    x = np.array([0.0, 1.0, 1.5, 3.0, 2.0**-127, 1e-40, 3e38, np.inf, np.nan, -4.0, 2.0**127 * 1.5],
                 np.float32)
    for saturate in (True, False):
        got = OPS["cast"].ref(x, "float8_e8m0fnu", saturate=saturate)
        want = to_float8e8m0(x, saturate=saturate)
        np.testing.assert_array_equal(got.view(np.uint8), want.view(np.uint8))


@pytest.mark.parametrize("dtype", ["float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2",
                                   "float8_e5m2fnuz"])
def test_cast_saturate_clamps_and_otherwise_overflows(dtype):
    x = np.array([1e9, -1e9, np.inf, np.nan, 1.0], np.float32)
    big = float(ml_dtypes.finfo(dtype).max)
    sat = OPS["cast"].ref(x, dtype, saturate=True).astype(np.float32)
    np.testing.assert_array_equal(sat, np.array([big, -big, big, np.nan, 1.0], np.float32))
    wild = OPS["cast"].ref(x, dtype).astype(np.float32)
    assert not np.isfinite(wild[:4]).any() and wild[4] == 1.0


def test_bitwise_ops_refuse_floats_naming_the_op():
    with gc.Graph("bad") as g:
        x = g.input("x", (3,), "float32")
        with pytest.raises(gc.GraphBuildError, match="bitwise_and: .*integer dtype, got float32"):
            gc.apply("bitwise_and", [x, x])


def test_bitcast_refuses_other_widths():
    with gc.Graph("bad") as g:
        x = g.input("x", (3,), "float32")
        with pytest.raises(gc.GraphBuildError, match="cannot bitcast float32 .32 bits. to int8"):
            gc.apply("bitcast", [x], {"dtype": "int8"})


def test_bitcast_reads_float16_bits_as_stored():
    # the interpreter widens float16 to float32 for arithmetic; bitcast must see the raw bits
    with gc.Graph("bits") as g:
        x = g.input("x", (3,), "float16")
        g.output(y=gc.apply("bitcast", [x], {"dtype": "int16"}))
    x = np.array([1.0, -2.5, 65504], np.float16)
    np.testing.assert_array_equal(gc.compile(g)(x=x)["y"], x.view(np.int16))


def test_exporting_a_float8_cast_below_its_opset_is_refused():
    with gc.Graph("f8") as g:
        x = g.input("x", (3,), "float32")
        g.output(y=gc.cast(x, "float8_e4m3fn", saturate=True))
    with pytest.raises(Exception, match="float8_e4m3fn from opset 19"):
        gc.to_onnx(g, opset=18)
    model = gc.to_onnx(g, opset=19)
    (cast,) = [n for n in model.graph.node if n.op_type == "Cast"]
    assert {a.name: a.i for a in cast.attribute} == {"to": TensorProto.FLOAT8E4M3FN,
                                                     "saturate": 1}


def test_bit_ops_have_no_gradient():
    for name in ("bitwise_and", "bitwise_or", "bitwise_xor", "bitwise_not", "shift_left",
                 "shift_right", "bitcast"):
        assert not OPS[name].differentiable and OPS[name].vjp is None


@pytest.mark.parametrize("dtype", ["float8_e4m3fn", "float8_e5m2"])
@pytest.mark.parametrize("saturate", [True, False])
def test_float8_cast_at_opset_19_matches_onnx_reference(dtype, saturate):
    with gc.Graph("f8") as g:
        x = g.input("x", (6,), "float32")
        g.output(y=gc.cast(gc.cast(x, dtype, saturate=saturate), "float32"))
    x = np.array([0.3, -1.7, 1e6, -1e6, np.nan, 3.0], np.float32)
    (want,) = ReferenceEvaluator(gc.to_onnx(g, opset=19)).run(None, {"x": x})
    np.testing.assert_array_equal(gc.compile(g)(x=x)["y"], want)


@pytest.mark.parametrize("dtype", ["int8", "int16", "int32", "int64"])
def test_signed_shifts_and_bitcast_export_at_opset_28_and_run_on_onnxruntime(dtype):
    """ONNX has signed BitShift from opset 28 and BitCast from 26 (the op table exports at the
    default opset 18, so it skips them): exported at 28, onnxruntime agrees with the reference."""
    rng = np.random.default_rng(1)
    info = np.iinfo(dtype)
    a = rng.integers(info.min, info.max, (32,), endpoint=True, dtype=dtype)
    b = rng.integers(-2, info.bits + 3, (32,), dtype=dtype)
    f = rng.normal(size=(32,)).astype(np.float32)
    with gc.Graph("bits") as g:
        x, s, y = g.input("a", (32,), dtype), g.input("b", (32,), dtype), g.input("f", (32,))
        g.output(left=gc.apply("shift_left", [x, s]), right=gc.apply("shift_right", [x, s]),
                 bits=gc.apply("bitcast", [y], {"dtype": "int32"}))
    feeds = {"a": a, "b": b, "f": f}
    want = gc.compile(g, "numpy")(**feeds)
    got = gc.compile(g, "onnxruntime", opset=28)(**feeds)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)
    np.testing.assert_array_equal(want["bits"], f.view(np.int32))
    with pytest.raises(Exception, match="from opset 28"):
        gc.to_onnx(g, opset=27)
