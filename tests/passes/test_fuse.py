"""Fusion passes (fuse_losses, fuse_gemm) and the fused training step they give."""
import numpy as np
import pytest

import graphc as gc
from graphc import models, optim
from graphc.backends.onnx import to_onnx
from graphc.frontends import functional as F
from graphc.passes.fuse_gemm import fuse_gemm
from graphc.passes.fuse_losses import fuse_losses
from graphc.passes.pipeline import get_pass


def _ops(g):
    return [n.op.name for n in g.nodes]


def _fused(g, *passes):
    """`g` through `passes` and then eliminate_dead_code, as the named pipelines run them."""
    return gc.Pipeline([*passes, "eliminate_dead_code"])(g)


def _run(g, feeds, backend="numpy"):
    return gc.compile(g, backend).run(feeds)


def _close(a, b, dtype):
    tol = 1e-10 if dtype == "float64" else 2e-5
    for k in a:
        np.testing.assert_allclose(b[k], a[k], rtol=tol, atol=tol, err_msg=k)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cross_entropy_becomes_one_op_with_mean(dtype):
    g = models.mlp((6, 5, 4), dtype=dtype, seed=0)
    f = _fused(g, "fuse_losses")
    ce = [n for n in f.nodes if n.op.name == "softmax_cross_entropy"]
    assert len(ce) == 1 and ce[0].attrs["reduction"] == "mean"
    assert f.outputs["loss"] is ce[0].output
    assert not {"log", "exp", "max", "mean"} & set(_ops(f))  # the composite is gone
    assert ce[0].source and "models.py" in ce[0].source  # keeps the user's line
    feeds = models.example_feeds(g, batch=7)
    _close(_run(g, feeds), _run(f, feeds), dtype)
    _close(_run(g, feeds), _run(f, feeds, "onnxruntime"), "float32")


def test_label_smoothing_and_sum_fuse_but_soft_targets_do_not():
    with gc.Graph("ce") as g:
        z = g.input("z", ("N", 4), "float64")
        y = g.input("y", ("N",), "int64")
        q = g.input("q", ("N", 4), "float64")
        g.output(smooth=F.cross_entropy(z, y, label_smoothing=0.1), total=F.cross_entropy(z, y, "sum"),
                 rows=F.cross_entropy(z, y, "none"), soft=F.cross_entropy(z, q))
    f = _fused(g, "fuse_losses")
    red = {k: (v.producer.op.name, v.producer.attrs.get("reduction")) for k, v in f.outputs.items()}
    assert red["smooth"] == ("softmax_cross_entropy", "mean")
    assert red["total"] == ("softmax_cross_entropy", "sum")
    assert red["rows"] == ("softmax_cross_entropy", "none")
    # rows of a fed q need not sum to 1: -sum(q log_softmax z) is not logsumexp - sum(q z) then
    assert red["soft"][0] == "mean"
    rng = np.random.default_rng(0)
    qv = rng.uniform(0, 1, (5, 4))
    feeds = {"z": rng.normal(size=(5, 4)) * 3, "y": rng.integers(0, 4, 5), "q": qv}
    _close(_run(g, feeds), _run(f, feeds), "float64")


def test_cross_entropy_over_another_axis_is_left_alone():
    with gc.Graph("ce") as g:
        z = g.input("z", (3, "N"), "float32")
        y = g.input("y", ("N",), "int64")
        q = gc.cast(gc.expand_dims(y, 0) == gc.constant(np.arange(3)[:, None]), "float32")
        g.output(loss=gc.mean(-gc.sum(q * F.log_softmax(z, 0), 0)))
    assert "softmax_cross_entropy" not in _ops(_fused(g, "fuse_losses"))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_bce_with_logits_fuses_and_is_stable(dtype):
    g = models.logistic_regression(3, dtype=dtype, seed=0)
    f = _fused(g, "fuse_losses")
    assert "bce_with_logits" in _ops(f) and "log" not in _ops(f)
    feeds = models.example_feeds(g, batch=6)
    feeds["x"] = (feeds["x"] * 200).astype(dtype)  # logits far past where exp overflows
    want = _run(g, feeds)
    assert np.isfinite(want["loss"])
    _close(want, _run(f, feeds), dtype)
    got = _run(f, feeds, "onnxruntime")
    np.testing.assert_allclose(got["loss"], want["loss"], rtol=1e-5)


def test_linear_layers_become_gemms_without_transposes():
    g = _fused(models.mlp((6, 5, 4), seed=0), "fuse_gemm")
    gemms = [n for n in g.nodes if n.op.name == "gemm"]
    assert len(gemms) == 2 and "transpose" not in _ops(g) and "matmul" not in _ops(g)
    assert all(n.attrs == {"trans_b": True} and len(n.inputs) == 3 for n in gemms)


