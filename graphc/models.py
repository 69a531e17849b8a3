"""Reference models built with the DSL: MLP, LeNet-5, LSTM, GRU, Transformer encoder, logistic.

Each builder returns a loss Graph with inputs "x" (float) and "y" (int64 class labels, or float
0/1 targets for logistic regression) and outputs "loss" (a scalar, first) then "logits".
Parameters use PyTorch's layouts and names (Linear weight (out, in), LSTM gates i, f, g, o, GRU
gates r, z, n) and PyTorch's default initial distributions, drawn from one seeded generator, so
the same seed always gives the same values.

Pass ``with_loss=False`` for the forward graph alone (input "x", output "logits").
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

from .frontends import dsl
from .frontends import functional as F
from .frontends.dsl import Tensor
from .ir.graph import Graph

# the nodes built here record this file's lines as their source (see ir.errors.user_frame)
__graphc_user_code__ = True


def _uniform(rng: np.random.Generator, shape: tuple[int, ...], bound: float, dtype: str
             ) -> np.ndarray:
    return rng.uniform(-bound, bound, shape).astype(dtype)


# Helpers make parameters only; the model functions apply the ops themselves, so every node's
# source line is the line in the model that uses it.

def _linear(g: Graph, name: str, in_f: int, out_f: int, rng: np.random.Generator, dtype: str
            ) -> tuple[Tensor, Tensor]:
    """nn.Linear's (weight (out, in), bias), both U(-1/sqrt(in), 1/sqrt(in))."""
    bound = 1.0 / math.sqrt(in_f)
    return (g.param(f"{name}.weight", init=_uniform(rng, (out_f, in_f), bound, dtype)),
            g.param(f"{name}.bias", init=_uniform(rng, (out_f,), bound, dtype)))


def _conv(g: Graph, name: str, cin: int, cout: int, k: int, rng: np.random.Generator, dtype: str
          ) -> tuple[Tensor, Tensor]:
    """nn.Conv2d's (weight (cout, cin, k, k), bias), both U(-1/sqrt(cin*k*k), ...)."""
    bound = 1.0 / math.sqrt(cin * k * k)
    return (g.param(f"{name}.weight", init=_uniform(rng, (cout, cin, k, k), bound, dtype)),
            g.param(f"{name}.bias", init=_uniform(rng, (cout,), bound, dtype)))


def _finish(g: Graph, logits: Tensor, y: Tensor | None, loss_fn: Callable[[Tensor, Tensor], Tensor]
            ) -> Graph:
    if y is None:
        g.output(logits=logits)
    else:
        with g.name_scope("loss"):
            loss = loss_fn(logits, y)
        g.output(loss=loss, logits=logits)
    return g


def _check_dtype(dtype: str) -> str:
    if dtype not in ("float32", "float64"):
        raise ValueError(f"models are built in float32 or float64, got {dtype!r}")
    return dtype


def mlp(sizes: Sequence[int] = (784, 256, 256, 10), dtype: str = "float32", seed: int = 0,
        with_loss: bool = True) -> Graph:
    """A ReLU multilayer perceptron with cross-entropy loss.

    Args:
        sizes: layer widths, input first and classes last; layers are named fc1, fc2, ...
        dtype: float32 or float64.
        seed: seed of the parameters' initial values.
        with_loss: False gives the forward graph only (output "logits").

    Returns:
        Graph with inputs x (N, sizes[0]) and y (N,) int64; outputs loss, logits (N, sizes[-1]).
    """
    dtype, rng = _check_dtype(dtype), np.random.default_rng(seed)
    sizes = tuple(int(s) for s in sizes)
    if len(sizes) < 2:
        raise ValueError(f"mlp needs at least an input and an output size, got {sizes}")
    with Graph("mlp") as g:
        h = g.input("x", ("N", sizes[0]), dtype)
        y = g.input("y", ("N",), "int64") if with_loss else None
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
            w, bias = _linear(g, f"fc{i}", a, b, rng, dtype)
            with g.name_scope(f"fc{i}"):
                h = F.linear(h, w, bias)
                h = dsl.relu(h) if i < len(sizes) - 1 else h
        return _finish(g, h, y, F.cross_entropy)


