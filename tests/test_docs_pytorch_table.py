"""docs/pytorch_table.md lists every public graphc function, Tensor method and nn layer, so a
new public name without a numpy / torch counterpart in the table is a red test."""
from __future__ import annotations

import pathlib
import re

import pytest

import graphc as gc
from graphc import nn

TABLE = pathlib.Path(__file__).resolve().parents[1] / "docs" / "pytorch_table.md"
DSL_MODULES = ("graphc.frontends.dsl", "graphc.frontends.functional", "graphc.frontends.trace")


@pytest.fixture(scope="module")
def text() -> str:
    return TABLE.read_text()


def _public_functions() -> list[str]:
    return sorted(n for n in dir(gc) if not n.startswith("_")
                  and getattr(getattr(gc, n), "__module__", None) in DSL_MODULES)


def test_every_public_function_is_in_the_table(text):
    missing = [n for n in _public_functions() if not re.search(rf"`gc\.{n}\b", text)]
    missing += [n for n in nn.functional.__all__
                if not re.search(rf"`(gc|F)\.{n}\b", text)]
    assert not missing, f"add these to docs/pytorch_table.md: {missing}"


def test_every_tensor_method_is_in_the_table(text):
    names = [n for n in dir(gc.Tensor) if not n.startswith("_")]
    missing = [n for n in names if not re.search(rf"\bx\.{n}\b", text)]
    assert not missing, f"add these Tensor methods to docs/pytorch_table.md: {missing}"


def test_every_layer_is_in_the_table(text):
    layers = [n for n in nn.__all__ if n[0].isupper() and isinstance(getattr(nn, n), type)
              and n not in ("Parameter", "Buffer")]
    missing = [n for n in layers if f"`{n}`" not in text]
    assert not missing, f"add these layers to docs/pytorch_table.md: {missing}"
