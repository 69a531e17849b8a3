"""Recurrent layers RNN, LSTM, GRU (and their cells): a `gc.scan` over time (default), or
unrolled over a static sequence length with ``unroll=True``.

Parameter names, shapes and gate orders are PyTorch's: ``weight_ih_l{k}`` (G*H, in),
``weight_hh_l{k}`` (G*H, H), ``bias_ih_l{k}``, ``bias_hh_l{k}`` (``_reverse`` for the backward
direction); LSTM gates i, f, g, o; GRU gates r, z, n with
``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))``. The input projection of all time steps is one
matmul; each step adds only the hidden-to-hidden product.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ...ir.errors import GraphBuildError, user_frame
from ...ir.types import canonical_dtype
from .. import dsl
from ..dsl import Tensor
from . import functional as F
from . import init
from .module import Module, Parameter

_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}


def _chunks(x: Tensor, n: int) -> list[Tensor]:
    h = x.shape[-1] // n
    return [x[..., i * h:(i + 1) * h] for i in range(n)]


def _rnn_step(mode: str, xp: Tensor, h: Tensor | None, c: Tensor | None, w_hh, b_hh,
              w_hh_t: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
    """One time step given the input projection xp = x W_ih^T + b_ih (+ b_hh except for GRU).

    h = None means a zero state (the first step without an initial state). `w_hh_t` is W_hh^T
    made once outside a loop (else each step transposes W_hh).
    """
    if mode == "GRU":
        xr, xz, xn = _chunks(xp, 3)
        if h is not None and w_hh_t is not None:
            hh = dsl.matmul(h, w_hh_t)
            hr, hz, hn = _chunks(hh + b_hh if b_hh is not None else hh, 3)
        elif h is not None:
            hr, hz, hn = _chunks(F.linear(h, w_hh, b_hh), 3)
        elif b_hh is not None:  # a zero state contributes only the bias
            hr, hz, hn = _chunks(dsl._tensor(b_hh), 3)
        else:
            hr = hz = hn = 0.0
        r = dsl.sigmoid(xr + hr)
        z = dsl.sigmoid(xz + hz)
        n = dsl.tanh(xn + r * hn)
        h_new = n - z * n if h is None else n + z * (h - n)  # (1 - z) n + z h
        return h_new, None
    gates = xp if h is None else xp + dsl.matmul(h, w_hh_t if w_hh_t is not None
                                                 else dsl.transpose(w_hh))
    if mode == "LSTM":
        i, f, g, o = _chunks(gates, 4)
        i, f, g, o = dsl.sigmoid(i), dsl.sigmoid(f), dsl.tanh(g), dsl.sigmoid(o)
        c_new = i * g if c is None else f * c + i * g
        return o * dsl.tanh(c_new), c_new
    return (dsl.tanh(gates) if mode == "RNN_TANH" else dsl.relu(gates)), None


class _RNNBase(Module):
    mode = ""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 dtype: str = "float32", unroll: bool = False):
        super().__init__()
        self.input_size, self.hidden_size = int(input_size), int(hidden_size)
        self.num_layers, self.bias, self.batch_first = int(num_layers), bias, batch_first
        #: False (default): each direction of each layer is one `gc.scan` (the graph's size does
        #: not depend on the sequence length); True: one block of nodes per time step
        self.unroll = bool(unroll)
        self.dropout, self.bidirectional = float(dropout), bidirectional
        dirs = 2 if bidirectional else 1
        gh = _GATES[self.mode] * hidden_size
        dt = canonical_dtype(dtype)
        for k in range(num_layers):
            in_k = input_size if k == 0 else hidden_size * dirs
            for sfx in ([""] + (["_reverse"] if bidirectional else [])):
                setattr(self, f"weight_ih_l{k}{sfx}", Parameter(np.zeros((gh, in_k), dt)))
                setattr(self, f"weight_hh_l{k}{sfx}", Parameter(np.zeros((gh, hidden_size), dt)))
                if bias:
                    setattr(self, f"bias_ih_l{k}{sfx}", Parameter(np.zeros(gh, dt)))
                    setattr(self, f"bias_hh_l{k}{sfx}", Parameter(np.zeros(gh, dt)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's default: every weight and bias from U(-1/sqrt(H), 1/sqrt(H))."""
        for p in self.parameters():
            init.default_uniform_(p, self.hidden_size)

    def _layer_params(self, k: int, sfx: str):
        g = lambda n: getattr(self, f"{n}_l{k}{sfx}") if self.bias or n.startswith("w") else None  # noqa: E731
        return g("weight_ih"), g("weight_hh"), g("bias_ih"), g("bias_hh")

    def _run_direction(self, x: Tensor, k: int, sfx: str, h0, c0, reverse: bool):
        w_ih, w_hh, b_ih, b_hh = self._layer_params(k, sfx)
        if self.mode != "GRU" and b_ih is not None:
            b = dsl._tensor(b_ih) + b_hh  # both biases fold into the input projection
        else:
            b = b_ih
        if not self.unroll:
            if self.batch_first:  # time first before the projection: G times less to transpose
                x = dsl.transpose(x, (1, 0, 2))
            steps, n, width = x.shape
            # all steps in one 2-D product (L*N, in) @ (in, G*H): its weight gradient is one
            # product too, not L batched ones and a sum
            xp = F.linear(dsl.reshape(x, (-1, width)), w_ih, b)
            xp = dsl.reshape(xp, (steps, n, xp.shape[-1]))  # (L, N, G*H)
            return self._scan_direction(xp, w_hh, b_hh, h0, c0, reverse)
        xp = F.linear(x, w_ih, b)  # (N, L, G*H) or (L, N, G*H), all steps at once
        t_axis = 1 if self.batch_first else 0
        steps = x.shape[t_axis]
        h, c = h0, c0
        outs: list[Tensor] = [None] * steps  # type: ignore[list-item]
        # each step's nodes are named after it: t3.sigmoid in layer 0's forward direction, else
        # l1.t3.sigmoid, l0_reverse.t3.sigmoid (as the parameters' _l1, _l0_reverse suffixes)
        scope = "t{}" if k == 0 and not sfx else f"l{k}{sfx}.t{{}}"
        for t in (range(steps - 1, -1, -1) if reverse else range(steps)):
            with xp.graph.name_scope(scope.format(t)):
                xt = xp[:, t] if self.batch_first else xp[t]
                h, c_new = _rnn_step(self.mode, xt, h, c, w_hh, b_hh)
            c = c_new
            outs[t] = h
        return dsl.stack(outs, t_axis), h, c

    def _scan_direction(self, xp: Tensor, w_hh, b_hh, h0, c0, reverse: bool):
        """One direction as a `gc.scan` over time: the body is one step, the graph does not
        grow with the sequence length (which may be symbolic). `xp` is time first."""
        from ..control import scan
        n, dt, hs = xp.shape[1], xp.dtype, self.hidden_size
        zero = dsl.broadcast_to(dsl.constant(np.zeros((), dt)), (n, hs))
        h = dsl._tensor(h0) if h0 is not None else zero
        w_t = dsl.transpose(dsl._tensor(w_hh))  # once, outside the loop
        bh = dsl._tensor(b_hh) if b_hh is not None else None
        mode = self.mode
        if mode == "LSTM":
            c = dsl._tensor(c0) if c0 is not None else zero

            def lstm_step(carry, xt):
                h_new, c_new = _rnn_step(mode, xt, carry[0], carry[1], None, bh, w_t)
                return (h_new, c_new), h_new
            (h, c), ys = scan(lstm_step, (h, c), xp, reverse=reverse)
        else:
            def rnn_step(hc, xt):
                h_new, _ = _rnn_step(mode, xt, hc, None, None, bh, w_t)
                return h_new, h_new
            h, ys = scan(rnn_step, h, xp, reverse=reverse)
            c = None
        if self.batch_first:
            ys = dsl.transpose(ys, (1, 0, 2))
        return ys, h, c

    def forward(self, input, hx=None):
        """Returns (output, h_n) (LSTM: (output, (h_n, c_n))).

        Args:
            input: (N, L, input_size) if batch_first else (L, N, input_size); L may be symbolic
                (it must be static with ``unroll=True``).
            hx: initial state(s), (num_layers * dirs, N, hidden_size); zeros if None.
        """
        order = "(N, L, {})" if self.batch_first else "(L, N, {})"
        x = self.check_input(input, (3,), {2: self.input_size}, order.format(self.input_size))
        t_axis = 1 if self.batch_first else 0
        if self.unroll and not isinstance(x.shape[t_axis], int):
            raise GraphBuildError(f"{user_frame()}: {self.layer_name()}: the sequence length must be "
                                  f"static to unroll, got {tuple(x.shape)}")
        dirs = 2 if self.bidirectional else 1
        h0s: list[Any] = [None] * (self.num_layers * dirs)
        c0s: list[Any] = [None] * (self.num_layers * dirs)
        if hx is not None:
            hh, cc = (hx if self.mode == "LSTM" else (hx, None))
            if self.mode == "LSTM" and (not isinstance(hx, (tuple, list)) or len(hx) != 2):
                raise GraphBuildError(f"{user_frame()}: {self.layer_name()}: hx must be (h_0, c_0)")
            for j in range(self.num_layers * dirs):
                h0s[j] = dsl._tensor(hh)[j]
                if cc is not None:
                    c0s[j] = dsl._tensor(cc)[j]
        hn: list[Tensor] = []
        cn: list[Tensor] = []
        for k in range(self.num_layers):
            if k and self.dropout and self.training:
                x = F.dropout(x, self.dropout)
            outs = []
            for d, sfx in enumerate([""] + (["_reverse"] if self.bidirectional else [])):
                j = k * dirs + d
                y, h, c = self._run_direction(x, k, sfx, h0s[j], c0s[j], reverse=d == 1)
                outs.append(y)
                hn.append(h)
                if self.mode == "LSTM":
                    cn.append(c)
            x = outs[0] if len(outs) == 1 else dsl.concatenate(outs, -1)
        h_n = dsl.stack(hn, 0)
        if self.mode == "LSTM":
            return x, (h_n, dsl.stack(cn, 0))
        return x, h_n

    def extra_repr(self) -> str:
        return (f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, "
                f"batch_first={self.batch_first}")


