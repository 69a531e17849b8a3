"""The autodiff pass: API, fan-out and broadcasting, stop_gradient, several outputs, higher order,
provenance and names, coverage errors, NaN-free gradients of `where`, and gc.check_grads."""
from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc.frontends.dsl import Tensor
from graphc.ops import OPS


def run(graph, **feeds):
    return gc.compile(graph, "numpy")(**feeds)


def f64(*shape, seed=0, lo=-1.0, hi=1.0):
    return np.random.default_rng(seed).uniform(lo, hi, size=shape)


def _mlp():
    with gc.Graph("mlp") as g:
        x = g.input("x", ("N", 4), "float64")
        y = g.input("y", ("N",), "int64")
        w1 = g.param("fc1.weight", init=f64(5, 4, seed=1))
        b1 = g.param("fc1.bias", init=f64(5, seed=2))
        w2 = g.param("fc2.weight", init=f64(3, 5, seed=3))
        h = gc.relu(gc.linear(x, w1, b1))
        logits = gc.linear(h, w2)
        g.output(loss=gc.cross_entropy(logits, y), logits=logits)
    feeds = {"x": f64(6, 4, seed=4), "y": np.array([0, 1, 2, 1, 0, 2])}
    return g, feeds


# ---- the API ----------------------------------------------------------------------------------------

def test_grad_outputs_are_the_originals_then_one_gradient_per_wrt_in_order():
    g, feeds = _mlp()
    dg = gc.grad(g, wrt=["fc2.weight", "fc1.bias"])
    assert list(dg.outputs) == ["loss", "logits", "d_fc2.weight", "d_fc1.bias"]
    assert [v.name for v in dg.inputs] == ["x", "y"]
    assert dg.outputs["d_fc2.weight"].type == g.value("fc2.weight").type
    out = run(dg, **feeds)
    ref = run(g, **feeds)
    np.testing.assert_allclose(out["loss"], ref["loss"])
    rep = gc.check_grads(g, feeds, wrt=["fc2.weight", "fc1.bias"])
    assert rep.ok, str(rep)
    np.testing.assert_allclose(out["d_fc1.bias"], rep["fc1.bias"].numeric, rtol=1e-6)


def test_wrt_accepts_values_tensors_names_and_defaults_to_all_params():
    g, _ = _mlp()
    by_default = gc.grad(g)
    assert list(by_default.outputs)[2:] == ["d_fc1.weight", "d_fc1.bias", "d_fc2.weight"]
    w = g.value("fc1.weight")
    for spec in (w, Tensor(w), "fc1.weight"):
        assert list(gc.grad(g, wrt=spec).outputs)[2:] == ["d_fc1.weight"]
    # an input is differentiable too
    assert list(gc.grad(g, wrt="x").outputs)[2:] == ["d_x"]


def test_gradient_of_an_input_against_the_analytic_form():
    with gc.Graph("quad") as g:
        x = g.input("x", (3,), "float64")
        a = g.param("a", init=np.array([[2.0, 1.0, 0.0], [1.0, 3.0, 1.0], [0.0, 1.0, 4.0]]))
        g.output(f=0.5 * gc.sum(x * gc.matmul(a, x)) + gc.sum(gc.exp(x)))
    x0 = np.array([0.3, -0.2, 0.5])
    out = run(gc.grad(g, wrt="x"), x=x0)
    a0 = g.value("a").data
    np.testing.assert_allclose(out["d_x"], a0 @ x0 + np.exp(x0), rtol=1e-12)


def test_fan_out_sums_and_broadcasting_is_undone():
    with gc.Graph("fan") as g:
        x = g.input("x", (3, 1), "float64")
        b = g.param("b", init=np.array([1.0, 2.0, 3.0, 4.0]))
        y = x * b + x + gc.tanh(x)  # x fans out three times, broadcast against b
        g.output(loss=gc.sum(y * y))
    x0 = f64(3, 1, seed=5)
    out = run(gc.grad(g, wrt=["x", "b"]), x=x0)
    b0 = g.value("b").data
    yv = x0 * b0 + x0 + np.tanh(x0)
    np.testing.assert_allclose(out["d_x"], np.sum(2 * yv * (b0 + 1 + 1 - np.tanh(x0) ** 2), axis=1,
                                                  keepdims=True), rtol=1e-12)
    np.testing.assert_allclose(out["d_b"], np.sum(2 * yv * x0, axis=0), rtol=1e-12)


