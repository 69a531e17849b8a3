"""The DSL: Tensor with Python operators, and one `gc.<op>` function per primitive.

Every call checks shapes and dtypes at once and records the caller's `file:line` on the node, so
a mistake is reported where the user wrote it.
"""
from __future__ import annotations

import builtins
from typing import Any, Sequence

import numpy as np

from ..ir.errors import GraphBuildError, user_frame
from ..ir.graph import Graph, Value, current_graph, set_value_adapter
from ..ir.types import Dim, TensorType, canonical_dtype, dim_divide, dim_product, normalize_dim
from ..ops.base import Op, get_op, norm_axis
from ..ops.shape import INT_MAX


class Tensor:
    """A symbolic value in a graph under construction."""

    __slots__ = ("value",)
    __array_priority__ = 1000  # so numpy defers `ndarray + Tensor` to Tensor.__radd__

    def __init__(self, value: Value):
        self.value = value

    # ---- metadata ----------------------------------------------------------------------------
    @property
    def type(self) -> TensorType:
        return self.value.type

    @property
    def shape(self) -> tuple[Dim, ...]:
        return self.value.type.shape

    @property
    def dtype(self) -> str:
        return self.value.type.dtype

    @property
    def ndim(self) -> int:
        return self.value.type.rank

    @property
    def name(self) -> str:
        return self.value.name

    @property
    def graph(self) -> Graph:
        return self.value.graph

    def __repr__(self) -> str:
        return f"Tensor(%{self.value.name}: {self.value.type})"

    def __hash__(self) -> int:
        return id(self.value)

    def __bool__(self) -> bool:
        raise GraphBuildError(f"{user_frame()}: the truth value of a graph Tensor is unknown while "
                              "building; use gc.where for data-dependent choices")

    def __len__(self) -> int:
        d = self.shape[0] if self.shape else None
        if not isinstance(d, int):
            raise TypeError(f"len() of a tensor whose first dim is {d!r}")
        return d

    # ---- operators -----------------------------------------------------------------------------
    def __add__(self, o): return add(self, o)
    def __radd__(self, o): return add(o, self)
    def __sub__(self, o): return sub(self, o)
    def __rsub__(self, o): return sub(o, self)
    def __mul__(self, o): return mul(self, o)
    def __rmul__(self, o): return mul(o, self)
    def __truediv__(self, o): return div(self, o)
    def __rtruediv__(self, o): return div(o, self)
    def __pow__(self, o): return power(self, o)
    def __rpow__(self, o): return power(o, self)
    def __matmul__(self, o): return matmul(self, o)
    def __rmatmul__(self, o): return matmul(o, self)
    def __neg__(self): return neg(self)
    def __pos__(self): return self
    def __abs__(self): return abs(self)
    def __lt__(self, o): return less(self, o)
    def __le__(self, o): return less_equal(self, o)
    def __gt__(self, o): return greater(self, o)
    def __ge__(self, o): return greater_equal(self, o)
    def __eq__(self, o): return equal(self, o)  # type: ignore[override]
    def __ne__(self, o): return logical_not(equal(self, o))  # type: ignore[override]
    def __and__(self, o): return logical_and(self, o)
    def __or__(self, o): return logical_or(self, o)
    def __invert__(self): return logical_not(self)
    def __getitem__(self, idx): return _getitem(self, idx)

    # ---- methods -------------------------------------------------------------------------------
    @property
    def T(self) -> "Tensor":
        return transpose(self)

    def reshape(self, *shape) -> "Tensor":
        return reshape(self, shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape)

    def transpose(self, *axes) -> "Tensor":
        return transpose(self, axes[0] if len(axes) == 1 and isinstance(axes[0], (tuple, list))
                         else (axes or None))

    def sum(self, axis=None, keepdims=False): return sum(self, axis, keepdims)
    def mean(self, axis=None, keepdims=False): return mean(self, axis, keepdims)
    def max(self, axis=None, keepdims=False): return max(self, axis, keepdims)
    def min(self, axis=None, keepdims=False): return min(self, axis, keepdims)
    def argmax(self, axis=None, keepdims=False): return argmax(self, axis, keepdims)
    def astype(self, dtype): return cast(self, dtype)
    def exp(self): return exp(self)
    def log(self): return log(self)
    def sqrt(self): return sqrt(self)
    def tanh(self): return tanh(self)
    def sigmoid(self): return sigmoid(self)
    def relu(self): return relu(self)
    def flatten(self, start_dim=0): return flatten(self, start_dim)


