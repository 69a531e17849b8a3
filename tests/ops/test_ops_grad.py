"""Gradients of every differentiable primitive, driven by the op table (tests/ops/op_db.py).

- first order: the real autodiff pass (`gc.grad`) run on the numpy reference against central
  finite differences in float64, relative error below 1e-6;
- the same gradient graph exported to ONNX (checked) and run on onnxruntime agrees with numpy;
- second order for elementwise, matmul and reduction primitives: `gc.hvp` against finite
  differences of the gradient.

Each check differentiates loss = sum(w * op(x0, ..., xk)) with fixed random weights w, so the
cotangent reaching the op is not uniform.
"""
from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc.frontends.dsl import Tensor
from graphc.ops import OPS
from graphc.ops.elementwise import Binary, Unary
from graphc.ops.reduce import Reduce
from ops.op_db import OP_DB, grad_inputs, sample_id, single_op_graph

GRAD_ROWS = [info for info in OP_DB if info.grad]


def _cases(rows, dtypes=("float64",)):
    out = []
    for info in rows:
        for dtype in dtypes:
            if dtype not in info.dtypes:
                continue
            for k, s in enumerate(info.get_samples(dtype)):
                out.append(pytest.param(info, dtype, k, id=f"{info.name}-{dtype}-{sample_id(s, k)}"))
    return out


def _loss_graph(info, sample, dtype, symbolic=False):
    """single_op_graph plus loss = sum(w * y) as the first output; None if y carries no gradient."""
    g, feeds = single_op_graph(info, sample, dtype, symbolic=symbolic)
    y = g.outputs["y"]
    if not y.type.is_float or y.type.dtype != dtype or not grad_inputs(info, sample):
        return None, None, None
    shape = tuple(np.asarray(info.op.ref(*sample.inputs, **sample.attrs)).shape)
    feeds["w"] = np.random.default_rng(1).uniform(0.5, 1.5, size=shape).astype(dtype)
    with g:
        loss = gc.sum(Tensor(y) * g.input("w", y.type.shape, dtype))
    g.outputs = {"loss": loss.value, "y": y}
    return g, feeds, [f"x{i}" for i in grad_inputs(info, sample)]


def _skip(info, check, dtype, sample):
    reason = info.skip_reason(check, dtype, sample)
    if reason:
        pytest.skip(reason)


def test_every_differentiable_primitive_has_a_gradient_rule():
    """A differentiable primitive without a vjp rule must say why in the op table."""
    rows = {info.name: info for info in OP_DB}
    missing = [name for name, op in OPS.items() if op.differentiable and op.vjp is None
               and not (name in rows and rows[name].skip_reason("grad"))]
    assert not missing, f"differentiable primitives without a vjp rule: {missing}"


@pytest.mark.parametrize("info,dtype,k", _cases(GRAD_ROWS))
def test_grad_matches_finite_differences(info, dtype, k):
    sample = info.get_samples(dtype)[k]
    _skip(info, "grad", dtype, sample)
    g, feeds, wrt = _loss_graph(info, sample, dtype)
    if g is None:
        pytest.skip("the output carries no float64 gradient for this sample")
    report = gc.check_grads(g, feeds, wrt=wrt, eps=1e-6, rtol=1e-6, atol=1e-10)
    assert report.ok, str(report)
    assert report.max_rel_error < 1e-6


def _ort_case_dtype(info, dtype, sample):
    return info.skip_reason("onnxruntime", dtype, sample) or info.skip_reason("grad_onnxruntime", dtype, sample)


@pytest.mark.parametrize("info,dtype,k", _cases(GRAD_ROWS, ("float64", "float32")))
def test_grad_graph_on_onnxruntime_matches_numpy(info, dtype, k):
    sample = info.get_samples(dtype)[k]
    _skip(info, "grad", dtype, sample)
    reason = _ort_case_dtype(info, dtype, sample)
    if reason:
        pytest.skip(reason)
    g, feeds, wrt = _loss_graph(info, sample, dtype, symbolic=sample.symbolic is not None)
    if g is None:
        pytest.skip("the output carries no gradient for this sample")
    try:
        dg = gc.grad(g, wrt=wrt)
    except gc.AutodiffError as exc:
        # e.g. slicing rows 1:3 of N: the gradient pads by N - 3, which no dim can express
        assert "symbolic" in str(exc)
        g, feeds, wrt = _loss_graph(info, sample, dtype)
        dg = gc.grad(g, wrt=wrt)
    gc.export_onnx(dg)  # passes onnx.checker with full_check
    want = gc.compile(dg, "numpy")(**feeds)
    got = gc.compile(dg, "onnxruntime")(**feeds)
    rtol, atol = (1e-9, 1e-11) if dtype == "float64" else (2e-4, 2e-5)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=rtol, atol=atol, err_msg=name)


def _second_order_rows():
    return [info for info in GRAD_ROWS
            if isinstance(info.op, (Unary, Binary, Reduce)) or info.name in ("matmul", "where")]


@pytest.mark.parametrize("info,dtype,k", _cases(_second_order_rows()))
def test_second_order_matches_finite_differences_of_the_gradient(info, dtype, k):
    sample = info.get_samples(dtype)[k]
    _skip(info, "grad", dtype, sample)
    g, feeds, wrt = _loss_graph(info, sample, dtype)
    if g is None:
        pytest.skip("the output carries no float64 gradient for this sample")
    rng = np.random.default_rng(7)
    vs = {n: rng.normal(size=feeds[n].shape) for n in wrt}
    h = gc.hvp(g, wrt=wrt)
    names = h.role_targets(gc.Role.TANGENT)
    got = gc.compile(h)(**feeds, **{names[n]: vs[n] for n in wrt})
    d = gc.compile(gc.grad(g, wrt=wrt))
    eps = 1e-5

    def grads(sign):
        out = d(**{k: (v + sign * eps * vs[k] if k in vs else v) for k, v in feeds.items()})
        return np.concatenate([np.ravel(out[f"d_{n}"]) for n in wrt])

    num = (grads(1) - grads(-1)) / (2 * eps)
    sym = np.concatenate([np.ravel(got[f"hvp_{n}"]) for n in wrt])
    err = np.linalg.norm(num - sym) / max(np.linalg.norm(num) + np.linalg.norm(sym), 1e-300)
    assert np.all(np.isfinite(sym))
    assert err < 1e-6 or np.linalg.norm(num - sym) < 1e-9, (err, num, sym)