def test_stop_gradient_blocks_the_gradient():
    with gc.Graph("sg") as g:
        x = g.input("x", (4,), "float64")
        g.output(loss=gc.sum(gc.stop_gradient(x) * x))
    x0 = f64(4, seed=6)
    np.testing.assert_allclose(run(gc.grad(g, wrt="x"), x=x0)["d_x"], x0)


def test_a_loss_that_does_not_depend_on_wrt_has_a_zero_gradient():
    with gc.Graph("indep") as g:
        x = g.input("x", ("N", 2), "float64")
        g.param("unused", init=np.ones((2, 3)))
        g.output(loss=gc.sum(x * x))
    out = run(gc.grad(g, wrt=["unused", "x"]), x=np.ones((5, 2)))
    np.testing.assert_array_equal(out["d_unused"], np.zeros((2, 3)))
    np.testing.assert_array_equal(out["d_x"], 2 * np.ones((5, 2)))


def test_integer_values_cut_the_path():
    with gc.Graph("cut") as g:
        x = g.input("x", (3,), "float64")
        k = gc.cast(gc.cast(x, "int64"), "float64")  # rounding: derivative zero almost everywhere
        g.output(loss=gc.sum(k * x))
    x0 = np.array([1.5, -2.5, 3.25])
    np.testing.assert_allclose(run(gc.grad(g, wrt="x"), x=x0)["d_x"], np.trunc(x0))


def test_vjp_pulls_back_several_outputs_with_their_cotangents():
    with gc.Graph("two") as g:
        x = g.input("x", ("N", 3), "float64")
        w = g.param("w", init=f64(3, 2, seed=7))
        g.output(a=gc.matmul(x, w), b=gc.tanh(x))
    x0, ca, cb = f64(4, 3, seed=8), f64(4, 2, seed=9), f64(4, 3, seed=10)
    v = gc.vjp(g, wrt=["x", "w"], cotangents=["a", "b"])
    names = v.role_targets(gc.Role.COTANGENT)
    assert names == {"a": "d_a", "b": "d_b"}
    out = run(v, x=x0, d_a=ca, d_b=cb)
    w0 = g.value("w").data
    np.testing.assert_allclose(out["d_x"], ca @ w0.T + cb * (1 - np.tanh(x0) ** 2), rtol=1e-12)
    np.testing.assert_allclose(out["d_w"], x0.T @ ca, rtol=1e-12)
    # a cotangent given as an array becomes a constant
    const = gc.vjp(g, wrt="w", cotangents={"a": np.ones(2)})  # broadcast to (N, 2)
    with pytest.raises(gc.FeedError):
        run(const, x=x0, d_a=ca)
    np.testing.assert_allclose(run(const, x=x0)["d_w"], x0.T @ np.ones((4, 2)), rtol=1e-12)


# ---- higher order -----------------------------------------------------------------------------------

def test_grad_of_a_gradient_graph():
    with gc.Graph("cube") as g:
        x = g.input("x", (4,), "float64")
        g.output(f=gc.sum(x * x * x))
    first = gc.grad(g, wrt="x")
    second = gc.vjp(first, wrt="x", cotangents={"d_x": None})
    x0, v0 = f64(4, seed=11), f64(4, seed=12)
    out = run(second, x=x0, **{second.role_targets(gc.Role.COTANGENT)["d_x"]: v0})
    np.testing.assert_allclose(out["d_x"], 3 * x0 ** 2, rtol=1e-12)  # the first gradient
    np.testing.assert_allclose(out["d2_x"], 6 * x0 * v0, rtol=1e-12)  # d/dx <3x^2, v>


def test_hvp_of_a_quadratic_is_the_matrix_times_the_vector():
    a0 = np.array([[3.0, 1.0], [0.5, 2.0]])
    with gc.Graph("q") as g:
        x = g.param("x", init=np.array([0.2, -0.7]))
        g.output(f=0.5 * gc.sum(x * gc.matmul(gc.constant(a0), x)))
    h = gc.hvp(g, wrt="x")
    assert list(h.outputs) == ["f", "d_x", "hvp_x"]
    v0 = np.array([1.0, -2.0])
    out = run(h, **{h.role_targets(gc.Role.TANGENT)["x"]: v0})
    np.testing.assert_allclose(out["hvp_x"], 0.5 * (a0 + a0.T) @ v0, rtol=1e-12)