# ---- building nodes ----------------------------------------------------------------------------

def _graph_for(items: Sequence[Any]) -> Graph:
    """The one graph that all Tensor/Value items (or else the open graph) belong to."""
    tensors = [x for x in items if isinstance(x, (Tensor, Value))]
    open_g = current_graph()
    g = tensors[0].graph if tensors else open_g
    if g is None:
        raise GraphBuildError(f"{user_frame()}: no graph is being built; open one with "
                              "`with gc.Graph(...)` or trace a function with @gc.function")
    for x in tensors:
        if x.graph is not g:
            raise GraphBuildError(f"{user_frame()}: value %{_vname(x)} belongs to graph {x.graph.name!r} "
                                  f"but is used with values of graph {g.name!r}; values cannot cross graphs")
    if open_g is not None and g is not open_g:
        raise GraphBuildError(f"{user_frame()}: value %{_vname(tensors[0])} belongs to graph {g.name!r} "
                              f"but is used while building graph {open_g.name!r}; values cannot cross graphs")
    return g


def _vname(x) -> str:
    return x.value.name if isinstance(x, Tensor) else getattr(x, "name", "?")


def as_value(x: Any, g: Graph, dtype: str | None = None) -> Value:
    """The graph value for a Tensor, Value, numpy array or Python scalar (made a constant)."""
    if hasattr(type(x), "__graphc_tensor__"):  # an object standing for a graph value (nn.Parameter)
        x = x.__graphc_tensor__(g)
    if isinstance(x, Tensor):
        x = x.value
    if isinstance(x, Value):
        if x.graph is not g:
            raise GraphBuildError(f"{user_frame()}: value %{x.name} belongs to graph {x.graph.name!r}, "
                                  f"not {g.name!r}; values cannot cross graphs")
        return x
    return constant(x, dtype, graph=g).value


def constant(value: Any, dtype: str | None = None, graph: Graph | None = None) -> Tensor:
    """A literal tensor in the graph (Python scalars become float32 unless dtype says)."""
    g = graph or _graph_for([])
    arr = np.asarray(value)
    if dtype is not None:
        arr = arr.astype(canonical_dtype(dtype))
    elif arr.dtype == np.float64 and not isinstance(value, np.ndarray):
        arr = arr.astype(np.float32)
    elif arr.dtype.kind == "i" and not isinstance(value, np.ndarray):
        arr = arr.astype(np.int64)
    try:
        canonical_dtype(arr.dtype)
    except TypeError as exc:
        raise GraphBuildError(f"{user_frame()}: constant: {exc}") from None
    op = get_op("constant")
    t = op.infer(value=arr)
    return Tensor(g.add_node(op, [], {"value": arr}, t, source=user_frame()))


def apply(op: str | Op, inputs: Sequence[Any], attrs: dict[str, Any] | None = None,
          name: str | None = None) -> Tensor:
    """Adds one node of primitive `op`; checks types now and reports errors at the user's line."""
    op = get_op(op) if isinstance(op, str) else op
    attrs = attrs or {}
    g = _graph_for(inputs)
    vals = [as_value(x, g) for x in inputs]
    src = user_frame()
    try:
        t = op.infer_checked([v.type for v in vals], attrs)
    except (ValueError, TypeError, IndexError) as exc:
        raise GraphBuildError(f"{src}: {op.name}: {exc}") from None
    return Tensor(g.add_node(op, vals, attrs, t, name=name, source=src))


