"""ONNX import: an onnx ModelProto (or .onnx file) -> a graphc Graph built with the DSL.

Each ONNX op is translated by one handler in `HANDLERS` into DSL calls, so the result is an
ordinary graph: printable, differentiable, exportable again. What the handlers need to know when
importing (Reshape's shape, axes, pads, ...) must be constants; ONNX shape arithmetic on
symbolic sizes (Shape -> Gather -> Concat -> Reshape, as exporters write for a dynamic batch) is
followed at import time, and other all-constant subgraphs are folded with the numpy reference.

Initializers become parameters (trainable, with their values) when they are floating point and
used as data; integer ones, ones only read at import time, and names made by exporters for
constants (containing "/" or "::") become constants. Pass ``params=`` to choose otherwise.
"""
from __future__ import annotations

import math
import os
import re
from typing import Any, Callable, Iterable, Sequence, Union

import numpy as np

from ..ir.errors import GraphcError
from ..ir.graph import Graph, current_graph
from ..ir.types import DTYPES, Dim, broadcast_shapes, dim_divide, dim_product
from . import dsl
from . import functional as F
from .dsl import Tensor


class OnnxImportError(GraphcError, ValueError):
    """The model uses ONNX ops, attributes or dtypes that graphc cannot import."""


# a value during import: a graph Tensor, a constant known now (an ndarray; dtype object when it
# holds symbolic dims such as "N"), or None for an omitted optional input
Val = Union[Tensor, np.ndarray, None]
_BAD_NAME = re.compile(r"[^A-Za-z0-9_.:/\-]")


class _Ctx:
    """What a handler sees: the node, its attributes, and helpers to read its inputs."""

    def __init__(self, imp: "_Importer", node: Any, inputs: list[Val]):
        self.imp, self.node, self.inputs = imp, node, inputs
        self.attrs = imp.attributes(node)
        self.opset = imp.opset

    def where(self) -> str:
        return self.imp.describe(self.node)

    def fail(self, msg: str) -> OnnxImportError:
        return OnnxImportError(f"{self.where()}: {msg}")

    def has(self, i: int) -> bool:
        return i < len(self.inputs) and self.inputs[i] is not None

    def t(self, i: int) -> Tensor:
        """Input i as a graph Tensor (constants become constant nodes)."""
        v = self.inputs[i]
        if isinstance(v, Tensor):
            return v
        if v is None:
            raise self.fail(f"input {i} is missing")
        return self.imp.constant(v, self)

    def const(self, i: int, what: str) -> np.ndarray:
        """Input i as a constant known now; raises if it is computed at run time."""
        v = self.inputs[i] if i < len(self.inputs) else None
        if v is None:
            raise self.fail(f"{what} (input {i}) is missing")
        if isinstance(v, Tensor):
            raise self.fail(f"{what} (input {i}, {self.node.input[i]!r}) is computed at run time; "
                            "graphc needs it known when importing")
        if v.dtype == object:
            raise self.fail(f"{what} (input {i}) holds symbolic sizes {list(v.reshape(-1))}")
        return v

    def dims(self, i: int, what: str) -> tuple[Dim, ...]:
        """Input i as a list of dims: ints, or symbols read from an input's shape."""
        v = self.inputs[i] if i < len(self.inputs) else None
        if isinstance(v, Tensor) or v is None:
            self.const(i, what)
        return tuple(d if isinstance(d, str) else int(d) for d in np.asarray(v).reshape(-1))

    def ints(self, name: str, i: int | None = None, default: Any = None) -> Any:
        """An int list from attribute `name`, else from input i (newer opsets), else default."""
        if name in self.attrs:
            return [int(a) for a in np.atleast_1d(self.attrs[name])]
        if i is not None and self.has(i):
            return [int(a) for a in self.const(i, name).reshape(-1)]
        return default

    def attr(self, name: str, default: Any = None) -> Any:
        return self.attrs.get(name, default)

    def only(self, name: str, allowed: Iterable[Any], default: Any) -> Any:
        v = self.attrs.get(name, default)
        if v not in allowed:
            raise self.fail(f"attribute {name}={v!r} is not supported (only {list(allowed)})")
        return v


