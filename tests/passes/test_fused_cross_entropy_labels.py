"""The fused softmax cross-entropy equals the composite for any targets, out-of-range labels
included: such an example contributes 0 to the summed loss and gets a zero gradient, and the mean
still divides by the batch size. Same graph, same answer, fused or not, on every backend."""
from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc import optim

C = 4
BACKENDS = ["numpy", "onnxruntime", pytest.param("tvm", marks=pytest.mark.slow)]


def _loss_graph(label_smoothing=0.0, reduction="mean"):
    """A linear classifier; the labels are computed in the graph (y_in - 1), so no feed check
    stops an out-of-range label before it reaches the loss."""
    rng = np.random.default_rng(0)
    with gc.Graph("ce") as g:
        x = g.input("x", ("N", 3), "float64")
        y_in = g.input("y_in", ("N",), "int64")
        w = g.param("w", init=rng.standard_normal((C, 3)))
        b = g.param("b", init=rng.standard_normal(C))
        logits = gc.matmul(x, gc.transpose(w, (1, 0))) + b
        g.output(loss=gc.cross_entropy(logits, y_in - 1, reduction=reduction,
                                       label_smoothing=label_smoothing))
    return g


def _batch():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 3))
    y = np.array([0, C, -1, 2, C + 3])  # three labels outside [0, C)
    return x, y + 1


def _one_step(graph, fuse, backend, tmp_path, monkeypatch):
    """(loss, gradient of every parameter) from one SGD(lr=1) step of `graph`'s training step."""
    if backend == "tvm":
        pytest.importorskip("tvm")
        monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    sg = gc.training_step(graph, optimizer=optim.SGD(1.0), fuse=fuse)
    fused = any(n.op.name == "softmax_cross_entropy" for n in sg.nodes)
    assert fused == fuse, f"fuse={fuse} but the step {'has' if fused else 'has no'} fused loss"
    st = gc.make_stepper(sg, backend)
    before = st.params()
    x, y = _batch()
    out = st.step({"x": x, "y_in": y}, 1.0)
    after = st.params()
    return float(out["loss"]), {k: before[k] - after[k] for k in sg.spec.params}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_fused_step_agrees_with_unfused_for_labels_out_of_range(backend, smoothing, tmp_path,
                                                                monkeypatch):
    """The symptom: the fused step trained on logsumexp(z) with gradient softmax(z) for a label
    outside [0, C), while the composite gives 0 and a zero gradient."""
    g = _loss_graph(smoothing)
    loss_f, grads_f = _one_step(g, True, backend, tmp_path, monkeypatch)
    loss_u, grads_u = _one_step(g, False, backend, tmp_path, monkeypatch)
    assert loss_f == pytest.approx(loss_u, rel=1e-9)
    for k in grads_u:
        np.testing.assert_allclose(grads_f[k], grads_u[k], rtol=1e-9, atol=1e-12, err_msg=k)


def test_out_of_range_rows_contribute_nothing_and_the_mean_divides_by_n():
    g = _loss_graph()
    x, y = _batch()
    loss, _ = _one_step(g, True, "numpy", None, None)
    keep = (y - 1 >= 0) & (y - 1 < C)
    w, b = (p.data for p in g.params)
    z = x @ w.T + b
    lse = np.log(np.exp(z - z.max(1, keepdims=True)).sum(1)) + z.max(1)
    rows = np.where(keep, lse - z[np.arange(5), np.clip(y - 1, 0, C - 1)], 0.0)
    assert loss == pytest.approx(rows.sum() / 5, rel=1e-12)


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_fused_op_gradient_for_a_zero_target_row_is_zero(reduction):
    """softmax_cross_entropy(z, q) with a zero row of q: 0 loss there and a zero gradient."""
    z = np.array([[0.5, -1.0, 2.0], [1.0, 0.0, -3.0]])
    q = np.array([[0.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    with gc.Graph("sce") as g:
        zi = g.param("z", init=z)
        qi = g.input("q", (2, 3), "float64")
        y = gc.apply("softmax_cross_entropy", [zi, qi], {"reduction": reduction})
        g.output(loss=gc.sum(y))
    out = gc.compile(gc.grad(g, wrt=["z"]), "numpy")(q=q)
    assert np.all(out["d_z"][0] == 0.0)
    p = np.exp(z[1]) / np.exp(z[1]).sum()
    scale = 0.5 if reduction == "mean" else 1.0
    np.testing.assert_allclose(out["d_z"][1], scale * (p - q[1]), rtol=1e-12)