def _lift(a: Any, b: Any) -> tuple[Any, Any]:
    """Turns Python/numpy scalars into constants of the other operand's dtype."""
    def conv(x, other):
        if hasattr(type(x), "__graphc_tensor__"):
            return x
        if isinstance(x, (Tensor, Value)) or not isinstance(other, (Tensor, Value)):
            return x
        dt = other.type.dtype
        arr = np.asarray(x)
        if dt in ("int32", "int64") and arr.dtype.kind == "f" and not np.all(arr == np.round(arr)):
            raise GraphBuildError(f"{user_frame()}: cannot mix {dt} tensor %{_vname(other)} with the "
                                  f"float {x!r}; cast one explicitly")
        return constant(arr, dt, graph=other.graph)
    return conv(a, b), conv(b, a)


def _binary(opname: str):
    def fn(a, b):
        a, b = _lift(a, b)
        return apply(opname, [a, b])
    fn.__name__ = opname
    fn.__doc__ = get_op(opname).__doc__
    return fn


def _unary(opname: str):
    def fn(x):
        return apply(opname, [x])
    fn.__name__ = opname
    fn.__doc__ = get_op(opname).__doc__
    return fn


add, sub, mul, div = (_binary(n) for n in ("add", "sub", "mul", "div"))
power, maximum, minimum = _binary("pow"), _binary("maximum"), _binary("minimum")
equal, less, less_equal = _binary("equal"), _binary("less"), _binary("less_equal")
greater, greater_equal = _binary("greater"), _binary("greater_equal")
logical_and, logical_or = _binary("logical_and"), _binary("logical_or")
subtract, multiply, divide, pow = sub, mul, div, power
neg, exp, log, sqrt, abs, tanh, sigmoid, relu, erf, sign, logical_not = (
    _unary(n) for n in ("neg", "exp", "log", "sqrt", "abs", "tanh", "sigmoid", "relu", "erf", "sign",
                        "logical_not"))
negative = neg


def where(condition, x, y) -> Tensor:
    """Elementwise `x if condition else y`, broadcasting all three (numpy.where)."""
    x, y = _lift(x, y)
    return apply("where", [condition, x, y])


def cast(x, dtype: str) -> Tensor:
    """x converted to `dtype`."""
    return apply("cast", [x], {"dtype": canonical_dtype(dtype)})


def _red(opname):
    def fn(x, axis=None, keepdims=False):
        x = _tensor(x)
        axes = None if axis is None else (tuple(axis) if isinstance(axis, (tuple, list)) else (int(axis),))
        if axes is not None:
            try:
                axes = tuple(sorted({norm_axis(int(a), x.ndim) for a in axes}))
            except ValueError as exc:
                raise GraphBuildError(f"{user_frame()}: {opname}: {exc} {tuple(x.shape)}") from None
        return apply(opname, [x], {"axes": axes, "keepdims": bool(keepdims)})
    fn.__name__ = opname
    fn.__doc__ = get_op(opname).__doc__
    return fn


sum, mean, max, min = (_red(n) for n in ("sum", "mean", "max", "min"))


def argmax(x, axis=None, keepdims=False) -> Tensor:
    """Index of the first maximum along `axis` (None: of the flattened tensor), as int64."""
    x = _tensor(x)
    if axis is None:
        return apply("argmax", [reshape(x, (-1,))], {"axis": 0, "keepdims": False})
    try:
        axis = norm_axis(int(axis), x.ndim)
    except ValueError as exc:
        raise GraphBuildError(f"{user_frame()}: argmax: {exc}") from None
    return apply("argmax", [x], {"axis": axis, "keepdims": bool(keepdims)})


def matmul(a, b) -> Tensor:
    """a @ b with numpy semantics."""
    return apply("matmul", [a, b])


# ---- shapes ---------------------------------------------------------------------------------------

def _tensor(x) -> Tensor:
    if isinstance(x, Tensor):
        return x
    return Tensor(as_value(x, _graph_for([x])))


