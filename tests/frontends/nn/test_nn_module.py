"""graphc.nn.Module: registration, state dicts, naming in traced graphs, modes, errors."""
import os

import numpy as np
import pytest

import graphc as gc
from graphc import nn

from nn_helpers import run, trace

HERE = os.path.basename(__file__)


def mlp():
    gc.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.BatchNorm1d(8), nn.Dropout(0.5),
                         nn.Linear(8, 3))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 6), nn.Tanh())
        self.head = nn.Linear(6, 2)
        self.scale = nn.Parameter(np.full((2,), 2.0, np.float32))
        self.register_buffer("offset", np.ones(2, np.float32), persistent=False)

    def forward(self, x):
        return self.head(self.body(x)) * self.scale + self.offset


def test_registration_and_state_dict_names():
    m = Net()
    assert [n for n, _ in m.named_parameters()] == ["scale", "body.0.weight", "body.0.bias",
                                                    "head.weight", "head.bias"]
    assert m.parameters()[1].name == "body.0.weight"
    assert list(m.state_dict()) == ["scale", "body.0.weight", "body.0.bias", "head.weight",
                                    "head.bias"]  # non-persistent buffer left out
    assert [n for n, _ in m.named_buffers()] == ["offset"]
    assert m.num_parameters() == 2 + 4 * 6 + 6 + 6 * 2 + 2
    bn = nn.BatchNorm1d(3)
    assert list(bn.state_dict()) == ["weight", "bias", "running_mean", "running_var",
                                     "num_batches_tracked"]
    assert bn.state_dict()["weight"] is not bn.weight.data  # a copy


def test_traced_params_use_root_relative_state_dict_names():
    m = Net()

    @gc.function(x=gc.spec(("N", 4)))
    def f(x):
        return m(x)

    g = f.graph
    assert [p.name for p in g.params] == ["body.0.weight", "body.0.bias", "head.weight",
                                          "head.bias", "scale", "offset"]
    assert [v.name for v in g.with_role(gc.Role.BUFFER)] == ["offset"]
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    h = np.tanh(x @ m.body[0].weight.data.T + m.body[0].bias.data)
    want = (h @ m.head.weight.data.T + m.head.bias.data) * 2 + 1
    np.testing.assert_allclose(f(x), want, rtol=1e-5)
    np.testing.assert_allclose(m(x), want, rtol=1e-5)  # eager call on arrays
    # gc.grad accepts the model's parameters (they know their names)
    gl = trace(m, x, out_fn=lambda y: gc.sum(y))
    gg = gc.grad(gl, wrt=m.parameters())
    assert [k for k in gg.outputs if k.startswith("d_")] == ["d_" + n for n in m.parameter_names()]
    # a submodule's parameters keep the names they have in the traced graph
    gh = gc.grad(gl, wrt=m.head.parameters())
    assert [k for k in gh.outputs if k.startswith("d_")] == ["d_head.weight", "d_head.bias"]


def test_shared_module_creates_each_param_once():
    lin = nn.Linear(3, 3)
    model = nn.Sequential(lin, nn.ReLU(), lin)
    assert list(model.state_dict()) == ["0.weight", "0.bias"]
    g = trace(model, np.zeros((2, 3), np.float32))
    assert [p.name for p in g.params] == ["0.weight", "0.bias"]
    x = np.random.default_rng(1).standard_normal((2, 3)).astype(np.float32)
    w, b = lin.weight.data, lin.bias.data
    want = np.maximum(x @ w.T + b, 0) @ w.T + b
    np.testing.assert_allclose(run(g, x)["out0"], want, rtol=1e-5)


def test_two_roots_with_clashing_names_is_a_clear_error():
    a, b = nn.Linear(3, 3), nn.Linear(3, 3)
    with pytest.raises(gc.GraphBuildError, match="already has a value named '.*weight'.*one parent"):
        trace(nn.Identity(), np.zeros((1, 3), np.float32), out_fn=lambda x: b(a(x)))