def test_second_order_is_exact_where_a_cotangent_is_coincidentally_zero():
    # d/dx (w * log x) = w / x is 0 at w = 0, but its derivative in w (1/x) is not: the NaN
    # guard of log's rule must not zero that second derivative
    with gc.Graph("coincide") as g:
        w = g.param("w", init=np.array([0.0, 1.0]))
        x = g.param("x", init=np.array([2.0, 4.0]))
        g.output(f=gc.sum(w * gc.log(x)))
    h = gc.hvp(g, wrt=["w", "x"])
    vw, vx = np.array([1.0, 0.5]), np.array([0.3, -1.0])
    out = run(h, v_w=vw, v_x=vx)
    wv, xv = np.array([0.0, 1.0]), np.array([2.0, 4.0])
    np.testing.assert_allclose(out["hvp_w"], vx / xv, rtol=1e-12)
    np.testing.assert_allclose(out["hvp_x"], vw / xv - wv * vx / xv ** 2, rtol=1e-12)


# ---- provenance and names ---------------------------------------------------------------------------

def test_backward_nodes_record_the_forward_op_and_source_line():
    g, _ = _mlp()
    dg = gc.grad(g, simplify=False)
    matmul_lines = {n.source for n in g.nodes if n.op.name == "matmul"}
    assert len(matmul_lines) == 2 and all("test_autodiff.py" in s for s in matmul_lines)
    new = dg.nodes[len(g.nodes):]
    assert new and all(n.origin and n.origin.startswith("grad") for n in new)
    mm = [n for n in new if n.origin.startswith("grad of matmul")]
    assert {n.origin for n in mm} == {f"grad of matmul @ {s}" for s in matmul_lines}
    assert all(n.origin == f"grad of matmul @ {n.source}" for n in mm)
    text = str(dg)
    for s in matmul_lines:
        assert f"# grad of matmul @ {s}" in text


def test_backward_values_are_named_after_forward_values():
    g, _ = _mlp()
    dg = gc.grad(g, simplify=False)
    names = {v.name for v in dg.values()}
    assert {"d_fc1.weight", "d_fc1.bias", "d_fc2.weight"} <= names
    assert not any("tangent" in n for n in names)
    made = [n.output.name for n in dg.nodes[len(g.nodes):]]
    assert all(n.startswith("d_") for n in made), made


def test_simplify_runs_by_default_and_shrinks_the_graph():
    g, feeds = _mlp()
    raw, simple = gc.grad(g, simplify=False), gc.grad(g)
    assert len(simple.nodes) < len(raw.nodes)
    a, b = run(raw, **feeds), run(simple, **feeds)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-12)


# ---- coverage before failure --------------------------------------------------------------------------

def test_check_differentiable_lists_every_op_without_a_rule(monkeypatch):
    with gc.Graph("norule") as g:
        x = g.input("x", (3,), "float64")
        a = gc.tanh(x)
        b = gc.exp(a)
        c = gc.tanh(b) + gc.argmax(x).astype("float64")
        g.output(loss=gc.sum(c))
    assert gc.check_differentiable(g, wrt="x") == []
    monkeypatch.setattr(OPS["tanh"], "vjp", None)
    monkeypatch.setattr(OPS["exp"], "vjp", None)
    missing = gc.check_differentiable(g, wrt="x")
    assert [n.op.name for n in missing] == ["tanh", "exp", "tanh"]
    assert all("test_autodiff.py" in n.source for n in missing)
    with pytest.raises(gc.AutodiffError) as err:
        gc.grad(g, wrt="x")
    msg = str(err.value)
    assert "3 op(s)" in msg
    for n in missing:
        assert f"{n.source}: {n.op.name} (%{n.output.name})" in msg
    assert "argmax" not in msg.split("in context")[0]  # declared non-differentiable: not listed


# ---- bad input ------------------------------------------------------------------------------------------

def test_wrt_naming_a_value_not_in_the_graph_is_a_clear_error():
    g, _ = _mlp()
    with pytest.raises(gc.AutodiffError, match=r"no value named 'fc1.weigth'.*did you mean fc1.weight"):
        gc.grad(g, wrt=["fc1.weigth"])
    with gc.Graph("other") as other:
        stranger = other.param("stranger", init=np.ones(2))
    with pytest.raises(gc.AutodiffError, match="no value named 'stranger'"):
        gc.grad(g, wrt=stranger)


def test_a_non_scalar_loss_without_cotangents_is_a_clear_error():
    g, _ = _mlp()
    with pytest.raises(gc.AutodiffError, match=r"output 'logits' .* not a scalar.*gc\.vjp"):
        gc.grad(g, of="logits")
    with gc.Graph("vec") as v:
        x = v.input("x", ("N",), "float64")
        v.output(y=x * 2.0)
    with pytest.raises(gc.AutodiffError, match=r"f64\[N\], not a scalar"):
        gc.grad(v, wrt="x")


