"""Input generators for the op table (tests/ops/op_db.py): `Sample` and one function per family.

Each generator draws inputs inside its op's domain (log/sqrt positive, away from kinks and ties
so finite differences work), reproducibly from the `rng` it is given.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from graphc.ops.shape import INT_MAX

FLOATS = ("float32", "float64")
INTS = ("int32", "int64")
NUMERIC = FLOATS + INTS
ALL = NUMERIC + ("bool",)


@dataclass
class Sample:
    """One set of inputs for a primitive.

    Attributes:
        inputs: the input arrays, in the op's input order.
        attrs: the node's attributes, as the DSL would pass them.
        grad_inputs: indices of inputs to differentiate; None means every float input not in
            the op's `nondiff_inputs`; () means none.
        symbolic: optional input shapes with symbols (e.g. ("N", 4)) for the symbolic-dim checks;
            each must match the concrete input's shape once symbols are bound.
        sym_attrs: the attributes to use with `symbolic` shapes (default: `attrs`); they may
            hold symbols but must mean `attrs` once the symbols are bound to the sample's sizes.
        name: a short label for test ids.
        skips: check name (or "check/dtype") -> reason, for this sample only.
    """

    inputs: list[np.ndarray]
    attrs: dict[str, Any] = field(default_factory=dict)
    grad_inputs: tuple[int, ...] | None = None
    symbolic: list[tuple] | None = None
    sym_attrs: dict[str, Any] | None = None
    name: str = ""
    skips: dict[str, str] = field(default_factory=dict)


# ---- input generators ---------------------------------------------------------------------------

def _uniform(rng, shape, dtype, lo=-2.0, hi=2.0):
    return np.asarray(rng.uniform(lo, hi, size=shape), dtype=dtype)


def _pos(rng, shape, dtype, lo=0.5, hi=3.0):
    return np.asarray(rng.uniform(lo, hi, size=shape), dtype=dtype)


def _away0(rng, shape, dtype, lo=0.2, hi=2.0):
    """Values with |x| in [lo, hi] and random signs: away from kinks at 0."""
    mag = rng.uniform(lo, hi, size=shape)
    return np.asarray(mag * rng.choice([-1.0, 1.0], size=shape), dtype=dtype)


def _arr(rng, shape, dtype, lo=-2.0, hi=2.0):
    """Any dtype: floats uniform in [lo, hi], ints in [-5, 5], bools fair coins."""
    if dtype == "bool":
        return np.asarray(rng.random(size=shape) < 0.5)
    if dtype in INTS:
        return np.asarray(rng.integers(-5, 6, size=shape), dtype=dtype)
    return _uniform(rng, shape, dtype, lo, hi)


def _distinct(rng, shape, dtype):
    """Values without ties (a shuffled range, scaled for floats), so max/argmax are unambiguous."""
    n = int(np.prod(shape, dtype=np.int64))
    v = rng.permutation(n).reshape(shape)
    if dtype in INTS:
        return (v - n // 2).astype(dtype)
    return ((v - n / 2) * 0.25 + rng.uniform(-0.05, 0.05, size=shape)).astype(dtype)


def _apart(rng, sa, sb, dtype, gap=0.1):
    """Two arrays whose broadcast pairs differ by at least `gap` (no ties for max/min)."""
    for _ in range(100):
        a, b = _arr(rng, sa, dtype), _arr(rng, sb, dtype)
        if dtype in INTS or np.min(np.abs(a - b), initial=np.inf) > gap:
            return a, b
    raise RuntimeError("could not draw separated inputs")


# ---- samples per family -------------------------------------------------------------------------

def _unary_samples(gen):
    def samples(rng, dtype):
        return [Sample([gen(rng, (3, 4), dtype)], symbolic=[("N", 4)]),
                Sample([gen(rng, (), dtype)], name="scalar"),
                Sample([gen(rng, (2, 3, 5), dtype)])]
    return samples


def _sign_samples(rng, dtype):
    x = _away0(rng, (3, 4), dtype) if dtype in FLOATS else _arr(rng, (3, 4), dtype)
    x.reshape(-1)[:2] = 0  # sign(0) = 0
    return [Sample([x], symbolic=[("N", 4)]), Sample([_arr(rng, (5,), dtype)])]


def _int_unary_samples(gen):
    """Floats drawn by `gen`; ints drawn in [-5, 5]."""
    def samples(rng, dtype):
        g = gen if dtype in FLOATS else _arr
        return _unary_samples(g)(rng, dtype)
    return samples


_BROADCAST = [((3, 4), (3, 4), [("N", 4), ("N", 4)]),
              ((2, 1, 4), (3, 1), [(2, 1, 4), ("N", 1)]),
              ((), (3, 4), None),
              ((4,), (3, 1), [(4,), ("N", 1)])]


def _binary_samples(gen_a, gen_b=None, pairs=_BROADCAST):
    gen_b = gen_b or gen_a

    def samples(rng, dtype):
        return [Sample([gen_a(rng, sa, dtype), gen_b(rng, sb, dtype)], symbolic=sym)
                for sa, sb, sym in pairs]
    return samples


def _div_samples(rng, dtype):
    if dtype in INTS:
        # negative operands check truncating division (ONNX Div), not floor division
        def nz(r, s, d):
            return (r.integers(1, 4, size=s) * r.choice([-1, 1], size=s)).astype(d)
        return _binary_samples(lambda r, s, d: r.integers(-9, 10, size=s).astype(d), nz)(rng, dtype)
    return _binary_samples(_uniform, lambda r, s, d: _away0(r, s, d, 0.5, 2.0))(rng, dtype)


def _minmax_samples(rng, dtype):
    return [Sample(list(_apart(rng, sa, sb, dtype)), symbolic=sym) for sa, sb, sym in _BROADCAST]


def _compare_samples(rng, dtype):
    out = []
    for sa, sb, sym in _BROADCAST[:3]:
        a, b = _arr(rng, sa, dtype), _arr(rng, sb, dtype)
        if a.shape == b.shape and a.size:
            b.reshape(-1)[::2] = a.reshape(-1)[::2]  # exact ties, so == and <= differ from < and >
        out.append(Sample([a, b], symbolic=sym))
    return out


def _bool_binary_samples(rng, dtype):
    return [Sample([_arr(rng, sa, "bool"), _arr(rng, sb, "bool")], symbolic=sym)
            for sa, sb, sym in _BROADCAST[:3]]


def _where_samples(rng, dtype):
    return [
        Sample([_arr(rng, (3, 4), "bool"), _arr(rng, (3, 4), dtype), _arr(rng, (3, 4), dtype)],
               symbolic=[("N", 4)] * 3),
        Sample([_arr(rng, (3, 1), "bool"), _arr(rng, (1, 4), dtype), _arr(rng, (2, 3, 4), dtype)]),
        Sample([_arr(rng, (4,), "bool"), _arr(rng, (), dtype), _arr(rng, (3, 4), dtype)]),
    ]


def _cast_samples(rng, dtype):
    out = []
    for to in ALL:
        if to == dtype:
            continue
        if dtype in FLOATS and to in INTS:
            # away from .5 and from 0 so truncation toward zero is the only rule that matters
            x = (rng.integers(-5, 6, size=(3, 4)) + rng.uniform(0.1, 0.4, size=(3, 4))
                 * rng.choice([-1, 1], size=(3, 4))).astype(dtype)
        else:
            x = _arr(rng, (3, 4), dtype)
        grad = None if (dtype in FLOATS and to in FLOATS) else ()
        out.append(Sample([x], {"dtype": to}, grad_inputs=grad, symbolic=[("N", 4)], name=f"to_{to}"))
    return out + _storage_cast_samples(rng, dtype)


def _identity_samples(rng, dtype):
    return [Sample([_arr(rng, (3, 4), dtype)], symbolic=[("N", 4)]),
            Sample([_arr(rng, (), dtype)], name="scalar")]


def _constant_samples(rng, dtype):
    return [Sample([], {"value": _arr(rng, (2, 3), dtype)}, name="2x3"),
            Sample([], {"value": np.asarray(_arr(rng, (), dtype))}, name="scalar")]


def _reduce_samples(float_only_distinct=False):
    def samples(rng, dtype):
        gen = _distinct if float_only_distinct else _arr
        x3 = gen(rng, (2, 3, 4), dtype)
        return [
            Sample([x3], {"axes": None, "keepdims": False}, name="all"),
            Sample([x3], {"axes": (1,), "keepdims": False}, symbolic=[("N", 3, 4)], name="ax1"),
            Sample([x3], {"axes": (0, 2), "keepdims": True}, symbolic=[("N", 3, 4)], name="ax02k"),
            Sample([gen(rng, (3, 5), dtype)], {"axes": (-1,), "keepdims": True}, name="neg"),
            Sample([gen(rng, (3, 5), dtype)], {"axes": (), "keepdims": False}, name="none"),
        ]
    return samples


def _argmax_samples(rng, dtype):
    return [Sample([_distinct(rng, (3, 5), dtype)], {"axis": 1, "keepdims": False},
                   symbolic=[("N", 5)]),
            Sample([_distinct(rng, (2, 3, 4), dtype)], {"axis": 0, "keepdims": True}),
            Sample([_distinct(rng, (7,), dtype)], {"axis": 0, "keepdims": False})]


def _matmul_samples(rng, dtype):
    pairs = [((3, 4), (4, 5), [("N", 4), (4, 5)]),
             ((2, 3, 4), (4, 5), [("B", 3, 4), (4, 5)]),
             ((2, 1, 3, 4), (3, 4, 2), None),
             ((4,), (4, 5), None),
             ((3, 4), (4,), [("N", 4), (4,)]),
             ((4,), (4,), None)]
    return [Sample([_arr(rng, sa, dtype), _arr(rng, sb, dtype)], symbolic=sym)
            for sa, sb, sym in pairs]


def _reshape_samples(rng, dtype):
    return [Sample([_arr(rng, (3, 4), dtype)], {"shape": (2, 6)}),
            Sample([_arr(rng, (2, 3, 4), dtype)], {"shape": (6, 4)},
                   symbolic=[("N", 3, 4)], sym_attrs={"shape": ("3*N", 4)}),
            Sample([_arr(rng, (2, 3, 4), dtype)], {"shape": (2, 12)},
                   symbolic=[("N", 3, 4)], sym_attrs={"shape": ("N", 12)}),
            Sample([_arr(rng, (1,), dtype)], {"shape": ()}, name="to_scalar"),
            # a 0 in the target shape is a real size, not ONNX's "copy this dim"
            Sample([_arr(rng, (2, 0, 3), dtype)], {"shape": (3, 0, 5)}, name="empty")]


def _transpose_samples(rng, dtype):
    return [Sample([_arr(rng, (3, 4), dtype)], {"axes": (1, 0)}, symbolic=[("N", 4)]),
            Sample([_arr(rng, (2, 3, 4), dtype)], {"axes": (2, 0, 1)}, symbolic=[("N", 3, 4)])]


def _expand_samples(rng, dtype):
    return [Sample([_arr(rng, (3, 1), dtype)], {"shape": (2, 3, 4)}),
            Sample([_arr(rng, (), dtype)], {"shape": (3,)}, name="scalar"),
            Sample([_arr(rng, (3, 1), dtype)], {"shape": (3, 4)},
                   symbolic=[("N", 1)], sym_attrs={"shape": ("N", 4)})]


def _concat_samples(rng, dtype):
    return [Sample([_arr(rng, (2, 3), dtype), _arr(rng, (4, 3), dtype)], {"axis": 0}),
            Sample([_arr(rng, (2, 1), dtype), _arr(rng, (2, 3), dtype), _arr(rng, (2, 2), dtype)],
                   {"axis": -1}, symbolic=[("N", 1), ("N", 3), ("N", 2)]),
            Sample([_arr(rng, (2, 3), dtype), _arr(rng, (2, 3), dtype)], {"axis": 0},
                   symbolic=[("N", 3), ("N", 3)], name="sym_axis"),
            Sample([_arr(rng, (3,), dtype)], {"axis": 0}, name="one")]


def _slice_samples(rng, dtype):
    x = _arr(rng, (4, 6), dtype)
    return [
        Sample([x], {"starts": (1,), "ends": (3,), "axes": (0,), "steps": (1,)}),
        Sample([x], {"starts": (-4, 0), "ends": (INT_MAX, 6), "axes": (1, 0), "steps": (1, 2)}),
        Sample([x], {"starts": (-4,), "ends": (INT_MAX,), "axes": (1,), "steps": (1,)},
               symbolic=[("N", 6)], name="tail"),
        Sample([x], {"starts": (1,), "ends": (3,), "axes": (0,), "steps": (1,)},
               symbolic=[("N", 6)], name="rows"),
        Sample([x], {"starts": (-1,), "ends": (-INT_MAX,), "axes": (1,), "steps": (-2,)},
               name="reverse"),
        Sample([x], {"starts": (2,), "ends": (100,), "axes": (-1,), "steps": (3,)}, name="clamp"),
        # Python empties x[-7::-1] on a dim of 6, where ONNX would clamp the start to 0
        Sample([x], {"starts": (-7, 10), "ends": (-INT_MAX, 1), "axes": (1, 0), "steps": (-1, -1)},
               name="reverse_clamp"),
    ]


def _gather_samples(rng, dtype):
    return [
        Sample([_arr(rng, (5, 3), dtype), rng.integers(0, 5, size=(2, 4)).astype(np.int64)],
               {"axis": 0}, symbolic=[(5, 3), ("N", 4)]),
        Sample([_arr(rng, (2, 4, 3), dtype), np.array([3, 0, 0, 2], np.int32)], {"axis": 1}),
        Sample([_arr(rng, (5,), dtype), np.array([-1, 2, -5], np.int64)], {"axis": 0},
               name="negative"),
        Sample([_arr(rng, (4, 3), dtype), np.array(2, np.int64)], {"axis": 0}, name="scalar_index"),
    ]


def _pad_samples(rng, dtype):
    v = {"bool": 1.0, "int32": 3.0, "int64": -2.0}.get(dtype, 0.5)
    return [Sample([_arr(rng, (3, 4), dtype)], {"pads": ((1, 2), (0, 1)), "value": v}),
            Sample([_arr(rng, (2, 3, 4), dtype)], {"pads": ((0, 0), (2, 0), (1, 1)), "value": 0.0},
                   symbolic=[("N", 3, 4)])]


def _conv_samples(rng, dtype):
    a = {"stride": (1, 1), "padding": (0, 0), "dilation": (1, 1), "groups": 1}
    return [
        Sample([_arr(rng, (2, 3, 7, 7), dtype), _arr(rng, (4, 3, 3, 3), dtype, -0.5, 0.5)], dict(a),
               symbolic=[("N", 3, 7, 7), (4, 3, 3, 3)]),
        Sample([_arr(rng, (1, 2, 8, 9), dtype), _arr(rng, (3, 2, 3, 2), dtype, -0.5, 0.5)],
               {"stride": (2, 1), "padding": (1, 2), "dilation": (2, 1), "groups": 1}, name="sdp"),
        Sample([_arr(rng, (1, 4, 6, 6), dtype), _arr(rng, (6, 2, 3, 3), dtype, -0.5, 0.5)],
               dict(a, groups=2), name="groups"),
    ]


def _conv_t_samples(rng, dtype):
    a = {"stride": (1, 1), "padding": (0, 0), "output_padding": (0, 0), "dilation": (1, 1),
         "groups": 1}
    return [
        Sample([_arr(rng, (2, 2, 4, 4), dtype), _arr(rng, (2, 3, 3, 3), dtype, -0.5, 0.5)], dict(a),
               symbolic=[("N", 2, 4, 4), (2, 3, 3, 3)]),
        Sample([_arr(rng, (1, 2, 3, 4), dtype), _arr(rng, (2, 3, 3, 2), dtype, -0.5, 0.5)],
               dict(a, stride=(2, 3), padding=(1, 0), output_padding=(1, 2), dilation=(1, 2)),
               name="sdp"),
        Sample([_arr(rng, (1, 4, 3, 3), dtype), _arr(rng, (4, 1, 2, 2), dtype, -0.5, 0.5)],
               dict(a, groups=2), name="groups",
               skips={"onnx_reference": "onnx.reference's ConvTranspose fails for group > 1 (it "
                                        "reshapes W to (group, C/group, ...) wrongly)"}),
    ]


def _maxpool_samples(rng, dtype):
    return [
        Sample([_distinct(rng, (2, 3, 6, 6), dtype)],
               {"kernel_size": (2, 2), "stride": (2, 2), "padding": (0, 0)},
               symbolic=[("N", 3, 6, 6)]),
        Sample([_distinct(rng, (1, 2, 7, 5), dtype)],
               {"kernel_size": (3, 2), "stride": (2, 1), "padding": (1, 1)}, name="pad"),
    ]


def _avgpool_samples(rng, dtype):
    return [
        Sample([_arr(rng, (2, 3, 6, 6), dtype)],
               {"kernel_size": (2, 2), "stride": (2, 2), "padding": (0, 0)},
               symbolic=[("N", 3, 6, 6)]),
        Sample([_arr(rng, (1, 2, 7, 5), dtype)],
               {"kernel_size": (3, 3), "stride": (2, 2), "padding": (1, 1),
                "count_include_pad": True}, name="pad_incl"),
        Sample([_arr(rng, (1, 2, 7, 5), dtype)],
               {"kernel_size": (3, 2), "stride": (2, 1), "padding": (1, 1),
                "count_include_pad": False}, name="pad_excl"),
    ]


def _maxpool_grad_samples(rng, dtype):
    out = []
    # float32: disjoint windows tiling x exactly lower to MaxUnpool; the rest (and other
    # dtypes) to a scatter-add
    for (n, c, h, w), k, st, p, name in [((2, 3, 6, 6), (2, 2), (2, 2), (0, 0), ""),
                                         ((1, 2, 7, 5), (3, 2), (2, 1), (1, 1), "overlap"),
                                         ((2, 2, 7, 5), (2, 2), (2, 2), (0, 0), "leftover"),
                                         ((1, 2, 6, 4), (2, 2), (2, 2), (1, 1), "padded"),
                                         ((2, 2, 6, 9), (3, 3), (3, 3), (0, 0), "k3")]:
        x = _distinct(rng, (n, c, h, w), dtype)
        oh, ow = (h + 2 * p[0] - k[0]) // st[0] + 1, (w + 2 * p[1] - k[1]) // st[1] + 1
        g = _uniform(rng, (n, c, oh, ow), dtype)
        out.append(Sample([x, g], {"kernel_size": k, "stride": st, "padding": p},
                          symbolic=[("N", c, h, w), ("N", c, oh, ow)] if p == (0, 0) else None,
                          name=name))
    return out


def _safe_mul_samples(rng, dtype):
    a = _uniform(rng, (3, 4), dtype)
    b = np.full((3, 4), np.inf, dtype)
    b[1:] = _uniform(rng, (2, 4), dtype)
    a[0, ::2] = 0  # 0 * inf is 0 here, not nan
    b[0, 1::2] = -np.inf
    a[0, 1::2] = 0
    return _binary_samples(_uniform)(rng, dtype) + [
        Sample([a, b], grad_inputs=(), name="zero_times_inf")]


def _gather_grad_samples(rng, dtype):
    """Repeated and negative indices (their contributions add up), another axis, a scalar index."""
    return [
        Sample([_uniform(rng, (2, 4, 3), dtype), np.array([[0, 4, 4, 1], [2, 0, 4, -1]], np.int64)],
               {"axis": 0, "shape": (5, 3)}, symbolic=[("N", 4, 3), ("N", 4)]),
        Sample([_uniform(rng, (2, 4, 3), dtype), np.array([5, 0, 5, -6], np.int32)],
               {"axis": 1, "shape": (2, 6, 3)}, name="axis1"),
        Sample([_uniform(rng, (3,), dtype), np.array(-2, np.int64)], {"axis": 0, "shape": (4, 3)},
               name="scalar_index"),
    ]


def _random_samples(rng, dtype):
    i64 = lambda v: np.array(v, np.int64)  # noqa: E731
    return [Sample([i64(0), i64(0)], {"shape": (3, 4), "dtype": dtype}, name="s0c0"),
            Sample([i64(123456789), i64(2**40 + 7)], {"shape": (2, 3, 5), "dtype": dtype},
                   name="big"),
            Sample([i64(-3), i64(5)], {"shape": (), "dtype": dtype}, name="scalar")]


def _gemm_samples(rng, dtype):
    """Every transpose combination, with and without c (full and broadcast), alpha and beta."""
    out = []
    for ta, tb in ((False, False), (True, False), (False, True), (True, True)):
        a = _arr(rng, (4, 3) if ta else (3, 4), dtype)
        b = _arr(rng, (5, 4) if tb else (4, 5), dtype)
        attrs = {"trans_a": ta, "trans_b": tb}
        out.append(Sample([a, b], attrs, name=f"t{int(ta)}{int(tb)}",
                          symbolic=None if ta else [("N", 4), b.shape]))
        out.append(Sample([a, b, _arr(rng, (5,), dtype)], {**attrs, "alpha": 0.5, "beta": 2.0},
                          name=f"t{int(ta)}{int(tb)}_bias"))
    out.append(Sample([_arr(rng, (3, 4), dtype), _arr(rng, (5, 4), dtype), _arr(rng, (3, 5), dtype)],
                      {"trans_b": True}, name="full_c", symbolic=[("N", 4), (5, 4), ("N", 5)]))
    # 0.9 and 0.1 are not float32 values: float64 must not round them to Gemm's float attributes
    out.append(Sample([_arr(rng, (3, 4), dtype), _arr(rng, (4, 5), dtype), _arr(rng, (3, 5), dtype)],
                      {"alpha": 0.1, "beta": 0.9}, name="inexact_scales"))
    return out


def _softmax_samples(rng, dtype):
    return [Sample([_uniform(rng, (3, 5), dtype)], {"axis": -1}, symbolic=[("N", 5)]),
            Sample([_uniform(rng, (2, 3, 4), dtype)], {"axis": 1})]


def _layer_norm_samples(rng, dtype):
    x = _uniform(rng, (3, 5), dtype)
    w, b = _uniform(rng, (5,), dtype), _uniform(rng, (5,), dtype)
    return [Sample([x], {"axis": -1, "eps": 1e-5}, symbolic=[("N", 5)]),
            Sample([x, w], {"axis": 1, "eps": 1e-3}, name="weight"),
            Sample([_uniform(rng, (2, 3, 4), dtype), _uniform(rng, (3, 4), dtype),
                    _uniform(rng, (3, 4), dtype)], {"axis": 1, "eps": 1e-5}, name="affine_2d",
                   symbolic=[("N", 3, 4), (3, 4), (3, 4)])]


def _size_samples(rng, dtype):
    return [Sample([_arr(rng, (3, 4), dtype)], {"axes": (0,), "dtype": dtype}, symbolic=[("N", 4)]),
            Sample([_arr(rng, (2, 3, 4), dtype)], {"axes": (0, 1), "dtype": dtype},
                   symbolic=[("B", "T", 4)], name="two_symbols"),
            Sample([_arr(rng, (2, 3), dtype)], {"axes": None, "dtype": dtype}, name="static")]


def _softmax_ce_samples(rng, dtype):
    """One-hot targets (what the fusion pass makes), soft targets, targets not summing to 1."""
    z = _uniform(rng, (4, 5), dtype, -3.0, 3.0)
    onehot = np.eye(5, dtype=dtype)[rng.integers(0, 5, 4)]
    soft = _pos(rng, (4, 5), dtype)
    soft = (soft / soft.sum(-1, keepdims=True)).astype(dtype)
    out = [Sample([z, onehot], {"reduction": r}, name=f"onehot_{r}", grad_inputs=(0,),
                  symbolic=[("N", 5), ("N", 5)]) for r in ("none", "mean", "sum")]
    out.append(Sample([z, soft], {"reduction": "mean"}, name="soft"))
    out.append(Sample([_uniform(rng, (2, 3, 4), dtype), _uniform(rng, (2, 3, 4), dtype)],
                      {"reduction": "mean"}, name="rank3_any_q"))
    return out


def _bce_samples(rng, dtype):
    z = _uniform(rng, (3, 4), dtype, -4.0, 4.0)
    t = np.asarray(rng.uniform(0, 1, (3, 4)), dtype)
    return [Sample([z, t], symbolic=[("N", 4), ("N", 4)]),
            Sample([_uniform(rng, (3, 4), dtype), (rng.uniform(size=(4,)) > 0.5).astype(dtype)],
                   name="broadcast")]


# ---- integer bit operations and the storage dtypes ---------------------------------------------

def _ints(rng, shape, dtype, lo=None, hi=None):
    """Integers of any width, over the dtype's whole range unless [lo, hi] is given."""
    info = np.iinfo(dtype)
    lo = info.min if lo is None else lo
    hi = info.max if hi is None else hi
    return np.asarray(rng.integers(lo, hi, size=shape, endpoint=True, dtype=np.dtype(dtype)))


