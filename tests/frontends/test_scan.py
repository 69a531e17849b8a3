"""gc.scan (graphc/ops/control.py, graphc/frontends/control.py) and nn.RNN/LSTM/GRU on it."""
from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc import nn


def _rnn_graph(reverse=False, sym=True, dtype="float64"):
    with gc.Graph("g") as g:
        h0 = g.input("h0", ("N", 3), dtype)
        xs = g.input("xs", ("T" if sym else 5, "N", 3), dtype)
        w = g.param("w", init=np.random.RandomState(0).randn(3, 3).astype(dtype) * 0.5)

        def step(h, x):
            h2 = gc.tanh(h @ w + x)
            return h2, h2 * gc.sigmoid(x)
        hT, ys = gc.scan(step, h0, xs, reverse=reverse)
        g.output(loss=gc.sum(hT * hT) + gc.sum(ys), h=hT, ys=ys)
    return g


def _rnn_numpy(h, xs, w, reverse=False):
    ys = [None] * len(xs)
    for t in (range(len(xs) - 1, -1, -1) if reverse else range(len(xs))):
        h = np.tanh(h @ w + xs[t])
        ys[t] = h / (1 + np.exp(-xs[t]))
    return h, np.stack(ys)


def _feeds(dtype="float64"):
    rs = np.random.RandomState(1)
    return dict(h0=rs.randn(2, 3).astype(dtype), xs=rs.randn(5, 2, 3).astype(dtype))


@pytest.mark.parametrize("reverse", [False, True])
def test_scan_matches_a_python_loop(reverse):
    g = _rnn_graph(reverse)
    f = _feeds()
    out = gc.compile(g, backend="numpy")(**f)
    h, ys = _rnn_numpy(f["h0"], f["xs"], g.params[0].data, reverse)
    np.testing.assert_allclose(out["h"], h, rtol=1e-12)
    np.testing.assert_allclose(out["ys"], ys, rtol=1e-12)


def test_scan_graph_prints_its_body_once():
    text = str(_rnn_graph())
    assert text.count("body @step") == 1
    assert "scan(%h0, %xs, %w, body=@step" in text


@pytest.mark.parametrize("reverse", [False, True])
def test_scan_gradients_match_finite_differences(reverse):
    report = gc.check_grads(_rnn_graph(reverse), _feeds(), wrt=["w", "h0", "xs"])
    assert report.ok, str(report)


def test_scan_gradient_is_a_constant_size_graph():
    sizes = []
    for steps in (4, 64):
        with gc.Graph("g") as g:
            xs = g.input("xs", (steps, 2, 3), "float64")
            w = g.param("w", init=np.eye(3))
            h, _ = gc.scan(lambda h, x: (gc.tanh(h @ w + x), None),
                           gc.constant(np.zeros((2, 3))), xs)
            g.output(loss=gc.sum(h))
        sizes.append(len(gc.grad(g).nodes))
    assert sizes[0] == sizes[1]


@pytest.mark.parametrize("reverse", [False, True])
def test_scan_onnx_runs_on_onnxruntime_like_the_reference(reverse):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    g = gc.grad(_rnn_graph(reverse), wrt=["w", "h0", "xs"])
    m = gc.export_onnx(g)
    onnx.checker.check_model(m, full_check=True)
    assert "Scan" in {n.op_type for n in m.graph.node}
    f = _feeds()
    ref = gc.compile(g, backend="numpy")(**f)
    ort = gc.compile(g, backend="onnxruntime")(**f)
    for k in ref:
        np.testing.assert_allclose(ort[k], ref[k], rtol=1e-10, atol=1e-12)


def test_scan_pytrees_of_dicts_and_tuples():
    with gc.Graph("g") as g:
        xs = g.input("xs", (4, 3), "float64")
        init = {"s": gc.constant(np.zeros(3)), "p": (gc.constant(np.ones(3)),)}

        def step(c, x):
            s = c["s"] + c["p"][0] * x["a"]
            return {"s": s, "p": (c["p"][0] * 0.5,)}, (s, {"b": x["a"] * 2.0})
        c, (ys, yd) = gc.scan(step, init, {"a": xs})
        g.output(s=c["s"], p=c["p"][0], ys=ys, yb=yd["b"])
    x = np.arange(12.0).reshape(4, 3)
    out = gc.compile(g, backend="numpy")(xs=x)
    s, p, ys = np.zeros(3), np.ones(3), []
    for t in range(4):
        s = s + p * x[t]
        p = p * 0.5
        ys.append(s)
    np.testing.assert_allclose(out["s"], s)
    np.testing.assert_allclose(out["p"], p)
    np.testing.assert_allclose(out["ys"], np.stack(ys))
    np.testing.assert_allclose(out["yb"], x * 2)


def test_scan_without_xs_takes_length():
    with gc.Graph("g") as g:
        a = g.input("a", (2,), "float64")
        c, ys = gc.scan(lambda c, _: (c * 2.0, c), a, None, length=3)
        g.output(c=c, ys=ys)
    out = gc.compile(g, backend="numpy")(a=np.array([1.0, 2.0]))
    np.testing.assert_allclose(out["c"], [8.0, 16.0])
    np.testing.assert_allclose(out["ys"], [[1, 2], [2, 4], [4, 8]])
    pytest.importorskip("onnxruntime")
    ort = gc.compile(g, backend="onnxruntime")(a=np.array([1.0, 2.0]))
    np.testing.assert_allclose(ort["ys"], out["ys"])


