"""hoist_loop_products: a backward loop's weight-gradient sum becomes one product after the loop."""
from __future__ import annotations

import numpy as np

import graphc as gc
from graphc import optim


def _step(unroll: bool) -> gc.Graph:
    g = gc.models.lstm(steps=6, input=5, hidden=7, classes=3, dtype="float64", unroll=unroll)
    return gc.training_step(g, optimizer=optim.SGD(0.1, momentum=0.9))


def _loops(g: gc.Graph) -> list[gc.Node]:
    return [n for n in g.nodes if isinstance(n.attrs.get("body"), gc.Graph)]


def test_the_backward_loop_carries_no_weight_gradient():
    g = _step(unroll=False)
    backward = [n for n in _loops(g) if n.attrs["n_carry"] == 2 and n.attrs["n_xs"] > 1]
    assert backward, "the LSTM's backward loop should carry only dh and dc"
    body = backward[0].attrs["body"]
    assert not any(v.type.shape == (7, 28) for v in body.outputs.values()), body
    hoisted = [n for n in g.nodes if n.op.name == "gemm" and n.attrs.get("trans_a")
               and n.output.type.shape == (7, 28)]
    assert hoisted, "dW_hh.T should be one product of the stacked steps"


def test_training_on_the_hoisted_loop_equals_the_unrolled_graph():
    rng = np.random.default_rng(0)
    feeds = {"x": rng.normal(size=(4, 6, 5)), "y": rng.integers(0, 3, 4)}
    losses = {}
    for unroll in (False, True):
        st = gc.make_stepper(_step(unroll), "numpy")
        losses[unroll] = [float(st.step(feeds, 0.1)["loss"]) for _ in range(3)]
    np.testing.assert_allclose(losses[False], losses[True], rtol=1e-12)


def test_a_pipeline_without_loops_is_left_alone():
    with gc.Graph("g") as g:
        x = g.input("x", ("N", 3))
        g.output(y=gc.relu(x))
    assert gc.Pipeline(["hoist_loop_products"])(g) is not None
    from graphc.passes.hoist_loop_products import hoist_loop_products
    assert hoist_loop_products(g) is g