def lenet5(dtype: str = "float32", seed: int = 0, classes: int = 10, activation: str = "relu",
           with_loss: bool = True) -> Graph:
    """LeNet-5 for 32x32 images: conv 6@5x5, pool, conv 16@5x5, pool, fc 120, 84, classes.

    Args:
        dtype: float32 or float64.
        seed: seed of the parameters' initial values.
        classes: number of classes.
        activation: "relu" (max pooling) or "tanh" (average pooling, as in the 1998 paper).
        with_loss: False gives the forward graph only (output "logits").

    Returns:
        Graph with inputs x (N, 1, 32, 32) and y (N,) int64; outputs loss, logits (N, classes).
    """
    dtype, rng = _check_dtype(dtype), np.random.default_rng(seed)
    if activation not in ("relu", "tanh"):
        raise ValueError(f"lenet5: activation must be 'relu' or 'tanh', got {activation!r}")
    act = dsl.relu if activation == "relu" else dsl.tanh
    pool = F.max_pool2d if activation == "relu" else F.avg_pool2d
    with Graph("lenet5") as g:
        x = g.input("x", ("N", 1, 32, 32), dtype)
        y = g.input("y", ("N",), "int64") if with_loss else None
        with g.name_scope("conv1"):
            h = act(F.conv2d(x, *_conv(g, "conv1", 1, 6, 5, rng, dtype)))     # (N, 6, 28, 28)
        with g.name_scope("pool1"):
            h = pool(h, 2)                                          # (N, 6, 14, 14)
        with g.name_scope("conv2"):
            h = act(F.conv2d(h, *_conv(g, "conv2", 6, 16, 5, rng, dtype)))    # (N, 16, 10, 10)
        with g.name_scope("pool2"):
            h = dsl.flatten(pool(h, 2), 1)                          # (N, 400)
        with g.name_scope("fc1"):
            h = act(F.linear(h, *_linear(g, "fc1", 400, 120, rng, dtype)))
        with g.name_scope("fc2"):
            h = act(F.linear(h, *_linear(g, "fc2", 120, 84, rng, dtype)))
        with g.name_scope("fc3"):
            logits = F.linear(h, *_linear(g, "fc3", 84, classes, rng, dtype))
        return _finish(g, logits, y, F.cross_entropy)


def _rnn_params(g: Graph, name: str, gates: int, inp: int, hidden: int, rng: np.random.Generator,
                dtype: str) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """nn.LSTM / nn.GRU layer-0 parameters, all U(-1/sqrt(hidden), 1/sqrt(hidden))."""
    k = 1.0 / math.sqrt(hidden)
    return (g.param(f"{name}.weight_ih_l0", init=_uniform(rng, (gates * hidden, inp), k, dtype)),
            g.param(f"{name}.weight_hh_l0", init=_uniform(rng, (gates * hidden, hidden), k, dtype)),
            g.param(f"{name}.bias_ih_l0", init=_uniform(rng, (gates * hidden,), k, dtype)),
            g.param(f"{name}.bias_hh_l0", init=_uniform(rng, (gates * hidden,), k, dtype)))


def lstm_cell(x: Tensor, h: Tensor | None, c: Tensor | None, w_ih: Tensor, w_hh: Tensor,
              b_ih: Tensor, b_hh: Tensor) -> tuple[Tensor, Tensor]:
    """One LSTM step (gates i, f, g, o); h, c None means zero state.

    i, f, o = sigmoid(...), g = tanh(...); c' = f*c + i*g; h' = o*tanh(c').
    """
    hidden = w_hh.shape[1]
    gates = F.linear(x, w_ih, b_ih)
    gates = gates + (b_hh if h is None else F.linear(h, w_hh, b_hh))
    i, f, gg, o = (gates[:, k * hidden:(k + 1) * hidden] for k in range(4))
    i, f, gg, o = dsl.sigmoid(i), dsl.sigmoid(f), dsl.tanh(gg), dsl.sigmoid(o)
    c_new = i * gg if c is None else f * c + i * gg
    return o * dsl.tanh(c_new), c_new


def gru_cell(x: Tensor, h: Tensor | None, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor, b_hh: Tensor
             ) -> Tensor:
    """One GRU step (gates r, z, n as in nn.GRU); h None means zero state.

    r, z = sigmoid(...); n = tanh(W_in x + b_in + r * (W_hn h + b_hn)); h' = (1 - z) * n + z * h.
    """
    hidden = w_hh.shape[1]
    gi = F.linear(x, w_ih, b_ih)
    gh = b_hh if h is None else F.linear(h, w_hh, b_hh)
    part = lambda t, k: t[..., k * hidden:(k + 1) * hidden]  # noqa: E731
    r = dsl.sigmoid(part(gi, 0) + part(gh, 0))
    z = dsl.sigmoid(part(gi, 1) + part(gh, 1))
    n = dsl.tanh(part(gi, 2) + r * part(gh, 2))
    return (1.0 - z) * n if h is None else (1.0 - z) * n + z * h


