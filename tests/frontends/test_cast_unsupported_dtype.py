"""gc.cast to a dtype graphc does not support is a GraphBuildError naming the user's line."""
from __future__ import annotations

import pytest

import graphc as gc


@pytest.mark.parametrize("dtype", ["str", "complex64", "nonsense"])
def test_cast_to_unsupported_dtype_names_the_user_line_and_the_supported_dtypes(dtype):
    """The symptom: gc.cast(x, "float16") raised a bare TypeError without the user's file:line."""
    with gc.Graph("g") as g:
        x = g.input("x", (3,))
        with pytest.raises(gc.GraphBuildError) as err:
            gc.cast(x, dtype)
    msg = str(err.value)
    assert "test_cast_unsupported_dtype.py:" in msg, msg
    assert "cast:" in msg and dtype in msg
    for supported in ("float32", "float64", "int32", "int64", "bool"):
        assert supported in msg
    assert not g.nodes


@pytest.mark.parametrize("dtype,short", [("float16", "f16"), ("bfloat16", "bf16"), ("half", "f16")])
def test_cast_to_low_precision_works(dtype, short):
    """The symptom of issue 12: gc.cast(x, "float16") was refused; now it runs on numpy."""
    import numpy as np
    with gc.Graph("g") as g:
        x = g.input("x", (3,))
        h = gc.cast(x, dtype)
        g.output(y=gc.cast(h * h, "float32"))
    assert f"{short}[3]" in str(g)
    out = gc.compile(g, "numpy")(x=np.array([1.0, 0.5, 3.0], np.float32))["y"]
    np.testing.assert_array_equal(out, [1.0, 0.25, 9.0])


def test_cast_to_supported_dtype_still_works():
    with gc.Graph("g") as g:
        x = g.input("x", (3,))
        g.output(y=gc.cast(x, "int64"))
    assert g.outputs["y"].type.dtype == "int64"
