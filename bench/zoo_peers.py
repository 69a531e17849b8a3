"""Peer implementations of the five zoo workloads: PyTorch eager, torch.compile and JAX jit.

Every peer starts from the same initial weights as graphc's model (a dict of numpy arrays keyed by
graphc's parameter names, which follow PyTorch's state-dict names), trains on the same fixed batch
with SGD momentum (lr 0.01, momentum 0.9, PyTorch's formulation b = m*b + g; p -= lr*b), so every
implementation computes the same step and the first losses can be compared. Each peer is written
the way its users would write it: PyTorch with nn.Linear / nn.Conv2d / nn.LSTM (its fused cell) /
nn.TransformerEncoderLayer and torch.optim.SGD; JAX with jax.value_and_grad, the LSTM as a
lax.scan over the time steps with the input projection done once, everything in one jax.jit.

Each `make_*` returns a zero-argument `step()` closure doing one full training step (forward,
backward, update) and returning the loss as a float, or None when the peer is not installed.
Used by bench_zoo.py only; timings are never asserted.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

LR, MOM = 0.01, 0.9
Step = Callable[[], float]


# ---- PyTorch modules, named so that graphc's parameter names are their state-dict keys ----------

def _torch_module(workload: str, cfg: dict):
    import torch
    from torch import nn

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            sizes = cfg["sizes"]
            for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
                setattr(self, f"fc{i}", nn.Linear(a, b))
            self.n = len(sizes) - 1

        def forward(self, x):
            for i in range(1, self.n + 1):
                x = getattr(self, f"fc{i}")(x)
                x = torch.relu(x) if i < self.n else x
            return x

    class LeNet5(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.conv2 = nn.Conv2d(1, 6, 5), nn.Conv2d(6, 16, 5)
            self.fc1, self.fc2, self.fc3 = nn.Linear(400, 120), nn.Linear(120, 84), nn.Linear(84, 10)

        def forward(self, x):
            f = torch.nn.functional
            x = f.max_pool2d(torch.relu(self.conv1(x)), 2)
            x = f.max_pool2d(torch.relu(self.conv2(x)), 2).flatten(1)
            return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x)))))

    class LSTM(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(cfg["input"], cfg["hidden"], batch_first=True)
            self.fc = nn.Linear(cfg["hidden"], cfg["classes"])

        def forward(self, x):
            _, (h, _) = self.lstm(x)
            return self.fc(h[0])

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            d = cfg["d_model"]
            self.layers = nn.ModuleList(
                nn.TransformerEncoderLayer(d, cfg["heads"], cfg["ffn"], dropout=0.0, batch_first=True)
                for _ in range(cfg["layers"]))
            self.head = nn.Linear(d, cfg["classes"])

        def forward(self, x):
            for layer in self.layers:
                x = layer(x)
            return self.head(x.mean(1))

    class Logistic(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(cfg["features"], 1)

        def forward(self, x):
            return self.linear(x)[:, 0]

    return {"W1": MLP, "W2": LeNet5, "W3": LSTM, "W4": Encoder, "W5": Logistic}[workload]()


def torch_step(workload: str, cfg: dict, params: dict[str, np.ndarray], x: np.ndarray,
               y: np.ndarray, compile: bool = False, threads: int | None = None) -> Step | None:
    """PyTorch eager (or torch.compile'd) training step, or None if torch is missing."""
    try:
        import torch
    except ImportError:
        return None
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = _torch_module(workload, cfg)
    sd = model.state_dict()
    missing = set(sd) ^ set(params)
    if missing:
        raise KeyError(f"{workload}: PyTorch and graphc parameter names differ: {sorted(missing)}")
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in params.items()})
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOM)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    f = torch.nn.functional
    lossf = (f.binary_cross_entropy_with_logits if workload == "W5" else f.cross_entropy)

    def train(xb, yb):
        loss = lossf(model(xb), yb)
        loss.backward()
        return loss

    if compile:
        try:
            train = torch.compile(train)
        except Exception as exc:  # pragma: no cover - a torch without a working inductor
            print(f"  torch.compile unavailable: {exc}")
            return None

    def step() -> float:
        opt.zero_grad(set_to_none=True)
        loss = train(xt, yt)
        opt.step()
        return float(loss.detach())
    return step


# ---- JAX: the same models as pure functions of a dict of parameters ----------------------------