def test_gradient_through_an_integer_input_is_a_clear_error():
    g, _ = _mlp()
    with pytest.raises(gc.AutodiffError, match=r"%y \(i64\[N\], a graph input\).*only for float"):
        gc.grad(g, wrt=["fc1.weight", "y"])
    with gc.Graph("ints") as h:
        x = h.input("x", (3,), "float64")
        h.output(k=gc.argmax(x), s=gc.sum(x))
    with pytest.raises(gc.AutodiffError, match=r"output 'k' is i64\[\]; only float outputs"):
        gc.vjp(h, wrt="x", cotangents=["k"])
    with pytest.raises(gc.AutodiffError, match=r"output 'k' .* not a float scalar"):
        gc.grad(h, wrt="x")


# ---- no NaN from the branch not taken ---------------------------------------------------------------------

def _grad_at(build, x0, backend="numpy"):
    with gc.Graph("nan") as g:
        x = g.input("x", x0.shape, "float64")
        g.output(loss=gc.sum(build(x)))
    return gc.compile(gc.grad(g, wrt="x"), backend)(x=x0)["d_x"]


@pytest.mark.parametrize("backend", ["numpy", "onnxruntime"])
def test_where_of_log_has_zero_gradient_at_zero(backend):
    x0 = np.array([0.0, -1.0, 2.0])
    d = _grad_at(lambda x: gc.where(x > 0, gc.log(x), 0.0), x0, backend)
    np.testing.assert_array_equal(d, [0.0, 0.0, 0.5])


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
@pytest.mark.parametrize("build,x0,want", [
    (lambda x: gc.where(x > 0, gc.sqrt(x), 0.0), [0.0, 4.0], [0.0, 0.25]),
    (lambda x: gc.where(x != 0, 1.0 / x, 0.0), [0.0, 2.0], [0.0, -0.25]),
    (lambda x: gc.where(x < 100, gc.exp(x), 0.0), [1000.0, 0.0], [0.0, 1.0]),
    (lambda x: gc.where(x > 0, x ** 0.5, 0.0), [0.0, 4.0], [0.0, 0.25]),
    (lambda x: gc.where(x > 20, x, gc.log(1 + gc.exp(x))), [1000.0, 0.0], [1.0, 0.5]),  # softplus
], ids=["sqrt", "reciprocal", "exp_overflow", "pow", "softplus"])
def test_untaken_branches_never_leak_nan(build, x0, want):
    d = _grad_at(build, np.array(x0))
    np.testing.assert_allclose(d, want, rtol=1e-12)