def _recurrent(name: str, gates: int, steps: int, input: int, hidden: int, classes: int, dtype: str,
               seed: int, with_loss: bool) -> Graph:
    dtype, rng = _check_dtype(dtype), np.random.default_rng(seed)
    with Graph(name) as g:
        x = g.input("x", ("N", steps, input), dtype)
        y = g.input("y", ("N",), "int64") if with_loss else None
        w = _rnn_params(g, name, gates, input, hidden, rng, dtype)
        h = c = None
        for t in range(steps):
            with g.name_scope(f"{name}.t{t}"):
                xt = x[:, t, :]
                if gates == 4:
                    h, c = lstm_cell(xt, h, c, *w)
                else:
                    h = gru_cell(xt, h, *w)
        with g.name_scope("fc"):
            logits = F.linear(h, *_linear(g, "fc", hidden, classes, rng, dtype))
        return _finish(g, logits, y, F.cross_entropy)


def lstm(steps: int = 8, input: int = 28, hidden: int = 64, classes: int = 10,
         dtype: str = "float32", seed: int = 0, with_loss: bool = True) -> Graph:
    """An LSTM unrolled over `steps` time steps, classifying from its last hidden state.

    Args:
        steps: sequence length (the cell is unrolled this many times).
        input: features per step.
        hidden: hidden size.
        classes: number of classes of the linear head "fc".
        dtype: float32 or float64.
        seed: seed of the parameters' initial values.
        with_loss: False gives the forward graph only (output "logits").

    Returns:
        Graph with inputs x (N, steps, input) and y (N,) int64; outputs loss, logits (N, classes).
    """
    return _recurrent("lstm", 4, steps, input, hidden, classes, dtype, seed, with_loss)


def gru(steps: int = 8, input: int = 28, hidden: int = 64, classes: int = 10,
        dtype: str = "float32", seed: int = 0, with_loss: bool = True) -> Graph:
    """A GRU unrolled over `steps` time steps, classifying from its last hidden state.

    Args and returns as `lstm`.
    """
    return _recurrent("gru", 3, steps, input, hidden, classes, dtype, seed, with_loss)


def multi_head_attention(x: Tensor, heads: int, in_w: Tensor, in_b: Tensor, out_w: Tensor,
                         out_b: Tensor) -> Tensor:
    """Self-attention: softmax(q k^T / sqrt(d_head)) v per head, then the output projection.

    x is (N, S, D); in_w (3D, D) stacks the q, k, v projections as nn.MultiheadAttention does.
    """
    n, s, d = x.shape
    dh = d // heads
    qkv = F.linear(x, in_w, in_b)                                        # (N, S, 3D)

    def split(k: int) -> Tensor:                                         # -> (N, H, S, dh)
        part = qkv[:, :, k * d:(k + 1) * d]
        return dsl.transpose(dsl.reshape(part, (n, s, heads, dh)), (0, 2, 1, 3))

    q, k, v = split(0), split(1), split(2)
    scores = (q @ dsl.transpose(k, (0, 1, 3, 2))) * (1.0 / math.sqrt(dh))  # (N, H, S, S)
    ctx = F.softmax(scores, -1) @ v                                      # (N, H, S, dh)
    ctx = dsl.reshape(dsl.transpose(ctx, (0, 2, 1, 3)), (n, s, d))
    return F.linear(ctx, out_w, out_b)


