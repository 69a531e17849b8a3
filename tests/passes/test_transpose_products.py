"""transpose_products: (A B)^T -> B^T A^T for single-use 2-D products, as the step compiler uses it."""
import numpy as np

import graphc as gc
from graphc import optim
from graphc.passes.transpose_products import transpose_products


def _ops(g):
    return [n.op.name for n in g.nodes]


def _moved(g):
    """transpose_products, then eliminate_dead_code (the pass leaves the replaced products)."""
    return gc.Pipeline([transpose_products, "eliminate_dead_code"])(g)


def test_moves_transpose_below_single_use_product():
    rng = np.random.default_rng(0)
    with gc.Graph("t") as g:
        a = g.input("a", ("N", 3))
        b = g.input("b", ("N", 4))
        g.output(y=gc.transpose(gc.transpose(a) @ b))  # the shape of a Linear weight gradient
    out = _moved(g)
    assert _ops(out) == ["transpose", "matmul"]  # (a.T).T cancelled; one transpose left
    feeds = {"a": rng.normal(size=(5, 3)), "b": rng.normal(size=(5, 4))}
    feeds = {k: v.astype(np.float32) for k, v in feeds.items()}
    want = gc.compile(g)(**feeds)["y"]
    np.testing.assert_allclose(gc.compile(out)(**feeds)["y"], want, rtol=1e-6)


def test_leaves_shared_products_alone():
    with gc.Graph("t") as g:
        a = g.input("a", (2, 3))
        b = g.input("b", (3, 4))
        p = a @ b
        g.output(y=gc.transpose(p), z=p)
    assert _ops(_moved(g)) == _ops(g)


def test_step_graph_has_no_weight_gradient_transposes():
    # fuse=False: with fusion the products are gemms (tests/passes/test_fuse.py checks those)
    sg = gc.training_step(gc.models.mlp((6, 5, 3), seed=0), optimizer=optim.SGD(0.1), fuse=False)
    # every transpose left reads a weight (forward W.T) or a batch-major gradient, never a
    # weight-shaped product
    for n in sg.nodes:
        if n.op.name == "transpose":
            assert n.inputs[0].kind == "input" or n.inputs[0].type.shape[0] == "N", n
    grads = {n.output.name: n for n in sg.nodes if n.output.name in ("d_fc1.weight", "d_fc2.weight")}
    assert {n.op.name for n in grads.values()} == {"matmul"}
