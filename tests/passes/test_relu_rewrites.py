"""pool_before_relu and mask_by_multiply: the ReLU rewrites of the training step, exact in value."""
import dataclasses

import numpy as np
import pytest

import graphc as gc
from graphc import models, optim
from graphc.frontends import dsl
from graphc.ops.base import OPS
from graphc.passes import pipeline as pl


def _ops(g):
    return [n.op.name for n in g.nodes]


def _pooled_relu(shared: bool) -> gc.Graph:
    with gc.Graph("pooled") as g:
        x = g.input("x", ("N", 2, 6, 6), "float64")
        r = dsl.apply("relu", [x])
        y = dsl.apply("max_pool2d", [r],
                      {"kernel_size": (2, 2), "stride": (2, 2), "padding": (0, 0)})
        g.outputs["y"] = y.value
        weights = np.arange(2 * 3 * 3, dtype=np.float64).reshape(1, 2, 3, 3) - 8.0
        g.outputs["loss"] = dsl.sum(y * dsl.constant(weights)).value
        if shared:
            g.outputs["r"] = r.value
    return g


def test_relu_moves_after_the_pool_with_equal_values_and_gradients():
    g = _pooled_relu(shared=False)
    f = gc.Pipeline(["pool_before_relu", "eliminate_dead_code"])(g)
    assert _ops(f)[:2] == ["max_pool2d", "relu"]
    x = np.random.default_rng(0).normal(size=(3, 2, 6, 6))
    x[0, 0, :2, :2] = 0.0  # a window of ties at zero
    x[0, 1, :2, :2] = -1.0  # a window of negative ties
    np.testing.assert_array_equal(gc.compile(f, "numpy").run({"x": x})["y"],
                                  gc.compile(g, "numpy").run({"x": x})["y"])
    grads = [gc.compile(gc.grad(h, wrt=["x"], of="loss"), "numpy").run({"x": x})["d_x"]
             for h in (f, g)]
    np.testing.assert_array_equal(grads[0], grads[1])
    assert np.count_nonzero(grads[0][0, :, :2, :2]) == 0  # tied windows at or below zero


def test_a_relu_with_other_users_stays_before_the_pool():
    g = _pooled_relu(shared=True)
    f = gc.Pipeline(["pool_before_relu", "eliminate_dead_code"])(g)
    assert _ops(f) == _ops(g)


def test_relu_gradient_masks_become_products_in_the_step():
    g = models.mlp((6, 5, 4), dtype="float64", seed=0)
    step = gc.training_step(g, optimizer=optim.SGD(0.1, momentum=0.9))
    assert "where" not in _ops(step) and "cast" in _ops(step)


def test_a_users_guarded_select_stays_a_select():
    """`where(relu(x) > 0, log(relu(x)), 0)` must stay 0 where log gives -inf: no product."""
    with gc.Graph("guarded") as g:
        x = g.input("x", (4,), "float32")
        r = dsl.apply("relu", [x])
        g.outputs["y"] = dsl.where(r > 0.0, dsl.log(r), 0.0).value
    f = gc.Pipeline(["mask_by_multiply", "eliminate_dead_code"])(g)
    assert "where" in _ops(f)
    out = gc.compile(f, "onnxruntime").run({"x": np.array([-1.0, 0.0, 1.0, 2.0], np.float32)})["y"]
    np.testing.assert_array_equal(out, [0.0, 0.0, 0.0, np.log(np.float32(2.0))])


@pytest.mark.parametrize("backend", ["numpy", "onnxruntime"])
def test_lenet_steps_are_bit_for_bit_those_without_the_rewrites(backend, monkeypatch):
    """Pool before ReLU and masks as products change the kernels, not one bit of the step."""
    g = models.lenet5(dtype="float32", seed=0)
    feeds = models.example_feeds(g, batch=4)
    new = gc.training_step(g, optimizer=optim.SGD(0.05, momentum=0.9))
    for name, spec in list(pl.PIPELINES.items()):
        kept = tuple(p for p in spec.passes if p not in ("pool_before_relu", "mask_by_multiply"))
        monkeypatch.setitem(pl.PIPELINES, name, dataclasses.replace(spec, passes=kept))
    old = gc.training_step(g, optimizer=optim.SGD(0.05, momentum=0.9))
    assert "where" not in _ops(new) and "where" in _ops(old)
    relu_inputs = [n.inputs[0].producer.op.name for n in new.nodes if n.op.name == "relu"]
    assert relu_inputs.count("max_pool2d") == 2
    a, b = gc.make_stepper(new, backend), gc.make_stepper(old, backend)
    for _ in range(3):
        assert a.step(feeds, 0.05)["loss"] == b.step(feeds, 0.05)["loss"]
    sa, sb = a.state_dict(), b.state_dict()
    for k in sb:
        np.testing.assert_array_equal(sa[k], sb[k], err_msg=k)


@pytest.mark.parametrize("shape,k,s,p", [((2, 3, 6, 6), 2, 2, 0),    # MaxUnpool
                                         ((2, 3, 6, 4), 2, 2, 1),    # MaxUnpool, padded
                                         ((2, 3, 7, 5), 2, 2, 0),    # scatter-add
                                         ((2, 3, 6, 6), 3, 2, 1)])   # scatter-add, overlapping
def test_max_pool_gradient_lowerings_give_ties_to_the_first_maximum(shape, k, s, p):
    """Every ONNX form of max_pool2d_grad routes g to the first maximum of a tied window."""
    rng = np.random.default_rng(0)
    x = rng.integers(-2, 3, size=shape).astype(np.float32)  # many ties, zeros included
    x[0, 0] = 0.0
    attrs = {"kernel_size": (k, k), "stride": (s, s), "padding": (p, p)}
    op = OPS["max_pool2d_grad"]
    oh, ow = ((d + 2 * p - k) // s + 1 for d in shape[2:])
    g = rng.normal(size=shape[:2] + (oh, ow)).astype(np.float32)
    with gc.Graph("pool_grad") as graph:
        xv, gv = graph.input("x", shape, "float32"), graph.input("g", g.shape, "float32")
        graph.outputs["y"] = dsl.apply("max_pool2d_grad", [xv, gv], attrs).value
    got = gc.compile(graph, "onnxruntime").run({"x": x, "g": g})["y"]
    np.testing.assert_array_equal(got, op.ref(x, g, **attrs))
