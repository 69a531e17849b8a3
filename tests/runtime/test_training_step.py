"""gc.training_step: one graph per step; every optimizer on a real MLP equals numpy's formulas."""
import numpy as np
import pytest

import graphc as gc
from graphc import optim

from optim.reference import CASES, REFS  # tests/ is on sys.path (rootdir of the test packages)

SIZES = (6, 5, 4, 3)


def mlp_grads(ps, x, y):
    """Loss and gradients of the ReLU MLP with mean cross-entropy, by hand in numpy."""
    w1, b1, w2, b2, w3, b3 = (ps[k] for k in ("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias",
                                              "fc3.weight", "fc3.bias"))
    a1 = x @ w1.T + b1
    h1 = np.maximum(a1, 0)
    a2 = h1 @ w2.T + b2
    h2 = np.maximum(a2, 0)
    z = h2 @ w3.T + b3
    zs = z - z.max(1, keepdims=True)
    p = np.exp(zs) / np.exp(zs).sum(1, keepdims=True)
    n = len(y)
    onehot = np.eye(z.shape[1])[y]
    loss = -(onehot * np.log(p)).sum(1).mean()
    dz = (p - onehot) / n
    dh2 = (dz @ w3) * (a2 > 0)
    dh1 = (dh2 @ w2) * (a1 > 0)
    return loss, {"fc1.weight": dh1.T @ x, "fc1.bias": dh1.sum(0), "fc2.weight": dh2.T @ h1,
                  "fc2.bias": dh2.sum(0), "fc3.weight": dz.T @ h2, "fc3.bias": dz.sum(0)}


def data(n=16, seed=1):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, SIZES[0])), rng.integers(0, SIZES[-1], n)


@pytest.fixture(scope="module")
def step_graphs():
    cache = {}

    def get(i):
        if i not in cache:
            name, kw = CASES[i]
            g = gc.models.mlp(SIZES, dtype="float64", seed=0)
            cache[i] = (g, gc.training_step(g, optimizer=optim.OPTIMIZERS[name](**kw)))
        return cache[i]
    return get


@pytest.mark.parametrize("backend", ["numpy", "onnxruntime"])
@pytest.mark.parametrize("case", range(len(CASES)), ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_20_steps_on_mlp_match_numpy(step_graphs, case, backend):
    name, kw = CASES[case]
    g, sg = step_graphs(case)
    stepper = gc.make_stepper(sg, backend)
    ref = REFS[name](**kw)
    want = {p.name: np.array(p.data, copy=True) for p in g.params}
    x, y = data()
    for k in range(20):
        xb, yb = x[(k % 2) * 8:(k % 2) * 8 + 8], y[(k % 2) * 8:(k % 2) * 8 + 8]
        loss, grads = mlp_grads(want, xb, yb)
        out = stepper.step({"x": xb, "y": yb}, kw["lr"])
        assert float(out["loss"]) == pytest.approx(loss, rel=1e-10, abs=1e-12)
        ref.step(want, grads, kw["lr"])
    got = stepper.params()
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-10, atol=1e-10, err_msg=k)


def test_spec_names_roles():
    g = gc.models.mlp(SIZES, seed=0)
    sg = gc.training_step(g, ["fc3.weight", "fc3.bias"], optim.SGD(0.1, momentum=0.9))
    spec = sg.spec
    assert spec.batch == ["x", "y"] and spec.params == ["fc3.weight", "fc3.bias"]
    assert spec.state == ["fc3.weight.momentum_buffer", "fc3.bias.momentum_buffer"]
    assert (spec.step, spec.lr, spec.rng_seed, spec.metrics) == ("step", "lr", None, ["loss"])
    assert spec.updates["new.fc3.weight"] == "fc3.weight"
    assert spec.updates["new.fc3.bias.momentum_buffer"] == "fc3.bias.momentum_buffer"
    names = [v.name for v in sg.inputs]
    for n in spec.batch + spec.carried + ["step", "lr"]:
        assert n in names
    # untrained parameters stay constants of the step graph
    assert {p.name for p in sg.params} == {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}
    assert np.array_equal(spec.initial["fc3.weight"], g.value("fc3.weight").data)
    assert not spec.initial["fc3.weight.momentum_buffer"].any()


def test_partial_batches_and_metrics_on_onnxruntime():
    g = gc.models.mlp(SIZES, seed=0)
    tr = gc.Trainer(g, optimizer=optim.SGD(0.1), progress=False)
    assert tr.spec.metrics == ["loss", "accuracy"]
    x, y = data(10)
    out_a = tr.stepper.step({"x": x[:7].astype(np.float32), "y": y[:7]}, 0.1)
    out_b = tr.stepper.step({"x": x[7:].astype(np.float32), "y": y[7:]}, 0.1)
    assert np.isfinite(out_a["loss"]) and out_b["accuracy"] in (0.0, 1 / 3, 2 / 3, 1.0)


def test_clip_grad_norm_in_step_graph():
    g = gc.models.mlp(SIZES, dtype="float64", seed=0)
    sg = gc.training_step(g, optimizer=optim.SGD(0.1), clip_grad_norm=0.05)
    assert sg.spec.metrics == ["loss", "grad_norm"]
    st = gc.make_stepper(sg, "numpy")
    x, y = data(8)
    want = {p.name: np.array(p.data) for p in g.params}
    _, grads = mlp_grads(want, x, y)
    total = np.sqrt(sum((v ** 2).sum() for v in grads.values()))
    out = st.step({"x": x, "y": y}, 0.1)
    assert float(out["grad_norm"]) == pytest.approx(total, rel=1e-10)
    coef = min(1.0, 0.05 / (total + 1e-6))
    for k, v in st.params().items():
        np.testing.assert_allclose(v, want[k] - 0.1 * coef * grads[k], rtol=1e-10, atol=1e-12)