def reshape(x, shape) -> Tensor:
    """x with a new shape; one dim may be -1 (inferred), dims may be symbols."""
    x = _tensor(x)
    shape = (shape,) if isinstance(shape, (int, str)) else tuple(shape)
    if builtins.sum(1 for d in shape if d == -1) > 1:
        raise GraphBuildError(f"{user_frame()}: reshape: only one dim may be -1, got {shape}")
    if -1 in shape:
        known = dim_product([d for d in shape if d != -1])
        rest = dim_divide(x.type.numel(), known)
        if rest is None:
            raise GraphBuildError(f"{user_frame()}: reshape: cannot reshape {tuple(x.shape)} to {shape}")
        shape = tuple(rest if d == -1 else d for d in shape)
    shape = tuple(normalize_dim(d) for d in shape)
    if shape == x.shape:
        return x
    return apply("reshape", [x], {"shape": shape})


def transpose(x, axes=None) -> Tensor:
    """x with axes permuted (default: reversed), as numpy.transpose."""
    x = _tensor(x)
    axes = tuple(reversed(range(x.ndim))) if axes is None else tuple(norm_axis(a, x.ndim) for a in axes)
    return apply("transpose", [x], {"axes": axes})


def swapaxes(x, a: int, b: int) -> Tensor:
    """x with axes a and b exchanged."""
    x = _tensor(x)
    axes = list(range(x.ndim))
    a, b = norm_axis(a, x.ndim), norm_axis(b, x.ndim)
    axes[a], axes[b] = axes[b], axes[a]
    return transpose(x, axes)


def broadcast_to(x, shape) -> Tensor:
    """x broadcast to `shape` (numpy.broadcast_to)."""
    x = _tensor(x)
    shape = tuple(normalize_dim(d) for d in shape)
    if shape == x.shape:
        return x
    if len(shape) > x.ndim:
        x = reshape(x, (1,) * (len(shape) - x.ndim) + tuple(x.shape))
    return apply("expand", [x], {"shape": shape})


expand = broadcast_to


def expand_dims(x, axis: int) -> Tensor:
    """x with a new size-1 axis at `axis`."""
    x = _tensor(x)
    a = norm_axis(axis, x.ndim + 1)
    return reshape(x, x.shape[:a] + (1,) + x.shape[a:])


unsqueeze = expand_dims


def squeeze(x, axis=None) -> Tensor:
    """x without size-1 axes (all of them, or those named by `axis`)."""
    x = _tensor(x)
    axes = [i for i, d in enumerate(x.shape) if d == 1] if axis is None else \
        [norm_axis(a, x.ndim) for a in (axis if isinstance(axis, (tuple, list)) else (axis,))]
    for a in axes:
        if x.shape[a] != 1:
            raise GraphBuildError(f"{user_frame()}: squeeze: axis {a} of {tuple(x.shape)} is not 1")
    return reshape(x, tuple(d for i, d in enumerate(x.shape) if i not in axes))


