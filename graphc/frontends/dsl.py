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

    # ---- methods: numpy's names with numpy's meaning, torch's with torch's --------------------
    # (transpose is torch's: two dims swapped; for a numpy permutation use permute or gc.transpose)
    @property
    def T(self) -> "Tensor":
        return transpose(self)

    def reshape(self, *shape) -> "Tensor":
        """x with a new shape, given as one tuple or as ints (one may be -1, dims may be symbols)."""
        return reshape(self, _varargs(shape))

    def view(self, *shape) -> "Tensor":
        """torch's Tensor.view: the same as reshape (a graph has no strides to share)."""
        return reshape(self, _varargs(shape))

    def view_as(self, other) -> "Tensor":
        return reshape(self, _tensor(other).shape)

    def reshape_as(self, other) -> "Tensor":
        return reshape(self, _tensor(other).shape)

    def size(self, dim: int | None = None):
        """torch's Tensor.size(): the shape as a tuple, or one dim; a symbolic dim is its symbol."""
        if dim is None:
            return tuple(self.shape)
        return self.shape[_axis("size", dim, self.ndim)]

    def dim(self) -> int:
        """The rank (torch's Tensor.dim())."""
        return self.ndim

    def numel(self) -> Dim:
        """The number of elements: an int, or a symbolic dim such as "N*10"."""
        return self.type.numel()

    def transpose(self, *dims) -> "Tensor":
        """torch's Tensor.transpose(dim0, dim1): the two dims swapped.

        A 1-D or 2-D tensor may omit them (reversed, as numpy). A numpy-style permutation
        (`x.transpose(1, 0, 2)`) raises: write `x.permute(1, 0, 2)` or `gc.transpose(x, axes)`.
        """
        if len(dims) == 2:
            return swapaxes(self, *dims)
        if not dims and self.ndim <= 2:
            return transpose(self)
        raise GraphBuildError(f"{user_frame()}: Tensor.transpose(dim0, dim1) swaps two dims, as in "
                              f"torch; got {dims!r} for {tuple(self.shape)}: for a permutation use "
                              "x.permute(*dims) or gc.transpose(x, axes) (numpy's)")

    def permute(self, *dims) -> "Tensor":
        """torch's Tensor.permute(*dims): numpy's transpose(x, dims)."""
        return transpose(self, _varargs(dims))

    def t(self) -> "Tensor":
        """torch's Tensor.t(): a rank <= 2 tensor transposed."""
        if self.ndim > 2:
            raise GraphBuildError(f"{user_frame()}: t() expects a tensor of rank <= 2, got "
                                  f"{tuple(self.shape)}; use transpose(dim0, dim1) or permute")
        return transpose(self)

    def swapaxes(self, axis0: int, axis1: int) -> "Tensor":
        return swapaxes(self, axis0, axis1)

    swapdims = swapaxes

    def unsqueeze(self, dim: int) -> "Tensor":
        return expand_dims(self, dim)

    def squeeze(self, dim=None) -> "Tensor":
        return squeeze(self, dim)

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> "Tensor":
        return flatten(self, start_dim, end_dim)

    def expand(self, *sizes) -> "Tensor":
        """torch's Tensor.expand: broadcast to `sizes`, -1 keeping a dim as it is."""
        return expand(self, _varargs(sizes))

    def expand_as(self, other) -> "Tensor":
        return broadcast_to(self, _tensor(other).shape)

    def contiguous(self) -> "Tensor":
        """x itself: graph values have no memory layout."""
        return self

    def detach(self) -> "Tensor":
        """x with no gradient flowing back (gc.stop_gradient)."""
        return stop_gradient(self)

    def sum(self, axis=None, keepdims=None, *, dim=None, keepdim=None):
        return sum(self, axis, keepdims, dim=dim, keepdim=keepdim)

    def mean(self, axis=None, keepdims=None, *, dim=None, keepdim=None):
        return mean(self, axis, keepdims, dim=dim, keepdim=keepdim)

    def max(self, axis=None, keepdims=None, *, dim=None, keepdim=None):
        """The maximum values (numpy's max, torch's amax; indices: argmax)."""
        return max(self, axis, keepdims, dim=dim, keepdim=keepdim)

    def min(self, axis=None, keepdims=None, *, dim=None, keepdim=None):
        """The minimum values (numpy's min, torch's amin; indices: argmin)."""
        return min(self, axis, keepdims, dim=dim, keepdim=keepdim)

    amax, amin = max, min

    def argmax(self, axis=None, keepdims=None, *, dim=None, keepdim=None):
        return argmax(self, axis, keepdims, dim=dim, keepdim=keepdim)

    def argmin(self, axis=None, keepdims=None, *, dim=None, keepdim=None):
        return argmin(self, axis, keepdims, dim=dim, keepdim=keepdim)

    def logsumexp(self, dim=None, keepdim=None, *, axis=None, keepdims=None):
        from .functional import logsumexp
        return logsumexp(self, axis, keepdims, dim=dim, keepdim=keepdim)

    def softmax(self, dim=None, *, axis=None):
        from .functional import softmax
        return softmax(self, dim, axis=axis)

    def log_softmax(self, dim=None, *, axis=None):
        from .functional import log_softmax
        return log_softmax(self, dim, axis=axis)

    def clamp(self, min=None, max=None) -> "Tensor":
        """x limited to [min, max] (torch's clamp, numpy's clip); either bound may be None."""
        return _clamp(self, min, max)

    clip = clamp

    def gather(self, dim, index) -> "Tensor":
        """torch's Tensor.gather(dim, index); see gc.gather."""
        return gather(self, dim, index)

    def take(self, indices, axis=None) -> "Tensor":
        """numpy's ndarray.take(indices, axis); see gc.take."""
        return take(self, indices, axis)

    def masked_fill(self, mask, value) -> "Tensor":
        """torch's Tensor.masked_fill: `value` where mask is True, x elsewhere."""
        return where(mask, value, self)

    def matmul(self, other): return matmul(self, other)
    def pow(self, exponent): return power(self, exponent)
    def abs(self): return abs(self)
    def neg(self): return neg(self)
    def exp(self): return exp(self)
    def log(self): return log(self)
    def sqrt(self): return sqrt(self)
    def tanh(self): return tanh(self)
    def sigmoid(self): return sigmoid(self)
    def relu(self): return relu(self)

    # ---- dtype conversions (kept last: `float`, `int`, `bool` shadow the builtins in here) ------
    def astype(self, dtype) -> "Tensor":
        """numpy's ndarray.astype: x converted to `dtype` (gc.cast)."""
        return cast(self, dtype)

    def type_as(self, other) -> "Tensor":
        return cast(self, _tensor(other).dtype)

    def to(self, *args, dtype=None, device=None, non_blocking: bool = False,
           copy: bool = False) -> "Tensor":
        """torch's Tensor.to: x converted to a dtype (a name, a torch dtype or another Tensor's).

        A device ("cpu", "cuda", a torch.device) is accepted and ignored: where a graph runs is
        chosen when it is compiled (`gc.compile(..., device=)`, `gc.Trainer(..., device=)`).
        """
        for a in args:
            if isinstance(a, Tensor):
                dtype = a.dtype
            elif _is_device(a):
                device = a
            else:
                dtype = a
        return self if dtype is None else cast(self, dtype)

    def float(self) -> "Tensor":
        """x as float32 (torch's float)."""
        return cast(self, "float32")

    def double(self) -> "Tensor":
        """x as float64."""
        return cast(self, "float64")

    def half(self) -> "Tensor":
        """x as float16 (torch's half)."""
        return cast(self, "float16")

    def bfloat16(self) -> "Tensor":
        """x as bfloat16."""
        return cast(self, "bfloat16")

    def long(self) -> "Tensor":
        """x as int64."""
        return cast(self, "int64")

    def int(self) -> "Tensor":
        """x as int32 (torch's int)."""
        return cast(self, "int32")

    def bool(self) -> "Tensor":
        """x as bool."""
        return cast(self, "bool")