def transformer_encoder(seq: int = 16, d_model: int = 32, heads: int = 4, ffn: int = 64,
                        classes: int = 10, dtype: str = "float32", seed: int = 0, layers: int = 1,
                        with_loss: bool = True) -> Graph:
    """Post-norm Transformer encoder layers (as nn.TransformerEncoderLayer, ReLU, no dropout),
    then mean pooling over the sequence and a linear head.

    Each layer: x = LN(x + MHA(x)); x = LN(x + W2 relu(W1 x)).

    Args:
        seq: sequence length.
        d_model: model width (divisible by heads).
        heads: attention heads.
        ffn: feed-forward width.
        classes: number of classes of the head.
        dtype: float32 or float64.
        seed: seed of the parameters' initial values.
        layers: number of encoder layers (named layers.0, layers.1, ...).
        with_loss: False gives the forward graph only (output "logits").

    Returns:
        Graph with inputs x (N, seq, d_model) and y (N,) int64; outputs loss, logits (N, classes).
    """
    dtype, rng = _check_dtype(dtype), np.random.default_rng(seed)
    if d_model % heads:
        raise ValueError(f"transformer_encoder: d_model {d_model} is not divisible by heads "
                         f"{heads}")
    with Graph("transformer_encoder") as g:
        h = g.input("x", ("N", seq, d_model), dtype)
        y = g.input("y", ("N",), "int64") if with_loss else None
        for i in range(layers):
            p = f"layers.{i}"
            # parameters in nn.TransformerEncoderLayer's state_dict order, with its initial values
            d = d_model
            attn = (g.param(f"{p}.self_attn.in_proj_weight",  # xavier_uniform on (3D, D)
                            init=_uniform(rng, (3 * d, d), math.sqrt(6.0 / (4 * d)), dtype)),
                    g.param(f"{p}.self_attn.in_proj_bias", init=np.zeros(3 * d, dtype)),
                    g.param(f"{p}.self_attn.out_proj.weight",
                            init=_uniform(rng, (d, d), 1 / math.sqrt(d), dtype)),
                    g.param(f"{p}.self_attn.out_proj.bias", init=np.zeros(d, dtype)))
            lin1 = _linear(g, f"{p}.linear1", d, ffn, rng, dtype)
            lin2 = _linear(g, f"{p}.linear2", ffn, d, rng, dtype)
            norm1, norm2 = ((g.param(f"{p}.{nm}.weight", init=np.ones(d, dtype)),
                             g.param(f"{p}.{nm}.bias", init=np.zeros(d, dtype))) for nm in ("norm1", "norm2"))
            with g.name_scope(f"{p}.self_attn"):
                att = multi_head_attention(h, heads, *attn)
            with g.name_scope(f"{p}.norm1"):
                h = F.layer_norm(h + att, d, *norm1)
            with g.name_scope(f"{p}.linear1"):
                ff = dsl.relu(F.linear(h, *lin1))
            with g.name_scope(f"{p}.linear2"):
                ff = F.linear(ff, *lin2)
            with g.name_scope(f"{p}.norm2"):
                h = F.layer_norm(h + ff, d, *norm2)
        with g.name_scope("pool"):
            pooled = dsl.mean(h, 1)
        with g.name_scope("head"):
            logits = F.linear(pooled, *_linear(g, "head", d_model, classes, rng, dtype))
        return _finish(g, logits, y, F.cross_entropy)


def logistic_regression(features: int = 2, dtype: str = "float32", seed: int = 0,
                        with_loss: bool = True) -> Graph:
    """Binary logistic regression: logits = x @ w.T + b, loss = BCE with logits.

    Args:
        features: input features.
        dtype: float32 or float64.
        seed: seed of the parameters' initial values.
        with_loss: False gives the forward graph only (output "logits").

    Returns:
        Graph with inputs x (N, features) and y (N,) float 0/1 targets; outputs loss, logits (N,).
    """
    dtype, rng = _check_dtype(dtype), np.random.default_rng(seed)
    with Graph("logistic_regression") as g:
        x = g.input("x", ("N", features), dtype)
        y = g.input("y", ("N",), dtype) if with_loss else None
        with g.name_scope("linear"):
            z = F.linear(x, *_linear(g, "linear", features, 1, rng, dtype))   # (N, 1)
            logits = dsl.reshape(z, (x.shape[0],))
        return _finish(g, logits, y, F.binary_cross_entropy_with_logits)


#: builders by name (used by the CLI, the demo and the tests)
MODELS: dict[str, Callable[..., Graph]] = {
    "mlp": mlp, "lenet5": lenet5, "lstm": lstm, "gru": gru,
    "transformer_encoder": transformer_encoder, "logistic_regression": logistic_regression,
}


def example_feeds(graph: Graph, batch: int = 4, seed: int = 0) -> dict[str, np.ndarray]:
    """Random feeds for a model graph: x ~ N(0, 1), y random labels (or 0/1 targets).

    Args:
        graph: a graph returned by one of the builders.
        batch: the size given to the symbolic batch dim N.
        seed: seed of the random values.
    """
    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray] = {}
    logits = graph.outputs["logits"]
    for v in graph.inputs:
        shape = tuple(batch if isinstance(d, str) else d for d in v.shape)
        if v.name == "y" and v.dtype == "int64":
            feeds["y"] = rng.integers(0, int(logits.shape[-1]), shape).astype(np.int64)
        elif v.name == "y":
            feeds["y"] = rng.integers(0, 2, shape).astype(v.dtype)
        else:
            feeds[v.name] = rng.standard_normal(shape).astype(v.dtype)
    return feeds