def flatten(x, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    """Merges dims start_dim..end_dim into one (torch.flatten)."""
    x = _tensor(x)
    s, e = norm_axis(start_dim, x.ndim), norm_axis(end_dim, x.ndim)
    return reshape(x, x.shape[:s] + (dim_product(x.shape[s:e + 1]),) + x.shape[e + 1:])


def concatenate(xs: Sequence[Any], axis: int = 0) -> Tensor:
    """The inputs joined along `axis`."""
    xs = list(xs)
    if len(xs) == 1:
        return _tensor(xs[0])
    return apply("concat", xs, {"axis": int(axis)})


concat = cat = concatenate


def stack(xs: Sequence[Any], axis: int = 0) -> Tensor:
    """The inputs stacked along a new axis."""
    return concatenate([expand_dims(x, axis) for x in xs], axis)


def slice(x, starts, ends, axes=None, steps=None) -> Tensor:
    """x[starts:ends:steps] along `axes` (ONNX Slice form; python semantics)."""
    axes = tuple(range(len(starts))) if axes is None else tuple(axes)
    steps = (1,) * len(starts) if steps is None else tuple(steps)
    return apply("slice", [x], {"starts": tuple(starts), "ends": tuple(ends), "axes": axes, "steps": steps})


def take(x, indices, axis: int = 0) -> Tensor:
    """Elements of x at integer `indices` along `axis` (numpy.take)."""
    if not isinstance(indices, (Tensor, Value)):
        indices = constant(np.asarray(indices, np.int64), graph=_graph_for([x]))
    return apply("gather", [x, indices], {"axis": int(axis)})


gather = take


def pad(x, pad_width, constant_values: float = 0.0) -> Tensor:
    """x padded as numpy.pad(x, pad_width, constant_values=...); pad_width per axis."""
    x = _tensor(x)
    pw = np.broadcast_to(np.asarray(pad_width, np.int64), (x.ndim, 2))
    return apply("pad", [x], {"pads": tuple((int(b), int(a)) for b, a in pw),
                              "value": float(constant_values)})


def _getitem(x: Tensor, idx) -> Tensor:
    if isinstance(idx, (Tensor, Value, np.ndarray, list)):
        return take(x, idx, 0)
    idx = idx if isinstance(idx, tuple) else (idx,)
    if builtins.sum(1 for i in idx if i is Ellipsis) > 1:
        raise GraphBuildError(f"{user_frame()}: an index can have only one ellipsis")
    n_real = builtins.sum(1 for i in idx if i is not None and i is not Ellipsis)
    if n_real > x.ndim:
        raise GraphBuildError(f"{user_frame()}: too many indices ({n_real}) for a tensor of rank {x.ndim}")
    if Ellipsis in idx:
        k = idx.index(Ellipsis)
        idx = idx[:k] + (builtins.slice(None),) * (x.ndim - n_real) + idx[k + 1:]
    starts, ends, axes, steps, squeeze_axes, new_axes = [], [], [], [], [], []
    out_axis, axis = 0, 0
    for i in idx:
        if i is None:
            new_axes.append(out_axis)
            out_axis += 1
            continue
        if isinstance(i, (int, np.integer)):
            d = x.shape[axis]
            if isinstance(d, int) and not -d <= i < d:
                raise GraphBuildError(f"{user_frame()}: index {i} is out of range for axis {axis} of "
                                      f"size {d}")
            starts.append(int(i)); ends.append(int(i) + 1 if i != -1 else INT_MAX)
            axes.append(axis); steps.append(1); squeeze_axes.append(axis)
        elif isinstance(i, builtins.slice):
            st = 1 if i.step is None else int(i.step)
            if (i.start, i.stop, i.step) != (None, None, None):
                s = (0 if st > 0 else -1) if i.start is None else int(i.start)
                e = (INT_MAX if st > 0 else -INT_MAX) if i.stop is None else int(i.stop)
                starts.append(s); ends.append(e); axes.append(axis); steps.append(st)
            out_axis += 1
        else:
            raise GraphBuildError(f"{user_frame()}: unsupported index {i!r}")
        axis += 1
    y = slice(x, starts, ends, axes, steps) if axes else x
    if squeeze_axes:
        y = reshape(y, tuple(d for k, d in enumerate(y.shape) if k not in squeeze_axes))
    for a in new_axes:
        y = expand_dims(y, a)
    return y


def random_uniform(seed, counter, shape, dtype: str = "float32") -> Tensor:
    """Uniform [0, 1) values that are a pure function of (seed, counter, element index)."""
    return apply("random_uniform", [seed, counter], {"shape": tuple(normalize_dim(d) for d in shape),
                                                     "dtype": canonical_dtype(dtype)})


def stop_gradient(x) -> Tensor:
    """x, with no gradient flowing back through it (marks the value for the autodiff pass)."""
    return apply("stop_gradient", [x])


# Graph.input/param return Tensors and Graph.output accepts them (the IR does not import us)
set_value_adapter(Tensor, lambda v, g: as_value(v, g))
