"""Torch's meaning where a name is torch's, numpy's where it is numpy's (issue 15, item 1).

gather is torch.gather and take numpy.take; every reduction and softmax-like function takes
numpy's `axis=` and torch's `dim=` (not both); Tensor has torch's methods (view, permute, size,
transpose(d0, d1), ...); "float" is float32; None in a spec is an anonymous symbolic dim.
The torch comparisons skip cleanly without torch; the numpy ones always run.
"""
from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc import nn

try:
    import torch
except ImportError:  # pragma: no cover
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed")


def run(fn, *arrays, backend="numpy", shapes=None):
    """fn(inputs) built as a graph and run on `backend`; returns the output array."""
    with gc.Graph("t") as g:
        xs = [g.input(f"x{i}", shapes[i] if shapes else a.shape, a.dtype.name)
              for i, a in enumerate(arrays)]
        g.output(y=fn(*xs))
    return gc.compile(g, backend)(**{f"x{i}": a for i, a in enumerate(arrays)})["y"]


def grad_of(fn, x, *rest):
    """d sum(fn(x, *rest) * c) / dx for a fixed random c, via gc.grad; returns (value, grad, c)."""
    with gc.Graph("t") as g:
        xi = g.input("x", x.shape, x.dtype.name)
        others = [g.input(f"r{i}", a.shape, a.dtype.name) for i, a in enumerate(rest)]
        y = fn(xi, *others)
        c = np.random.default_rng(1).standard_normal(tuple(y.shape)).astype(x.dtype)
        g.output(loss=gc.sum(y * gc.constant(c)), y=y)
    res = gc.compile(gc.grad(g, wrt=["x"]), "numpy")(x=x, **{f"r{i}": a for i, a in enumerate(rest)})
    return res["y"], res["d_x"], c


@pytest.fixture
def x34(rng):
    return rng.standard_normal((3, 4))


# ---- gather (torch) and take (numpy) --------------------------------------------------------------

def test_gather_is_torch_gather_with_numpy_take_along_axis_values(rng):
    logp = rng.standard_normal((5, 4))
    y = np.array([3, 0, 1, 1, 2])
    for backend in ("numpy", "onnxruntime"):
        got = run(lambda a, b: gc.gather(a, 1, b[:, None]), logp, y, backend=backend)
        np.testing.assert_allclose(got, np.take_along_axis(logp, y[:, None], 1), err_msg=backend)
        got = run(lambda a, b: a.gather(dim=1, index=b[:, None]), logp, y, backend=backend)
        assert got.shape == (5, 1)


