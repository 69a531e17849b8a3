"""Reference models built from graphc.nn layers: MLP, LeNet-5, LSTM, GRU, Transformer encoder,
logistic regression.

Each builder returns a loss Graph with inputs "x" (float) and "y" (int64 class labels, or float
0/1 targets for logistic regression) and outputs "loss" (a scalar, first) then "logits".
The layers are graphc.nn's, so parameters have PyTorch's layouts, state-dict names (listed in
state-dict order) and default initial distributions; `seed` seeds the generator they draw from,
so the same seed always gives the same values.

Pass ``with_loss=False`` for the forward graph alone (input "x", output "logits").
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from .frontends import dsl
from .frontends import initializers
from .frontends import nn
from .frontends.dsl import Tensor
from .ir.graph import Graph
from .passes.eliminate_dead_code import eliminate_dead_code

# the nodes built here record this file's lines as their source (see ir.errors.user_frame)
__graphc_user_code__ = True


def _check_dtype(dtype: str) -> str:
    if dtype not in ("float32", "float64"):
        raise ValueError(f"models are built in float32 or float64, got {dtype!r}")
    return dtype


class _Model(nn.Module):
    """A model's root module: its graph params are named and ordered as its state dict.

    Subclasses define `logits(x)`; each wraps its layers in name scopes named after them, so node
    names read like the parameters (``fc1.matmul`` uses ``fc1.weight``).
    """

    def forward(self, x: Tensor) -> Tensor:
        for p in self.parameters():  # the graph's params in state-dict order, not first-use order
            p.__graphc_tensor__(x.graph)
        return self.logits(x)

    def logits(self, x: Tensor) -> Tensor:
        raise NotImplementedError


def _build(name: str, model: _Model, x_shape: tuple, dtype: str, y_dtype: str, with_loss: bool,
           loss_fn: Callable[[Tensor, Tensor], Tensor] = nn.cross_entropy) -> Graph:
    """Traces `model` into a Graph: inputs x, y; outputs loss then logits (or logits alone)."""
    with Graph(name) as g:
        x = g.input("x", x_shape, dtype)
        y = g.input("y", ("N",), y_dtype) if with_loss else None
        logits = model(x)
        if y is None:
            g.output(logits=logits)
        else:
            with g.name_scope("loss"):
                loss = loss_fn(logits, y)
            g.output(loss=loss, logits=logits)
    # nn.LSTM / nn.GRU also build the whole output sequence, which a classifier does not read
    return eliminate_dead_code(g)


class _MLP(_Model):
    def __init__(self, sizes: tuple[int, ...], dtype: str):
        super().__init__()
        self.depth = len(sizes) - 1
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
            setattr(self, f"fc{i}", nn.Linear(a, b, dtype=dtype))

    def logits(self, h: Tensor) -> Tensor:
        for i in range(1, self.depth + 1):
            with h.graph.name_scope(f"fc{i}"):
                h = getattr(self, f"fc{i}")(h)
                h = nn.relu(h) if i < self.depth else h
        return h


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

    Raises:
        ValueError: a dtype other than float32/float64, or fewer than two sizes.

    Example: ``g = mlp((784, 128, 10), seed=1)``
    """
    dtype = _check_dtype(dtype)
    sizes = tuple(int(s) for s in sizes)
    if len(sizes) < 2:
        raise ValueError(f"mlp needs at least an input and an output size, got {sizes}")
    with initializers.seeded(seed):
        model = _MLP(sizes, dtype)
    return _build("mlp", model, ("N", sizes[0]), dtype, "int64", with_loss)