def test_gemm_rules_keep_shared_products_and_higher_ranks():
    with gc.Graph("g") as g:
        a = g.input("a", ("N", 3))
        w = g.input("w", (4, 3))
        b = g.input("b", (4,))
        x3 = g.input("x3", (2, "N", 3))
        p = a @ gc.transpose(w)
        g.output(y=p + b, p=p, z=x3 @ gc.transpose(w), t=gc.transpose(a) @ a)
    f = _fused(g, "fuse_gemm")
    y, p, z, t = (f.outputs[k].producer for k in ("y", "p", "z", "t"))
    assert y.op.name == "add"  # p has another user: folding b would compute the product twice
    assert p.op.name == "gemm" and p.attrs == {"trans_b": True}
    assert z.op.name == "matmul"  # 3-D: Gemm is 2-D only
    assert t.op.name == "gemm" and t.attrs == {"trans_a": True} and t.inputs == [f.value("a")] * 2
    rng = np.random.default_rng(0)
    feeds = {"a": rng.normal(size=(5, 3)), "w": rng.normal(size=(4, 3)), "b": rng.normal(size=4),
             "x3": rng.normal(size=(2, 5, 3))}
    feeds = {k: v.astype(np.float32) for k, v in feeds.items()}
    _close(_run(g, feeds), _run(f, feeds), "float32")
    _close(_run(g, feeds), _run(f, feeds, "onnxruntime"), "float32")


def test_passes_are_registered():
    assert get_pass("fuse_losses") is fuse_losses and get_pass("fuse_gemm") is fuse_gemm


def _step(fuse, dtype="float64", opt=None, sizes=(6, 5, 4)):
    g = models.mlp(sizes, dtype=dtype, seed=0)
    return gc.training_step(g, optimizer=opt or optim.SGD(0.1, momentum=0.9), fuse=fuse)


def test_fused_step_folds_momentum_into_the_weight_gradient_gemm():
    sg = _step(True)
    for i in (1, 2):
        buf = sg.outputs[f"new.fc{i}.weight.momentum_buffer"].producer
        assert buf.op.name == "gemm" and buf.attrs["trans_a"] and buf.attrs["beta"] == 0.9
        assert buf.inputs[2] is sg.value(f"fc{i}.weight.momentum_buffer")
    ops = set(_ops(sg))
    assert {"softmax", "softmax_cross_entropy", "gemm"} <= ops
    assert not {"transpose", "matmul", "safe_mul", "exp", "log"} & ops


@pytest.mark.parametrize("opt", [optim.SGD(0.1, momentum=0.9), optim.SGD(0.1, momentum=0.9, nesterov=True),
                                 optim.Adam(1e-2), optim.AdamW(1e-2, weight_decay=0.1)],
                         ids=["momentum", "nesterov", "adam", "adamw"])
def test_fused_step_matches_unfused_float64(opt):
    """The same trajectory to 1e-10 over several steps on the reference backend."""
    fused, plain = _step(True, opt=opt), _step(False, opt=opt)
    feeds = models.example_feeds(models.mlp((6, 5, 4), dtype="float64"), batch=8)
    a, b = gc.make_stepper(fused, "numpy"), gc.make_stepper(plain, "numpy")
    for _ in range(4):
        la, lb = a.step(feeds, 0.1)["loss"], b.step(feeds, 0.1)["loss"]
        np.testing.assert_allclose(la, lb, rtol=1e-10)
    sa, sb = a.state_dict(), b.state_dict()
    for k in sb:
        np.testing.assert_allclose(sa[k], sb[k], rtol=1e-10, atol=1e-12, err_msg=k)


def test_fused_step_on_onnxruntime_matches_reference():
    sg = _step(True, dtype="float32")
    feeds = models.example_feeds(models.mlp((6, 5, 4)), batch=8)
    a, b = gc.make_stepper(sg, "onnxruntime"), gc.make_stepper(sg, "numpy")
    for _ in range(3):
        np.testing.assert_allclose(a.step(feeds, 0.1)["loss"], b.step(feeds, 0.1)["loss"], rtol=1e-5)
    sa, sb = a.state_dict(), b.state_dict()
    for k in sb:
        np.testing.assert_allclose(sa[k], sb[k], rtol=1e-4, atol=1e-6, err_msg=k)


def test_fused_step_exports_fewer_standard_onnx_nodes():
    fused, plain = (to_onnx(_step(f, "float32", sizes=(784, 256, 256, 10))) for f in (True, False))
    import onnx
    onnx.checker.check_model(fused, full_check=True)
    assert {o.domain for o in fused.opset_import} == {""}  # standard ai.onnx only
    types = [n.op_type for n in fused.graph.node]
    assert "Transpose" not in types and types.count("Gemm") == 8  # 3 forward, 5 backward
    assert len(types) < len(plain.graph.node) - 25


