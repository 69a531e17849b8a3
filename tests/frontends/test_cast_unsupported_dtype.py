"""gc.cast to a dtype graphc does not support is a GraphBuildError naming the user's line."""
from __future__ import annotations

import pytest

import graphc as gc


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "uint8", "complex64", "nonsense"])
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


def test_cast_to_supported_dtype_still_works():
    with gc.Graph("g") as g:
        x = g.input("x", (3,))
        g.output(y=gc.cast(x, "int64"))
    assert g.outputs["y"].type.dtype == "int64"
