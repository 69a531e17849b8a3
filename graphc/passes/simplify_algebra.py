"""simplify_algebra: algebraic identities as DSL rewrite rules, applied to a fixed point.

Every rule below is a pattern and a replacement written with the DSL (see `rewrite.py`), with a
one-line formula docstring. A rule over a commutative op also matches the swapped operands
(`x * 1` covers `1 * x`), and attribute conditions (identity permutations, unit axes) are part
of the pattern. Rules keep every value bit-for-bit (up to the sign of a zero) on
every input, NaN and Inf included: that is why `x * 0 -> 0` only fires where x cannot be NaN or
Inf. The exceptions are `transpose_matmul` and `sum_batched_matmul`, which may let a matmul kernel
sum in another order.
Literal matching sees through views of a literal (`expand(0.0, (N, 10))` is a zero), so the
rules also clean up the broadcast seeds and zeros that the autodiff pass makes.

The rules that matter most for gradient graphs: `transpose_matmul` (weight gradients
`(x^T g)^T` become `g^T x`), `*_keepdims_reshape` (bias gradients), `add_adjacent_pads` (the
gradients of slices that tile an axis, e.g. an LSTM's gates, become one concatenation) and
`*_expand_*` (a broadcast feeding a broadcasting op is implicit).
"""
from __future__ import annotations

import numpy as np

from ..frontends import dsl
from ..frontends.dsl import Tensor
from ..ir.graph import Graph, Value
from ..ir.types import FLOAT_DTYPES, TensorType, broadcast_shapes, dim_product
from ..ops.base import OPS, Op, norm_axes
from ..ops.reduce import reduced_shape
from .pipeline import register_pass
from .rewrite import (Match, Pattern, RewriteStats, Rule, apply_rules, bind, constant_literal,
                      identity_perm, rule, satisfies, swapped_last_two, uniform_scalar)


def literal(v: Value) -> np.ndarray | None:
    """The build-time value of `v`: a literal, or a view (expand, reshape, ...) of a uniform one."""
    arr = constant_literal(v)
    if arr is not None:
        return arr
    p = v.producer
    if p is not None and p.op.traits.view_like:  # a view of a uniform literal is that literal
        s = uniform_scalar(literal(p.inputs[0]))
        if s is not None:
            return np.asarray(s)
    return None


def known_finite(v: Value, depth: int = 8) -> bool:
    """True when `v` can hold no NaN or Inf whatever the graph's inputs are."""
    if v.type.dtype not in FLOAT_DTYPES:
        return True  # integers and bools have no NaN or Inf
    arr = literal(v)
    if arr is not None:
        return bool(np.all(np.isfinite(arr)))
    p = v.producer
    if p is None or depth == 0:
        return False
    if p.op.traits.converts_dtype:  # int and bool values are far inside float32's range
        return p.inputs[0].type.dtype not in FLOAT_DTYPES
    if p.op.traits.view_like:
        return known_finite(p.inputs[0], depth - 1)
    if p.op.traits.selects:
        return known_finite(p.inputs[1], depth - 1) and known_finite(p.inputs[2], depth - 1)
    return False


def _zeros(m: Match) -> dsl.Tensor:
    if m.type.is_static and int(np.prod(m.shape, dtype=np.int64)) <= 4096:
        return dsl.constant(np.zeros(m.shape, m.dtype))
    return dsl.apply("expand", [dsl.constant(np.zeros((1,) * len(m.shape), m.dtype))], {"shape": m.shape})


def _same_type(m: Match, name: str) -> bool:
    return m.values[name].type == m.type


# ---- identities of arithmetic ------------------------------------------------------------------------

@rule(lambda x: x * 1.0)
def mul_one(m, x):
    """x * 1 -> x   (and 1 * x)"""
    return dsl.broadcast_to(x, m.shape)


@rule(lambda x: x + 0.0)
def add_zero(m, x):
    """x + 0 -> x   (and 0 + x)"""
    return dsl.broadcast_to(x, m.shape)


@rule(lambda x: x - 0.0)
def sub_zero(m, x):
    """x - 0 -> x"""
    return dsl.broadcast_to(x, m.shape)


@rule(lambda x: 0.0 - x)
def zero_sub(m, x):
    """0 - x -> -x"""
    return dsl.broadcast_to(-x, m.shape)


@rule(lambda x: x / 1.0)
def div_one(m, x):
    """x / 1 -> x"""
    return dsl.broadcast_to(x, m.shape)


@rule(lambda x: x * -1.0)
def mul_minus_one(m, x):
    """x * -1 -> -x   (and -1 * x)"""
    return dsl.broadcast_to(-x, m.shape)