def _varargs(items: tuple) -> Any:
    """`f(2, 3)` or `f((2, 3))` -> (2, 3): torch's methods take either form."""
    return items[0] if len(items) == 1 and isinstance(items[0], (tuple, list)) else items


def _is_device(a: Any) -> bool:
    if type(a).__name__ == "device":  # torch.device, without importing torch
        return True
    return isinstance(a, str) and a.split(":")[0] in ("cpu", "cuda", "mps", "meta")


# ---- building nodes ----------------------------------------------------------------------------

#: graphs being traced as loop bodies (gc.scan) -> a function that turns a value of an enclosing
#: graph into a body input (a captured constant); set by graphc.frontends.control
CAPTURE: dict[int, Any] = {}


def _graph_for(items: Sequence[Any]) -> Graph:
    """The one graph that all Tensor/Value items (or else the open graph) belong to."""
    tensors = [x for x in items if isinstance(x, (Tensor, Value))]
    open_g = current_graph()
    if open_g is not None and id(open_g) in CAPTURE:  # a loop body reads outer values
        return open_g
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
        x = x.__graphc_tensor__(CAPTURE[id(g)].outer if id(g) in CAPTURE else g)
    if isinstance(x, Tensor):
        x = x.value
    if isinstance(x, Value) and x.graph is not g and id(g) in CAPTURE:
        x = CAPTURE[id(g)](x)
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
    """x converted to `dtype`; returns a Tensor.

    Raises:
        GraphBuildError: `dtype` is not one graphc supports (float32, float64, float16,
            bfloat16, int32, int64, bool), naming the caller's line. Example:
            ``gc.cast(x, "bfloat16")``.
    """
    try:
        dt = canonical_dtype(dtype)
    except TypeError as exc:
        raise GraphBuildError(f"{user_frame()}: cast: {exc}") from None
    return apply("cast", [x], {"dtype": dt})