Handler = Callable[[_Ctx], Union[Val, Sequence[Val]]]
#: ONNX op type -> handler; a handler returns one value or one per node output
HANDLERS: dict[str, Handler] = {}
#: input positions each op reads at import time (shape, axes, pads, ...), for the params rule
STATIC_INPUTS: dict[str, tuple[int, ...]] = {}


def handler(*names: str, static: tuple[int, ...] = ()) -> Callable[[Handler], Handler]:
    def deco(fn: Handler) -> Handler:
        for n in names:
            HANDLERS[n] = fn
            STATIC_INPUTS[n] = static
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
    return dsl.cast(c.t(0), c.imp.dtype_of(int(c.attr("to")), c))


@handler("Dropout")
def _dropout(c: _Ctx) -> Sequence[Val]:
    if c.has(2) and not isinstance(c.inputs[2], Tensor) and bool(c.const(2, "training_mode")):
        raise c.fail("training_mode=True dropout is not supported (import inference models)")
    if len(c.node.output) > 1 and c.node.output[1]:
        raise c.fail("the mask output of Dropout is not supported")
    return [c.inputs[0]]


# ---- linear algebra and neural-network ops ------------------------------------------------------

@handler("MatMul")
def _matmul(c: _Ctx) -> Val:
    return dsl.matmul(c.t(0), c.t(1))


@handler("Gemm")
def _gemm(c: _Ctx) -> Val:
    a, b = c.t(0), c.t(1)
    if c.attr("transA", 0):
        a = dsl.transpose(a)
    if c.attr("transB", 0):
        b = dsl.transpose(b)
    y = dsl.matmul(a, b)
    alpha, beta = float(c.attr("alpha", 1.0)), float(c.attr("beta", 1.0))
    if alpha != 1.0:
        y = y * alpha
    if c.has(2) and beta != 0.0:
        bias = c.t(2)
        y = y + (bias if beta == 1.0 else bias * beta)
    return y


def _spatial_pads(c: _Ctx, x: Tensor, kernel: Sequence[int], strides: Sequence[int],
                  dilations: Sequence[int]) -> list[int]:
    """ONNX pads [h_begin, w_begin, h_end, w_end], from `pads` or from auto_pad."""
    auto = c.attr("auto_pad", "NOTSET")
    if auto in ("NOTSET", "VALID"):
        return c.ints("pads", default=[0] * (2 * len(kernel))) if auto == "NOTSET" else [0] * 4
    if auto not in ("SAME_UPPER", "SAME_LOWER"):
        raise c.fail(f"auto_pad={auto!r} is not supported")
    begins, ends = [], []
    for n, k, s, d in zip(x.shape[2:], kernel, strides, dilations):
        if not isinstance(n, int):
            raise c.fail(f"auto_pad={auto} needs static spatial dims, got {n}")
        total = max((math.ceil(n / s) - 1) * s + (k - 1) * d + 1 - n, 0)
        small, big = total // 2, total - total // 2
        begins.append(big if auto == "SAME_LOWER" else small)
        ends.append(small if auto == "SAME_LOWER" else big)
    return begins + ends


def _as_2d(c: _Ctx, x: Tensor) -> tuple[Tensor, bool]:
    """1-D (N, C, L) tensors become (N, C, 1, L), so 2-D primitives serve 1-D ops too."""
    if x.ndim == 3:
        return dsl.expand_dims(x, 2), True
    if x.ndim != 4:
        raise c.fail(f"only 1-D and 2-D {c.node.op_type} is supported, got input {tuple(x.shape)}")
    return x, False


def _pad_rest(x: Tensor, pads: list[int], symmetric: tuple[int, int], fill: float) -> Tensor:
    """Explicitly pads what a symmetric padding attribute cannot express."""
    extra = [(0, 0), (0, 0)] + [(b - s, e - s) for b, e, s in zip(pads[:2], pads[2:], symmetric)]
    return dsl.pad(x, extra, fill) if any(b or e for b, e in extra) else x