# x * 0 is NOT 0 in general: NaN * 0 and Inf * 0 are NaN, and dropping them would hide a diverged
# model. Only where x provably holds no NaN/Inf (integer dtypes, finite literals, casts from
# integers or bools such as one-hot masks) is the product a plain zero.
@rule(lambda x: x * 0.0, when=lambda m: known_finite(m.values["x"]))
def mul_zero(m, x):
    """x * 0 -> 0 (x finite; and 0 * x)"""
    return _zeros(m)


@rule(lambda x: -(-x))
def neg_neg(m, x):
    """-(-x) -> x"""
    return x


@rule(lambda x, y: x - (-y))
def sub_neg(m, x, y):
    """x - (-y) -> x + y"""
    return x + y


@rule(lambda x, y: x + (-y))
def add_neg(m, x, y):
    """x + (-y) -> x - y   (and (-y) + x)"""
    return x - y


@rule(lambda x, y: (-x) * (-y))
def neg_mul_neg(m, x, y):
    """(-x) * (-y) -> x * y"""
    return x * y


# ---- shapes ---------------------------------------------------------------------------------------------

@rule(lambda x: dsl.transpose(x), attrs={"transpose": {"axes": identity_perm()}})
def transpose_identity(m, x):
    """transpose(x, identity) -> x"""
    return x


@rule(lambda x: dsl.transpose(dsl.transpose(x)))
def transpose_transpose(m, x):
    """transpose(transpose(x, p), q) -> transpose(x, p[q]) (or x when that is the identity)"""
    inner, outer = m.nodes
    p, q = inner.attrs["axes"], outer.attrs["axes"]
    axes = tuple(p[i] for i in q)
    return x if axes == tuple(range(len(axes))) else dsl.transpose(x, axes)


@rule(lambda x: dsl.reshape(x, (-1,)), when=lambda m: _same_type(m, "x"))
def reshape_same(m, x):
    """reshape(x, x.shape) -> x"""
    return x


@rule(lambda x: dsl.reshape(dsl.reshape(x, (-1,)), ("A", "B")))
def reshape_reshape(m, x):
    """reshape(reshape(x, s), t) -> reshape(x, t)"""
    return dsl.reshape(x, m.shape)


@rule(lambda x: dsl.apply("expand", [x], {"shape": ("A", "B")}), when=lambda m: _same_type(m, "x"))
def expand_same(m, x):
    """expand(x, x.shape) -> x"""
    return x


@rule(lambda x: dsl.apply("expand", [dsl.apply("expand", [x], {"shape": ("A", "B")})],
                          {"shape": ("A", "B")}))
def expand_expand(m, x):
    """expand(expand(x, s), t) -> expand(x, t)"""
    return dsl.apply("expand", [x], {"shape": m.shape})


@rule(lambda x: dsl.cast(x, "float32"), when=lambda m: _same_type(m, "x"))
def cast_same(m, x):
    """cast(x, x.dtype) -> x"""
    return x


#: the reductions over `axes` with `keepdims` (sum, mean, max, min)
_REDUCTIONS: list[Op] = [op for op in OPS.values() if op.traits.reduction]


def _unit_dims(axes, node) -> bool:
    shape = node.inputs[0].type.shape
    return all(shape[a] == 1 for a in norm_axes(axes, len(shape)))


def _reduce_unit_axes(op: Op) -> Rule:
    @rule(lambda x: dsl.apply(op.name, [x], {"axes": 0}), name=f"{op.name}_unit_axes",
          attrs={op.name: {"axes": satisfies(_unit_dims, "axes of size 1")}})
    def reduce_unit(m, x):
        """reduce(x, axes) -> reshape(x) when every reduced axis has size 1"""
        return dsl.reshape(x, m.shape)
    reduce_unit.formula = f"{op.name}(x, axes) -> reshape(x) when every axis in axes has size 1"
    return reduce_unit


UNIT_AXES_RULES: list[Rule] = [_reduce_unit_axes(op) for op in _REDUCTIONS]


def _keepdims_dropped(m: Match) -> bool:
    x = m.values["x"]
    return m.shape == reduced_shape(x.type.shape, norm_axes(m.nodes[0].attrs.get("axes"), x.type.rank),
                                    False)