# ---- numpy's and torch's argument names ----------------------------------------------------------

def one_of(fn: str, numpy_value: Any, torch_value: Any, names: tuple[str, str] = ("axis", "dim"),
           default: Any = None) -> Any:
    """The argument given under numpy's name or torch's (axis / dim, keepdims / keepdim).

    Returns:
        The one given, or `default` when neither is.

    Raises:
        GraphBuildError: both are given. Example: ``one_of("sum", axis, dim)``.
    """
    if numpy_value is not None and torch_value is not None:
        raise GraphBuildError(f"{user_frame()}: {fn}: got both {names[0]}= (numpy's name) and "
                              f"{names[1]}= (torch's name); give one")
    return numpy_value if numpy_value is not None else (
        torch_value if torch_value is not None else default)


def _axis(fn: str, axis: Any, rank: int) -> int:
    """`axis` normalized to [0, rank), or a GraphBuildError at the user's line."""
    try:
        return norm_axis(int(axis), rank)
    except (ValueError, TypeError) as exc:
        raise GraphBuildError(f"{user_frame()}: {fn}: {exc}") from None


_REDUCE_DOC = """

    Args:
        x: the tensor.
        axis / dim: an axis or a tuple of axes (numpy's or torch's name; not both); None: all.
        keepdims / keepdim: keep the reduced axes as size 1.

    Returns:
        The reduced Tensor. Example: ``gc.{name}(x, dim=1, keepdim=True)``.
"""


