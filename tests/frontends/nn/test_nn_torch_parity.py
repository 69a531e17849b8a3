"""Parity with PyTorch: same weights, same inputs -> same outputs and gradients (float64).

Each graphc layer gets a PyTorch layer's state dict converted to numpy, loaded as is; outputs
are compared on the numpy reference and on onnxruntime, gradients (gc.grad) against autograd.
Skipped cleanly when torch is not installed.
"""
import numpy as np
import pytest

import graphc as gc
from graphc import nn

from nn_helpers import compare_with_torch, load_from_torch, run, torch, trace

pytestmark = pytest.mark.skipif(torch is None, reason="PyTorch is not installed")


@pytest.fixture(autouse=True)
def _seed():
    if torch is not None:
        torch.manual_seed(0)
    gc.manual_seed(0)


def rnd(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def test_linear():
    compare_with_torch(nn.Linear(5, 3).double(), torch.nn.Linear(5, 3).double(), [rnd(4, 2, 5)])


def test_linear_no_bias():
    compare_with_torch(nn.Linear(5, 3, bias=False).double(),
                       torch.nn.Linear(5, 3, bias=False).double(), [rnd(4, 5)])


@pytest.mark.parametrize("kw", [dict(), dict(stride=2, padding=1), dict(padding=2, dilation=2),
                                dict(groups=2, padding="same")])
def test_conv2d(kw):
    # onnxruntime's CPU Conv has no float64 kernel: float64 on numpy, float32 on onnxruntime
    compare_with_torch(nn.Conv2d(4, 6, 3, **kw).double(), torch.nn.Conv2d(4, 6, 3, **kw).double(),
                       [rnd(2, 4, 7, 7)], backends=("numpy",))
    compare_with_torch(nn.Conv2d(4, 6, 3, **kw), torch.nn.Conv2d(4, 6, 3, **kw),
                       [rnd(2, 4, 7, 7).astype(np.float32)], backends=("onnxruntime",),
                       grads=False, rtol=1e-4, atol=1e-5)


def test_pools_and_flatten():
    t = torch.nn.Sequential(torch.nn.MaxPool2d(2), torch.nn.AvgPool2d(3, stride=1, padding=1),
                            torch.nn.Flatten())
    g = nn.Sequential(nn.MaxPool2d(2), nn.AvgPool2d(3, stride=1, padding=1), nn.Flatten())
    compare_with_torch(g, t, [rnd(2, 3, 8, 8)], backends=("numpy",))
    compare_with_torch(g, t, [rnd(2, 3, 8, 8).astype(np.float32)], backends=("onnxruntime",),
                       grads=False, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("act", ["ReLU", "Sigmoid", "Tanh", "LeakyReLU", "GELU", "SiLU", "ELU",
                                 "Softplus", "Softmax", "LogSoftmax"])
def test_activation_modules(act):
    kw = {"dim": -1} if "Softmax" in act else {}
    # onnxruntime's CPU Erf (in GELU) is float32 only
    be = ("numpy",) if act == "GELU" else ("numpy", "onnxruntime")
    compare_with_torch(getattr(nn, act)(**kw), getattr(torch.nn, act)(**kw), [rnd(3, 5) * 2],
                       backends=be)
    compare_with_torch(getattr(nn, act)(**kw), getattr(torch.nn, act)(**kw),
                       [rnd(3, 5).astype(np.float32) * 2], backends=("onnxruntime",), grads=False,
                       rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cls,shape", [("BatchNorm1d", (6, 4)), ("BatchNorm1d", (6, 4, 3)),
                                       ("BatchNorm2d", (5, 4, 3, 3))])
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm(cls, shape, training):
    t = getattr(torch.nn, cls)(4).double()
    g = getattr(nn, cls)(4).double()
    with torch.no_grad():  # non-trivial affine parameters and running statistics
        t.weight.uniform_(0.5, 1.5)
        t.bias.uniform_(-0.5, 0.5)
        t.running_mean.uniform_(-1, 1)
        t.running_var.uniform_(0.5, 2)
    t.train(training)
    g.train(training)
    x = rnd(*shape) * 2 + 1
    graph = compare_with_torch(g, t, [x])
    if training:  # running statistics: graph outputs "state:<name>" equal torch's updated buffers
        res = run(graph, x)
        for name in ("running_mean", "running_var"):
            np.testing.assert_allclose(res[f"state:{name}"], getattr(t, name).numpy(), rtol=1e-10)
        # calling eagerly applies the same update to the module's buffers, as PyTorch does
        before = g.running_mean.data.copy()
        g(x)
        assert not np.allclose(before, g.running_mean.data)
    else:
        assert not any(k.startswith("state:") for k in graph.outputs)


def test_layer_norm():
    t = torch.nn.LayerNorm((3, 4)).double()
    with torch.no_grad():
        t.weight.uniform_(0.5, 1.5)
        t.bias.uniform_(-0.5, 0.5)
    compare_with_torch(nn.LayerNorm((3, 4)).double(), t, [rnd(2, 3, 4)])


def test_embedding_with_padding():
    t = torch.nn.Embedding(10, 4, padding_idx=0).double()
    g = nn.Embedding(10, 4, padding_idx=0).double()
    idx = np.array([[0, 3, 9], [2, 0, 3]], np.int64)
    compare_with_torch(g, t, [idx])


@pytest.mark.parametrize("cls", ["RNN", "LSTM", "GRU"])
@pytest.mark.parametrize("batch_first,layers,bidir", [(False, 1, False), (True, 2, False),
                                                      (True, 1, True)])
def test_recurrent(cls, batch_first, layers, bidir):
    kw = dict(num_layers=layers, batch_first=batch_first, bidirectional=bidir)
    t = getattr(torch.nn, cls)(3, 5, **kw).double()
    g = getattr(nn, cls)(3, 5, **kw).double()
    x = rnd(2, 4, 3) if batch_first else rnd(4, 2, 3)
    compare_with_torch(g, t, [x], rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("cls", ["LSTM", "GRU", "RNN"])
def test_recurrent_with_initial_state(cls):
    t = getattr(torch.nn, cls)(3, 4, num_layers=2, batch_first=True).double()
    g = getattr(nn, cls)(3, 4, num_layers=2, batch_first=True).double()
    x, h0, c0 = rnd(2, 5, 3), rnd(2, 2, 4, seed=1), rnd(2, 2, 4, seed=2)
    if cls == "LSTM":
        wrap_t = lambda m: (lambda a, b, c: m(a, (b, c)))  # noqa: E731
        tm, gm = _Fn(wrap_t(t), t), _GFn(lambda a, b, c: g(a, (b, c)), g)
        compare_with_torch(gm, tm, [x, h0, c0])
    else:
        compare_with_torch(g, t, [x, h0])


def test_relu_rnn_and_cells():
    compare_with_torch(nn.RNN(3, 4, nonlinearity="relu").double(),
                       torch.nn.RNN(3, 4, nonlinearity="relu").double(), [rnd(5, 2, 3)])
    for cls in ("RNNCell", "GRUCell"):
        compare_with_torch(getattr(nn, cls)(3, 4).double(), getattr(torch.nn, cls)(3, 4).double(),
                           [rnd(2, 3), rnd(2, 4, seed=1)])
    t = torch.nn.LSTMCell(3, 4).double()
    g = nn.LSTMCell(3, 4).double()
    compare_with_torch(_GFn(lambda a, b, c: g(a, (b, c)), g), _Fn(lambda a, b, c: t(a, (b, c)), t),
                       [rnd(2, 3), rnd(2, 4, seed=1), rnd(2, 4, seed=2)])


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("mask", ["none", "bool", "float", "padding", "causal"])
def test_multihead_attention(batch_first, mask):
    e, h, n, length = 8, 2, 3, 5
    t = torch.nn.MultiheadAttention(e, h, batch_first=batch_first).double()
    g = nn.MultiheadAttention(e, h, batch_first=batch_first).double()
    with torch.no_grad():
        t.in_proj_bias.uniform_(-0.5, 0.5)
        t.out_proj.bias.uniform_(-0.5, 0.5)
    x = rnd(n, length, e) if batch_first else rnd(length, n, e)
    kw = {}
    if mask == "bool":
        kw["attn_mask"] = np.random.default_rng(3).random((length, length)) < 0.3
        np.fill_diagonal(kw["attn_mask"], False)
    elif mask == "float":
        kw["attn_mask"] = rnd(length, length, seed=4)
    elif mask == "padding":
        kpm = np.zeros((n, length), bool)
        kpm[0, -2:] = True
        kpm[2, 0] = True
        kw["key_padding_mask"] = kpm
    elif mask == "causal":
        kw["attn_mask"] = np.triu(np.ones((length, length), bool), 1)
    tkw = {k: torch.from_numpy(v) for k, v in kw.items()}
    compare_with_torch(_GFn(lambda q: g(q, q, q, **kw), g), _Fn(lambda q: t(q, q, q, **tkw), t),
                       [x])


def test_multihead_cross_attention_per_head_weights():
    e, h = 6, 3
    t = torch.nn.MultiheadAttention(e, h, batch_first=True).double()
    g = nn.MultiheadAttention(e, h, batch_first=True).double()
    q, kv = rnd(2, 4, e), rnd(2, 7, e, seed=1)
    compare_with_torch(_GFn(lambda a, b: g(a, b, b, average_attn_weights=False), g),
                       _Fn(lambda a, b: t(a, b, b, average_attn_weights=False), t), [q, kv])


@pytest.mark.parametrize("norm_first,act", [(False, "relu"), (True, "gelu")])
def test_transformer_encoder_layer(norm_first, act):
    kw = dict(dim_feedforward=16, dropout=0.0, batch_first=True, norm_first=norm_first,
              activation=act)
    t = torch.nn.TransformerEncoderLayer(8, 2, **kw).double()
    g = nn.TransformerEncoderLayer(8, 2, **kw).double()
    x = rnd(2, 5, 8)
    kpm = np.zeros((2, 5), bool)
    kpm[1, -1] = True
    compare_with_torch(_GFn(lambda a: g(a, src_key_padding_mask=kpm), g),
                       _Fn(lambda a: t(a, src_key_padding_mask=torch.from_numpy(kpm)), t), [x],
                       backends=("numpy",) if act == "gelu" else ("numpy", "onnxruntime"))


def test_transformer_encoder_stack_eval_mode():
    layer_t = torch.nn.TransformerEncoderLayer(8, 2, 16, dropout=0.1)
    t = torch.nn.TransformerEncoder(layer_t, 2, enable_nested_tensor=False).double().eval()
    g = nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16, dropout=0.1), 2).double().eval()
    assert list(g.state_dict()) == list(t.state_dict())
    compare_with_torch(g, t, [rnd(5, 2, 8)])