def _reduce_keepdims_reshape(op: Op) -> Rule:
    @rule(lambda x: dsl.reshape(dsl.apply(op.name, [x], {"axes": 0, "keepdims": True}), ("B",)),
          when=_keepdims_dropped, name=f"{op.name}_keepdims_reshape",
          attrs={op.name: {"keepdims": True}})
    def reduce_reshape(m, x):
        """reshape(reduce(x, axes, keepdims=True), reduce(x, axes).shape) -> reduce(x, axes)"""
        return dsl.apply(op.name, [x], {"axes": m.nodes[0].attrs.get("axes"), "keepdims": False})
    reduce_reshape.formula = (f"reshape({op.name}(x, axes, keepdims=True), {op.name}(x, axes).shape)"
                              f" -> {op.name}(x, axes)")
    return reduce_reshape


KEEPDIMS_RESHAPE_RULES: list[Rule] = [_reduce_keepdims_reshape(op) for op in _REDUCTIONS]


# ---- matmul -------------------------------------------------------------------------------------------

def _swap_last(rank: int) -> tuple[int, ...]:
    return tuple(range(rank - 2)) + (rank - 1, rank - 2)


#: a transpose that swaps the last two axes (a batched matrix transpose)
SWAP_LAST = Pattern(lambda x: dsl.transpose(x), attrs={"transpose": {"axes": swapped_last_two()}},
                    name="swap_last")


def _is_swap(v: Value) -> bool:
    return SWAP_LAST.match(v) is not None


def _mT(v: dsl.Tensor) -> dsl.Tensor:
    """v with its last two axes swapped, undoing a swap that made v (transpose(transpose(x)) = x)."""
    if _is_swap(v.value):
        return dsl.Tensor(v.value.producer.inputs[0])
    return dsl.transpose(v, _swap_last(v.ndim))


def _transpose_of_matmul(m: Match) -> bool:
    a, b = m.values["a"], m.values["b"]
    return a.type.rank >= 2 and b.type.rank >= 2 and (_is_swap(a) or _is_swap(b))


# (a @ b)^T is b^T @ a^T exactly in real arithmetic; the products are the same, but a matmul
# kernel may add them in another order, so results can differ in the last bits (as between BLAS
# builds). Only where an operand is itself a transpose, so that the rewrite removes transposes.
@rule(lambda a, b: dsl.transpose(dsl.matmul(a, b)), when=_transpose_of_matmul,
      types={"b": ("B", "C")}, attrs={"transpose": {"axes": swapped_last_two()}})
def transpose_matmul(m, a, b):
    """transpose(a @ b) -> transpose(b) @ transpose(a) (last two axes; when a or b is a transpose)"""
    return dsl.matmul(_mT(b), _mT(a))


def _batch_summed_product(m: Match) -> bool:
    a, b, prod = m.values["a"], m.values["b"], m.nodes[0]
    r = a.type.rank
    return (r >= 3 and b.type.rank == r and _is_swap(a) and a.type.shape[:-2] == b.type.shape[:-2]
            and prod.output.type.shape[:-2] == a.type.shape[:-2])


def _batch_axes(axes, node) -> bool:
    r = node.inputs[0].type.rank
    return axes is not None and norm_axes(axes, r) == tuple(range(r - 2))


# The weight gradient of a Linear layer on (N, S, D) inputs: autodiff gives one small product per
# batch element and then sums them; one (D, N*S) @ (N*S, F) product does the same work in one
# large kernel (the sum's order changes, as in transpose_matmul). Only where a is a transpose, so
# that flattening x needs no copy.
@rule(lambda a, b: dsl.sum(dsl.matmul(a, b), 0), when=_batch_summed_product,
      types={"a": ("A", "C", "B"), "b": ("A", "B", "D")},
      attrs={"sum": {"axes": satisfies(_batch_axes, "every batch axis")}})
def sum_batched_matmul(m, a, b):
    """sum(x^T @ g over batch axes) -> reshape(x, (-1, M))^T @ reshape(g, (-1, F))"""
    x = _mT(a)  # (..., K, M): rows of all batch elements stack into one (P*K, M) matrix
    # row counts spelled out, not -1: with an empty dim, -1 has no single value
    prod = dsl.matmul(dsl.transpose(dsl.reshape(x, (dim_product(x.shape[:-1]), x.shape[-1])), (1, 0)),
                      dsl.reshape(b, (dim_product(b.shape[:-1]), b.shape[-1])))
    return dsl.reshape(prod, m.shape)


# ---- pads and concatenation -------------------------------------------------------------------------

def _no_pads(pads, node) -> bool:
    return all(tuple(p) == (0, 0) for p in pads)


@rule(lambda x: dsl.pad(x, ((0, 0), (0, 1))), types={"x": ("A", 2)},
      attrs={"pad": {"pads": satisfies(_no_pads, "no padding")}})
def pad_nothing(m, x):
    """pad(x, 0) -> x"""
    return x