def test_scan_length_1():
    g = _rnn_graph(sym=True)
    f = _feeds()
    f["xs"] = f["xs"][:1]
    out = gc.compile(g, backend="numpy")(**f)
    h, ys = _rnn_numpy(f["h0"], f["xs"], g.params[0].data)
    np.testing.assert_allclose(out["ys"], ys)


def test_scan_carry_that_changes_type_is_an_error_naming_the_body_line():
    with gc.Graph("g") as g:
        xs = g.input("xs", (4, 3))
        with pytest.raises(gc.GraphBuildError) as err:
            def bad_body(c, x):
                return gc.sum(c + x), x
            gc.scan(bad_body, gc.constant(np.zeros(3, np.float32)), xs)
    msg = str(err.value)
    assert "test_scan.py:" in msg and "f32[3]" in msg and "f32[]" in msg


def _module_graphs(kind, unroll, batch_first, layers=1, bidirectional=False, steps=6):
    gc.init.manual_seed(0) if hasattr(gc.init, "manual_seed") else None
    cls = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[kind]
    m = cls(3, 4, num_layers=layers, batch_first=batch_first, bidirectional=bidirectional,
            dtype="float64", unroll=unroll)
    rs = np.random.RandomState(0)
    for p in m.parameters():
        p.data[...] = rs.uniform(-0.5, 0.5, p.data.shape)
    shape = (2, steps, 3) if batch_first else (steps, 2, 3)

    @gc.function(x=gc.spec(shape, "float64"))
    def f(x):
        y, h = m(x)
        h = h[0] if kind == "lstm" else h
        return {"loss": gc.sum(y * y) + gc.sum(h), "y": y, "h": h}
    return f.graph


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("batch_first,layers,bidirectional", [(False, 1, False), (True, 2, True)])
def test_recurrent_modules_on_scan_equal_the_unrolled_ones(kind, batch_first, layers, bidirectional):
    shape = (2, 6, 3) if batch_first else (6, 2, 3)
    x = np.random.RandomState(2).randn(*shape)
    gs = _module_graphs(kind, False, batch_first, layers, bidirectional)
    gu = _module_graphs(kind, True, batch_first, layers, bidirectional)
    assert "scan" in {n.op.name for n in gs.nodes}
    assert "scan" not in {n.op.name for n in gu.nodes}
    a = gc.compile(gc.grad(gs), backend="numpy")(x=x)
    b = gc.compile(gc.grad(gu), backend="numpy")(x=x)
    assert set(a) == set(b)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-6, atol=1e-9, err_msg=k)


def test_lstm_on_scan_takes_a_symbolic_sequence_length():
    m = nn.LSTM(3, 4, dtype="float64")

    @gc.function(x=gc.spec(("T", "N", 3), "float64"))
    def f(x):
        return gc.sum(m(x)[0])
    out = gc.compile(f.graph, backend="numpy")(x=np.ones((7, 2, 3)))
    assert np.isfinite(out["output"])


def test_lstm_on_scan_projects_the_inputs_with_one_matmul_outside_the_loop():
    g = _module_graphs("lstm", False, False)
    outer = [n.op.name for n in g.nodes]
    assert outer.count("matmul") == 1 and outer.count("scan") == 3


def test_scan_graphs_round_trip_through_the_text_form():
    for g in (_rnn_graph(), gc.grad(_rnn_graph(True)), gc.models.lstm(steps=5)):
        text = str(g)
        g2 = gc.parse_graph(text, params={**g.param_data(), **gc.elided_constants(g)})
        assert str(g2) == text
        g2.verify()


def test_scan_body_is_verified_with_the_graph():
    g = _rnn_graph()
    body = next(n.attrs["body"] for n in g.nodes if n.op.name == "scan")
    body.nodes[0].output.type = gc.TensorType((7,), "float64")
    with pytest.raises(gc.GraphcError):
        g.verify()


def test_scan_second_order_hvp_matches_differences_of_gradients():
    g = _rnn_graph(sym=False).prune(["loss"])
    f = _feeds()
    hv = gc.compile(gc.hvp(g, wrt=["w"], vectors=[np.ones((3, 3))]), backend="numpy")(**f)["hvp_w"]
    w0, eps = g.params[0].data.copy(), 1e-6

    def grad_at(w):
        g.params[0].data[...] = w
        return gc.compile(gc.grad(g, wrt=["w"]), backend="numpy")(**f)["d_w"]
    fd = (grad_at(w0 + eps) - grad_at(w0 - eps)) / (2 * eps)
    g.params[0].data[...] = w0
    np.testing.assert_allclose(hv, fd, rtol=1e-6, atol=1e-7)


def test_forward_and_residual_loops_are_merged_in_the_gradient_graph():
    gg = gc.grad(gc.models.lstm(steps=4, input=3, hidden=4, classes=2, dtype="float64"))
    bodies = {(id(n.attrs["body"]), n.attrs["reverse"]) for n in gg.nodes if n.op.name == "scan"}
    assert len(bodies) == 2  # one forward loop (with residuals), one backward loop


def test_onnxruntime_backend_unrolls_static_loops_when_lowering_and_exports_keep_scan():
    pytest.importorskip("onnxruntime")
    g = gc.grad(_rnn_graph(sym=False))
    assert "Scan" not in {n.op_type for n in gc.to_onnx(g, loops="unroll").graph.node}
    assert "Scan" in {n.op_type for n in gc.export_onnx(g).graph.node}
    f = _feeds()
    ref = gc.compile(g, backend="numpy")(**f)
    for loops in ("scan", "unroll"):
        out = gc.compile(g, backend="onnxruntime", loops=loops)(**f)
        for k in ref:
            np.testing.assert_allclose(out[k], ref[k], rtol=1e-10, atol=1e-12)