def _jax_loss(workload: str, cfg: dict):
    import jax
    import jax.numpy as jnp

    def linear(p, name, x):
        return x @ p[f"{name}.weight"].T + p[f"{name}.bias"]

    def xent(z, y):
        return jnp.mean(jax.nn.logsumexp(z, -1) - jnp.take_along_axis(z, y[:, None], 1)[:, 0])

    def mlp(p, x, y):
        n = len(cfg["sizes"]) - 1
        for i in range(1, n + 1):
            x = linear(p, f"fc{i}", x)
            x = jax.nn.relu(x) if i < n else x
        return xent(x, y)

    def conv(p, name, x):
        out = jax.lax.conv_general_dilated(x, p[f"{name}.weight"], (1, 1), "VALID",
                                           dimension_numbers=("NCHW", "OIHW", "NCHW"))
        return out + p[f"{name}.bias"][None, :, None, None]

    def maxpool(x):
        return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")

    def lenet(p, x, y):
        x = maxpool(jax.nn.relu(conv(p, "conv1", x)))
        x = maxpool(jax.nn.relu(conv(p, "conv2", x))).reshape(x.shape[0], -1)
        x = jax.nn.relu(linear(p, "fc1", x))
        x = jax.nn.relu(linear(p, "fc2", x))
        return xent(linear(p, "fc3", x), y)

    def lstm(p, x, y):
        hid = cfg["hidden"]
        w_ih, w_hh = p["lstm.weight_ih_l0"], p["lstm.weight_hh_l0"]
        b = p["lstm.bias_ih_l0"] + p["lstm.bias_hh_l0"]
        xs = jnp.swapaxes(x @ w_ih.T, 0, 1)             # (T, N, 4H): input projections at once

        def cell(carry, xt):
            h, c = carry
            g = xt + h @ w_hh.T + b
            i, f, gg, o = (g[:, k * hid:(k + 1) * hid] for k in range(4))
            c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(gg)
            return (jax.nn.sigmoid(o) * jnp.tanh(c), c), None

        zeros = jnp.zeros((x.shape[0], hid), x.dtype)
        (h, _), _ = jax.lax.scan(cell, (zeros, zeros), xs)
        return xent(linear(p, "fc", h), y)

    def layer_norm(x, w, b, eps=1e-5):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / jnp.sqrt(var + eps) * w + b

    def encoder(p, x, y):
        n, s, d = x.shape
        heads = cfg["heads"]
        dh = d // heads
        for i in range(cfg["layers"]):
            q = f"layers.{i}"
            qkv = x @ p[f"{q}.self_attn.in_proj_weight"].T + p[f"{q}.self_attn.in_proj_bias"]
            qh, kh, vh = (qkv[..., k * d:(k + 1) * d].reshape(n, s, heads, dh).transpose(0, 2, 1, 3)
                          for k in range(3))
            att = jax.nn.softmax(qh @ kh.transpose(0, 1, 3, 2) / math.sqrt(dh), -1) @ vh
            att = linear(p, f"{q}.self_attn.out_proj", att.transpose(0, 2, 1, 3).reshape(n, s, d))
            x = layer_norm(x + att, p[f"{q}.norm1.weight"], p[f"{q}.norm1.bias"])
            ff = linear(p, f"{q}.linear2", jax.nn.relu(linear(p, f"{q}.linear1", x)))
            x = layer_norm(x + ff, p[f"{q}.norm2.weight"], p[f"{q}.norm2.bias"])
        return xent(linear(p, "head", x.mean(1)), y)

    def logistic(p, x, y):
        z = linear(p, "linear", x)[:, 0]
        return jnp.mean(jnp.maximum(z, 0) - z * y + jnp.log1p(jnp.exp(-jnp.abs(z))))

    return {"W1": mlp, "W2": lenet, "W3": lstm, "W4": encoder, "W5": logistic}[workload]


def jax_step(workload: str, cfg: dict, params: dict[str, np.ndarray], x: np.ndarray,
             y: np.ndarray) -> Step | None:
    """JAX jit training step (value_and_grad + SGD momentum in one jitted function)."""
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None
    loss_fn = _jax_loss(workload, cfg)

    @jax.jit
    def update(p, bufs, x, y):
        loss, g = jax.value_and_grad(loss_fn)(p, x, y)
        bufs = {k: MOM * bufs[k] + g[k] for k in p}
        return {k: p[k] - LR * bufs[k] for k in p}, bufs, loss

    state = {"p": {k: jnp.asarray(v) for k, v in params.items()},
             "b": {k: jnp.zeros_like(jnp.asarray(v)) for k, v in params.items()}}
    xj, yj = jnp.asarray(x), jnp.asarray(y)

    def step() -> float:
        state["p"], state["b"], loss = update(state["p"], state["b"], xj, yj)
        return float(loss)
    return step