@rule(lambda x: dsl.pad(dsl.pad(x, ((0, 0), (0, 1))), ((0, 0), (0, 1))),
      types={"x": ("A", 2)}, attrs={"pad": {"value": bind("value")}})
def pad_pad(m, x):
    """pad(pad(x, p, v), q, v) -> pad(x, p + q, v)"""
    inner, outer = m.nodes
    pads = tuple((a + c, b + d) for (a, b), (c, d) in zip(inner.attrs["pads"], outer.attrs["pads"]))
    return dsl.pad(x, pads, inner.attrs.get("value", 0.0))


def _adjacent_pads(m: Match) -> tuple[int, bool] | None:
    """(axis, a_first) when two pads differ only along one axis, where a and b abut."""
    pa, pb = m.nodes[0], m.nodes[1]
    a, b = m.values["a"], m.values["b"]
    if pa.output.type != m.type or pb.output.type != m.type:
        return None
    diff = [k for k, (p, q) in enumerate(zip(pa.attrs["pads"], pb.attrs["pads"])) if tuple(p) != tuple(q)]
    if len(diff) != 1:
        return None
    k = diff[0]
    la, lb = a.type.shape[k], b.type.shape[k]
    if not isinstance(la, int) or not isinstance(lb, int):
        return None
    a0, b0 = pa.attrs["pads"][k][0], pb.attrs["pads"][k][0]
    if a0 + la == b0:
        return k, True
    if b0 + lb == a0:
        return k, False
    return None


def _concat_parts(v: dsl.Tensor, axis: int) -> list[dsl.Tensor]:
    p = v.value.producer
    if p is not None and p.op.traits.concatenates and p.attrs["axis"] % v.ndim == axis:
        return [dsl.Tensor(i) for i in p.inputs]
    return [v]


# the gradient of x[..., i:j] is a zero pad; the gradients of slices that tile an axis add up
# to these pads, which are one concatenation
@rule(lambda a, b: dsl.pad(a, ((0, 0), (0, 2))) + dsl.pad(b, ((0, 0), (2, 0))),
      when=lambda m: _adjacent_pads(m) is not None, types={"a": ("A", 2), "b": ("A", 2)},
      attrs={"pad": {"value": 0.0}})
def add_adjacent_pads(m, a, b):
    """pad(a, (i, n-j)) + pad(b, (j, n-k)) -> pad(concat(a, b), (i, n-k)) (zero pads, a b abut)"""
    k, a_first = _adjacent_pads(m)
    first, second = (m.nodes[0], m.nodes[1]) if a_first else (m.nodes[1], m.nodes[0])
    x, y = (a, b) if a_first else (b, a)
    pads = list(first.attrs["pads"])
    pads[k] = (first.attrs["pads"][k][0], second.attrs["pads"][k][1])
    joined = dsl.concatenate(_concat_parts(x, k) + _concat_parts(y, k), k)
    return joined if all(tuple(p) == (0, 0) for p in pads) else dsl.pad(joined, tuple(pads))


# sums of pads accumulate left to right: (x + pad(a)) + pad(b) with a and b abutting; adding the
# two disjoint zero pads first changes no value (each element adds one of them and zeros)
@rule(lambda x, a, b: (x + dsl.pad(a, ((0, 0), (0, 2)))) + dsl.pad(b, ((0, 0), (2, 0))),
      when=lambda m: _adjacent_pads(Match(m.root, [m.nodes[0], m.nodes[2]], m.values)) is not None,
      types={"x": ("A", 4), "a": ("A", 2), "b": ("A", 2)}, attrs={"pad": {"value": 0.0}})
def add_adjacent_pads_assoc(m, x, a, b):
    """(x + pad(a)) + pad(b) -> x + (pad(a) + pad(b)) when a and b abut (then merged)"""
    return x + (Tensor(m.nodes[0].output) + Tensor(m.nodes[2].output))


# ---- broadcasting -------------------------------------------------------------------------------------

def _implicit(m: Match) -> bool:
    try:
        return broadcast_shapes(m.values["a"].type.shape, m.values["b"].type.shape) == m.shape
    except ValueError:
        return False


def _operand_dtype(op: Op) -> str:
    """A dtype the binary `op` accepts, for tracing its pattern (logical ops take bools)."""
    for dtype in ("float32", "int32", "bool"):
        t = TensorType((2,), dtype)
        try:
            op.infer(t, t)
            return dtype
        except (TypeError, ValueError):
            continue
    raise TypeError(f"{op.name}: no placeholder dtype to trace its broadcast rule with")