def test_fused_loss_gradients_match_finite_differences():
    g = _fused(models.mlp((4, 3, 3), dtype="float64", seed=0), "fuse_losses", "fuse_gemm")
    assert "softmax_cross_entropy" in _ops(g) and "gemm" in _ops(g)
    gc.check_grads(g, models.example_feeds(g, batch=5), raise_on_fail=True)
    lg = _fused(models.logistic_regression(3, dtype="float64", seed=0), "fuse_losses")
    gc.check_grads(lg, models.example_feeds(lg, batch=5), raise_on_fail=True)


def test_fused_losses_differentiate_twice():
    """Hessian-vector products through the fused ops agree with those of the composites."""
    g = models.mlp((3, 4), dtype="float64", seed=0)
    h0, h1 = gc.hvp(g, vectors=None), gc.hvp(_fused(g, "fuse_losses", "fuse_gemm"), vectors=None)
    feeds = models.example_feeds(g, batch=5)
    rng = np.random.default_rng(1)
    for v in h0.role_targets(gc.Role.TANGENT).values():
        feeds[v] = rng.normal(size=h0.value(v).type.shape)
    _close(_run(h0, feeds), _run(h1, feeds), "float64")


def test_softmax_composite_becomes_the_primitive():
    from graphc.passes.fuse_softmax import fuse_softmax
    with gc.Graph("sm") as g:
        x = g.input("x", ("N", 3, 4), "float64")
        g.output(a=F.softmax(x, 1), b=F.softmax(x, -1), c=gc.exp(x) / gc.sum(gc.exp(x), (1, 2),
                                                                              keepdims=True))
    f = _fused(g, "fuse_softmax")
    assert [(n.op.name, n.attrs) for n in f.nodes if n.op.name == "softmax"] == [
        ("softmax", {"axis": 1}), ("softmax", {"axis": 2})]
    assert f.outputs["c"].producer.op.name == "div"  # no max shift, two axes: not this pattern
    feeds = {"x": np.random.default_rng(0).normal(size=(2, 3, 4)) * 5}
    _close(_run(g, feeds), _run(f, feeds), "float64")
    _close(_run(g, feeds), _run(f, feeds, "onnxruntime"), "float32")


def test_transformer_step_fuses_attention_softmax():
    g = models.transformer_encoder(dtype="float64", seed=0)
    fused, plain = (gc.training_step(g, optimizer=optim.Adam(1e-3), fuse=f) for f in (True, False))
    assert "softmax" in _ops(fused) and len(fused.nodes) < len(plain.nodes)
    feeds = models.example_feeds(g, batch=3)
    a, b = gc.make_stepper(fused, "numpy"), gc.make_stepper(plain, "numpy")
    for _ in range(2):
        np.testing.assert_allclose(a.step(feeds, 1e-3)["loss"], b.step(feeds, 1e-3)["loss"], rtol=1e-10)


def test_layer_norm_and_its_affine_part_become_one_op():
    from graphc.passes.fuse_layer_norm import fuse_layer_norm
    rng = np.random.default_rng(0)
    with gc.Graph("ln") as g:
        x = g.input("x", ("N", 3, 4), "float64")
        w = g.param("w", init=rng.normal(size=(3, 4)))
        b = g.param("b", init=rng.normal(size=(3, 4)))
        full = F.layer_norm(x, (3, 4), w, b, eps=1e-3)
        g.output(loss=gc.sum(full * gc.constant(rng.normal(size=(3, 4)))), full=full,
                 plain=F.layer_norm(x, 4), bn=F.layer_norm(gc.transpose(x, (0, 2, 1)), 3, eps=0.5))
    f = _fused(g, "fuse_layer_norm")
    lns = {k: v.producer for k, v in f.outputs.items() if k != "loss"}
    assert all(n.op.name == "layer_norm" for n in lns.values())
    assert (len(lns["full"].inputs), lns["full"].attrs) == (3, {"axis": 1, "eps": 1e-3})
    assert (len(lns["plain"].inputs), lns["plain"].attrs["axis"]) == (1, 2)
    assert lns["bn"].attrs["eps"] == 0.5
    assert "sqrt" not in _ops(f)
    feeds = {"x": rng.normal(size=(5, 3, 4)) * 3 + 1}
    _close(_run(g, feeds), _run(f, feeds), "float64")
    _close(_run(g, feeds), _run(f, feeds, "onnxruntime"), "float64")
    gc.check_grads(f, feeds, of="loss", raise_on_fail=True)


def test_batch_norm_statistics_are_not_taken_for_layer_norm():
    from graphc.passes.fuse_layer_norm import fuse_layer_norm
    with gc.Graph("bn") as g:
        x = g.input("x", ("N", 4))
        xc = x - gc.mean(x, 0, keepdims=True)
        g.output(y=xc / gc.sqrt(gc.mean(xc * xc, 0, keepdims=True) + 1e-5))
    assert "layer_norm" not in _ops(_fused(g, "fuse_layer_norm"))