class _Fn(torch.nn.Module if torch is not None else object):
    """Wraps a lambda over a torch module so compare_with_torch sees its parameters."""

    def __init__(self, fn, inner):
        super().__init__()
        self.fn, self.inner = fn, inner

    def forward(self, *a):
        return self.fn(*a)

    def state_dict(self, *a, **k):
        return self.inner.state_dict(*a, **k)

    def named_parameters(self, *a, **k):
        return self.inner.named_parameters(*a, **k)


class _GFn(nn.Module):
    def __init__(self, fn, inner):
        super().__init__()
        # not a registered child: the wrapped module is the root, so names match PyTorch's
        object.__setattr__(self, "fn", fn)
        object.__setattr__(self, "inner", inner)

    def forward(self, *a):
        return self.fn(*a)

    def load_state_dict(self, sd, strict=True):
        return self.inner.load_state_dict(sd, strict)


def test_full_state_dict_round_trip_through_torch():
    """A graphc model's state dict loads into the same PyTorch architecture, and back."""
    g = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(),
                      nn.Linear(2 * 6 * 6, 3))
    t = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2), torch.nn.ReLU(),
                            torch.nn.Flatten(), torch.nn.Linear(2 * 6 * 6, 3))
    assert {k: v.shape for k, v in g.state_dict().items()} == \
        {k: tuple(v.shape) for k, v in t.state_dict().items()}
    t.load_state_dict({k: torch.from_numpy(v) for k, v in g.state_dict().items()})
    g2 = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(),
                       nn.Linear(2 * 6 * 6, 3))
    load_from_torch(g2, t)
    for k, v in g.state_dict().items():
        np.testing.assert_array_equal(v, g2.state_dict()[k])
    g.eval()
    t.eval()
    x = rnd(2, 1, 8, 8).astype(np.float32)
    out = run(trace(g, x), x, backend="onnxruntime")["out0"]
    np.testing.assert_allclose(out, t(torch.from_numpy(x)).detach().numpy(), rtol=1e-4, atol=1e-5)