class _LeNet5(_Model):
    def __init__(self, classes: int, activation: str, dtype: str):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, dtype=dtype)
        self.conv2 = nn.Conv2d(6, 16, 5, dtype=dtype)
        self.fc1 = nn.Linear(400, 120, dtype=dtype)
        self.fc2 = nn.Linear(120, 84, dtype=dtype)
        self.fc3 = nn.Linear(84, classes, dtype=dtype)
        self.act = nn.relu if activation == "relu" else nn.tanh
        self.pool = nn.max_pool2d if activation == "relu" else nn.avg_pool2d

    def logits(self, x: Tensor) -> Tensor:
        g = x.graph
        with g.name_scope("conv1"):
            h = self.act(self.conv1(x))                     # (N, 6, 28, 28)
        with g.name_scope("pool1"):
            h = self.pool(h, 2)                             # (N, 6, 14, 14)
        with g.name_scope("conv2"):
            h = self.act(self.conv2(h))                     # (N, 16, 10, 10)
        with g.name_scope("pool2"):
            h = dsl.flatten(self.pool(h, 2), 1)             # (N, 400)
        with g.name_scope("fc1"):
            h = self.act(self.fc1(h))
        with g.name_scope("fc2"):
            h = self.act(self.fc2(h))
        with g.name_scope("fc3"):
            return self.fc3(h)


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

    Raises:
        ValueError: a dtype other than float32/float64, or another activation.

    Example: ``g = lenet5(activation="tanh")``
    """
    dtype = _check_dtype(dtype)
    if activation not in ("relu", "tanh"):
        raise ValueError(f"lenet5: activation must be 'relu' or 'tanh', got {activation!r}")
    with initializers.seeded(seed):
        model = _LeNet5(classes, activation, dtype)
    return _build("lenet5", model, ("N", 1, 32, 32), dtype, "int64", with_loss)


class _RecurrentClassifier(_Model):
    """nn.LSTM or nn.GRU over (N, steps, input), then a linear head "fc" on the last state."""

    def __init__(self, kind: str, input: int, hidden: int, classes: int, dtype: str,
                 unroll: bool = False):
        super().__init__()
        self.kind = kind
        layer = nn.LSTM if kind == "lstm" else nn.GRU
        setattr(self, kind, layer(input, hidden, batch_first=True, dtype=dtype, unroll=unroll))
        self.fc = nn.Linear(hidden, classes, dtype=dtype)

    def logits(self, x: Tensor) -> Tensor:
        with x.graph.name_scope(self.kind):
            _, h_n = getattr(self, self.kind)(x)
        h_n = h_n[0] if self.kind == "lstm" else h_n      # LSTM: (h_n, c_n)
        with x.graph.name_scope("fc"):
            return self.fc(h_n[-1])


def _recurrent(kind: str, steps: int, input: int, hidden: int, classes: int, dtype: str,
               seed: int, with_loss: bool, unroll: bool = False) -> Graph:
    dtype = _check_dtype(dtype)
    with initializers.seeded(seed):
        model = _RecurrentClassifier(kind, input, hidden, classes, dtype, unroll)
    return _build(kind, model, ("N", steps, input), dtype, "int64", with_loss)


def lstm(steps: int = 8, input: int = 28, hidden: int = 64, classes: int = 10,
         dtype: str = "float32", seed: int = 0, with_loss: bool = True,
         unroll: bool = False) -> Graph:
    """An nn.LSTM over `steps` time steps (one `gc.scan`), classifying from its last hidden state.

    Args:
        steps: sequence length.
        input: features per step.
        hidden: hidden size.
        classes: number of classes of the linear head "fc".
        dtype: float32 or float64.
        seed: seed of the parameters' initial values.
        with_loss: False gives the forward graph only (output "logits").
        unroll: True gives one block of nodes per step instead of a scan (nn.LSTM's unroll).

    Returns:
        Graph with inputs x (N, steps, input) and y (N,) int64; outputs loss, logits (N, classes).
        Parameters lstm.weight_ih_l0 (4 hidden, input), ... (gates i, f, g, o), fc.weight, fc.bias.

    Raises:
        ValueError: a dtype other than float32/float64.

    Example: ``g = lstm(steps=8, input=28, hidden=64)``
    """
    return _recurrent("lstm", steps, input, hidden, classes, dtype, seed, with_loss, unroll)


def gru(steps: int = 8, input: int = 28, hidden: int = 64, classes: int = 10,
        dtype: str = "float32", seed: int = 0, with_loss: bool = True,
        unroll: bool = False) -> Graph:
    """An nn.GRU over `steps` time steps (one `gc.scan`), classifying from its last hidden state.

    Args, returns and raises as `lstm` (parameters gru.weight_ih_l0, ..., gates r, z, n).

    Example: ``g = gru(steps=8, input=28, hidden=64)``
    """
    return _recurrent("gru", steps, input, hidden, classes, dtype, seed, with_loss, unroll)


class _TransformerClassifier(_Model):
    def __init__(self, d_model: int, heads: int, ffn: int, classes: int, layers: int, dtype: str):
        super().__init__()
        # independently initialised layers (nn.TransformerEncoder would copy one layer's values)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(d_model, heads, ffn, dropout=0.0, batch_first=True,
                                       dtype=dtype) for _ in range(layers))
        self.head = nn.Linear(d_model, classes, dtype=dtype)

    def logits(self, h: Tensor) -> Tensor:
        g = h.graph
        for i, layer in enumerate(self.layers):
            with g.name_scope(f"layers.{i}"):
                h = layer(h)
        with g.name_scope("pool"):
            pooled = dsl.mean(h, 1)
        with g.name_scope("head"):
            return self.head(pooled)


def transformer_encoder(seq: int = 16, d_model: int = 32, heads: int = 4, ffn: int = 64,
                        classes: int = 10, dtype: str = "float32", seed: int = 0, layers: int = 1,
                        with_loss: bool = True) -> Graph:
    """Post-norm nn.TransformerEncoderLayer layers (ReLU, no dropout), then mean pooling over the
    sequence and a linear head.

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

    Raises:
        ValueError: a dtype other than float32/float64, or d_model not divisible by heads.

    Example: ``g = transformer_encoder(seq=16, d_model=32, heads=4, ffn=64, layers=2)``
    """
    dtype = _check_dtype(dtype)
    if d_model % heads:
        raise ValueError(f"transformer_encoder: d_model {d_model} is not divisible by heads "
                         f"{heads}")
    with initializers.seeded(seed):
        model = _TransformerClassifier(d_model, heads, ffn, classes, layers, dtype)
    return _build("transformer_encoder", model, ("N", seq, d_model), dtype, "int64", with_loss)


class _Logistic(_Model):
    def __init__(self, features: int, dtype: str):
        super().__init__()
        self.linear = nn.Linear(features, 1, dtype=dtype)

    def logits(self, x: Tensor) -> Tensor:
        with x.graph.name_scope("linear"):
            return dsl.reshape(self.linear(x), (x.shape[0],))   # (N, 1) -> (N,)


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

    Raises:
        ValueError: a dtype other than float32/float64.

    Example: ``g = logistic_regression(features=5)``
    """
    dtype = _check_dtype(dtype)
    with initializers.seeded(seed):
        model = _Logistic(features, dtype)
    return _build("logistic_regression", model, ("N", features), dtype, dtype, with_loss,
                  nn.binary_cross_entropy_with_logits)


#: builders by name (used by the CLI, the demo and the tests)
MODELS: dict[str, Callable[..., Graph]] = {
    "mlp": mlp, "lenet5": lenet5, "lstm": lstm, "gru": gru,
    "transformer_encoder": transformer_encoder, "logistic_regression": logistic_regression,
}


def example_feeds(graph: Graph, batch: int = 4, seed: int = 0) -> dict[str, np.ndarray]:
    """Random feeds for a model graph: x ~ N(0, 1); y class labels below the logits' width
    (int64), or 0/1 targets (float).

    Args:
        graph: a graph returned by one of the builders.
        batch: the size given to the symbolic batch dim N.
        seed: seed of the random values.

    Returns:
        {input name: array} for every input of `graph`.

    Example: ``gc.compile(g)(**example_feeds(g, batch=16))``
    """
    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray] = {}
    for v in graph.inputs:
        shape = tuple(batch if isinstance(d, str) else d for d in v.shape)
        if v.name == "y":
            high = int(graph.outputs["logits"].shape[-1]) if v.dtype == "int64" else 2
            feeds["y"] = rng.integers(0, high, shape).astype(v.dtype)
        else:
            feeds[v.name] = rng.standard_normal(shape).astype(v.dtype)
    return feeds