def _expand_operand(op: Op, side: int) -> Rule:
    def pattern(a, b):
        ea = dsl.apply("expand", [a], {"shape": ("A", "B")})
        return dsl.apply(op.name, [ea, b] if side == 0 else [b, ea])

    dt = _operand_dtype(op)

    @rule(pattern, when=_implicit, types={"a": TensorType((1, "B"), dt), "b": dt},
          name=f"{op.name}_expand_{'ab'[side]}")
    def implicit_broadcast(m, a, b):
        """op(expand(a), b) -> op(a, b) when broadcasting gives the same shape"""
        # keep the operand order of the matched node (a commutative match may have swapped it)
        args = [dsl.Tensor(v) for v in m.root.inputs]
        pos = 0 if m.root.inputs[0] is m.nodes[0].output else 1
        args[pos] = a
        return dsl.apply(op.name, args)
    implicit_broadcast.formula = (f"{op.name}(expand(a, s), b) -> {op.name}(a, b)" if side == 0 else
                                  f"{op.name}(b, expand(a, s)) -> {op.name}(b, a)")
    implicit_broadcast.formula += (" (either order;" if op.traits.commutative else " (") + \
        " same result shape)"
    return implicit_broadcast


#: `op(expand(a), b) -> op(a, b)` for every binary op that broadcasts its operands; a commutative
#: op needs one rule for both operand orders
EXPAND_OPERAND_RULES: list[Rule] = [
    _expand_operand(op, side) for op in OPS.values() if op.traits.broadcasting and op.arity == 2
    for side in ((0,) if op.traits.commutative else (0, 1))]


# ---- safe_mul (a * b, but 0 where a == 0: the autodiff pass's product with a derivative) ---------

def _safe(a, b):
    return dsl.apply("safe_mul", [a, b])


@rule(lambda a, b: _safe(a, b), when=lambda m: known_finite(m.values["b"]))
def safe_mul_finite(m, a, b):
    """safe_mul(a, b) -> a * b when b is finite (then a == 0 gives 0 anyway)"""
    return a * b


@rule(lambda b: _safe(0.0, b))
def safe_mul_zero(m, b):
    """safe_mul(0, b) -> 0"""
    return _zeros(m)


SAFE_MUL_RULES: list[Rule] = [safe_mul_finite, safe_mul_zero]


# ---- where --------------------------------------------------------------------------------------------

def _uniform_cond(m: Match) -> bool:
    return uniform_scalar(m.literal("c")) is not None


@rule(lambda c, a, b: dsl.where(c, a, b), when=_uniform_cond, types={"c": "bool"})
def where_constant(m, c, a, b):
    """where(True, a, b) -> a;  where(False, a, b) -> b"""
    return dsl.broadcast_to(a if bool(uniform_scalar(m.literal("c"))) else b, m.shape)


@rule(lambda c, a: dsl.where(c, a, a), types={"c": "bool"})
def where_same(m, c, a):
    """where(c, a, a) -> a"""
    return dsl.broadcast_to(a, m.shape)


# gradients of where(c, f(x), g(x)) come back as two masked halves that add up
@rule(lambda c, a, b: dsl.where(c, a, 0.0) + dsl.where(c, 0.0, b), types={"c": "bool"})
def add_where_halves(m, c, a, b):
    """where(c, a, 0) + where(c, 0, b) -> where(c, a, b)   (either order)"""
    return dsl.broadcast_to(dsl.where(c, a, b), m.shape)


#: the rules of the default `simplify_algebra` pass, tried in this order at each node
RULES: list[Rule] = [
    mul_one, add_zero, sub_zero, zero_sub, div_one, mul_minus_one, mul_zero, neg_neg, sub_neg,
    add_neg, neg_mul_neg, transpose_identity, transpose_transpose, reshape_same, reshape_reshape,
    expand_same, expand_expand, cast_same, *UNIT_AXES_RULES, where_constant, where_same,
    add_where_halves, *KEEPDIMS_RESHAPE_RULES, transpose_matmul, sum_batched_matmul, pad_nothing,
    pad_pad, add_adjacent_pads, add_adjacent_pads_assoc, *SAFE_MUL_RULES, *EXPAND_OPERAND_RULES,
]

#: what the last run of the pass did (sweeps, rewrites per rule), for reports and tests
last_stats: RewriteStats | None = None


@register_pass("simplify_algebra")
def simplify_algebra(graph: Graph, rules: list[Rule] | None = None) -> Graph:
    """A copy of `graph` rewritten with `rules` (default: `RULES`) until none applies."""
    global last_stats
    out, last_stats = apply_rules(graph, RULES if rules is None else rules, literal=literal)
    return out
