"""Samples for the `scan` primitive (graphc/ops/control.py): bodies built with the DSL."""
from __future__ import annotations

import numpy as np

import graphc as gc
from ops.op_samples import Sample, _arr


def _rnn_body(dtype: str, n="2") -> gc.Graph:
    """carry h, x_t, const w -> (tanh(h @ w + x_t), tanh(...) * sigmoid(x_t))."""
    n = int(n) if n.isdigit() else n
    b = gc.Graph(f"rnn_body_{dtype}_{n}")
    with b:
        h = b.input("h", (n, 3), dtype)
        x = b.input("x", (n, 3), dtype)
        w = b.input("w", (3, 3), dtype)
        h2 = gc.tanh(h @ w + x)
        b.output(h=h2, y=h2 * gc.sigmoid(x))
    return b


def _two_carry_body(dtype: str) -> gc.Graph:
    """carries (s, p), no xs: s' = s + p * c, p' = p * 0.9; y = s' (a length-only loop)."""
    b = gc.Graph(f"two_carry_body_{dtype}")
    with b:
        s = b.input("s", (3,), dtype)
        p = b.input("p", (3,), dtype)
        c = b.input("c", (3,), dtype)
        s2 = s + p * c
        b.output(s=s2, p=p * 0.9, y=gc.tanh(s2))
    return b


def scan_samples(rng, dtype):
    """Final carry and stacked ys, forward and reverse, a length-only loop and length 1."""
    out = []
    body, sym_body = _rnn_body(dtype), _rnn_body(dtype, "N")
    h0, xs, w = _arr(rng, (2, 3), dtype), _arr(rng, (4, 2, 3), dtype), _arr(rng, (3, 3), dtype)
    for rev in (False, True):
        for index in (0, 1):
            attrs = dict(body=body, n_carry=1, n_xs=1, length=(4,), reverse=rev, index=index)
            out.append(Sample([h0, xs, w], attrs, name=f"rnn_{'rev' if rev else 'fwd'}_{index}",
                              symbolic=[("N", 3), ("T", "N", 3), (3, 3)],
                              sym_attrs=dict(attrs, body=sym_body, length=("T",)),
                              skips={"onnx_reference": "onnx.reference's Scan runs forward "
                                     "directions only (op_scan.py raises for direction 1); "
                                     "onnxruntime runs them"} if rev else {}))
    out.append(Sample([h0, xs[:1], w], dict(body=body, n_carry=1, n_xs=1, length=(1,), index=1),
                      name="length_1"))
    two = _two_carry_body(dtype)
    for index in (0, 1, 2):
        out.append(Sample([_arr(rng, (3,), dtype), _arr(rng, (3,), dtype), _arr(rng, (3,), dtype)],
                          dict(body=two, n_carry=2, n_xs=0, length=(3,), index=index),
                          name=f"no_xs_{index}"))
    return out