def _red(opname):
    def fn(x, axis=None, keepdims=None, *, dim=None, keepdim=None):
        x = _tensor(x)
        axis = one_of(opname, axis, dim)
        keepdims = one_of(opname, keepdims, keepdim, ("keepdims", "keepdim"), False)
        axes = None if axis is None else (tuple(axis) if isinstance(axis, (tuple, list)) else (int(axis),))
        if axes is not None:
            try:
                axes = tuple(sorted({norm_axis(int(a), x.ndim) for a in axes}))
            except ValueError as exc:
                raise GraphBuildError(f"{user_frame()}: {opname}: {exc} {tuple(x.shape)}") from None
        return apply(opname, [x], {"axes": axes, "keepdims": bool(keepdims)})
    fn.__name__ = opname
    fn.__doc__ = (get_op(opname).__doc__ or opname) + _REDUCE_DOC.replace("{name}", opname)
    return fn


sum, mean, max, min = (_red(n) for n in ("sum", "mean", "max", "min"))
amax, amin = max, min  # torch's names for the values alone (torch.max(x, dim) adds indices)


def argmax(x, axis=None, keepdims=None, *, dim=None, keepdim=None) -> Tensor:
    """Index of the first maximum along `axis` / `dim` (None: of the flattened tensor), as int64.

    Example: ``pred = gc.argmax(logits, dim=1)``.
    """
    x = _tensor(x)
    axis = one_of("argmax", axis, dim)
    keepdims = one_of("argmax", keepdims, keepdim, ("keepdims", "keepdim"), False)
    if axis is None:
        return apply("argmax", [reshape(x, (-1,))], {"axis": 0, "keepdims": False})
    axis = _axis("argmax", axis, x.ndim)
    return apply("argmax", [x], {"axis": axis, "keepdims": bool(keepdims)})


def argmin(x, axis=None, keepdims=None, *, dim=None, keepdim=None) -> Tensor:
    """Index of the first minimum along `axis` / `dim` (None: of the flattened tensor), as int64."""
    x = _tensor(x)
    flipped = logical_not(x) if x.dtype == "bool" else neg(x)
    return argmax(flipped, one_of("argmin", axis, dim),
                  one_of("argmin", keepdims, keepdim, ("keepdims", "keepdim")))


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


def transpose(x, *dims, axes=None) -> Tensor:
    """numpy.transpose(x, axes): axes permuted (default: reversed); or torch.transpose(x, dim0,
    dim1): two dims swapped. The forms cannot be confused: numpy's takes one tuple.

    Example: ``gc.transpose(x, (0, 2, 1))`` is ``gc.transpose(x, 1, 2)``.
    """
    x = _tensor(x)
    if len(dims) == 2 and axes is None:
        return swapaxes(x, *dims)
    if len(dims) > 1 or (dims and axes is not None):
        raise GraphBuildError(f"{user_frame()}: transpose takes axes (one tuple, numpy's) or two "
                              f"dims to swap (torch's), got {dims!r}")
    axes = dims[0] if dims else axes
    if axes is None:
        axes = tuple(reversed(range(x.ndim)))
    else:
        axes = tuple(_axis("transpose", a, x.ndim) for a in axes)
        if sorted(axes) != list(range(x.ndim)):
            raise GraphBuildError(f"{user_frame()}: transpose: {axes} is not a permutation of the "
                                  f"{x.ndim} axes of {tuple(x.shape)}")
    return apply("transpose", [x], {"axes": axes})


def permute(x, *dims) -> Tensor:
    """torch.permute(x, dims): x with its dims reordered (numpy's transpose(x, dims))."""
    return transpose(_tensor(x), tuple(_varargs(dims)))


def swapaxes(x, a: int, b: int) -> Tensor:
    """x with axes a and b exchanged (numpy.swapaxes, torch.swapaxes / swapdims)."""
    x = _tensor(x)
    axes = list(range(x.ndim))
    a, b = _axis("swapaxes", a, x.ndim), _axis("swapaxes", b, x.ndim)
    axes[a], axes[b] = axes[b], axes[a]
    return transpose(x, tuple(axes))


swapdims = swapaxes


