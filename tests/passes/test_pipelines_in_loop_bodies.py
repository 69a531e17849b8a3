"""Named pipelines run inside loop bodies (pipeline.py `bodies=True`, passes/loop_bodies.py)."""
from __future__ import annotations

import numpy as np

import graphc as gc


def _rnn(dtype: str = "float64") -> gc.Graph:
    rs = np.random.RandomState(0)
    with gc.Graph("rnn") as g:
        h0 = g.input("h0", ("N", 4), dtype)
        xs = g.input("xs", ("T", "N", 3), dtype)
        wx = g.param("wx", init=rs.randn(4, 3).astype(dtype) * 0.5)
        wh = g.param("wh", init=rs.randn(4, 4).astype(dtype) * 0.5)
        b = g.param("b", init=rs.randn(4).astype(dtype))

        def step(h, x):
            # x @ wx.T + b is a gemm with trans_b; h @ wh, written twice, is one product after CSE
            h2 = gc.tanh(x @ gc.transpose(wx) + b + h @ wh) * 1.0
            return h2, h2 + h @ wh
        hT, ys = gc.scan(step, h0, xs)
        g.output(loss=gc.sum(hT * hT) + gc.sum(ys))
    return g


def _body(g: gc.Graph) -> gc.Graph:
    return next(a for n in g.nodes for a in n.attrs.values() if isinstance(a, gc.Graph))


def _ops(g: gc.Graph) -> list[str]:
    return [n.op.name for n in g.nodes]


def _feeds() -> dict[str, np.ndarray]:
    rs = np.random.RandomState(1)
    return dict(h0=rs.randn(2, 4), xs=rs.randn(5, 2, 3))


def test_fuse_forward_fuses_a_gemm_inside_a_scan_body_and_keeps_the_results():
    g = _rnn()
    fused, report = gc.get_pipeline("fuse-forward").run(g)
    body = _body(fused)
    assert "gemm" in _ops(body) and "transpose" not in _ops(body), _ops(body)
    assert "transpose" in _ops(_body(g))                    # the input graph is unchanged
    assert any(r.name == "(loop bodies)" and r.nodes_after < r.nodes_before for r in report.records)
    want = gc.compile(g, "numpy")(**_feeds())["loss"]
    got = gc.compile(fused, "numpy")(**_feeds())["loss"]
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_fused_body_differentiates_like_the_unfused_one():
    g = _rnn()
    fused = gc.get_pipeline("fuse-forward")(g)
    want = gc.compile(gc.grad(g), "numpy")(**_feeds())
    got = gc.compile(gc.grad(fused), "numpy")(**_feeds())
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-10, atol=1e-12, err_msg=k)


def test_simplify_folds_and_dedupes_inside_the_body():
    g = _rnn()
    body = _body(gc.get_pipeline("simplify")(g))
    assert _ops(body).count("matmul") == 2, _ops(body)      # h @ wh once, x @ wx.T once
    assert "mul" not in _ops(body), _ops(body)              # the * 1.0 folded away


def test_a_pipeline_that_changes_no_body_keeps_the_body_object():
    g = _rnn()
    once = gc.get_pipeline("simplify")(g)
    twice = gc.get_pipeline("simplify")(once)
    assert _body(twice) is _body(once)


def test_unnamed_pipelines_leave_bodies_alone_unless_asked():
    g = _rnn()
    assert _body(gc.Pipeline(["fuse_gemm"])(g)) is _body(g)
    assert "gemm" in _ops(_body(gc.Pipeline(["fuse_gemm"], bodies=True)(g)))
