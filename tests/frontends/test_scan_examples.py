"""The adding problem (length 50) and the digits row reader train on scan exactly as unrolled.

The examples' full runs, with their accuracy and error goals, are the slow tests in
tests/test_examples_nn.py; this pins, quickly, that their recurrent layers now run on `gc.scan`
and that a few training steps give the unrolled graph's losses.
"""
from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest

import graphc as gc
from graphc import datasets, nn, optim

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                        "examples")


def load(name: str):
    """The example script `examples/<name>.py` as a module."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", os.path.join(EXAMPLES,
                                                                                  f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _losses(model: nn.Module, loss_fn, batches: list[dict], unroll: bool) -> list[float]:
    model.rnn.unroll = unroll
    g = loss_fn().graph
    assert any(n.op.name == "scan" for n in g.nodes) != unroll
    step = gc.training_step(g, optimizer=optim.Adam(1e-2))
    st = gc.make_stepper(step, "onnxruntime")
    return [float(st.step(b, 1e-2)["loss"]) for b in batches]


def _batches(data: dict, size: int, n: int) -> list[dict]:
    return [{k: v[i * size:(i + 1) * size] for k, v in data.items()} for i in range(n)]


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_adding_problem_trains_on_scan_like_the_unrolled_layer(cell):
    ex = load("adding_problem")
    gc.manual_seed(0)
    model = ex.Adder(cell, 16)
    data = datasets.adding_problem(120, 50, seed=0)

    def loss_fn():
        @gc.function(x=gc.spec(("N", 50, 2)), y=gc.spec(("N",)))
        def f(x, y):
            return {"loss": nn.mse_loss(model(x), y)}
        return f

    batches = _batches(data, 40, 3) * 2
    scan = _losses(model, loss_fn, batches, unroll=False)
    unrolled = _losses(model, loss_fn, batches, unroll=True)
    np.testing.assert_allclose(scan, unrolled, rtol=2e-5, atol=1e-6)
    assert scan[-1] < scan[0]


def test_digits_row_reader_trains_on_scan_like_the_unrolled_layer():
    ex = load("rnn_digits")
    gc.manual_seed(0)
    model = ex.RowClassifier("lstm", 32)
    train, _ = datasets.digits("rows")
    data = {"x": train["x"][:192], "y": train["y"][:192]}

    def loss_fn():
        @gc.function(x=gc.spec(("N", 8, 8)), y=gc.spec(("N",), "int64"))
        def f(x, y):
            return {"loss": nn.cross_entropy(model(x), y)}
        return f

    batches = _batches(data, 64, 3) * 2
    scan = _losses(model, loss_fn, batches, unroll=False)
    unrolled = _losses(model, loss_fn, batches, unroll=True)
    np.testing.assert_allclose(scan, unrolled, rtol=2e-5, atol=1e-6)
    assert scan[-1] < scan[0]