def moveaxis(x, source, destination) -> Tensor:
    """x with axes `source` moved to positions `destination` (numpy.moveaxis, torch.movedim)."""
    x = _tensor(x)
    src = [_axis("moveaxis", a, x.ndim) for a in (source if isinstance(source, (tuple, list))
                                                  else (source,))]
    dst = [_axis("moveaxis", a, x.ndim) for a in (destination if isinstance(destination, (tuple, list))
                                                  else (destination,))]
    if len(src) != len(dst):
        raise GraphBuildError(f"{user_frame()}: moveaxis: {len(src)} source and {len(dst)} "
                              "destination axes")
    rest = [a for a in range(x.ndim) if a not in src]
    order = [None] * x.ndim
    for s_, d_ in zip(src, dst):
        order[d_] = s_
    it = iter(rest)
    return transpose(x, tuple(a if a is not None else next(it) for a in order))


movedim = moveaxis


def broadcast_to(x, shape) -> Tensor:
    """x broadcast to `shape` (numpy.broadcast_to)."""
    x = _tensor(x)
    shape = tuple(normalize_dim(d) for d in shape)
    if shape == x.shape:
        return x
    if len(shape) > x.ndim:
        x = reshape(x, (1,) * (len(shape) - x.ndim) + tuple(x.shape))
    return apply("expand", [x], {"shape": shape})


def expand(x, *sizes) -> Tensor:
    """torch's Tensor.expand: x broadcast to `sizes` (a tuple or ints); -1 keeps x's dim.

    Example: ``gc.expand(b, (-1, 4))`` turns (3, 1) into (3, 4).
    """
    x = _tensor(x)
    sizes = tuple(_varargs(sizes))
    lead = len(sizes) - x.ndim
    if lead < 0:
        raise GraphBuildError(f"{user_frame()}: expand: {sizes} has fewer dims than "
                              f"{tuple(x.shape)}")
    shape = tuple(x.shape[i - lead] if d == -1 and i >= lead else d for i, d in enumerate(sizes))
    if -1 in shape:
        raise GraphBuildError(f"{user_frame()}: expand: -1 is only allowed for x's own dims, got "
                              f"{sizes} for {tuple(x.shape)}")
    return broadcast_to(x, shape)


def expand_dims(x, axis=None, *, dim=None) -> Tensor:
    """x with a new size-1 axis at `axis` / `dim` (numpy.expand_dims, torch.unsqueeze)."""
    x = _tensor(x)
    axis = one_of("expand_dims", axis, dim)
    if axis is None:
        raise GraphBuildError(f"{user_frame()}: expand_dims: give the new axis (axis= or dim=)")
    a = _axis("expand_dims", axis, x.ndim + 1)
    return reshape(x, x.shape[:a] + (1,) + x.shape[a:])


unsqueeze = expand_dims


def squeeze(x, axis=None, *, dim=None) -> Tensor:
    """x without size-1 axes (all of them, or those named by `axis` / `dim`).

    Naming an axis that is not 1 raises (numpy's behaviour; torch would return x unchanged).
    """
    x = _tensor(x)
    axis = one_of("squeeze", axis, dim)
    axes = [i for i, d in enumerate(x.shape) if d == 1] if axis is None else \
        [_axis("squeeze", a, x.ndim) for a in (axis if isinstance(axis, (tuple, list)) else (axis,))]
    for a in axes:
        if x.shape[a] != 1:
            raise GraphBuildError(f"{user_frame()}: squeeze: axis {a} of {tuple(x.shape)} is not 1")
    return reshape(x, tuple(d for i, d in enumerate(x.shape) if i not in axes))