def test_load_state_dict_names_every_problem():
    m = Net()
    sd = m.state_dict()
    sd.pop("head.bias")
    sd["extra.weight"] = np.zeros(3)
    sd["body.0.weight"] = np.zeros((5, 5))
    with pytest.raises(KeyError) as ei:
        m.load_state_dict(sd)
    msg = str(ei.value)
    assert "missing: head.bias" in msg
    assert "unexpected: extra.weight" in msg
    assert "body.0.weight: expected shape (6, 4), got (5, 5)" in msg
    assert HERE in msg  # the user's line
    sd["body.0.weight"] = np.zeros((6, 4))
    missing, unexpected = m.load_state_dict(sd, strict=False)
    assert missing == ["head.bias"] and unexpected == ["extra.weight"]
    assert np.all(m.body[0].weight.data == 0)


def test_load_state_dict_updates_traced_graph_in_place():
    m = nn.Linear(2, 2)
    g = trace(m, np.zeros((1, 2), np.float32))
    m.load_state_dict({"weight": np.eye(2), "bias": np.array([1.0, 2.0])})
    assert m.weight.dtype == np.float32
    np.testing.assert_allclose(run(g, np.array([[3.0, 4.0]], np.float32))["out0"], [[4.0, 6.0]])


def test_train_eval_flags_and_dtype():
    m = mlp()
    assert all(x.training for x in m.modules())
    m.eval()
    assert not any(x.training for x in m.modules())
    m.train()
    assert m[3].training
    m.double()
    assert all(p.dtype == np.float64 for p in m.parameters())
    assert m[2].running_mean.dtype == np.float64
    assert m[2].num_batches_tracked.dtype == np.int64


def test_training_graph_has_state_outputs_after_the_loss_and_eval_graph_has_none():
    m = mlp()

    @gc.function(x=gc.spec(("N", 4)), y=gc.spec(("N",), "int64"))
    def loss_fn(x, y):
        return {"loss": nn.cross_entropy(m(x), y)}

    g = loss_fn.graph
    assert list(g.outputs) == ["loss", "state:2.running_mean", "state:2.running_var",
                               "state:2.num_batches_tracked"]
    assert g.updates == {"state:2.running_mean": "2.running_mean",
                                       "state:2.running_var": "2.running_var",
                                       "state:2.num_batches_tracked": "2.num_batches_tracked"}
    assert g.role_input(gc.Role.RNG_SEED) is not None
    m.eval()
    ge = loss_fn.trace()
    assert list(ge.outputs) == ["loss"]
    assert not ge.has_value("rng_seed")  # no dropout in eval
    assert "2.running_mean" in [p.name for p in ge.params]


def test_dropout_train_vs_eval():
    d = nn.Dropout(0.25)
    x = np.ones((200, 50), np.float32)
    g = trace(d, x)
    y = run(g, x)["out0"]
    assert abs((y == 0).mean() - 0.25) < 0.02
    np.testing.assert_allclose(y[y != 0], 1 / 0.75)
    y2 = run(g, x, step=1)["out0"]
    assert not np.array_equal(y, y2)  # a new mask each step
    d.eval()
    np.testing.assert_array_equal(run(trace(d, x), x)["out0"], x)