def _bitwise_samples(rng, dtype):
    return [Sample([_ints(rng, a, dtype), _ints(rng, b, dtype)], symbolic=sym)
            for a, b, sym in _BROADCAST]


def _bitwise_not_samples(rng, dtype):
    return [Sample([_ints(rng, (3, 4), dtype)], symbolic=[("N", 4)]),
            Sample([_ints(rng, (), dtype)], name="scalar")]


def _shift_samples(rng, dtype):
    """Shifts by 0 to one less than the width (beyond it, C backends differ: ONNX gives 0)."""
    bits = np.iinfo(dtype).bits
    return [Sample([_ints(rng, a, dtype), _ints(rng, b, dtype, 0, bits - 1)], symbolic=sym)
            for a, b, sym in _BROADCAST]


#: dtype -> a dtype of the same width to bitcast to
BITCAST_TO = {"float32": "int32", "int32": "float32", "float16": "int16", "uint8": "int8",
              "int64": "float64", "uint16": "bfloat16"}


def _bitcast_samples(rng, dtype):
    x = (_ints(rng, (3, 4), dtype) if np.dtype(dtype).kind in "iu"
         else _uniform(rng, (3, 4), dtype))
    return [Sample([x], {"dtype": BITCAST_TO[dtype]}, name=f"to_{BITCAST_TO[dtype]}"),
            Sample([np.asarray(x[0, 0])], {"dtype": BITCAST_TO[dtype]}, name="scalar")]