def flatten(x, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    """Merges dims start_dim..end_dim into one (torch.flatten)."""
    x = _tensor(x)
    s, e = norm_axis(start_dim, x.ndim), norm_axis(end_dim, x.ndim)
    return reshape(x, x.shape[:s] + (dim_product(x.shape[s:e + 1]),) + x.shape[e + 1:])


def concatenate(xs: Sequence[Any], axis=None, *, dim=None) -> Tensor:
    """The inputs joined along `axis` / `dim` (default 0): numpy.concatenate, torch.cat."""
    xs = list(xs)
    axis = one_of("concatenate", axis, dim, default=0)
    if len(xs) == 1:
        return _tensor(xs[0])
    return apply("concat", xs, {"axis": int(axis)})


concat = cat = concatenate


def stack(xs: Sequence[Any], axis=None, *, dim=None) -> Tensor:
    """The inputs stacked along a new axis `axis` / `dim` (default 0): numpy.stack, torch.stack."""
    axis = one_of("stack", axis, dim, default=0)
    return concatenate([expand_dims(x, axis) for x in xs], axis)


def slice(x, starts, ends, axes=None, steps=None) -> Tensor:
    """x[starts:ends:steps] along `axes` (ONNX Slice form; python semantics)."""
    axes = tuple(range(len(starts))) if axes is None else tuple(axes)
    steps = (1,) * len(starts) if steps is None else tuple(steps)
    return apply("slice", [x], {"starts": tuple(starts), "ends": tuple(ends), "axes": axes, "steps": steps})


def take(x, indices, axis: int | None = None) -> Tensor:
    """numpy.take: the elements of x at integer `indices` along `axis`.

    `axis=None` (numpy's default) takes from the flattened x, as torch.take does. Negative
    indices count from the end; an index out of range is an error when the graph runs.

    Returns:
        A Tensor of shape x.shape[:axis] + indices.shape + x.shape[axis + 1:] (indices.shape
        when axis is None). Example: ``rows = gc.take(table, ids, axis=0)``.
    """
    x = _tensor(x)
    if axis is None:
        x, axis = reshape(x, (-1,)), 0
    if not isinstance(indices, (Tensor, Value)):
        indices = constant(np.asarray(indices, np.int64), graph=x.graph)
    return apply("gather", [x, indices], {"axis": _axis("take", axis, x.ndim)})


def index_select(x, dim: int, index) -> Tensor:
    """torch.index_select: the slices of x at the 1-D integer `index` along `dim`."""
    idx = _tensor(index) if isinstance(index, (Tensor, Value)) else np.asarray(index, np.int64)
    if len(idx.shape) != 1:
        raise GraphBuildError(f"{user_frame()}: index_select: index must be 1-D, got "
                              f"{tuple(idx.shape)}; gc.take takes indices of any shape")
    return take(x, idx, dim)


def _int_index(fn: str, index, g: Graph) -> Tensor:
    idx = index if isinstance(index, Tensor) else (
        Tensor(index) if isinstance(index, Value) else constant(np.asarray(index, np.int64), graph=g))
    if idx.dtype not in ("int32", "int64"):
        raise GraphBuildError(f"{user_frame()}: {fn}: index must be int32 or int64, got {idx.dtype} "
                              f"{tuple(idx.shape)}")
    return idx


def _select_along(x: Tensor, idx: Tensor, d: int, fn: str) -> Tensor:
    """out[..., k, ...] = x[..., idx[..., k, ...], ...] along d, broadcasting the other dims.

    A composite of primitives (compare with the class numbers, select, sum over the classes), so
    it needs no gradient rule or lowering of its own; it costs index.size * x.shape[d] elements,
    which for the usual small index (one label per row) is the size of x. Negative indices
    count from the end; an index outside [-C, C) selects nothing and gives 0.
    """
    c = x.shape[d]
    if not isinstance(c, int):
        raise GraphBuildError(f"{user_frame()}: {fn}: needs a static size along dim {d}, got "
                              f"{tuple(x.shape)}")
    idx = where(idx < 0, idx + c, idx)
    classes = constant(np.arange(c, dtype=idx.dtype), graph=x.graph)
    hit = expand_dims(idx, -1) == classes                     # idx.shape + (C,)
    xm = expand_dims(moveaxis(x, d, -1), d)                  # x's dims, 1 at d, C last
    return sum(where(hit, xm, np.zeros((), x.dtype)), -1)


def gather(x, *args, dim=None, index=None, axis=None) -> Tensor:
    """torch.gather(input, dim, index): out[i][j][k] = x[i][index[i][j][k]][k] for dim=1.

    Called as torch's: `gather(x, dim, index)`, with `dim=` / `index=` keywords, or `axis=`
    for dim.

    `index` has x's rank; along every other dim it may be shorter than x (x is cut to it), as in
    torch. For numpy's take (indices of any shape, selecting whole slices) use `gc.take`; for
    numpy's broadcasting variant, `gc.take_along_axis`. Negative indices count from the end.

    Returns:
        A Tensor of index's shape and x's dtype. Example: ``gc.gather(logp, 1, y[:, None])``.

    Raises:
        GraphBuildError: no dim, an index of another rank, or one larger than x along a dim
            other than `dim` (the misuse `gc.gather(x, indices, axis=1)` of numpy's take form).
    """
    x = _tensor(x)
    if args and not isinstance(args[0], (int, np.integer)):
        raise GraphBuildError(f"{user_frame()}: gather follows torch.gather(input, dim, index), but "
                              f"got a {type(args[0]).__name__} where dim goes; for numpy's take "
                              "write gc.take(x, indices, axis=...)")
    if len(args) > 2 or (len(args) >= 1 and (dim is not None or axis is not None)) or (
            len(args) == 2 and index is not None):
        raise GraphBuildError(f"{user_frame()}: gather(input, dim, index): dim or index given twice")
    dim = args[0] if args else dim
    index = args[1] if len(args) == 2 else index
    dim = one_of("gather", axis, dim, ("axis", "dim"))
    if dim is None or index is None:
        raise GraphBuildError(f"{user_frame()}: gather(input, dim, index) needs both dim and index")
    d = _axis("gather", dim, x.ndim)
    idx = _int_index("gather", index, x.graph)
    if idx.ndim != x.ndim:
        raise GraphBuildError(f"{user_frame()}: gather: index {tuple(idx.shape)} must have the rank of "
                              f"input {tuple(x.shape)} (torch.gather); for numpy's take write "
                              "gc.take(x, indices, axis=...)")
    starts, ends, axes = [], [], []
    for a, (n, k) in enumerate(zip(x.shape, idx.shape)):
        if a == d or n == k:
            continue
        if isinstance(n, int) and isinstance(k, int) and k < n:
            starts.append(0); ends.append(k); axes.append(a)
        else:
            raise GraphBuildError(f"{user_frame()}: gather: index {tuple(idx.shape)} does not fit in "
                                  f"input {tuple(x.shape)} along dim {a} (torch.gather needs "
                                  f"index.size(a) <= input.size(a) for a != dim={d})")
    if axes:
        x = slice(x, starts, ends, axes)
    return _select_along(x, idx, d, "gather")


def take_along_axis(x, indices, axis: int | None = None) -> Tensor:
    """numpy.take_along_axis: x's elements at `indices` along `axis`, the other dims broadcast.

    `indices` has x's rank (axis=None: 1-D, into the flattened x). Example:
    ``gc.take_along_axis(logp, y[:, None], axis=1)``.
    """
    x = _tensor(x)
    idx = _int_index("take_along_axis", indices, x.graph)
    if axis is None:
        x, axis = reshape(x, (-1,)), 0
    if idx.ndim != x.ndim:
        raise GraphBuildError(f"{user_frame()}: take_along_axis: indices {tuple(idx.shape)} must have "
                              f"the rank of x {tuple(x.shape)}")
    return _select_along(x, idx, _axis("take_along_axis", axis, x.ndim), "take_along_axis")


def _clamp(x, lo=None, hi=None) -> Tensor:
    x = _tensor(x)
    if lo is not None:
        x = maximum(x, lo)
    if hi is not None:
        x = minimum(x, hi)
    return x


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
