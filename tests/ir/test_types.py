"""TensorType: dtypes, symbolic dims, the printed form and its parser, broadcasting."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from graphc.ir import DTYPES, TensorType, broadcast_shapes, parse_type
from graphc.ir.types import canonical_dtype, dim_divide, dim_product, eval_dim, normalize_dim


@pytest.mark.parametrize("t,text", [
    (TensorType(("N", 784)), "f32[N, 784]"),
    (TensorType((), "int64"), "i64[]"),
    (TensorType((2, 3, 4), "float64"), "f64[2, 3, 4]"),
    (TensorType(("B", "T", 8), "bool"), "bool[B, T, 8]"),
    (TensorType(("N*8", 3), "int32"), "i32[8*N, 3]"),
    (TensorType((0, 5)), "f32[0, 5]"),
])
def test_print_and_parse_round_trip(t, text):
    assert str(t) == text
    assert parse_type(text) == t
    assert parse_type(str(t)) == t


dims = st.one_of(st.integers(0, 4096), st.sampled_from(["N", "B", "T", "8*N", "B*T", "2*B*T"]))


@settings(max_examples=200, deadline=None)
@given(shape=st.lists(dims, max_size=5), dtype=st.sampled_from(DTYPES))
def test_round_trip_property(shape, dtype):
    t = TensorType(tuple(shape), dtype)
    assert parse_type(str(t)) == t
    assert t.rank == len(shape)
    assert t.is_static == all(isinstance(d, int) for d in shape)


def test_dtypes_accept_numpy_names_and_short_forms():
    assert DTYPES[:7] == ("float32", "float64", "float16", "bfloat16", "int32", "int64", "bool")
    assert {"int8", "uint8", "int16", "uint16", "uint32", "uint64", "float8_e4m3fn", "int4",
            "float4_e2m1fn", "float8_e8m0fnu", "uint2"} <= set(DTYPES)
    assert str(TensorType((2,), "uint8")) == "u8[2]"
    assert parse_type("f8e4m3fn[N]") == TensorType(("N",), "float8_e4m3fn")
    assert TensorType((1,), np.int8).dtype == "int8"
    assert TensorType((1,), "bf16").dtype == "bfloat16"
    assert str(TensorType((2,), "float16")) == "f16[2]"
    assert parse_type("bf16[N, 3]") == TensorType(("N", 3), "bfloat16")
    assert TensorType((1,), np.float32).dtype == "float32"
    assert TensorType((1,), np.dtype("int64")).dtype == "int64"
    assert TensorType((1,), "f64").dtype == "float64"
    assert TensorType((1,), bool).dtype == "bool"
    assert canonical_dtype(np.int32) == "int32"


@pytest.mark.parametrize("bad", ["complex64", "str", "nonsense"])
def test_unsupported_dtype_is_a_clear_error(bad):
    with pytest.raises(TypeError, match="graphc supports float32, float64, float16, bfloat16, "
                                        "int32, int64, bool"):
        TensorType((2,), bad)


@pytest.mark.parametrize("bad", ["N+1", "3.5", "", "N-M"])
def test_bad_symbolic_dim_is_a_clear_error(bad):
    with pytest.raises(ValueError, match="bad symbolic dim"):
        TensorType((bad, 2))


@pytest.mark.parametrize("text", ["f32", "f32[N, 3", "xx[3]"])
def test_parse_rejects_malformed_text(text):
    with pytest.raises((ValueError, TypeError)):
        parse_type(text)


def test_symbolic_dim_arithmetic_is_canonical():
    assert normalize_dim("N*8") == "8*N"
    assert normalize_dim("T*B") == "B*T"
    assert normalize_dim("2*3") == 6
    assert dim_product(["N", 3, 4]) == "12*N"
    assert dim_product(["B", "T"]) == "B*T"
    assert dim_product([3, 0, "N"]) == 0
    assert dim_divide("12*N", 4) == "3*N"
    assert dim_divide("12*N", "N") == 12
    assert dim_divide("12*N", 5) is None
    assert dim_divide(12, "N") is None
    assert eval_dim("3*B*T", {"B": 2, "T": 5}) == 30
    with pytest.raises(KeyError):
        eval_dim("N", {})
    assert TensorType(("N", 3, 4)).numel() == "12*N"
    assert TensorType(()).numel() == 1


@pytest.mark.parametrize("a,b,out", [
    ((3, 4), (4,), (3, 4)),
    ((2, 1, 4), (3, 1), (2, 3, 4)),
    ((), (5,), (5,)),
    (("N", 1), (1, 7), ("N", 7)),
    (("N", 4), ("N", 1), ("N", 4)),
    ((1,), ("N",), ("N",)),
])
def test_broadcast_shapes_follows_numpy(a, b, out):
    assert broadcast_shapes(a, b) == out
    concrete = [tuple(7 if d == "N" else d for d in s) for s in (a, b, out)]
    assert np.broadcast_shapes(concrete[0], concrete[1]) == concrete[2]


@pytest.mark.parametrize("a,b", [((3, 4), (5,)), (("N", 4), ("M", 4)), (("N",), (3,))])
def test_broadcast_shapes_names_clashing_dims(a, b):
    with pytest.raises(ValueError, match="cannot broadcast"):
        broadcast_shapes(a, b)


def test_tensor_type_is_hashable_and_compares_by_value():
    a, b = TensorType(("N", 3)), TensorType(("N", 3), "float32")
    assert a == b and hash(a) == hash(b)
    assert a != TensorType(("N", 3), "float64")
    assert a.with_dtype("int64") == TensorType(("N", 3), "int64")
    assert a.with_shape((2, 3)).is_static


def test_negative_dims_are_rejected_with_a_hint():
    with pytest.raises(ValueError, match="negative dim .* use a symbol such as 'N'"):
        TensorType((-1, 4))