@handler("Conv")
def _conv(c: _Ctx) -> Val:
    x, w = c.t(0), c.t(1)
    x, one_d = _as_2d(c, x)
    if one_d:
        w = dsl.expand_dims(w, 2)
    k = [int(d) for d in w.shape[2:]]
    pick = (lambda v: [1] + v) if one_d else (lambda v: v)  # noqa: E731
    strides = pick(c.ints("strides", default=[1] * (len(k) - one_d)))
    dil = pick(c.ints("dilations", default=[1] * (len(k) - one_d)))
    pads = c.ints("pads") if c.attr("auto_pad", "NOTSET") == "NOTSET" and "pads" in c.attrs else None
    if one_d:
        pads = [0, (pads or [0, 0])[0], 0, (pads or [0, 0])[1]] if pads or \
            c.attr("auto_pad", "NOTSET") in ("NOTSET", "VALID") else None
    if pads is None:
        pads = _spatial_pads(c, x, k, strides, dil)
    sym = (min(pads[0], pads[2]), min(pads[1], pads[3]))
    x = _pad_rest(x, pads, sym, 0.0)
    bias = c.t(2) if c.has(2) else None
    y = F.conv2d(x, w, bias, stride=tuple(strides), padding=sym, dilation=tuple(dil),
                 groups=int(c.attr("group", 1)))
    return dsl.squeeze(y, 2) if one_d else y


@handler("ConvTranspose")
def _conv_transpose(c: _Ctx) -> Val:
    x, w = c.t(0), c.t(1)
    if x.ndim != 4:
        raise c.fail("only 2-D ConvTranspose is supported")
    if "output_shape" in c.attrs or c.attr("auto_pad", "NOTSET") != "NOTSET":
        raise c.fail("output_shape and auto_pad are not supported; give pads and output_padding")
    pads = c.ints("pads", default=[0, 0, 0, 0])
    if pads[:2] != pads[2:]:
        raise c.fail(f"asymmetric pads {pads} are not supported")
    bias = c.t(2) if c.has(2) else None
    return F.conv_transpose2d(x, w, bias, stride=tuple(c.ints("strides", default=[1, 1])),
                              padding=tuple(pads[:2]),
                              output_padding=tuple(c.ints("output_padding", default=[0, 0])),
                              dilation=tuple(c.ints("dilations", default=[1, 1])),
                              groups=int(c.attr("group", 1)))