def test_parameter_arithmetic_in_custom_modules():
    class Affine(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(np.array([[1.0, 2.0], [3.0, 4.0]], np.float32))
            self.b = nn.Parameter(np.array([0.5, -0.5], np.float32))

        def forward(self, x):
            return x @ self.w.T + self.b - 2 * self.b.reshape((1, 2))

    m = Affine()
    x = np.array([[1.0, 1.0]], np.float32)
    np.testing.assert_allclose(m(x), [[3.0 - 0.5, 7.0 + 0.5]])


def test_parameter_outside_graph_is_a_clear_error():
    p = nn.Parameter(np.zeros(2))
    with pytest.raises(gc.GraphBuildError, match="outside a graph"):
        p + 1


@pytest.mark.parametrize("layer,shape,expected", [
    (nn.Linear(784, 10), ("N", 100), r"Linear expects input of shape \(\*, 784\), got \(N, 100\)"),
    (nn.Conv2d(3, 8, 3), ("N", 1, 32, 32), r"Conv2d expects input of shape \(N, 3, H, W\), "
                                           r"got \(N, 1, 32, 32\)"),
    (nn.Conv2d(1, 8, 3), ("N", 32, 32), r"got \(N, 32, 32\)"),
    (nn.BatchNorm1d(16), ("N", 8), r"BatchNorm1d expects input of shape \(N, 16\) or \(N, 16, L\)"),
    (nn.BatchNorm2d(4), ("N", 4), r"BatchNorm2d expects input of shape \(N, 4, H, W\)"),
    (nn.LayerNorm(8), ("N", 4), r"LayerNorm expects input of shape \(\*, 8\)"),
    (nn.LSTM(8, 16, batch_first=True), ("N", 8), r"LSTM expects input of shape \(N, L, 8\), "
                                                 r"got \(N, 8\)"),
    (nn.GRU(8, 16), (5, "N", 4), r"GRU expects input of shape \(L, N, 8\), got \(5, N, 4\)"),
    (nn.MultiheadAttention(8, 2, batch_first=True), ("N", 5, 6), r"MultiheadAttention expects"),
    (nn.MaxPool2d(2), ("N", 8), r"MaxPool2d expects input of shape \(N, C, H, W\)"),
])
def test_wrong_input_shape_names_layer_expected_actual_and_line(layer, shape, expected):
    with gc.Graph("bad") as g:
        x = g.input("x", shape)
        with pytest.raises(gc.GraphBuildError, match=expected) as ei:
            layer(x)  # the line the error must point at
    assert f"{HERE}:" in str(ei.value)
    line = int(str(ei.value).split(f"{HERE}:")[1].split(":")[0])
    with open(__file__) as f:
        assert "layer(x)" in f.readlines()[line - 1]


def test_nested_layer_error_names_its_place_in_the_model():
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(6, 2))
    with gc.Graph("bad") as g:
        x = g.input("x", ("N", 4))
        with pytest.raises(gc.GraphBuildError, match=r"Linear '2' expects input of shape \(\*, 6\), "
                                                     r"got \(N, 8\)"):
            model(x)


def test_embedding_rejects_float_indices():
    with gc.Graph("bad") as g:
        x = g.input("x", ("N", 5))
        with pytest.raises(gc.GraphBuildError, match="Embedding expects integer indices"):
            nn.Embedding(10, 3)(x)


def test_repr_and_containers():
    m = nn.Sequential(nn.Linear(2, 3), nn.ReLU())
    assert "(0): Linear(in_features=2, out_features=3, bias=True)" in repr(m)
    assert len(m) == 2 and isinstance(m[1], nn.ReLU)
    ml = nn.ModuleList([nn.Linear(2, 2), nn.Linear(2, 2)])
    md = nn.ModuleDict({"a": nn.Linear(2, 2)})
    holder = nn.Module()
    holder.layers, holder.named = ml, md
    assert list(holder.state_dict()) == ["layers.0.weight", "layers.0.bias", "layers.1.weight",
                                         "layers.1.bias", "named.a.weight", "named.a.bias"]


def test_default_initialisation_matches_pytorch_bounds():
    gc.manual_seed(1)
    lin = nn.Linear(100, 50)
    assert np.abs(lin.weight.data).max() <= 1 / np.sqrt(100) + 1e-7
    assert np.abs(lin.weight.data).max() > 0.9 / np.sqrt(100)
    lstm = nn.LSTM(10, 25)
    assert np.abs(lstm.weight_hh_l0.data).max() <= 1 / np.sqrt(25) + 1e-7
    mha = nn.MultiheadAttention(16, 4)
    assert np.all(mha.in_proj_bias.data == 0)
    a = np.sqrt(6 / (16 + 48))
    assert np.abs(mha.in_proj_weight.data).max() <= a + 1e-7
    w = nn.Parameter(np.zeros((64, 32), np.float32))
    nn.init.kaiming_normal_(w, nonlinearity="relu", seed=0)
    assert abs(w.data.std() - np.sqrt(2 / 32)) < 0.02
    nn.init.xavier_uniform_(w, seed=0)
    assert np.abs(w.data).max() <= np.sqrt(6 / 96) + 1e-7
    nn.init.zeros_(w)
    assert not w.data.any()