def _loss_graph(fn, x, t):
    g = gc.Graph("loss")
    with g:
        xi = g.input("x", x.shape, x.dtype.name)
        ti = g.input("t", t.shape, "int64" if t.dtype.kind in "iu" else t.dtype.name)
        g.output(loss=fn(xi, ti))
    return gc.grad(g, wrt=["x"])


LOSSES = [
    ("mse", lambda a, b: nn.mse_loss(a, b), lambda a, b: torch.nn.functional.mse_loss(a, b), "reg"),
    ("l1", nn.l1_loss, lambda a, b: torch.nn.functional.l1_loss(a, b), "reg"),
    ("huber", lambda a, b: nn.huber_loss(a, b, delta=0.7),
     lambda a, b: torch.nn.functional.huber_loss(a, b, delta=0.7), "reg"),
    ("smooth_l1", lambda a, b: nn.smooth_l1_loss(a, b, beta=0.5),
     lambda a, b: torch.nn.functional.smooth_l1_loss(a, b, beta=0.5), "reg"),
    ("bce", lambda a, b: nn.binary_cross_entropy(nn.sigmoid(a), b),
     lambda a, b: torch.nn.functional.binary_cross_entropy(torch.sigmoid(a), b), "bin"),
    ("bce_logits", nn.binary_cross_entropy_with_logits,
     lambda a, b: torch.nn.functional.binary_cross_entropy_with_logits(a, b), "bin"),
    ("cross_entropy", lambda a, b: nn.cross_entropy(a, b, label_smoothing=0.1),
     lambda a, b: torch.nn.functional.cross_entropy(a, b, label_smoothing=0.1), "cls"),
    ("cross_entropy_sum", lambda a, b: nn.cross_entropy(a, b, reduction="sum"),
     lambda a, b: torch.nn.functional.cross_entropy(a, b, reduction="sum"), "cls"),
    ("nll", lambda a, b: nn.nll_loss(nn.log_softmax(a), b),
     lambda a, b: torch.nn.functional.nll_loss(torch.log_softmax(a, -1), b), "cls"),
    ("multi_margin", nn.multi_margin_loss, lambda a, b: torch.nn.functional.multi_margin_loss(a, b), "cls"),
    ("multi_margin_p2", lambda a, b: nn.multi_margin_loss(a, b, p=2, margin=0.5),
     lambda a, b: torch.nn.functional.multi_margin_loss(a, b, p=2, margin=0.5), "cls"),
    ("hinge_svm", nn.multiclass_hinge_loss,
     lambda a, b: torch.nn.functional.multi_margin_loss(a, b, reduction="sum") * a.shape[1] / len(a),
     "cls"),
]