#: the storage dtypes a float32 tensor is cast to (and back) by `_storage_cast_samples`
STORAGE = ("float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz", "float4_e2m1fn",
           "int4", "uint4")


_NO_OPSET = ("graphc writes ONNX opset 18 by default, which has no float8 or 4-bit types (Cast "
             "takes them from opsets 19, 21 and 23; the lowering refuses an older opset)")
_STORAGE_SKIPS = {"onnxruntime": _NO_OPSET, "onnx_reference": _NO_OPSET, "onnx_checker": _NO_OPSET,
                  "tvm": "TVM 0.27's LLVM codegen has no float8/float4 cast kernel (if_then_else "
                         "on a vector condition) and no 4-bit tensors (dtype.bits % 8 check)"}


def _storage_cast_samples(rng, dtype):
    """float32 to and from the float8 / 4-bit dtypes, with and without saturation."""
    x = np.asarray(rng.uniform(-4, 4, size=(3, 4)), np.float32)
    x[0, :3] = (1e6, -1e6, np.nan)
    out = []
    for to in STORAGE:
        if dtype == "float32":
            src = x if to.startswith("float") else np.round(np.clip(x, -4, 3)).astype(np.float32)
            out.append(Sample([src], {"dtype": to}, grad_inputs=(), name=f"to_{to}",
                              skips=_STORAGE_SKIPS))
            if to.startswith("float8"):
                out.append(Sample([x], {"dtype": to, "saturate": True}, grad_inputs=(),
                                  name=f"to_{to}_saturate", skips=_STORAGE_SKIPS))
    return out