def _dropout_graph():
    with gc.Graph("drop") as g:
        x = g.input("x", ("N", 6), "float64")
        w = g.param("w", init=np.random.default_rng(0).normal(size=(6, 1)))
        h = gc.dropout(x, 0.5) @ w
        g.output(loss=gc.mean(h * h))
    return g


def test_dropout_masks_replay_from_seed_and_step():
    sg = gc.training_step(_dropout_graph(), optimizer=optim.SGD(0.01))
    spec = sg.spec
    assert spec.rng_seed == "rng_seed" and "rng_step" not in [v.name for v in sg.inputs]
    x = np.random.default_rng(2).normal(size=(8, 6))
    runs = []
    for backend, seed in (("numpy", 3), ("onnxruntime", 3), ("onnxruntime", 4)):
        st = gc.make_stepper(sg, backend, seed=seed)
        runs.append([float(st.step({"x": x}, 0.01)["loss"]) for _ in range(4)])
    np.testing.assert_allclose(runs[0], runs[1], rtol=1e-12)
    assert len(set(runs[0])) == 4  # a new mask each step
    assert runs[2] != runs[1]  # another seed, other masks
    # the exported step, run by plain onnxruntime, draws the same masks from (rng_seed, step)
    import onnxruntime as ort
    sess = ort.InferenceSession(gc.export_onnx(sg).SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    carried, losses = dict(spec.initial), []
    for k in range(4):
        res = dict(zip(names, sess.run(None, {"x": x, **carried, "step": np.array(k, np.int64),
                                              "lr": np.array(0.01), "rng_seed": np.array(3, np.int64)})))
        carried = {src: res[o] for o, src in spec.updates.items()}
        losses.append(float(res["loss"]))
    np.testing.assert_allclose(losses, runs[0], rtol=1e-12)


def test_step_graph_exports_to_a_standard_onnx_model(tmp_path):
    import onnxruntime as ort
    g = gc.models.logistic_regression(5, seed=0)
    sg = gc.training_step(g, optimizer=optim.Adam(0.05))
    path = tmp_path / "step.onnx"
    gc.export_onnx(sg, path)
    spec = sg.spec
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 5)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.float32)
    carried = dict(spec.initial)
    outs = [o.name for o in sess.get_outputs()]
    ref = gc.make_stepper(sg, "numpy")
    for step in range(5):
        res = dict(zip(outs, sess.run(None, {"x": x, "y": y, **carried, "step": np.array(step, np.int64),
                                             "lr": np.array(0.05, np.float32)})))
        carried = {src: res[o] for o, src in spec.updates.items()}
        want = ref.step({"x": x, "y": y}, 0.05)
        assert float(res["loss"]) == pytest.approx(float(want["loss"]), rel=1e-5)
    assert float(res["loss"]) < 0.69


def test_errors_name_the_problem():
    g = gc.models.mlp(SIZES, seed=0)
    with pytest.raises(gc.GraphBuildError, match="no parameter named 'fc9.weight'"):
        gc.training_step(g, ["fc9.weight"], optim.SGD(0.1))
    with pytest.raises(gc.GraphBuildError, match="must be a float scalar"):
        gc.training_step(g, None, optim.SGD(0.1), loss="logits")
    st = gc.make_stepper(gc.training_step(g, None, optim.SGD(0.1)), "numpy")
    with pytest.raises(gc.FeedError, match="missing batch input"):
        st.step({"x": np.zeros((2, 6), np.float32)}, 0.1)
    with pytest.raises(ValueError, match="fc1.weight: checkpoint has"):
        st.load_state_dict({**st.state_dict(), "fc1.weight": np.zeros((2, 2), np.float32)})


@pytest.mark.slow
def test_tvm_step_matches_numpy():
    pytest.importorskip("tvm")
    g = gc.models.mlp(SIZES, dtype="float64", seed=0)
    sg = gc.training_step(g, optimizer=optim.Adam(0.01))
    x, y = data(8)
    losses = {}
    for backend in ("numpy", "tvm"):
        st = gc.make_stepper(sg, backend)
        losses[backend] = [float(st.step({"x": x, "y": y}, 0.01)["loss"]) for _ in range(3)]
        losses[backend].append(float(st.step({"x": x[:5], "y": y[:5]}, 0.01)["loss"]))  # partial batch
    np.testing.assert_allclose(losses["tvm"], losses["numpy"], rtol=1e-10)


def test_returned_metrics_are_not_overwritten_by_later_steps():
    g = gc.models.mlp(SIZES, seed=0)
    st = gc.make_stepper(gc.training_step(g, optimizer=optim.SGD(0.5)), "onnxruntime")
    x, y = data(8)
    first = st.step({"x": x.astype(np.float32), "y": y}, 0.5)
    keep = float(first["loss"])
    st.step({"x": x.astype(np.float32), "y": y}, 0.5)
    assert float(first["loss"]) == keep


def test_steppers_do_not_write_into_the_initial_values():
    sg = gc.training_step(gc.models.mlp(SIZES, seed=0), optimizer=optim.Adam(0.1))
    before = {k: v.copy() for k, v in sg.spec.initial.items()}
    x, y = data(8)
    for backend in ("onnxruntime", "numpy"):
        st = gc.make_stepper(sg, backend)
        for _ in range(3):
            st.step({"x": x.astype(np.float32), "y": y}, 0.1)
    for k, v in sg.spec.initial.items():
        assert np.array_equal(v, before[k]), k
