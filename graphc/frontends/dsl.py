"""The DSL: Tensor with Python operators, and one `gc.<op>` function per primitive.

Every call checks shapes and dtypes at once and records the caller's `file:line` on the node, so
a mistake is reported where the user wrote it.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..ir.errors import GraphBuildError, user_frame
from ..ir.graph import Graph, Value, current_graph, set_value_adapter
from ..ir.types import Dim, TensorType, canonical_dtype, normalize_dim
from ..ops.base import Op, get_op, norm_axis


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
                continue  # where a graph runs is chosen at compile time
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


def cast(x, dtype: str, saturate: bool = False) -> Tensor:
    """x converted to `dtype`; returns a Tensor. With `saturate`, values beyond a float8
    dtype's finite range become its largest finite value instead of NaN or infinity.

    Raises:
        GraphBuildError: `dtype` is not one graphc supports (`graphc.ir.DTYPES`: float32,
            float64, float16, bfloat16, the integers, bool, and the float8 / 4-bit storage
            dtypes), naming the caller's line. Example: ``gc.cast(x, "bfloat16")``.
    """
    try:
        dt = canonical_dtype(dtype)
    except TypeError as exc:
        raise GraphBuildError(f"{user_frame()}: cast: {exc}") from None
    return apply("cast", [x], {"dtype": dt, "saturate": True} if saturate else {"dtype": dt})


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


def _tensor(x) -> Tensor:
    if isinstance(x, Tensor):
        return x
    return Tensor(as_value(x, _graph_for([x])))




def random_uniform(seed, counter, shape, dtype: str = "float32") -> Tensor:
    """Uniform [0, 1) values that are a pure function of (seed, counter, element index)."""
    return apply("random_uniform", [seed, counter], {"shape": tuple(normalize_dim(d) for d in shape),
                                                     "dtype": canonical_dtype(dtype)})


def stop_gradient(x) -> Tensor:
    """x, with no gradient flowing back through it (marks the value for the autodiff pass)."""
    return apply("stop_gradient", [x])


# Graph.input/param return Tensors and Graph.output accepts them (the IR does not import us)
set_value_adapter(Tensor, lambda v, g: as_value(v, g))


# the shape and indexing functions live in dsl_shapes (module size); they are part of the DSL
from .dsl_shapes import (_clamp, _getitem, broadcast_to, cat, concat, concatenate,  # noqa: E402,F401
                         expand, expand_dims, flatten, gather, index_select, movedim, moveaxis,
                         pad, permute, reshape, slice, squeeze, stack, swapaxes, swapdims, take,
                         take_along_axis, transpose, unsqueeze)