@handler("MaxPool", "AveragePool")
def _pool(c: _Ctx) -> Val:
    if len(c.node.output) > 1 and c.node.output[1]:
        raise c.fail("the Indices output of MaxPool is not supported")
    x, one_d = _as_2d(c, c.t(0))
    pick = (lambda v: [1] + v) if one_d else (lambda v: v)  # noqa: E731
    k = pick(c.ints("kernel_shape"))
    strides = pick(c.ints("strides", default=[1] * (len(k) - one_d)))
    if any(d != 1 for d in c.ints("dilations", default=[1])):
        raise c.fail("dilated pools are not supported")
    if one_d:
        p = c.ints("pads", default=[0, 0])
        pads = [0, p[0], 0, p[1]]
        if c.attr("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
            raise c.fail("auto_pad on 1-D pools is not supported")
    else:
        pads = _spatial_pads(c, x, k, strides, [1, 1])
    avg = c.node.op_type == "AveragePool"
    if c.attr("ceil_mode", 0):
        if avg:
            raise c.fail("ceil_mode=1 is not supported for AveragePool")
        # ceil mode = extra -inf padding at the end, enough for one more partial window
        for i, (n, kk, s) in enumerate(zip(x.shape[2:], k, strides)):
            span = n + pads[i] + pads[i + 2] - kk
            if span % s:
                pads[i + 2] += s - span % s
    sym = (min(pads[0], pads[2]), min(pads[1], pads[3]))
    if avg and sym != (max(pads[0], pads[2]), max(pads[1], pads[3])):
        raise c.fail(f"asymmetric pads {pads} are not supported for AveragePool")
    if any(2 * p > kk for p, kk in zip(sym, k)):
        raise c.fail(f"pads {pads} exceed half the kernel {k}")
    if avg:
        y = F.avg_pool2d(x, tuple(k), tuple(strides), sym,
                         count_include_pad=bool(c.attr("count_include_pad", 0)))
    else:
        y = F.max_pool2d(_pad_rest(x, pads, sym, -np.inf), tuple(k), tuple(strides), sym)
    return dsl.squeeze(y, 2) if one_d else y


@handler("GlobalAveragePool", "GlobalMaxPool")
def _global_pool(c: _Ctx) -> Val:
    x = c.t(0)
    axes = tuple(range(2, x.ndim))
    fn = dsl.mean if c.node.op_type == "GlobalAveragePool" else dsl.max
    return fn(x, axes, keepdims=True)


@handler("BatchNormalization")
def _batch_norm(c: _Ctx) -> Sequence[Val]:
    if c.attr("training_mode", 0) or (len(c.node.output) > 1 and any(c.node.output[1:])):
        raise c.fail("training-mode BatchNormalization is not supported (import inference models)")
    x = c.t(0)
    shape = (1, -1) + (1,) * (x.ndim - 2)
    scale, bias, mean, var = (dsl.reshape(c.t(i), shape) for i in (1, 2, 3, 4))
    eps = float(c.attr("epsilon", 1e-5))
    return [(x - mean) / dsl.sqrt(var + eps) * scale + bias]


@handler("LayerNormalization")
def _layer_norm(c: _Ctx) -> Sequence[Val]:
    if len(c.node.output) > 1 and any(c.node.output[1:]):
        raise c.fail("the Mean and InvStdDev outputs of LayerNormalization are not supported")
    x = c.t(0)
    axis = int(c.attr("axis", -1)) % x.ndim
    return [F.layer_norm(x, tuple(x.shape[axis:]), c.t(1), c.t(2) if c.has(2) else None,
                         float(c.attr("epsilon", 1e-5)))]


def _softmax_like(c: _Ctx, fn: Callable[..., Tensor]) -> Val:
    x = c.t(0)
    if c.opset >= 13:
        return fn(x, int(c.attr("axis", -1)))
    # before opset 13 the input is seen as 2-D: dims before `axis` by dims from it
    axis = int(c.attr("axis", 1)) % max(x.ndim, 1)
    flat = dsl.reshape(x, (dim_product(x.shape[:axis]), dim_product(x.shape[axis:])))
    return dsl.reshape(fn(flat, -1), x.shape)


@handler("Softmax")
def _softmax(c: _Ctx) -> Val:
    return _softmax_like(c, F.softmax)


@handler("LogSoftmax")
def _log_softmax(c: _Ctx) -> Val:
    return _softmax_like(c, F.log_softmax)


# ---- reductions ---------------------------------------------------------------------------------

_REDUCE = {"ReduceSum": dsl.sum, "ReduceMean": dsl.mean, "ReduceMax": dsl.max, "ReduceMin": dsl.min}


@handler(*_REDUCE, "ReduceProd", "ReduceL2", "ReduceSumSquare", "ReduceLogSumExp", static=(1,))
def _reduce(c: _Ctx) -> Val:
    axes = c.ints("axes", 1)
    keep = bool(c.attr("keepdims", 1))
    x = c.inputs[0]
    if axes is None and c.attr("noop_with_empty_axes", 0):
        return x
    op = c.node.op_type
    if op == "ReduceProd":  # shape arithmetic only (ReduceProd of a Shape): known now
        if isinstance(x, Tensor):
            raise c.fail("ReduceProd of a run-time tensor is not supported")
        return _fold_prod(c.const(0, "data") if x.dtype != object else x, axes, keep)
    x = c.t(0)
    ax = None if axes is None else tuple(axes)
    if op == "ReduceL2":
        return dsl.sqrt(dsl.sum(x * x, ax, keep))
    if op == "ReduceSumSquare":
        return dsl.sum(x * x, ax, keep)
    if op == "ReduceLogSumExp":
        return F.logsumexp(x, ax if ax is not None else tuple(range(x.ndim)), keep)
    return _REDUCE[op](x, ax, keep)


def _fold_prod(v: np.ndarray, axes, keep: bool) -> np.ndarray:
    ax = tuple(range(v.ndim)) if axes is None else tuple(a % v.ndim for a in axes)
    if v.dtype != object:
        return np.asarray(np.prod(v, axis=ax, keepdims=keep))
    prod = np.frompyfunc(lambda a, b: dim_product([a, b]), 2, 1)
    out = v
    for a in sorted(ax, reverse=True):
        out = prod.reduce(out, axis=a, keepdims=keep, initial=1)
    return _norm_dims(np.asarray(out, dtype=object))


@handler("ArgMax")
def _argmax(c: _Ctx) -> Val:
    if c.attr("select_last_index", 0):
        raise c.fail("select_last_index=1 is not supported")
    return dsl.argmax(c.t(0), int(c.attr("axis", 0)), keepdims=bool(c.attr("keepdims", 1)))


# ---- shapes and indexing --------------------------------------------------------------------------

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
    axis = int(c.attr("axis", 1)) % (x.ndim + 1)
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


@handler("Shape")
def _shape(c: _Ctx) -> Val:
    v = c.inputs[0]
    shape = v.shape if isinstance(v, Tensor) else np.asarray(v).shape
    start, end = int(c.attr("start", 0)), c.attr("end", None)
    dims = list(shape)[start:None if end is None else int(end)]
    return _norm_dims(np.array(dims, dtype=object))


@handler("Size")
def _size(c: _Ctx) -> Val:
    v = c.inputs[0]
    shape = v.shape if isinstance(v, Tensor) else np.asarray(v).shape
    return _norm_dims(np.array(dim_product(shape), dtype=object))


@handler("Constant")
def _constant(c: _Ctx) -> Val:
    from onnx import numpy_helper
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
    _ = numpy_helper


@handler("ConstantOfShape", static=(0,))
def _constant_of_shape(c: _Ctx) -> Val:
    shape = c.dims(0, "shape")
    value = c.attr("value", np.zeros(1, np.float32)).reshape(())
    if all(isinstance(d, int) for d in shape):
        return np.full(shape, value, value.dtype)
    return dsl.broadcast_to(c.imp.constant(np.asarray(value), c), shape)


@handler("Range", static=(0, 1, 2))
def _range(c: _Ctx) -> Val:
    start, limit, delta = (c.const(i, n).reshape(()) for i, n in enumerate(("start", "limit", "delta")))
    return np.arange(start, limit, delta).astype(start.dtype)


# ---- shape arithmetic on symbolic dims (object arrays), done now -----------------------------------

def _norm_dims(v: np.ndarray) -> np.ndarray:
    """An object array of dims becomes int64 once no symbol is left in it."""
    flat = list(v.reshape(-1))
    if all(isinstance(d, (int, np.integer)) for d in flat):
        return np.asarray(v.astype(np.int64) if v.size else np.zeros(v.shape, np.int64))
    return v


def _sym_binary(fn: Callable[[Dim, Dim], Dim]) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    return lambda a, b: _norm_dims(np.asarray(np.frompyfunc(fn, 2, 1)(a, b), dtype=object))


def _dim_div(a: Dim, b: Dim) -> Dim:
    q = dim_divide(a, b)
    if q is None:
        raise ValueError(f"{a} / {b} does not divide exactly")
    return q


def _dim_int_only(op: Callable[[int, int], int]) -> Callable[[Dim, Dim], Dim]:
    def fn(a, b):
        if isinstance(a, str) or isinstance(b, str):
            raise ValueError(f"cannot express {a} {op.__name__} {b} as a dim")
        return op(int(a), int(b))
    return fn


_SYMBOLIC: dict[str, Callable[[_Ctx, list[np.ndarray]], np.ndarray]] = {
    "Identity": lambda c, v: v[0],
    "Cast": lambda c, v: v[0],
    "Gather": lambda c, v: _norm_dims(np.take(v[0], v[1].astype(np.int64), axis=int(c.attr("axis", 0)))),
    "Concat": lambda c, v: _norm_dims(np.concatenate([np.asarray(x, dtype=object) for x in v if x is not None],
                                                     axis=int(c.attr("axis")))),
    "Unsqueeze": lambda c, v: _fold_unsqueeze(c, v[0]),
    "Squeeze": lambda c, v: v[0].reshape(tuple(d for i, d in enumerate(v[0].shape)
                                               if i not in [a % v[0].ndim for a in (c.ints("axes", 1) or
                                                            [k for k, s in enumerate(v[0].shape) if s == 1])])),
    "Reshape": lambda c, v: v[0].reshape(tuple(int(d) for d in v[1].reshape(-1))),
    "Slice": lambda c, v: _fold_slice(c, v[0]),
    "Mul": lambda c, v: _sym_binary(lambda a, b: dim_product([a, b]))(v[0], v[1]),
    "Div": lambda c, v: _sym_binary(_dim_div)(v[0], v[1]),
    "Add": lambda c, v: _sym_binary(_dim_int_only(lambda a, b: a + b))(v[0], v[1]),
    "Sub": lambda c, v: _sym_binary(_dim_int_only(lambda a, b: a - b))(v[0], v[1]),
    "ReduceProd": lambda c, v: _fold_prod(v[0], c.ints("axes", 1), bool(c.attr("keepdims", 1))),
}


def _fold_unsqueeze(c: _Ctx, v: np.ndarray) -> np.ndarray:
    axes = c.ints("axes", 1)
    rank = v.ndim + len(axes)
    for a in sorted(ax % rank for ax in axes):
        v = np.expand_dims(v, a)
    return v


def _fold_slice(c: _Ctx, v: np.ndarray) -> np.ndarray:
    starts, ends = c.ints("starts", 1), c.ints("ends", 2)
    axes = c.ints("axes", 3, list(range(len(starts))))
    steps = c.ints("steps", 4, [1] * len(starts))
    idx = [slice(None)] * v.ndim
    for s, e, a, st in zip(starts, ends, axes, steps):
        idx[a % v.ndim] = slice(s, e, st)
    return _norm_dims(v[tuple(idx)])


# ---- the importer ---------------------------------------------------------------------------------

ParamRule = Union[None, Iterable[str], Callable[[str, np.ndarray], bool]]


class _Importer:
    def __init__(self, model: Any, label: str, name: str | None, params: ParamRule):
        self.model, self.label = model, label
        self.g = Graph(name or model.graph.name or "onnx_model")
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)
        self.env: dict[str, Val] = {}
        self.params = params
        self._symbols: set[str] = set()

    # -- helpers used by handlers ----------------------------------------------------------------
    def describe(self, node: Any) -> str:
        idx = self._index.get(id(node), "?")
        nm = f" {node.name!r}" if node.name else ""
        return f"{self.label}: node {idx} ({node.op_type}{nm})"

    def attributes(self, node: Any) -> dict[str, Any]:
        from onnx import AttributeProto, helper, numpy_helper
        out = {}
        for a in node.attribute:
            if a.type in (AttributeProto.GRAPH, AttributeProto.GRAPHS):
                raise OnnxImportError(f"{self.describe(node)}: subgraph attribute {a.name!r} "
                                      "(control flow) is not supported")
            v = helper.get_attribute_value(a)
            if isinstance(v, bytes):
                v = v.decode()
            elif a.type == AttributeProto.TENSOR:
                v = numpy_helper.to_array(v)
            elif isinstance(v, list) and v and isinstance(v[0], bytes):
                v = [x.decode() for x in v]
            out[a.name] = v
        return out

    def dtype_of(self, elem_type: int, ctx: Any = None) -> str:
        from onnx import helper
        try:
            name = np.dtype(helper.tensor_dtype_to_np_dtype(elem_type)).name
        except Exception:  # noqa: BLE001 - unknown enum value
            name = f"type {elem_type}"
        if name not in DTYPES:
            where = ctx.where() if ctx is not None else self.label
            raise OnnxImportError(f"{where}: dtype {name} is not supported (graphc has "
                                  f"{', '.join(DTYPES)})")
        return name

    def constant(self, v: np.ndarray, ctx: Any = None) -> Tensor:
        if v.dtype == object:
            raise OnnxImportError(f"{ctx.where() if ctx else self.label}: symbolic sizes "
                                  f"{list(v.reshape(-1))} are used as run-time data, which graphc "
                                  "cannot compute")
        if v.dtype.name not in DTYPES:
            if v.dtype.kind in "iu":
                v = v.astype(np.int64)
            else:
                raise OnnxImportError(f"{ctx.where() if ctx else self.label}: constant of dtype "
                                      f"{v.dtype} is not supported")
        return dsl.constant(np.asarray(v), graph=current_graph())

    def symbol(self, text: str, fallback: str) -> str:
        s = re.sub(r"\W", "_", text) if text else fallback
        if not s or not (s[0].isalpha() or s[0] == "_"):
            s = "d_" + s
        self._symbols.add(s)
        return s

    # -- the whole model ---------------------------------------------------------------------------
    def run(self) -> Graph:
        from onnx import numpy_helper
        gp = self.model.graph
        self._index = {id(n): i for i, n in enumerate(gp.node)}
        self._check_supported(gp)
        inits = {t.name: numpy_helper.to_array(t) for t in gp.initializer}
        as_param = self._param_names(gp, inits)
        g = self.g
        with g:
            for vi in gp.input:
                if vi.name in inits:
                    continue
                t = vi.type.tensor_type
                dtype = self.dtype_of(t.elem_type)
                dims = []
                for axis, d in enumerate(t.shape.dim):
                    if d.HasField("dim_value"):
                        dims.append(int(d.dim_value))
                    else:
                        dims.append(self.symbol(d.dim_param, f"{_BAD_NAME.sub('_', vi.name)}_{axis}"))
                self.env[vi.name] = g.input(_BAD_NAME.sub("_", vi.name), tuple(dims), dtype)
            for name, arr in inits.items():
                if name in as_param:
                    self.dtype_of_array(arr, name)
                    self.env[name] = g.param(_BAD_NAME.sub("_", name), init=np.array(arr))
                else:
                    self.env[name] = np.array(arr)
            for node in gp.node:
                self._node(node)
            for vi in gp.output:
                if vi.name not in self.env:
                    raise OnnxImportError(f"{self.label}: output {vi.name!r} is not computed by any node")
                v = self.env[vi.name]
                g.output(**{vi.name: v if isinstance(v, Tensor) else self.constant(v)})
        g.meta["onnx_source"] = self.label
        return g

    def dtype_of_array(self, arr: np.ndarray, name: str) -> None:
        if arr.dtype.name not in DTYPES:
            raise OnnxImportError(f"{self.label}: initializer {name!r} has dtype {arr.dtype}, which "
                                  f"graphc does not support ({', '.join(DTYPES)})")

    def _check_supported(self, gp: Any) -> None:
        missing: dict[str, list[str]] = {}
        for i, n in enumerate(gp.node):
            key = n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}.{n.op_type}"
            if n.domain not in ("", "ai.onnx") or n.op_type not in HANDLERS:
                missing.setdefault(key, []).append(f"node {i}" + (f" {n.name!r}" if n.name else ""))
        if missing:
            lines = [f"  {op} x{len(where)} (first at {where[0]})"
                     for op, where in sorted(missing.items())]
            raise OnnxImportError(f"{self.label}: {len(missing)} ONNX op type(s) cannot be imported:\n"
                                  + "\n".join(lines) + f"\nsupported: {', '.join(sorted(HANDLERS))}")

    def _param_names(self, gp: Any, inits: dict[str, np.ndarray]) -> set[str]:
        rule = self.params
        if rule is not None and not callable(rule):
            names = set(rule)
            unknown = names - set(inits)
            if unknown:
                raise OnnxImportError(f"{self.label}: params names {sorted(unknown)} are not "
                                      "initializers of the model")
            return names
        data_use: set[str] = set()
        for n in gp.node:
            static = STATIC_INPUTS.get(n.op_type, ())
            for i, name in enumerate(n.input):
                if i not in static:
                    data_use.add(name)
        out = set()
        for name, arr in inits.items():
            if callable(rule):
                if rule(name, arr):
                    out.add(name)
            elif (arr.dtype.kind == "f" and name in data_use and "/" not in name
                  and "::" not in name):
                out.add(name)
        return out

    def _node(self, node: Any) -> None:
        ins: list[Val] = []
        for name in node.input:
            if not name:
                ins.append(None)
                continue
            if name not in self.env:
                raise OnnxImportError(f"{self.describe(node)}: input {name!r} is not defined before "
                                      "this node (the model's nodes must be in topological order)")
            ins.append(self.env[name])
        start = len(self.g.nodes)
        given = [v for v in ins if v is not None]
        try:
            if given and not any(isinstance(v, Tensor) for v in given):
                outs = self._fold(node, ins)
            else:
                outs = self._call(node, ins)
        except OnnxImportError:
            raise
        except Exception as exc:  # noqa: BLE001 - re-raised naming the ONNX node
            raise OnnxImportError(f"{self.describe(node)}: {exc}") from exc
        src = f"{self.label}:{self._index[id(node)]}"
        for n in self.g.nodes[start:]:
            n.source = src
        outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
        for name, v in zip(node.output, outs):
            if not name:
                continue
            if isinstance(v, Tensor) and v.value.producer is not None and \
                    v.value.producer in self.g.nodes[start:] and v.value.name != name:
                self.g.rename(v.value, name)
            self.env[name] = v

    def _call(self, node: Any, ins: list[Val]) -> Any:
        return HANDLERS[node.op_type](_Ctx(self, node, ins))

    def _fold(self, node: Any, ins: list[Val]) -> Any:
        """An op on constants only: evaluated now (symbolic dims by _SYMBOLIC, else numpy)."""
        from ..backends.numpy_ref import interpret
        if any(isinstance(v, np.ndarray) and v.dtype == object for v in ins):
            if node.op_type in _SYMBOLIC:
                return _SYMBOLIC[node.op_type](_Ctx(self, node, ins), ins)
            return self._call(node, ins)  # symbolic dims in a static position (Reshape's shape)
        scratch = Graph("fold")
        with scratch:
            outs = self._call(node, ins)
        single = not isinstance(outs, (list, tuple))
        outs = [outs] if single else list(outs)
        if any(isinstance(o, Tensor) for o in outs):
            env = interpret(scratch, {}, {})
            outs = [env[o.value.name] if isinstance(o, Tensor) else o for o in outs]
        return outs[0] if single else outs


def import_onnx(model: Any, name: str | None = None, params: ParamRule = None) -> Graph:
    """Reads an ONNX model into a graphc Graph.

    Args:
        model: a path to an .onnx file, or an onnx.ModelProto.
        name: the graph's name (default: the ONNX graph's name).
        params: which initializers become trainable parameters: None for the default rule
            (floating-point initializers used as data whose names were not made up by an
            exporter: no "/" or "::"), a collection of initializer names, or a function
            ``(name, array) -> bool``. The others become constants.

    Returns:
        A Graph with the model's inputs (dim_params become symbolic dims; unnamed dims get a
        symbol named after the input and axis), parameters and outputs, in ONNX order. Every
        node's source is ``<file>:<index of the ONNX node>``.

    Raises:
        OnnxImportError: listing every unsupported op type at once, or naming the node whose
            attributes, dtypes or run-time shape inputs graphc cannot express.
    """
    import onnx
    if isinstance(model, (str, os.PathLike)):
        label = os.path.basename(os.fspath(model))
        model = onnx.load(os.fspath(model))
    else:
        label = f"{model.graph.name or 'model'}.onnx"
    return _Importer(model, label, name, params).run()