@pytest.mark.parametrize("name,gfn,tfn,kind", LOSSES, ids=[x[0] for x in LOSSES])
def test_losses(name, gfn, tfn, kind):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 4)) * 1.5
    if kind == "reg":
        t = rng.standard_normal((6, 4))
    elif kind == "bin":
        t = (rng.random((6, 4)) > 0.5).astype(np.float64)
    else:
        t = rng.integers(0, 4, 6).astype(np.int64)
    g = _loss_graph(gfn, x, t)
    xt = torch.from_numpy(x).requires_grad_(True)
    want = tfn(xt, torch.from_numpy(t))
    want.backward()
    for be in ("numpy", "onnxruntime"):
        res = gc.compile(g, be)(x=x, t=t)
        np.testing.assert_allclose(res["loss"], want.item(), rtol=1e-10, err_msg=be)
        np.testing.assert_allclose(res["d_x"], xt.grad.numpy(), rtol=1e-9, atol=1e-12, err_msg=be)


def test_loss_modules_match_functions():
    x = np.random.default_rng(0).standard_normal((5, 3))
    t = np.array([0, 2, 1, 1, 0])
    for mod, fn in [(nn.CrossEntropyLoss(label_smoothing=0.2),
                     lambda a, b: nn.cross_entropy(a, b, label_smoothing=0.2)),
                    (nn.MultiMarginLoss(), nn.multi_margin_loss)]:
        a = gc.compile(_loss_graph(lambda u, v: mod(u, v), x, t), "numpy")(x=x, t=t)["loss"]
        b = gc.compile(_loss_graph(fn, x, t), "numpy")(x=x, t=t)["loss"]
        assert a == b