def test_cross_entropy_gradient_is_finite_at_probability_zero():
    with gc.Graph("ce") as g:
        z = g.input("z", (2, 3), "float64")
        y = g.input("y", (2,), "int64")
        g.output(loss=gc.cross_entropy(z, y))
    z0 = np.array([[0.0, -1e4, 1.0], [-1e4, 2.0, 0.0]])  # exp underflows: probability exactly 0
    for labels in (np.array([0, 1]), np.array([1, 0])):  # the label on a probability-0 class too
        out = run(gc.grad(g, wrt="z"), z=z0, y=labels)
        p = np.exp(z0 - z0.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        assert np.isfinite(out["loss"]) and np.all(np.isfinite(out["d_z"]))
        np.testing.assert_allclose(out["d_z"], (p - np.eye(3)[labels]) / 2, atol=1e-15)


def test_binary_cross_entropy_with_logits_has_the_exact_gradient_at_zero_and_far_out():
    with gc.Graph("bce") as g:
        z = g.input("z", (4,), "float64")
        t = g.input("t", (4,), "float64")
        g.output(loss=gc.binary_cross_entropy_with_logits(z, t, reduction="sum"))
    z0, t0 = np.array([0.0, 0.0, 800.0, -800.0]), np.array([1.0, 0.0, 0.0, 1.0])
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # not even in the untaken branch
        out = run(gc.grad(g, wrt="z"), z=z0, t=t0)
    np.testing.assert_allclose(out["loss"], 2 * np.log(2) + 1600)
    np.testing.assert_allclose(out["d_z"], [-0.5, 0.5, 1.0, -1.0])  # sigmoid(z) - t


def test_norm_gradient_is_zero_not_nan_at_zero():
    with gc.Graph("norm") as g:
        x = g.input("x", (2, 3), "float64")
        g.output(loss=gc.sum(gc.norm(x, axis=1)))
    x0 = np.array([[0.0, 0.0, 0.0], [3.0, 0.0, 4.0]])
    for backend in ("numpy", "onnxruntime"):
        d = gc.compile(gc.grad(g, wrt="x"), backend)(x=x0)["d_x"]
        np.testing.assert_allclose(d, [[0, 0, 0], [0.6, 0, 0.8]], atol=1e-15)


# ---- check_grads ------------------------------------------------------------------------------------------

def test_check_grads_reports_per_parameter_and_raises_with_the_table(monkeypatch):
    g, feeds = _mlp()
    rep = gc.check_grads(g, feeds)
    assert rep.ok and [r.name for r in rep.rows] == ["fc1.weight", "fc1.bias", "fc2.weight"]
    assert rep.max_rel_error < 1e-7
    table = str(rep)
    assert "fc1.weight" in table and "(5, 4)" in table and "20/20" in table and "rel error" in table
    sampled = gc.check_grads(g, feeds, samples=3)
    assert sampled["fc1.weight"].checked == 3 and sampled.ok
    # a wrong rule: relu passing every gradient through
    monkeypatch.setattr(OPS["relu"], "vjp", lambda gy, x, *, y: (gy,))
    bad = gc.check_grads(g, feeds)
    assert not bad.ok and not bad["fc1.weight"].ok and bad["fc2.weight"].ok
    with pytest.raises(gc.GradCheckError) as err:
        gc.check_grads(g, feeds, raise_on_fail=True)
    assert "FAIL" in str(err.value) and "fc1.weight" in str(err.value)


# ---- the Newton example -----------------------------------------------------------------------------------

def test_newton_logistic_example_needs_fewer_iterations_than_gradient_descent():
    import importlib.util
    import pathlib
    path = pathlib.Path(__file__).resolve().parents[2] / "examples" / "newton_logistic.py"
    spec = importlib.util.spec_from_file_location("newton_logistic", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    res = mod.run(tol=1e-4, n=100, l2=1e-2, gd_max_iter=3000, backend="numpy", verbose=False)
    assert res["newton_grad_norm"] < 1e-4
    assert res["newton_iterations"] < 15
    assert res["newton_iterations"] < res["gd_iterations"] / 10
    if res["gd_grad_norm"] < 1e-4:  # both converged: to the same minimum
        assert abs(res["newton_loss"] - res["gd_loss"]) < 1e-5


def test_hvp_through_convolution_pooling_and_gather():
    rng = np.random.default_rng(13)
    with gc.Graph("cnn") as g:
        x = g.input("x", ("N", 2, 7, 7), "float64")
        w = g.param("w", init=rng.normal(size=(3, 2, 3, 3)) * 0.5)
        e = g.param("emb", init=rng.normal(size=(5, 3)))
        h = gc.tanh(gc.conv2d(x, w, stride=1, padding=1))
        h = gc.max_pool2d(h, 3, stride=2, padding=1) + gc.avg_pool2d(h, 2, stride=2, padding=1)
        feat = gc.mean(h, axis=(2, 3))                                  # (N, 3)
        rows = gc.take(e, gc.constant(np.array([4, 0, 4, -1])), 0)     # repeated and negative
        g.output(loss=gc.sum(gc.matmul(feat, gc.transpose(rows)) ** 2))
    x0 = rng.normal(size=(2, 2, 7, 7))
    vs = {"w": rng.normal(size=(3, 2, 3, 3)), "emb": rng.normal(size=(5, 3))}
    h = gc.hvp(g, wrt=["w", "emb"])
    out = run(h, x=x0, v_w=vs["w"], v_emb=vs["emb"])
    d = gc.compile(gc.grad(g, wrt=["w", "emb"]))
    eps = 1e-5

    def grads(sign):
        r = d(x=x0, **{k: g.value(k).data + sign * eps * v for k, v in vs.items()})
        return np.concatenate([r["d_w"].ravel(), r["d_emb"].ravel()])

    num = (grads(1) - grads(-1)) / (2 * eps)
    sym = np.concatenate([out["hvp_w"].ravel(), out["hvp_emb"].ravel()])
    assert np.linalg.norm(num - sym) / (np.linalg.norm(num) + np.linalg.norm(sym)) < 1e-6
    assert gc.check_grads(g, {"x": x0}).ok
