"""The ONNX op table of the importer (graphc.frontends.onnx_import): one handler per op type.

A handler gets a context `c` (the node, its attributes, its inputs) and returns one value, or
one per node output, built with DSL calls. `c.t(i)` reads input i as a graph Tensor, `c.const` /
`c.dims` / `c.ints` read inputs that must be known at import time. This file holds the
elementwise, reduction, shape and constant ops; onnx_import_nn.py the linear-algebra and
neural-network ones; shape arithmetic on symbolic sizes is in onnx_import_shapes.py.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Sequence, Union

import numpy as np

from ..ir.types import broadcast_shapes, dim_product
from . import dsl
from . import functional as F
from .dsl import Tensor
from .onnx_import_shapes import fold_prod, norm_dims

if TYPE_CHECKING:  # pragma: no cover
    from .onnx_import import _Ctx

# a value during import: a graph Tensor, a constant known now (an ndarray; dtype object when it
# holds symbolic dims such as "N"), or None for an omitted optional input
Val = Union[Tensor, np.ndarray, None]

Handler = Callable[["_Ctx"], Union[Val, Sequence[Val]]]
#: ONNX op type -> handler; a handler returns one value or one per node output
HANDLERS: dict[str, Handler] = {}
#: input positions that never become parameters: read at import time (shape, axes, pads, ...)
#: or buffers (BatchNormalization's running statistics)
NOT_PARAM_INPUTS: dict[str, tuple[int, ...]] = {}


def handler(*names: str, static: tuple[int, ...] = ()) -> Callable[[Handler], Handler]:
    def deco(fn: Handler) -> Handler:
        for n in names:
            HANDLERS[n] = fn
            NOT_PARAM_INPUTS[n] = static
        return fn
    return deco


# ---- elementwise ------------------------------------------------------------------------------

_UNARY = {"Neg": dsl.neg, "Abs": dsl.abs, "Exp": dsl.exp, "Log": dsl.log, "Sqrt": dsl.sqrt,
          "Tanh": dsl.tanh, "Sigmoid": dsl.sigmoid, "Relu": dsl.relu, "Erf": dsl.erf,
          "Sign": dsl.sign, "Not": dsl.logical_not, "Identity": lambda x: x}
_BINARY = {"Add": dsl.add, "Sub": dsl.sub, "Mul": dsl.mul, "Div": dsl.div, "Equal": dsl.equal,
           "Less": dsl.less, "LessOrEqual": dsl.less_equal, "Greater": dsl.greater,
           "GreaterOrEqual": dsl.greater_equal, "And": dsl.logical_and, "Or": dsl.logical_or}


@handler(*_UNARY)
def _unary(c: _Ctx) -> Val:
    if c.node.op_type == "Identity":
        return c.inputs[0]
    return _UNARY[c.node.op_type](c.t(0))


@handler(*_BINARY)
def _binary(c: _Ctx) -> Val:
    return _BINARY[c.node.op_type](c.t(0), c.t(1))


@handler("Pow")
def _pow(c: _Ctx) -> Val:
    base, ex = c.t(0), c.t(1)
    if not base.type.is_float:  # integer powers: computed in float64, rounded back
        from .onnx_import_math import round_half_even
        y = dsl.power(dsl.cast(base, "float64"), dsl.cast(ex, "float64"))
        return dsl.cast(round_half_even(y), base.dtype)
    if ex.dtype != base.dtype:  # ONNX lets the exponent have its own type
        ex = dsl.cast(ex, base.dtype)
    return dsl.power(base, ex)


@handler("Max", "Min", "Sum", "Mean")
def _variadic(c: _Ctx) -> Val:
    fn = {"Max": dsl.maximum, "Min": dsl.minimum, "Sum": dsl.add, "Mean": dsl.add}[c.node.op_type]
    out = c.t(0)
    for i in range(1, len(c.inputs)):
        out = fn(out, c.t(i))
    return out / float(len(c.inputs)) if c.node.op_type == "Mean" and len(c.inputs) > 1 else out


@handler("Reciprocal")
def _reciprocal(c: _Ctx) -> Val:
    x = c.t(0)
    return dsl.div(np.ones((), x.dtype), x)


@handler("LeakyRelu")
def _leaky_relu(c: _Ctx) -> Val:
    return F.leaky_relu(c.t(0), float(c.attr("alpha", 0.01)))


@handler("Elu")
def _elu(c: _Ctx) -> Val:
    x, a = c.t(0), float(c.attr("alpha", 1.0))
    return dsl.where(x > 0, x, a * (dsl.exp(dsl.minimum(x, 0.0)) - 1.0))


@handler("Softplus")
def _softplus(c: _Ctx) -> Val:
    x = c.t(0)  # log(1 + e^x) = max(x, 0) + log(1 + e^-|x|), which never overflows
    return dsl.maximum(x, 0.0) + dsl.log(1.0 + dsl.exp(-dsl.abs(x)))


@handler("HardSigmoid")
def _hard_sigmoid(c: _Ctx) -> Val:
    x = c.t(0)
    return F.clip(x * float(c.attr("alpha", 0.2)) + float(c.attr("beta", 0.5)), 0.0, 1.0)


@handler("PRelu")
def _prelu(c: _Ctx) -> Val:
    x = c.t(0)
    return dsl.where(x > 0, x, x * c.t(1))


@handler("Selu")
def _selu(c: _Ctx) -> Val:
    x = c.t(0)
    a = float(c.attr("alpha", 1.67326319217681884765625))
    g = float(c.attr("gamma", 1.05070102214813232421875))
    return g * dsl.where(x > 0, x, a * (dsl.exp(dsl.minimum(x, 0.0)) - 1.0))


@handler("HardSwish")
def _hard_swish(c: _Ctx) -> Val:
    x = c.t(0)
    return x * F.clip(x * (1.0 / 6.0) + 0.5, 0.0, 1.0)


@handler("Mish")
def _mish(c: _Ctx) -> Val:
    x = c.t(0)
    return x * dsl.tanh(_softplus(c))


@handler("Gelu")
def _gelu(c: _Ctx) -> Val:
    return F.gelu(c.t(0), c.only("approximate", ("none", "tanh"), "none"))


@handler("Clip", static=(1, 2))
def _clip(c: _Ctx) -> Val:
    x = c.t(0)
    lo = c.attr("min") if "min" in c.attrs else (c.const(1, "min") if c.has(1) else None)
    hi = c.attr("max") if "max" in c.attrs else (c.const(2, "max") if c.has(2) else None)
    lo = None if lo is None else np.asarray(lo, x.dtype)
    hi = None if hi is None else np.asarray(hi, x.dtype)
    return F.clip(x, lo, hi)


@handler("Where")
def _where(c: _Ctx) -> Val:
    return dsl.where(c.t(0), c.t(1), c.t(2))


@handler("Cast")
def _cast(c: _Ctx) -> Val:
    return onnx_cast(c, c.t(0), c.imp.dtype_of(int(c.attr("to")), c))


def onnx_cast(c: _Ctx, x: Tensor, to: str) -> Tensor:
    """ONNX Cast/CastLike of x to `to`: saturating to a float8 type unless saturate=0."""
    c.only("round_mode", ("up",), "up")
    return dsl.cast(x, to, saturate=bool(c.attr("saturate", 1)))


# ---- reductions ---------------------------------------------------------------------------------

_REDUCE = {"ReduceSum": dsl.sum, "ReduceMean": dsl.mean, "ReduceMax": dsl.max, "ReduceMin": dsl.min}


@handler(*_REDUCE, "ReduceProd", "ReduceL1", "ReduceL2", "ReduceSumSquare", "ReduceLogSumExp",
         static=(1,))
def _reduce(c: _Ctx) -> Val:
    axes = c.ints("axes", 1)
    keep = bool(c.attr("keepdims", 1))
    x = c.inputs[0]
    if not axes and c.attr("noop_with_empty_axes", 0):
        return x
    axes = axes or None  # empty axes: all of them
    op = c.node.op_type
    if op == "ReduceProd":  # shape arithmetic only (ReduceProd of a Shape): known now
        if isinstance(x, Tensor):
            raise c.fail("ReduceProd of a run-time tensor is not supported")
        return fold_prod(c.const(0, "data") if x.dtype != object else x, axes, keep)
    x = c.t(0)
    ax = None if axes is None else tuple(axes)
    if op == "ReduceL2":
        return dsl.sqrt(dsl.sum(x * x, ax, keep))
    if op == "ReduceSumSquare":
        return dsl.sum(x * x, ax, keep)
    if op == "ReduceL1":
        return dsl.sum(dsl.abs(x), ax, keep)
    if op == "ReduceLogSumExp":
        return F.logsumexp(x, ax if ax is not None else tuple(range(x.ndim)), keep)
    return _REDUCE[op](x, ax, keep)


# ---- shapes and indexing ----------------------------------------------------------------------

@handler("Reshape", static=(1,))
def _reshape(c: _Ctx) -> Val:
    x = c.t(0)
    dims = list(c.dims(1, "shape"))
    if not c.attr("allowzero", 0):  # 0 copies the input's dim there
        dims = [x.shape[i] if isinstance(d, int) and d == 0 else d for i, d in enumerate(dims)]
    return dsl.reshape(x, tuple(dims))


@handler("Flatten")
def _flatten(c: _Ctx) -> Val:
    x = c.t(0)
    axis = int(c.attr("axis", 1))
    axis = axis + x.ndim if axis < 0 else axis
    return dsl.reshape(x, (dim_product(x.shape[:axis]), dim_product(x.shape[axis:])))


@handler("Transpose")
def _transpose(c: _Ctx) -> Val:
    perm = c.ints("perm")
    return dsl.transpose(c.t(0), None if perm is None else tuple(perm))


@handler("Squeeze", "Unsqueeze", static=(1,))
def _squeeze(c: _Ctx) -> Val:
    axes = c.ints("axes", 1)
    x = c.t(0)
    if c.node.op_type == "Squeeze":
        return dsl.squeeze(x, None if axes is None else tuple(axes))
    if axes is None:
        raise c.fail("Unsqueeze needs axes")
    rank = x.ndim + len(axes)
    for a in sorted(ax % rank for ax in axes):
        x = dsl.expand_dims(x, a)
    return x


@handler("Concat")
def _concat(c: _Ctx) -> Val:
    parts = [c.t(i) for i in range(len(c.inputs)) if c.has(i)]
    return dsl.concat(parts, int(c.attr("axis")))


@handler("Split", static=(1,))
def _split(c: _Ctx) -> Sequence[Val]:
    x = c.t(0)
    axis = int(c.attr("axis", 0)) % x.ndim
    n = len(c.node.output)
    sizes = c.ints("split", 1)
    d = x.shape[axis]
    if sizes is None:
        if not isinstance(d, int):
            raise c.fail(f"splitting symbolic dim {d} is not supported")
        parts = int(c.attr("num_outputs", n))
        step = -(-d // parts)
        sizes = [min(step, d - i * step) for i in range(parts)]
    outs, start = [], 0
    for s in sizes:
        outs.append(dsl.slice(x, [start], [start + s], [axis]))
        start += s
    return outs


@handler("Slice", static=(1, 2, 3, 4))
def _slice(c: _Ctx) -> Val:
    x = c.t(0)
    starts, ends = c.ints("starts", 1), c.ints("ends", 2)
    axes = c.ints("axes", 3, list(range(len(starts))))
    steps = c.ints("steps", 4, [1] * len(starts))
    return dsl.slice(x, starts, ends, [a % x.ndim for a in axes], steps)


@handler("Gather")
def _gather(c: _Ctx) -> Val:
    return dsl.take(c.t(0), c.t(1), int(c.attr("axis", 0)))


@handler("Pad", static=(1, 2, 3))
def _pad(c: _Ctx) -> Val:
    x = c.t(0)
    c.only("mode", ("constant",), "constant")
    pads = c.ints("pads", 1)
    value = c.attr("value", None)
    if value is None:
        value = float(c.const(2, "constant_value").reshape(-1)[0]) if c.has(2) else 0.0
    axes = c.ints("axes", 3, list(range(x.ndim)))
    k = len(axes)
    width = [(0, 0)] * x.ndim
    for j, a in enumerate(axes):
        width[a % x.ndim] = (pads[j], pads[j + k])
    if any(b < 0 or e < 0 for b, e in width):
        raise c.fail(f"negative pads {pads} are not supported")
    return dsl.pad(x, width, value)


@handler("Expand", static=(1,))
def _expand(c: _Ctx) -> Val:
    x = c.t(0)
    shape = c.dims(1, "shape")
    return dsl.broadcast_to(x, broadcast_shapes(x.shape, shape))  # ONNX broadcasts both ways


@handler("Tile", static=(1,))
def _tile(c: _Ctx) -> Val:
    x = c.t(0)
    reps = [int(r) for r in c.const(1, "repeats").reshape(-1)]
    inter = tuple(v for d, r in zip(x.shape, reps) for v in (1, d))
    big = tuple(v for d, r in zip(x.shape, reps) for v in (r, d))
    y = dsl.broadcast_to(dsl.reshape(x, inter), big)
    return dsl.reshape(y, tuple(dim_product([d, r]) for d, r in zip(x.shape, reps)))


@handler("Trilu", static=(1,))
def _trilu(c: _Ctx) -> Val:
    x = c.t(0)
    rows, cols = x.shape[-2:]
    if not isinstance(rows, int) or not isinstance(cols, int):
        raise c.fail(f"Trilu needs static matrix dims, got {rows} x {cols}")
    k = int(c.const(1, "k").reshape(())) if c.has(1) else 0
    upper = bool(c.attr("upper", 1))
    c.imp.limits.check((rows, cols), bool, f"{c.where()}: Trilu mask")
    mask = (np.triu if upper else np.tril)(np.ones((rows, cols), bool), k)
    return dsl.where(c.imp.constant(mask), x, np.zeros((), x.dtype))


@handler("CumSum", static=(1,))
def _cumsum(c: _Ctx) -> Val:
    x = c.t(0)
    axis = int(c.const(1, "axis").reshape(())) % x.ndim
    n = x.shape[axis]
    if not isinstance(n, int) or not x.type.is_float:
        raise c.fail(f"CumSum needs a float input with a static dim along the axis, got {x.type}")
    c.imp.limits.check((n, n), x.dtype, f"{c.where()}: CumSum matrix")
    # a running sum is a product with a triangular matrix of ones: m[i, j] = 1 where j counts i
    i, j = np.arange(n)[:, None], np.arange(n)[None, :]
    keep = (j <= i) if not c.attr("reverse", 0) else (j >= i)
    if c.attr("exclusive", 0):
        keep &= i != j
    xt = dsl.swapaxes(x, axis, -1)
    y = dsl.matmul(xt, c.imp.constant(keep.T.astype(x.dtype)))
    return dsl.swapaxes(y, axis, -1)


@handler("Shape")
def _shape(c: _Ctx) -> Val:
    v = c.inputs[0]
    shape = v.shape if isinstance(v, Tensor) else np.asarray(v).shape
    start, end = int(c.attr("start", 0)), c.attr("end", None)
    dims = list(shape)[start:None if end is None else int(end)]
    return norm_dims(np.array(dims, dtype=object))


@handler("Size")
def _size(c: _Ctx) -> Val:
    v = c.inputs[0]
    shape = v.shape if isinstance(v, Tensor) else np.asarray(v).shape
    return norm_dims(np.array(dim_product(shape), dtype=object))


@handler("Constant")
def _constant(c: _Ctx) -> Val:
    for key, v in c.attrs.items():
        if key == "value":
            return v
        if key in ("value_float", "value_floats"):
            return np.asarray(v, np.float32)
        if key in ("value_int", "value_ints"):
            return np.asarray(v, np.int64)
        if key == "sparse_value":
            raise c.fail("sparse constants are not supported")
    raise c.fail(f"no value attribute ({', '.join(c.attrs) or 'none'})")


@handler("ConstantOfShape", static=(0,))
def _constant_of_shape(c: _Ctx) -> Val:
    shape = c.dims(0, "shape")
    value = c.attr("value", np.zeros(1, np.float32)).reshape(())
    if all(isinstance(d, int) for d in shape):
        if any(d < 0 for d in shape):
            raise c.fail(f"negative dims in shape {list(shape)}")
        c.imp.limits.check(shape, value.dtype, f"{c.where()}: ConstantOfShape")
        return np.full(shape, value, value.dtype)
    return dsl.broadcast_to(c.imp.constant(np.asarray(value), c), shape)


@handler("Range", static=(0, 1, 2))
def _range(c: _Ctx) -> Val:
    limit = c.inputs[1] if len(c.inputs) > 1 else None
    if isinstance(limit, np.ndarray) and limit.dtype == object and limit.size == 1:
        return _range_to_symbol(c, str(limit.reshape(())))
    start, limit, delta = (c.const(i, n).reshape(())
                           for i, n in enumerate(("start", "limit", "delta")))
    if delta == 0:
        raise c.fail("delta is 0")
    count = max(int(np.ceil((float(limit) - float(start)) / float(delta))), 0)
    c.imp.limits.check((count,), start.dtype, f"{c.where()}: Range")
    return np.arange(start, limit, delta).astype(start.dtype)


def _range_to_symbol(c: _Ctx, limit: str) -> Tensor:
    """Range(0, n, 1) up to a symbolic size n (position ids: `torch.arange(x.shape[1])` exported
    with a dynamic axis): a scan counting 0..n-1, so the graph keeps the symbolic size."""
    from .control import scan
    start, delta = c.const(0, "start").reshape(()), c.const(2, "delta").reshape(())
    if start != 0 or delta != 1:
        raise c.fail(f"a Range to the symbolic size {limit!r} must start at 0 with delta 1, "
                     f"got start {start}, delta {delta}")
    _, ids = scan(lambda i, _: (i + np.asarray(1, start.dtype), i),
                  dsl.constant(np.asarray(0, start.dtype)), length=limit)
    return ids