class RNN(_RNNBase):
    """Elman RNN: h' = tanh(W_ih x + b_ih + W_hh h + b_hh) (nonlinearity='relu' for ReLU)."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 nonlinearity: str = "tanh", bias: bool = True, batch_first: bool = False,
                 dropout: float = 0.0, bidirectional: bool = False, dtype: str = "float32",
                 unroll: bool = False):
        if nonlinearity not in ("tanh", "relu"):
            raise GraphBuildError(f"{user_frame()}: RNN: nonlinearity must be 'tanh' or 'relu'")
        object.__setattr__(self, "mode", "RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU")
        object.__setattr__(self, "nonlinearity", nonlinearity)
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, dtype, unroll)


class LSTM(_RNNBase):
    """LSTM: gates i, f, g, o from W_ih x + b_ih + W_hh h + b_hh; c' = f c + i g, h' = o tanh(c')."""

    mode = "LSTM"


class GRU(_RNNBase):
    """GRU: r, z = sigmoid(...), n = tanh(W_in x + b_in + r (W_hn h + b_hn)), h' = (1-z) n + z h."""

    mode = "GRU"


class _CellBase(Module):
    mode = ""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 dtype: str = "float32"):
        super().__init__()
        self.input_size, self.hidden_size = int(input_size), int(hidden_size)
        gh = _GATES[self.mode] * hidden_size
        dt = canonical_dtype(dtype)
        self.weight_ih = Parameter(np.zeros((gh, input_size), dt))
        self.weight_hh = Parameter(np.zeros((gh, hidden_size), dt))
        self.register_parameter("bias_ih", Parameter(np.zeros(gh, dt)) if bias else None)
        self.register_parameter("bias_hh", Parameter(np.zeros(gh, dt)) if bias else None)
        for p in self.parameters():
            init.default_uniform_(p, hidden_size)

    def _step(self, x, h, c):
        x = self.check_input(x, (2,), {1: self.input_size}, f"(N, {self.input_size})")
        b = self.bias_ih
        if self.mode != "GRU" and b is not None:
            b = dsl._tensor(self.bias_ih) + self.bias_hh
        return _rnn_step(self.mode, F.linear(x, self.weight_ih, b), h, c, self.weight_hh,
                         self.bias_hh)


class RNNCell(_CellBase):
    """One tanh RNN step: h' = tanh(W_ih x + b_ih + W_hh h + b_hh)."""

    mode = "RNN_TANH"

    def forward(self, x, h=None):
        return self._step(x, h, None)[0]


class LSTMCell(_CellBase):
    """One LSTM step; returns (h', c')."""

    mode = "LSTM"

    def forward(self, x, hx=None):
        h, c = (None, None) if hx is None else hx
        return self._step(x, h, c)


class GRUCell(_CellBase):
    """One GRU step; returns h'."""

    mode = "GRU"

    def forward(self, x, h=None):
        return self._step(x, h, None)[0]

