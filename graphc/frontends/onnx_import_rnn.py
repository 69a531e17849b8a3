"""ONNX import of RNN, GRU and LSTM onto `gc.scan` (one scan per direction whose body is the
cell, written with graphc composites), so they differentiate like any graph and the sequence
length may be symbolic.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from . import dsl
from . import functional as F
from .control import scan
from .dsl import Tensor
from .onnx_import_ops import Val, handler

if TYPE_CHECKING:  # pragma: no cover
    from .onnx_import import _Ctx

def _activation(c: _Ctx, name: str, alpha: float | None, beta: float | None
                ) -> Callable[[Tensor], Tensor]:
    name = name.lower()
    if name == "sigmoid":
        return dsl.sigmoid
    if name == "tanh":
        return dsl.tanh
    if name == "relu":
        return dsl.relu
    if name == "leakyrelu":
        return lambda x: F.leaky_relu(x, 0.01 if alpha is None else alpha)
    if name == "hardsigmoid":
        a, b = (0.2 if alpha is None else alpha), (0.5 if beta is None else beta)
        return lambda x: F.clip(x * a + b, 0.0, 1.0)
    if name == "affine":
        a, b = (1.0 if alpha is None else alpha), (0.0 if beta is None else beta)
        return lambda x: x * a + b
    if name == "scaledtanh":
        a, b = (1.0 if alpha is None else alpha), (1.0 if beta is None else beta)
        return lambda x: dsl.tanh(x * b) * a
    if name == "elu":
        a = 1.0 if alpha is None else alpha
        return lambda x: dsl.where(x > 0, x, a * (dsl.exp(dsl.minimum(x, 0.0)) - 1.0))
    if name == "softsign":
        return lambda x: x / (1.0 + dsl.abs(x))
    if name == "softplus":
        return lambda x: dsl.maximum(x, 0.0) + dsl.log(1.0 + dsl.exp(-dsl.abs(x)))
    raise c.fail(f"activation {name!r} is not supported")


def _activations(c: _Ctx, defaults: list[str], dirs: int) -> list[list[Callable]]:
    names = c.attr("activations") or defaults * dirs
    if len(names) == len(defaults):
        names = list(names) * dirs
    alphas = list(c.attr("activation_alpha") or [])
    betas = list(c.attr("activation_beta") or [])
    fns = [_activation(c, n, alphas[i] if i < len(alphas) else None,
                       betas[i] if i < len(betas) else None) for i, n in enumerate(names)]
    k = len(defaults)
    return [fns[d * k:(d + 1) * k] for d in range(dirs)]


def _rows(t: Tensor, d: int) -> Tensor:
    """Direction d of a (num_directions, ...) weight."""
    return dsl.squeeze(dsl.slice(t, [d], [d + 1], [0]), 0)


def _split(t: Tensor, parts: int, axis: int = 0) -> list[Tensor]:
    n = t.shape[axis] // parts
    return [dsl.slice(t, [i * n], [(i + 1) * n], [axis]) for i in range(parts)]


def _recurrence(c: _Ctx, gates: int, defaults: list[str], cell) -> Sequence[Val]:
    x = c.t(0)
    if c.attr("layout", 0):
        x = dsl.transpose(x, (1, 0, 2))
    steps, batch = x.shape[0], x.shape[1]
    w, r = c.t(1), c.t(2)
    hidden = int(c.attr("hidden_size", r.shape[-1]))
    direction = c.attr("direction", "forward")
    dirs = 2 if direction == "bidirectional" else 1
    if c.has(4):
        lens = c.const(4, "sequence_lens").reshape(-1)
        if not isinstance(steps, int) or np.any(lens != steps):
            raise c.fail(f"sequence_lens {list(lens)} shorter than the sequence are not supported")
    acts = _activations(c, defaults, dirs)
    clip = c.attr("clip")
    zero_state = dsl.broadcast_to(dsl.constant(np.zeros((), x.dtype)), (batch, hidden))
    ys, finals = [], []
    for d in range(dirs):
        reverse = direction == "reverse" or d == 1
        wd, rd = _rows(w, d), _rows(r, d)
        if c.has(3):
            wb, rb = _split(_rows(c.t(3), d), 2)
            wb, rb = _split(wb, gates), _split(rb, gates)
        else:
            wb = rb = [None] * gates
        state = {"h": _rows(c.t(5), d) if c.has(5) else zero_state}
        if gates == 4:
            state["c"] = _rows(c.t(6), d) if c.has(6) else zero_state
            state["p"] = _split(_rows(c.t(7), d), 3) if c.has(7) else None
        # the input projections of every step at once: (steps*batch, in) @ (in, gates*hidden)
        wx = dsl.matmul(x, dsl.transpose(wd))
        peep = state.pop("p", None)

        def step(st, xw_t, d=d, peep=peep, rd=rd, wb=wb, rb=rb):
            full = dict(st, p=peep) if gates == 4 else dict(st)
            new = cell(c, _split(xw_t, gates, 1), full, rd, wb, rb, acts[d], clip)
            return {k: new[k] for k in st}, new["h"]
        # one scan per direction: the graph does not grow with the sequence length
        final, out = scan(step, state, wx, reverse=reverse)
        ys.append(out)  # (steps, batch, hidden)
        finals.append(final)
    y = dsl.stack(ys, 1)  # (steps, dirs, batch, hidden)
    h = dsl.stack([f["h"] for f in finals], 0)
    outs = [y, h]
    if gates == 4:
        outs.append(dsl.stack([f["c"] for f in finals], 0))
    if c.attr("layout", 0):
        outs[0] = dsl.transpose(y, (2, 0, 1, 3))
        outs[1:] = [dsl.transpose(o, (1, 0, 2)) for o in outs[1:]]
    return outs


def _pre(xw: Tensor, h: Tensor, r: Tensor, wb: Tensor | None, rb: Tensor | None) -> Tensor:
    """x W^T + h R^T + Wb + Rb of one gate (x W^T given)."""
    z = xw + dsl.matmul(h, dsl.transpose(r))
    for b in (wb, rb):
        if b is not None:
            z = z + b
    return z


def _clip(z: Tensor, clip) -> Tensor:
    return z if clip is None else F.clip(z, -float(clip), float(clip))


def _rnn_cell(c, xw, state, r, wb, rb, acts, clip):
    return {"h": acts[0](_clip(_pre(xw[0], state["h"], r, wb[0], rb[0]), clip))}


def _gru_cell(c, xw, state, r, wb, rb, acts, clip):
    f, g = acts
    h = state["h"]
    rz, rr, rh = _split(r, 3)
    zt = f(_clip(_pre(xw[0], h, rz, wb[0], rb[0]), clip))
    rt = f(_clip(_pre(xw[1], h, rr, wb[1], rb[1]), clip))
    if c.attr("linear_before_reset", 0):  # r applied after the recurrent product
        hr = dsl.matmul(h, dsl.transpose(rh))
        if rb[2] is not None:
            hr = hr + rb[2]
        pre = xw[2] + rt * hr
        if wb[2] is not None:
            pre = pre + wb[2]
    else:
        pre = _pre(xw[2], rt * h, rh, wb[2], rb[2])
    ht = g(_clip(pre, clip))
    return {"h": (1.0 - zt) * ht + zt * h}


def _lstm_cell(c, xw, state, r, wb, rb, acts, clip):
    f, g, hact = acts
    h, cprev, peep = state["h"], state["c"], state["p"]
    ri, ro, rf, rc = _split(r, 4)
    pi = _pre(xw[0], h, ri, wb[0], rb[0])
    pf = _pre(xw[2], h, rf, wb[2], rb[2])
    if peep is not None:
        pi, pf = pi + peep[0] * cprev, pf + peep[2] * cprev
    it = f(_clip(pi, clip))
    ft = 1.0 - it if c.attr("input_forget", 0) else f(_clip(pf, clip))
    ct = g(_clip(_pre(xw[3], h, rc, wb[3], rb[3]), clip))
    cnew = ft * cprev + it * ct
    po = _pre(xw[1], h, ro, wb[1], rb[1])
    if peep is not None:
        po = po + peep[1] * cnew
    ot = f(_clip(po, clip))
    return {"h": ot * hact(cnew), "c": cnew, "p": peep}


@handler("RNN", static=(4,))
def _rnn(c: _Ctx) -> Sequence[Val]:
    return _recurrence(c, 1, ["Tanh"], _rnn_cell)


@handler("GRU", static=(4,))
def _gru(c: _Ctx) -> Sequence[Val]:
    return _recurrence(c, 3, ["Sigmoid", "Tanh"], _gru_cell)


@handler("LSTM", static=(4,))
def _lstm(c: _Ctx) -> Sequence[Val]:
    return _recurrence(c, 4, ["Sigmoid", "Tanh", "Tanh"], _lstm_cell)
