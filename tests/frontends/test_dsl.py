"""The DSL: Tensor operators, indexing, numpy- and torch-named functions, symbolic dims, errors."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import special

import graphc as gc

BACKENDS = ("numpy", "onnxruntime")
HERE = "test_dsl.py"


def _line_of(text: str) -> int:
    """The line number in this file whose source contains `text` (the marker comment)."""
    with open(__file__) as f:
        for i, line in enumerate(f, 1):
            if text in line and "_line_of" not in line:
                return i
    raise AssertionError(text)


def check(fn, *arrays, want=None, rtol=1e-6, atol=1e-7, shapes=None):
    """Builds y = fn(inputs) with the DSL, runs it on numpy and onnxruntime, and compares with
    `want` (default: fn applied to the numpy arrays themselves). Returns the graph."""
    with gc.Graph("t") as g:
        xs = [g.input(f"x{i}", shapes[i] if shapes else a.shape, a.dtype.name)
              for i, a in enumerate(arrays)]
        g.output(y=fn(*xs))
    want = np.asarray(fn(*arrays) if want is None else want)
    feeds = {f"x{i}": a for i, a in enumerate(arrays)}
    for backend in BACKENDS:
        got = gc.compile(g, backend)(**feeds)["y"]
        assert got.dtype == want.dtype, f"{backend}: dtype {got.dtype}, expected {want.dtype}"
        assert got.shape == want.shape, f"{backend}: shape {got.shape}, expected {want.shape}"
        if want.dtype.kind == "f":
            np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=backend)
        else:
            np.testing.assert_array_equal(got, want, err_msg=backend)
    return g


@pytest.fixture
def a(rng):
    return rng.uniform(0.5, 2.0, size=(3, 4)).astype(np.float32)


@pytest.fixture
def b(rng):
    return rng.uniform(-2.0, 2.0, size=(3, 4)).astype(np.float32)


# ---- Python operators ---------------------------------------------------------------------------

@pytest.mark.parametrize("fn", [
    lambda x, y: x + y, lambda x, y: x - y, lambda x, y: x * y, lambda x, y: y / x,
    lambda x, y: x ** y, lambda x, y: -x + y, lambda x, y: x @ y.T, lambda x, y: x.T @ y,
    lambda x, y: abs(y), lambda x, y: +x,
], ids=["add", "sub", "mul", "div", "pow", "neg", "matmul", "matmul_t", "abs", "pos"])
def test_arithmetic_operators(fn, a, b):
    check(fn, a, b, rtol=1e-5)


@pytest.mark.parametrize("fn", [
    lambda x, y: x < y, lambda x, y: x <= y, lambda x, y: x > y, lambda x, y: x >= y,
    lambda x, y: x == y, lambda x, y: x != y, lambda x, y: (x > y) & (y > 0),
    lambda x, y: (x > y) | (y > 0), lambda x, y: ~(x > y),
], ids=["lt", "le", "gt", "ge", "eq", "ne", "and", "or", "not"])
def test_comparison_operators(fn, a, b):
    b = b.copy()
    b[0] = a[0]  # ties, so == differs from < and >
    check(fn, a, b)


@pytest.mark.parametrize("fn", [
    lambda x: x + 2, lambda x: 2 + x, lambda x: x * 0.5, lambda x: 3 - x, lambda x: 1 / x,
    lambda x: x ** 2, lambda x: 2 ** x, lambda x: x / 4, lambda x: x > 1, lambda x: 1.5 >= x,
    lambda x: x + np.float32(1.5), lambda x: x * np.ones(4, np.float32),
], ids=["add", "radd", "mul", "rsub", "rdiv", "pow", "rpow", "div", "gt", "rge", "np_scalar",
        "np_array"])
def test_broadcasting_with_scalars_keeps_the_tensor_dtype(fn, a):
    check(fn, a)
    check(fn, a.astype(np.float64), rtol=1e-12)


def test_scalars_with_int_tensors(rng):
    i = rng.integers(-5, 6, size=(3, 4)).astype(np.int64)
    check(lambda x: x * 3 + 1, i)
    # a whole float is lifted to the tensor's dtype (numpy would promote to float64)
    check(lambda x: x - 2.0, i, want=i - 2)
    check(lambda x: x > 0, i.astype(np.int32))
    with gc.Graph("t") as g:
        x = g.input("x", (3,), "int64")
        with pytest.raises(gc.GraphBuildError, match="cannot mix int64 tensor %x with the float 0.5"):
            x + 0.5


def test_matmul_with_batch_dims_and_vectors(rng):
    a3 = rng.standard_normal((2, 3, 4)).astype(np.float32)
    w = rng.standard_normal((4, 5)).astype(np.float32)
    v = rng.standard_normal(4).astype(np.float32)
    check(lambda x, y: x @ y, a3, w, rtol=1e-5, atol=1e-6)
    check(lambda x, y: x @ y, a3, v, rtol=1e-5, atol=1e-6)
    check(lambda x, y: y @ x, w, v, rtol=1e-5, atol=1e-6)
    check(lambda x, y: x[None] @ y, w.T.copy(), a3.transpose(0, 2, 1).copy(), rtol=1e-5, atol=1e-6)


# ---- indexing -----------------------------------------------------------------------------------

INDEXES = {
    "int": lambda x: x[1], "neg_int": lambda x: x[-1], "slice": lambda x: x[1:3],
    "neg_slice": lambda x: x[-3:-1], "step": lambda x: x[::2], "reverse": lambda x: x[::-1],
    "rev_step": lambda x: x[-1:0:-2], "2d": lambda x: x[1:, -2], "3d": lambda x: x[1:-1, ::2, -3:],
    "ellipsis": lambda x: x[..., 1], "ellipsis_mid": lambda x: x[-1, ..., ::-2],
    "none": lambda x: x[None], "none_mid": lambda x: x[:, None, 2:],
    "ellipsis_none": lambda x: x[..., None], "none_both": lambda x: x[None, ..., None],
    "empty": lambda x: x[:, 3:1], "past_end": lambda x: x[5:], "unit": lambda x: x[()],
    "rev_range": lambda x: x[-1:-3:-1], "ellipsis_ints": lambda x: x[..., 0, 1, 2],
    "all_ints": lambda x: x[1, -2, 3], "clamped": lambda x: x[2:100, -100:2],
    "list": lambda x: x[[2, 0, 2]], "array": lambda x: x[np.array([-1, 0])],
    "method_chain": lambda x: x[1].T[::-1],
}


@pytest.mark.parametrize("fn", list(INDEXES.values()), ids=list(INDEXES))
def test_indexing_and_slicing_follow_numpy(fn, rng):
    x = rng.standard_normal((4, 5, 6)).astype(np.float32)
    check(fn, x)


_bounds = st.one_of(st.none(), st.integers(-7, 7))
_index_item = st.one_of(
    st.integers(-4, 3),
    st.builds(slice, _bounds, _bounds, st.one_of(st.none(), st.integers(-3, 3).filter(bool))),
    st.just(None))


@settings(max_examples=60, deadline=None)
@given(idx=st.lists(_index_item, min_size=1, max_size=4), ellipsis_at=st.integers(-1, 4))
def test_random_indexes_follow_numpy(idx, ellipsis_at):
    x = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    if 0 <= ellipsis_at <= len(idx):
        idx.insert(ellipsis_at, Ellipsis)
    idx = tuple(idx)
    try:
        want = x[idx]
    except IndexError:
        with gc.Graph("t") as g:
            t = g.input("x", x.shape)
            with pytest.raises(gc.GraphBuildError):
                t[idx]
        return
    check(lambda t: t[idx], x, want=want)


@settings(max_examples=40, deadline=None)
@given(shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=4, max_side=3))
def test_random_broadcasts_follow_numpy(shapes):
    a = np.arange(1, 1 + np.prod(shapes.input_shapes[0]), dtype=np.float32).reshape(shapes.input_shapes[0])
    b = np.full(shapes.input_shapes[1], 0.5, np.float32)
    g = check(lambda p, q: p * q - q, a, b)
    assert g.outputs["y"].type.shape == shapes.result_shape


def test_every_1d_slice_follows_python():
    """All starts/stops in and out of range, with positive and negative steps, in one graph."""
    bounds = [None, -8, -7, -6, -1, 0, 1, 5, 6, 7]
    slices = [slice(s, t, st) for s in bounds for t in bounds for st in (-3, -1, 1, 2)]
    x = np.arange(6, dtype=np.float32)
    with gc.Graph("slices") as g:
        t = g.input("x", (6,))
        g.output(**{f"s{k}": t[sl] for k, sl in enumerate(slices)})
    for backend in BACKENDS:
        out = gc.compile(g, backend)(x=x)
        for k, sl in enumerate(slices):
            assert np.array_equal(out[f"s{k}"], x[sl]) and out[f"s{k}"].shape == x[sl].shape, \
                (backend, sl, out[f"s{k}"])


def test_integer_tensor_indexing(rng):
    table = rng.standard_normal((10, 3)).astype(np.float32)
    idx = np.array([[1, 9, -2], [0, 0, 4]], np.int64)
    check(lambda t, i: t[i], table, idx)
    check(lambda t, i: gc.take(t, i, axis=1), table.T.copy(), idx.astype(np.int32),
          want=np.take(table.T, idx, axis=1))


def test_index_errors_are_clear():
    with gc.Graph("t") as g:
        x = g.input("x", (3, 4))
        with pytest.raises(gc.GraphBuildError, match="index 3 is out of range for axis 0 of size 3"):
            x[3]
        with pytest.raises(gc.GraphBuildError, match="too many indices"):
            x[0, 0, 0]
        with pytest.raises(gc.GraphBuildError, match="only one ellipsis"):
            x[..., 0, ...]
        with pytest.raises(gc.GraphBuildError, match="unsupported index"):
            x["a"]


# ---- methods and numpy-named functions ----------------------------------------------------------

METHODS = {
    "T": lambda x: x.T, "reshape_tuple": lambda x: x.reshape((6, 4)),
    "reshape_args": lambda x: x.reshape(4, -1), "sum": lambda x: x.sum(),
    "sum_axis": lambda x: x.sum(axis=1), "sum_keep": lambda x: x.sum(axis=(0, 2), keepdims=True),
    "mean": lambda x: x.mean(-1), "mean_keep": lambda x: x.mean(axis=0, keepdims=True),
    "max": lambda x: x.max(axis=1), "min": lambda x: x.min(),
    "argmax": lambda x: x.argmax(axis=-1), "argmax_flat": lambda x: x.argmax(),
    "astype": lambda x: (x * 3).astype("int32"),
}  # Tensor.transpose is torch's (swap two dims): tests/frontends/test_conventions.py


@pytest.mark.parametrize("fn", list(METHODS.values()), ids=list(METHODS))
def test_tensor_methods_follow_numpy(fn, rng):
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    check(fn, x, rtol=1e-5, atol=1e-6)


def test_math_methods(rng):
    x = rng.uniform(0.5, 2, size=(2, 3)).astype(np.float32)
    for name in ("exp", "log", "sqrt", "tanh", "relu", "sigmoid"):
        want = {"relu": np.maximum(x, 0), "sigmoid": special.expit(x)}.get(name)
        check(lambda t: getattr(t, name)(), x, want=getattr(np, name)(x) if want is None else want,
              rtol=1e-6)


NP_FUNCS = {  # name: f(module, x), called with module graphc and with numpy
    "sum": lambda m, x: m.sum(x, 1, keepdims=True),
    "mean": lambda m, x: m.mean(x, axis=(0, 1)),
    "max": lambda m, x: m.max(x, axis=0),
    "min": lambda m, x: m.min(x, -1),
    "argmax": lambda m, x: m.argmax(x, axis=1),
    "transpose": lambda m, x: m.transpose(x, (2, 0, 1)),
    "transpose_default": lambda m, x: m.transpose(x),
    "reshape": lambda m, x: m.reshape(x, (3, -1)),
    "swapaxes": lambda m, x: m.swapaxes(x, 0, 2),
    "where": lambda m, x: m.where(x > 0, x, 0.5 * x),
    "where_scalar": lambda m, x: m.where(x > 0, 1.0, x),
    "maximum": lambda m, x: m.maximum(x, 0.1),
    "minimum": lambda m, x: m.minimum(x, -x),
    "exp": lambda m, x: m.exp(x),
    "log": lambda m, x: m.log(m.abs(x) + 1),
    "sqrt": lambda m, x: m.sqrt(x * x),
    "tanh": lambda m, x: m.tanh(x),
    "sign": lambda m, x: m.sign(x),
    "abs": lambda m, x: m.abs(x),
    "negative": lambda m, x: m.negative(x),
    "power": lambda m, x: m.power(m.abs(x), 1.5),
    "subtract": lambda m, x: m.subtract(x, 1),
    "multiply": lambda m, x: m.multiply(x, x),
    "divide": lambda m, x: m.divide(x, 2),
    "concatenate": lambda m, x: m.concatenate([x, x * 2], axis=1),
    "stack": lambda m, x: m.stack([x, -x], axis=-1),
    "expand_dims": lambda m, x: m.expand_dims(x, 1),
    "squeeze": lambda m, x: m.squeeze(x[:1], 0),
    "broadcast_to": lambda m, x: m.broadcast_to(x[:, :1], (4, 2, 3, 4)),
    "take": lambda m, x: m.take(x, [2, 0], axis=2),
    "pad": lambda m, x: m.pad(x, ((0, 0), (1, 2), (3, 0)), constant_values=0.5),
    "pad_int": lambda m, x: m.pad(x, 1),
    "clip": lambda m, x: m.clip(x, -0.5, 0.5),
    "equal": lambda m, x: m.equal(x, x),
    "greater": lambda m, x: m.greater(x, 0),
    "logical_and": lambda m, x: m.logical_and(x > 0, x < 1),
    "logical_not": lambda m, x: m.logical_not(x > 0),
}


@pytest.mark.parametrize("fn", list(NP_FUNCS.values()), ids=list(NP_FUNCS))
def test_functions_follow_numpy_names_and_arguments(fn, rng):
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    check(lambda t: fn(gc, t), x, want=fn(np, x), rtol=1e-5, atol=1e-6)


def test_cast_erf_sigmoid_relu(rng):
    x = rng.standard_normal((3, 4))
    x32 = x.astype(np.float32)  # onnxruntime has no float64 Erf kernel
    check(gc.erf, x32, want=special.erf(x32), rtol=1e-6, atol=1e-7)
    check(gc.sigmoid, x, want=special.expit(x), rtol=1e-12)
    check(gc.relu, x, want=np.maximum(x, 0))
    check(lambda t: gc.cast(t, "int64"), x * 3, want=(x * 3).astype(np.int64))
    check(lambda t: gc.cast(t > 0, np.float32), x, want=(x > 0).astype(np.float32))


# ---- torch-named neural-network functions -------------------------------------------------------

def test_softmax_log_softmax_logsumexp(rng):
    x = rng.standard_normal((3, 5)) * 3
    check(lambda t: gc.softmax(t, dim=-1), x, want=special.softmax(x, axis=-1), rtol=1e-12)
    check(lambda t: gc.softmax(t, dim=0), x, want=special.softmax(x, axis=0), rtol=1e-12)
    check(lambda t: gc.log_softmax(t, dim=1), x, want=special.log_softmax(x, axis=1), rtol=1e-12)
    check(lambda t: gc.logsumexp(t, axis=1), x, want=special.logsumexp(x, axis=1), rtol=1e-12)
    check(lambda t: gc.logsumexp(t, 0, keepdims=True), x,
          want=special.logsumexp(x, axis=0, keepdims=True), rtol=1e-12)
    # stable for large logits, where exp overflows
    big = (x * 100).astype(np.float32)
    check(lambda t: gc.log_softmax(t), big, want=special.log_softmax(big.astype(np.float64), -1)
          .astype(np.float32), rtol=1e-5, atol=1e-4)
    check(lambda t: gc.softmax(t), big, want=special.softmax(big.astype(np.float64), -1)
          .astype(np.float32), rtol=1e-5, atol=1e-6)


def test_activations(rng):
    x = rng.standard_normal((4, 6))
    check(lambda t: gc.leaky_relu(t), x, want=np.where(x > 0, x, 0.01 * x), rtol=1e-12)
    check(lambda t: gc.leaky_relu(t, negative_slope=0.2), x, want=np.where(x > 0, x, 0.2 * x),
          rtol=1e-12)
    erf = np.vectorize(math.erf)
    x32 = x.astype(np.float32)  # onnxruntime has no float64 Erf kernel
    check(gc.gelu, x32, want=(0.5 * x32 * (1 + erf(x32 / math.sqrt(2)))).astype(np.float32),
          rtol=1e-6, atol=1e-7)
    tanh_gelu = 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    check(lambda t: gc.gelu(t, approximate="tanh"), x, want=tanh_gelu, rtol=1e-12)
    check(gc.silu, x, want=x * special.expit(x), rtol=1e-12)


def test_linear_and_layer_norm(rng):
    x = rng.standard_normal((2, 3, 4))
    w = rng.standard_normal((5, 4))
    bias = rng.standard_normal(5)
    check(lambda t, ww, bb: gc.linear(t, ww, bb), x, w, bias, want=x @ w.T + bias, rtol=1e-12)
    check(lambda t, ww: gc.linear(t, ww), x, w, want=x @ w.T, rtol=1e-12)
    gamma, beta = rng.standard_normal(4), rng.standard_normal(4)
    mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    check(lambda t, g_, b_: gc.layer_norm(t, 4, g_, b_), x, gamma, beta,
          want=(x - mu) / np.sqrt(var + 1e-5) * gamma + beta, rtol=1e-10)
    mu2, var2 = x.mean((1, 2), keepdims=True), x.var((1, 2), keepdims=True)
    check(lambda t: gc.layer_norm(t, (3, 4), eps=1e-3), x, want=(x - mu2) / np.sqrt(var2 + 1e-3),
          rtol=1e-10)


def test_conv_and_pool_take_torch_arguments(rng):
    # float32: onnxruntime has no float64 Conv / AveragePool kernels
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    bias = rng.standard_normal(4).astype(np.float32)
    ref = gc.ops.get_op("conv2d").ref
    want = ref(x, w, stride=(2, 2), padding=(1, 1), dilation=(1, 1), groups=1) + bias[:, None, None]
    check(lambda t, ww, bb: gc.conv2d(t, ww, bb, stride=2, padding=1), x, w, bias, want=want,
          rtol=1e-5, atol=1e-5)
    mp = x.reshape(2, 3, 4, 2, 4, 2).max(axis=(3, 5))
    check(lambda t: gc.max_pool2d(t, kernel_size=2), x, want=mp)
    ap = x.reshape(2, 3, 4, 2, 4, 2).mean(axis=(3, 5))
    check(lambda t: gc.avg_pool2d(t, 2), x, want=ap, rtol=1e-6)


def test_losses_match_formulas(rng):
    logits = rng.standard_normal((5, 4))
    labels = np.array([0, 3, 1, 1, 2], np.int64)
    logp = special.log_softmax(logits, -1)
    check(lambda z, y: gc.cross_entropy(z, y), logits, labels,
          want=-logp[np.arange(5), labels].mean(), rtol=1e-12)
    check(lambda z, y: gc.nll_loss(z, y, reduction="sum"), logp, labels,
          want=-logp[np.arange(5), labels].sum(), rtol=1e-12)
    check(lambda z, y: gc.one_hot(y, 4, "float64"), logits, labels, want=np.eye(4)[labels])
    t = rng.uniform(size=(5, 4))
    check(lambda z, y: gc.mse_loss(z, y), logits, t, want=((logits - t) ** 2).mean(), rtol=1e-12)
    bce = -(t * np.log(special.expit(logits)) + (1 - t) * np.log(1 - special.expit(logits)))
    check(lambda z, y: gc.binary_cross_entropy_with_logits(z, y, reduction="none"), logits, t,
          want=bce, rtol=1e-10)


# ---- symbolic dims ------------------------------------------------------------------------------

def test_symbolic_dims_flow_through_reshape_minus_one_and_flatten(rng):
    fns = {  # name: (DSL function, its symbolic output shape, the numpy equivalent)
        "flat": (lambda t: t.reshape(-1), ("12*N",), lambda a: a.reshape(-1)),
        "keep_batch": (lambda t: t.reshape("N", -1), ("N", 12), lambda a: a.reshape(len(a), -1)),
        "rows": (lambda t: t.reshape(-1, 4), ("3*N", 4), lambda a: a.reshape(-1, 4)),
        "flatten": (lambda t: gc.flatten(t, 1), ("N", 12), lambda a: a.reshape(len(a), -1)),
        "flatten_all": (lambda t: t.flatten(), ("12*N",), lambda a: a.reshape(-1)),
        "round_trip": (lambda t: t.reshape(-1, 4).reshape("N", 3, 4).sum(axis=(1, 2)), ("N",),
                       lambda a: a.sum(axis=(1, 2))),
    }
    for name, (fn, shape, np_fn) in fns.items():
        with gc.Graph(name) as g:
            x = g.input("x", ("N", 3, 4))
            y = fn(x)
            assert y.shape == shape, (name, y.shape)
            g.output(y=y)
        for backend in BACKENDS:
            exe = gc.compile(g, backend)
            for n in (1, 5):
                xv = rng.standard_normal((n, 3, 4)).astype(np.float32)
                got = exe(x=xv)["y"]
                np.testing.assert_allclose(got, np_fn(xv), rtol=1e-6, atol=1e-6,
                                           err_msg=f"{name} {backend} N={n}")


def test_symbolic_batch_with_broadcast_and_matmul(rng):
    with gc.Graph("sym") as g:
        x = g.input("x", ("N", 4))
        w = g.param("w", init=rng.standard_normal((4, 3)).astype(np.float32))
        y = gc.softmax(x @ w + 1.0, dim=-1)
        assert y.shape == ("N", 3)
        g.output(y=y)
    for n in (2, 7):
        xv = rng.standard_normal((n, 4)).astype(np.float32)
        for backend in BACKENDS:
            got = gc.compile(g, backend)(x=xv)["y"]
            np.testing.assert_allclose(got, special.softmax(xv @ g.params[0].data + 1, -1), rtol=1e-5)


def test_symbolic_dim_mismatch_is_caught_while_building():
    with gc.Graph("t") as g:
        x = g.input("x", ("N", 4))
        y = g.input("y", ("M", 4))
        with pytest.raises(gc.GraphBuildError, match=r"add: \(N, 4\) and \(M, 4\): dims M and N"):
            x + y


# ---- errors point at the user's line ------------------------------------------------------------

def test_shape_mismatch_names_op_shapes_and_callers_file_line():
    with gc.Graph("t") as g:
        x = g.input("x", ("N", 784))
        w = g.param("w", (128, 10))
        with pytest.raises(gc.GraphBuildError) as info:
            x @ w  # MARK-matmul
    msg = str(info.value)
    line = _line_of("# MARK-matmul")
    assert f"{HERE}:{line}: matmul: (N, 784) @ (128, 10): inner dimensions 784 and 128 differ" in msg


def _user_helper(x, w):
    return gc.linear(x, w)  # MARK-helper


def test_error_inside_a_composite_points_at_the_users_call():
    with gc.Graph("t") as g:
        x = g.input("x", (2, 3))
        w = g.input("w", (5, 4))
        with pytest.raises(gc.GraphBuildError) as info:
            _user_helper(x, w)
    assert f"{HERE}:{_line_of('# MARK-helper')}: matmul:" in str(info.value)


def test_wrong_dtype_is_a_clear_error():
    with gc.Graph("t") as g:
        x = g.input("x", (3,))
        i = g.input("i", (3,), "int64")
        with pytest.raises(gc.GraphBuildError) as info:
            x + i  # MARK-dtype
        assert f"{HERE}:{_line_of('# MARK-dtype')}: add: dtypes float32 and int64 differ" in str(info.value)
        with pytest.raises(gc.GraphBuildError, match="log: input must be float32 or float64, got int64"):
            gc.log(i)
        with pytest.raises(gc.GraphBuildError, match="unsupported dtype 'complex64'"):
            g.input("h", (3,), "complex64")


def test_values_cannot_cross_graphs():
    with gc.Graph("one") as g1:
        x1 = g1.input("x", (3,))
    with gc.Graph("two") as g2:
        x2 = g2.input("x", (3,))
        with pytest.raises(gc.GraphBuildError, match="graph 'two'.*graph 'one'.*cannot cross graphs"):
            x1 + x2
        with pytest.raises(gc.GraphBuildError, match="belongs to graph 'one'.*cannot cross graphs"):
            gc.exp(x1)
        with pytest.raises(gc.GraphBuildError, match="cannot cross graphs"):
            g2.output(y=x1)


def test_misuse_errors():
    with pytest.raises(gc.GraphBuildError, match="no graph is being built"):
        gc.constant(1.0)
    with gc.Graph("t") as g:
        x = g.input("x", (3,))
        with pytest.raises(gc.GraphBuildError, match="truth value"):
            if x > 0:
                pass
        with pytest.raises(gc.GraphBuildError, match="already has a value named 'x'"):
            g.input("x", (4,))
        with pytest.raises(gc.GraphBuildError, match="input 'n': negative dim"):
            g.input("n", (-1, 3))
        with pytest.raises(gc.GraphBuildError, match="only one dim may be -1"):
            x.reshape(-1, -1)
        with pytest.raises(gc.GraphBuildError, match="param 'p': shape \\(2,\\) but init has shape"):
            g.param("p", (2,), init=np.zeros(3))


# ---- graphs, params and tracing -----------------------------------------------------------------

def test_params_carry_initial_values_and_can_be_fed(rng):
    w0 = rng.standard_normal((4, 2)).astype(np.float32)
    with gc.Graph("p") as g:
        x = g.input("x", ("N", 4))
        w = g.param("w", init=w0)
        b = g.param("b", (2,), init=gc.init.constant(0.5))
        z = g.param("z", (2,))
        g.output(y=x @ w + b + z)
    assert np.array_equal(g.param_data()["w"], w0) and g.params[1].data.dtype == np.float32
    assert np.array_equal(g.params[2].data, np.zeros(2, np.float32))
    xv = rng.standard_normal((3, 4)).astype(np.float32)
    for backend in BACKENDS:
        exe = gc.compile(g, backend)
        np.testing.assert_allclose(exe(x=xv)["y"], xv @ w0 + 0.5, rtol=1e-6)
        np.testing.assert_allclose(exe(x=xv, w=np.zeros_like(w0))["y"], np.full((3, 2), 0.5), rtol=1e-6)


def test_outputs_keep_their_order_and_names(rng):
    with gc.Graph("o") as g:
        x = g.input("x", (2,))
        e = gc.exp(x)
        g.output(e, loss=e.sum(), first=x * 2)
    assert list(g.outputs) == ["exp", "loss", "first"]
    xv = rng.standard_normal(2).astype(np.float32)
    for backend in BACKENDS:
        out = gc.compile(g, backend)(x=xv)
        assert list(out) == ["exp", "loss", "first"]
        np.testing.assert_allclose(out["first"], 2 * xv)


def test_traced_function():
    w0 = np.arange(12, dtype=np.float32).reshape(4, 3) / 10

    @gc.function(x=gc.spec(("N", 4)), y=gc.spec(("N",), "int64"))
    def loss_fn(x, y):
        w = gc.constant(w0)
        return gc.cross_entropy(x @ w, y)

    g = loss_fn.graph
    assert isinstance(g, gc.Graph) and g.name == "loss_fn"
    assert [(v.name, str(v.type)) for v in g.inputs] == [("x", "f32[N, 4]"), ("y", "i64[N]")]
    assert list(g.outputs) == ["output"] and g.outputs["output"].type.shape == ()
    xv = np.ones((2, 4), np.float32)
    yv = np.array([0, 2])
    got = loss_fn(xv, yv)
    want = -special.log_softmax(xv @ w0, -1)[np.arange(2), yv].mean()
    np.testing.assert_allclose(got, want, rtol=1e-6)
    np.testing.assert_allclose(gc.compile(g, "onnxruntime")(x=xv, y=yv)["output"], want, rtol=1e-6)
    with pytest.raises(gc.GraphBuildError, match="no spec for argument\\(s\\) y"):
        gc.function(x=gc.spec((2,)))(lambda x, y: x)


def test_traced_function_with_tuple_and_dict_results():
    @gc.function(x=gc.spec((3,)))
    def two(x):
        return x + 1, x * 2

    @gc.function(x=gc.spec((3,)))
    def named(x):
        return {"a": x + 1, "b": x.sum()}

    assert list(two.graph.outputs) == ["output_0", "output_1"]
    assert list(named.graph.outputs) == ["a", "b"]
    out = named(np.array([1, 2, 3], np.float32))
    assert out["b"] == 6


def test_traced_function_inlines_when_called_on_tensors(rng):
    @gc.function(x=gc.spec(("N", 3)))
    def block(x):
        return gc.tanh(x) * 2

    with gc.Graph("outer") as g:
        x = g.input("x", ("N", 3))
        g.output(y=block(block(x)) + 1)
    assert [n.op.name for n in g.nodes].count("tanh") == 2
    xv = rng.standard_normal((4, 3)).astype(np.float32)
    for backend in BACKENDS:
        got = gc.compile(g, backend)(x=xv)["y"]
        np.testing.assert_allclose(got, np.tanh(np.tanh(xv) * 2) * 2 + 1, rtol=1e-6)
    first = block.graph
    assert block.trace() is not first and block.graph is not first  # trace() re-traces


# ---- running graphs: feed errors ----------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_feeds_are_clear_errors(backend):
    with gc.Graph("f") as g:
        x = g.input("x", ("N", 3))
        y = g.input("y", ("N",), "int64")
        g.output(z=x.sum(axis=1) + gc.cast(y, "float32"))
    exe = gc.compile(g, backend)
    x = np.zeros((2, 3), np.float32)
    y = np.zeros(2, np.int64)
    assert exe(x=x, y=y)["z"].shape == (2,)
    with pytest.raises(gc.FeedError, match="has no input named 'q'; its inputs are x, y"):
        exe(x=x, y=y, q=x)
    with pytest.raises(gc.FeedError, match="missing feed for input 'y'"):
        exe(x=x)
    with pytest.raises(gc.FeedError, match=r"feed 'x' has shape \(2, 4\), expected f32\[N, 3\]"):
        exe(x=np.zeros((2, 4), np.float32), y=y)
    with pytest.raises(gc.FeedError, match="rank 2"):
        exe(x=np.zeros(3, np.float32), y=y)
    with pytest.raises(gc.FeedError, match="feed 'y' has dtype float32, expected int64"):
        exe(x=x, y=y.astype(np.float32))
    with pytest.raises(gc.FeedError, match=r"dim 0 \(N\) is 3, but feed 'x' set N = 2"):
        exe(x=x, y=np.zeros(3, np.int64))