@needs_torch
@pytest.mark.parametrize("dim,ishape", [(0, (2, 4, 3)), (1, (3, 6, 2)), (2, (1, 2, 5)), (-1, (3, 4, 1))])
def test_gather_matches_torch_values_and_gradients(rng, dim, ishape):
    x = rng.standard_normal((3, 4, 3))
    n = x.shape[dim]
    idx = rng.integers(0, n, ishape)
    got, gx, c = grad_of(lambda a, i: gc.gather(a, dim, i), x, idx)
    xt = torch.from_numpy(x).requires_grad_(True)
    want = torch.gather(xt, dim, torch.from_numpy(idx))
    (want * torch.from_numpy(c)).sum().backward()
    np.testing.assert_allclose(got, want.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(gx, xt.grad.numpy(), rtol=1e-12, atol=1e-15)


def test_gather_misuse_of_numpy_take_form_fails_loudly():
    with gc.Graph("t") as g:
        logp = g.input("logp", ("N", 10))
        y = g.input("y", ("N",), "int64")
        with pytest.raises(gc.GraphBuildError, match=r"torch.gather\(input, dim, index\).*gc.take"):
            gc.gather(logp, y[:, None], axis=1)      # the habit that used to give (N, N, 1)
        with pytest.raises(gc.GraphBuildError, match=r"torch.gather\(input, dim, index\).*gc.take"):
            gc.gather(logp, y[:, None], dim=1)
        with pytest.raises(gc.GraphBuildError, match="given twice"):
            gc.gather(logp, 1, y[:, None], dim=1)
        with pytest.raises(gc.GraphBuildError, match="must have the rank of input"):
            gc.gather(logp, 1, y)
        with pytest.raises(gc.GraphBuildError, match="does not fit in input"):
            gc.gather(logp, 0, gc.constant(np.zeros((1, 11), np.int64)))
        with pytest.raises(gc.GraphBuildError, match="needs both dim and index"):
            gc.gather(logp, 1)
        with pytest.raises(gc.GraphBuildError, match="given twice"):
            gc.gather(logp, 1, y[:, None], axis=1)
        with pytest.raises(gc.GraphBuildError, match="both axis= .* and dim="):
            gc.gather(logp, dim=1, axis=1, index=y[:, None])
        with pytest.raises(gc.GraphBuildError, match="int32 or int64"):
            gc.gather(logp, 1, logp)
        assert gc.gather(logp, axis=1, index=y[:, None]).shape == ("N", 1)
        assert gc.gather(logp, dim=1, index=y[:, None]).shape == ("N", 1)
        assert gc.gather(logp, 1, index=y[:, None]).shape == ("N", 1)


def test_take_is_numpy_take(rng):
    x = rng.standard_normal((3, 4, 2))
    idx = np.array([[5, -1], [0, 23]])
    np.testing.assert_allclose(run(lambda a: gc.take(a, idx), x), np.take(x, idx))  # flattened
    for axis in (0, 1, -1):
        i = idx % x.shape[axis]
        np.testing.assert_allclose(run(lambda a: gc.take(a, i, axis=axis), x), np.take(x, i, axis=axis))
        np.testing.assert_allclose(run(lambda a: a.take(i, axis), x), x.take(i, axis))


def test_take_along_axis_broadcasts_as_numpy(rng):
    x = rng.standard_normal((3, 4))
    idx = np.array([[0, 3, -1]])                     # (1, 3) against (3, 4): broadcast rows
    np.testing.assert_allclose(run(lambda a: gc.take_along_axis(a, idx, axis=1), x),
                               np.take_along_axis(x, idx, axis=1))
    flat = np.array([11, 0, 5])
    np.testing.assert_allclose(run(lambda a: gc.take_along_axis(a, flat, axis=None), x),
                               np.take_along_axis(x, flat, axis=None))


@needs_torch
def test_index_select_matches_torch(rng):
    x = rng.standard_normal((3, 4))
    i = np.array([2, 0, 2])
    np.testing.assert_allclose(run(lambda a: gc.index_select(a, 1, i), x),
                               torch.index_select(torch.from_numpy(x), 1, torch.from_numpy(i)).numpy())


# ---- axis= and dim= ---------------------------------------------------------------------------------

AXIS_FUNCS = {  # name: (graphc call with an axis keyword k, numpy reference)
    "sum": (lambda a, k: gc.sum(a, **{k: 1}), lambda x: x.sum(1)),
    "mean": (lambda a, k: gc.mean(a, **{k: (0, 1)}), lambda x: x.mean((0, 1))),
    "max": (lambda a, k: gc.max(a, **{k: 0}), lambda x: x.max(0)),
    "min": (lambda a, k: gc.min(a, **{k: -1}), lambda x: x.min(-1)),
    "amax": (lambda a, k: gc.amax(a, **{k: 1}), lambda x: x.max(1)),
    "argmax": (lambda a, k: gc.argmax(a, **{k: 1}), lambda x: x.argmax(1)),
    "argmin": (lambda a, k: gc.argmin(a, **{k: 0}), lambda x: x.argmin(0)),
    "logsumexp": (lambda a, k: gc.logsumexp(a, **{k: 0}), lambda x: np.log(np.exp(x).sum(0))),
    "softmax": (lambda a, k: gc.softmax(a, **{k: 0}), lambda x: np.exp(x) / np.exp(x).sum(0)),
    "log_softmax": (lambda a, k: gc.log_softmax(a, **{k: 0}),
                    lambda x: x - np.log(np.exp(x).sum(0))),
    "norm": (lambda a, k: gc.norm(a, **{k: 1}), lambda x: np.sqrt((x * x).sum(1))),
    "concatenate": (lambda a, k: gc.concatenate([a, a], **{k: 1}), lambda x: np.concatenate([x, x], 1)),
    "cat": (lambda a, k: gc.cat([a, a], **{k: 0}), lambda x: np.concatenate([x, x], 0)),
    "stack": (lambda a, k: gc.stack([a, -a], **{k: -1}), lambda x: np.stack([x, -x], -1)),
    "expand_dims": (lambda a, k: gc.expand_dims(a, **{k: 1}), lambda x: x[:, None]),
    "unsqueeze": (lambda a, k: gc.unsqueeze(a, **{k: 0}), lambda x: x[None]),
    "squeeze": (lambda a, k: gc.squeeze(a[:1], **{k: 0}), lambda x: x[0]),
}


@pytest.mark.parametrize("name", list(AXIS_FUNCS))
@pytest.mark.parametrize("keyword", ["axis", "dim"])
def test_axis_and_dim_are_both_accepted(name, keyword, x34):
    fn, want = AXIS_FUNCS[name]
    got = run(lambda a: fn(a, keyword), x34)
    np.testing.assert_allclose(got, want(x34), rtol=1e-12)


@pytest.mark.parametrize("name", list(AXIS_FUNCS))
def test_axis_and_dim_together_is_an_error(name):
    f = getattr(gc, name)
    with gc.Graph("t") as g:
        x = g.input("x", (1, 4))
        arg = [x, x] if name in ("concatenate", "cat", "stack") else x
        with pytest.raises(gc.GraphBuildError,
                           match=r"test_conventions.py:\d+: .*both axis= .* and dim="):
            f(arg, axis=0, dim=0)


@pytest.mark.parametrize("name", ["sum", "mean", "max", "min", "argmax", "logsumexp", "norm"])
def test_keepdim_and_keepdims(name, x34):
    f = getattr(gc, name)
    a = run(lambda t: f(t, dim=1, keepdim=True), x34)
    b = run(lambda t: f(t, axis=1, keepdims=True), x34)
    assert a.shape == b.shape == (3, 1)
    np.testing.assert_array_equal(a, b)
    with gc.Graph("t") as g, pytest.raises(gc.GraphBuildError, match="keepdims.*keepdim"):
        f(g.input("x", (3, 4)), 1, keepdims=True, keepdim=True)


# ---- Tensor methods, as torch's -------------------------------------------------------------------

TORCH_METHODS = {  # name: f(tensor), called on a graphc Tensor and on a torch tensor
    "view": lambda t: t.view(t.size(0), -1),
    "view_tuple": lambda t: t.view((4, 6)),
    "reshape": lambda t: t.reshape(-1, 4),
    "permute": lambda t: t.permute(2, 0, 1),
    "permute_tuple": lambda t: t.permute((1, 2, 0)),
    "transpose": lambda t: t.transpose(1, 2),
    "transpose_neg": lambda t: t.transpose(-1, 0),
    "unsqueeze": lambda t: t.unsqueeze(1),
    "squeeze": lambda t: t[:, :1].squeeze(1),
    "squeeze_all": lambda t: t[:1, :, :1].squeeze(),
    "flatten": lambda t: t.flatten(),
    "flatten_start": lambda t: t.flatten(1),
    "flatten_range": lambda t: t.flatten(0, 1),
    "clamp": lambda t: t.clamp(-0.5, 0.5),
    "clamp_min": lambda t: t.clamp(min=0.0),
    "clip_max": lambda t: t.clip(max=0.1),
    "sum_dim": lambda t: t.sum(dim=1, keepdim=True),
    "sum_pos": lambda t: t.sum(1),
    "mean_dims": lambda t: t.mean(dim=(0, 2)),
    "amax": lambda t: t.amax(dim=1),
    "argmax_dim": lambda t: t.argmax(dim=-1, keepdim=True),
    "argmin": lambda t: t.argmin(1),
    "softmax": lambda t: t.softmax(dim=1),
    "log_softmax": lambda t: t.log_softmax(-1),
    "logsumexp": lambda t: t.logsumexp(dim=2),
    "expand": lambda t: t[:, :1].expand(-1, 5, -1),
    "expand_new": lambda t: t.expand(2, -1, -1, -1),
    "contiguous": lambda t: t.transpose(0, 1).contiguous().view(3, -1),
    "detach": lambda t: t.detach() * 2,
    "float": lambda t: t.float(),
    "double": lambda t: t.float().double(),
    "long": lambda t: (t * 3).long(),
    "int": lambda t: (t * 3).int(),
    "bool": lambda t: t.bool(),
    "to_dtype": lambda t: t.to(torch.float32),
    "to_device": lambda t: t.to("cpu"),
    "type_as": lambda t: (t * 3).long().type_as(t),
    "masked_fill": lambda t: t.masked_fill(t > 0, -1.0),
    "t": lambda t: t[0].t(),
    "swapdims": lambda t: t.swapdims(0, 2),
    "pow": lambda t: t.abs().pow(1.5),
    "matmul": lambda t: t.matmul(t.transpose(1, 2)),
}


@needs_torch
@pytest.mark.parametrize("name", list(TORCH_METHODS))
def test_tensor_methods_follow_torch(name, rng):
    fn = TORCH_METHODS[name]
    x = rng.standard_normal((2, 3, 4))
    want = fn(torch.from_numpy(x)).numpy()
    got = run(fn, x)
    assert got.dtype == want.dtype and got.shape == want.shape, (got.dtype, got.shape, want.shape)
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_size_returns_ints_and_symbols():
    with gc.Graph("t") as g:
        x = g.input("x", ("N", 3, 4))
        assert x.size() == ("N", 3, 4) and x.size(0) == "N" and x.size(-1) == 4
        assert x.dim() == 3 and x.numel() == "12*N"
        assert x.view(x.size(0), -1).shape == ("N", 12)
        assert x.flatten(1).shape == ("N", 12)


def test_numpy_style_tensor_transpose_points_to_permute():
    with gc.Graph("t") as g:
        x = g.input("x", (2, 3, 4))
        with pytest.raises(gc.GraphBuildError, match=r"swaps two dims.*x.permute"):
            x.transpose(1, 0, 2)
        with pytest.raises(gc.GraphBuildError, match="swaps two dims"):
            x.transpose()                      # numpy reverses; torch needs two dims at rank 3
        assert x.T.shape == (4, 3, 2)
        # the function keeps numpy's form and also takes torch's
        assert gc.transpose(x, (0, 2, 1)).shape == gc.transpose(x, 1, 2).shape == (2, 4, 3)
        with pytest.raises(gc.GraphBuildError, match="not a permutation"):
            gc.transpose(x, (0, 0, 1))


def test_module_to_takes_a_dtype_and_ignores_a_device():
    lin = nn.Linear(3, 5).to("cpu")
    assert lin.to("double").weight.dtype == np.float64
    assert lin.to("cuda:0", dtype="float").weight.dtype == np.float32


def test_parameter_size_is_torch_style():
    lin = nn.Linear(3, 5)
    assert lin.weight.size() == (5, 3) and lin.weight.size(0) == 5 and lin.weight.numel() == 15
    assert lin.weight.dim() == 2 and lin.num_parameters() == 20


# ---- dtypes and specs -----------------------------------------------------------------------------

@pytest.mark.parametrize("name,want", [("float", "float32"), ("double", "float64"),
                                       ("long", "int64"), ("int", "int32"), ("float32", "float32"),
                                       ("f64", "float64"), (float, "float64"), (np.int32, "int32")])
def test_dtype_names_are_torchs(name, want):
    assert gc.spec((2,), name).dtype == want
    with gc.Graph("t") as g:
        assert gc.cast(g.input("x", (2,)), name).dtype == want
        assert g.input("y", (2,), name).dtype == want


@needs_torch
def test_torch_dtypes_are_accepted():
    assert gc.spec((2,), torch.float64).dtype == "float64"
    assert nn.Linear(2, 3, dtype=torch.float64).weight.dtype == np.float64
    assert gc.spec((2,), torch.float16).dtype == "float16"
    assert gc.spec((2,), torch.bfloat16).dtype == "bfloat16"
    with pytest.raises(gc.GraphBuildError, match="complex64"):
        gc.spec((2,), torch.complex64)


def test_none_in_a_spec_is_an_anonymous_symbolic_dim():
    a, b = gc.spec([None, 3]), gc.spec([None])
    sym = a.shape[0]
    assert isinstance(sym, str) and sym != "None" and sym.isidentifier()
    assert b.shape[0] != sym                       # each None is its own symbol

    @gc.function(x=a)
    def f(x):
        return x.sum(dim=1)

    exe = gc.compile(f.graph, "numpy")
    for n in (2, 5):                               # any size binds it
        assert exe(x=np.ones((n, 3), np.float32))["output"].shape == (n,)
    assert "None" not in str(f.graph)
    assert gc.parse_graph(str(f.graph)).inputs[0].type.shape == (sym, 3)   # prints and parses


def test_none_elsewhere_is_a_clear_error():
    with gc.Graph("t") as g, pytest.raises(gc.GraphBuildError, match="cannot be None"):
        g.input("x", (None, 3))


def test_moveaxis_permute_and_expand_follow_numpy_and_torch(rng):
    x = rng.standard_normal((2, 3, 4, 5))
    for src, dst in [(0, -1), ((0, 1), (2, 0)), (3, 1)]:
        np.testing.assert_array_equal(run(lambda a: gc.moveaxis(a, src, dst), x), np.moveaxis(x, src, dst))
        np.testing.assert_array_equal(run(lambda a: gc.movedim(a, src, dst), x), np.moveaxis(x, src, dst))
    np.testing.assert_array_equal(run(lambda a: gc.permute(a, (3, 1, 0, 2)), x), x.transpose(3, 1, 0, 2))
    np.testing.assert_array_equal(run(lambda a: gc.transpose(a, 0, 3), x), np.swapaxes(x, 0, 3))
    np.testing.assert_array_equal(run(lambda a: gc.expand(a[:, :1], -1, 6, -1, -1), x),
                                  np.broadcast_to(x[:, :1], (2, 6, 4, 5)))
    with gc.Graph("t") as g, pytest.raises(gc.GraphBuildError, match="-1 is only allowed"):
        gc.expand(g.input("y", (3,)), -1, 3)
