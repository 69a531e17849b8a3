"""`Module`, `Parameter` and containers: PyTorch-style layers that trace into graphc graphs.

A module holds its parameters (and buffers such as batch-norm running statistics) as numpy
arrays, registered by attribute assignment. Calling a module on graph Tensors (inside
`@gc.function` or `with gc.Graph(...)`) traces its computation into the graph:

* each parameter becomes a graph *param* named by its state-dict name relative to the ROOT
  module called (the outermost module whose `__call__` is running), e.g. ``"0.weight"``; a
  parameter is created once per graph, however often it is used;
* each buffer used by the forward pass (``running_mean``, ``running_var``) becomes a graph
  param too, with role ``Role.BUFFER``, so that gradients and optimizers leave it alone;
* a buffer updated by the forward pass (batch norm in training mode: ``running_mean``,
  ``running_var``, ``num_batches_tracked``) adds a graph OUTPUT holding its new value, listed in
  ``graph.updates`` as replacing the buffer (its name comes from
  ``graphc.ir.roles.buffer_output_name``, e.g. ``"state:1.running_mean"``); the runtime feeds
  that output back into the buffer after each step. Update outputs always come after the
  user's outputs, so the loss stays first.

Calling a module on numpy arrays runs it eagerly on the numpy reference backend (and, in
training mode, applies the buffer updates like PyTorch does).
"""
from __future__ import annotations

import weakref
from collections import OrderedDict
from typing import Any, Callable, Iterator, NamedTuple

import numpy as np

from ...ir.errors import GraphBuildError, user_frame
from ...ir.graph import Graph, Value, current_graph
from ...ir.roles import Role, buffer_output_name
from ...ir.types import canonical_dtype
from ..dsl import Tensor, _is_device

STATE_PREFIX = buffer_output_name("")  # kept for code that printed or parsed these names


class Parameter:
    """A trainable array owned by a module.

    Inside a traced call it stands for its graph param: it can be used directly in DSL
    expressions (``x @ self.weight.T + self.bias``). Outside, ``.data`` is the numpy array.
    """

    __slots__ = ("data", "requires_grad", "name", "__weakref__")
    __array_priority__ = 1001

    def __init__(self, data: Any, requires_grad: bool = True, dtype: str | None = None):
        arr = np.asarray(data)
        if dtype is not None:
            arr = arr.astype(canonical_dtype(dtype))
        elif arr.dtype == np.float16 or arr.dtype.kind not in "fib":
            raise TypeError(f"Parameter: unsupported dtype {arr.dtype}")
        self.data = np.array(arr, copy=True)
        self.requires_grad = requires_grad
        #: the state-dict name from the last `named_parameters()` / trace of its root module
        self.name: str | None = None

    shape = property(lambda self: self.data.shape)
    dtype = property(lambda self: self.data.dtype)
    ndim = property(lambda self: self.data.ndim)

    def size(self, dim: int | None = None):
        """The shape (torch's Parameter.size()), or one dim of it; the element count is numel()."""
        return tuple(self.data.shape) if dim is None else self.data.shape[dim]

    def numel(self) -> int:
        """The number of elements."""
        return int(self.data.size)

    def dim(self) -> int:
        """The rank (torch's Parameter.dim())."""
        return self.data.ndim

    def numpy(self) -> np.ndarray:
        """The parameter's array (not a copy)."""
        return self.data

    def __array__(self, dtype=None, copy=None):
        return self.data if dtype is None else self.data.astype(dtype)

    def __repr__(self) -> str:
        nm = f" {self.name!r}" if self.name else ""
        return f"Parameter{nm}({self.data.dtype.name}{list(self.data.shape)})"

    # ---- graph use ---------------------------------------------------------------------------
    def __graphc_tensor__(self, graph: Graph | None = None) -> Tensor:
        """The graph param this parameter stands for in `graph` (the one being built)."""
        return param_tensor(self, graph)

    def _t(self) -> Tensor:
        return param_tensor(self, None)

    T = property(lambda self: self._t().T)

    def __getattr__(self, item):
        # Tensor methods (reshape, sum, ...) work on the traced value
        if item.startswith("_") or not hasattr(Tensor, item):
            raise AttributeError(f"Parameter has no attribute {item!r}")
        return getattr(self._t(), item)

    def __deepcopy__(self, memo):
        new = type(self).__new__(type(self))
        for cls in type(self).__mro__:
            for s in getattr(cls, "__slots__", ()):
                if s != "__weakref__" and hasattr(self, s):
                    object.__setattr__(new, s, getattr(self, s))
        new.data = self.data.copy()
        memo[id(self)] = new
        return new

    def __getitem__(self, idx): return self._t()[idx]
    def __add__(self, o): return self._t() + o
    def __radd__(self, o): return o + self._t()
    def __sub__(self, o): return self._t() - o
    def __rsub__(self, o): return o - self._t()
    def __mul__(self, o): return self._t() * o
    def __rmul__(self, o): return o * self._t()
    def __truediv__(self, o): return self._t() / o
    def __rtruediv__(self, o): return o / self._t()
    def __matmul__(self, o): return self._t() @ o
    def __rmatmul__(self, o): return o @ self._t()
    def __pow__(self, o): return self._t() ** o
    def __neg__(self): return -self._t()


class Buffer(Parameter):
    """A non-trainable array in the state dict (batch-norm running statistics)."""

    __slots__ = ("persistent",)

    def __init__(self, data: Any, persistent: bool = True, dtype: str | None = None):
        super().__init__(data, requires_grad=False, dtype=dtype)
        self.persistent = persistent


# ---- tracing registry: per graph, which Value stands for which Parameter --------------------------

class _GraphState:
    def __init__(self) -> None:
        self.values: dict[int, tuple[Parameter, Value]] = {}
        self.latest: dict[int, Tensor] = {}       # buffer id -> its newest (updated) value
        self.names: list[dict[int, str]] = []     # name maps of every root traced into the graph




class _Ctx:
    """One root module's call in one graph: names of its parameters and submodules."""

    def __init__(self, graph: Graph, root: "Module"):
        self.graph, self.root = graph, root
        self.names: dict[int, str] = {}
        self.module_names: dict[int, str] = {}
        for name, m in root.named_modules():
            self.module_names.setdefault(id(m), name)
        for name, p in root._named_tensors(with_buffers=True, persistent_only=False):
            self.names.setdefault(id(p), name)
            p.name = name


_ACTIVE: list[_Ctx] = []


# tracing registries by graph; weak, so a graph and its registry go away together
_STATES: "weakref.WeakKeyDictionary[Graph, _GraphState]" = weakref.WeakKeyDictionary()


def _state(g: Graph) -> _GraphState:
    st = _STATES.get(g)
    if st is None:
        st = _STATES[g] = _GraphState()
    return st


def param_tensor(p: Parameter, graph: Graph | None = None) -> Tensor:
    """The graph value of parameter/buffer `p` in `graph` (default: the graph being built)."""
    g = graph or current_graph() or (_ACTIVE[-1].graph if _ACTIVE else None)
    if g is None:
        raise GraphBuildError(f"{user_frame()}: {p!r} is used outside a graph; call the module on "
                              "graph Tensors (in @gc.function or `with gc.Graph(...)`), or use "
                              "`.data` for its numpy array")
    st = _state(g)
    if isinstance(p, Buffer) and id(p) in st.latest:
        return st.latest[id(p)]
    hit = st.values.get(id(p))
    if hit is not None:
        return Tensor(hit[1])
    name = None
    for ctx in reversed(_ACTIVE):
        if ctx.graph is g and id(p) in ctx.names:
            name = ctx.names[id(p)]
            break
    else:
        for names in reversed(st.names):
            if id(p) in names:
                name = names[id(p)]
                break
    if name is None:
        raise GraphBuildError(f"{user_frame()}: {p!r} belongs to no module called in graph "
                              f"{g.name!r}; call its module first, or register it as an attribute "
                              "of the module being called")
    if g.has_value(name):
        raise GraphBuildError(
            f"{user_frame()}: graph {g.name!r} already has a value named {name!r}: two root modules "
            "traced into one graph have parameters with the same state-dict name; put them in one "
            "parent module (e.g. nn.Sequential or a Module with named attributes)")
    v = g.add_param(name, p.data, Role.BUFFER if isinstance(p, Buffer) else Role.PARAM)
    st.values[id(p)] = (p, v)
    return Tensor(v)


def update_buffer(buf: Buffer, new: Tensor) -> None:
    """Records `new` as the buffer's updated value: a graph output in `graph.updates`."""
    g = new.graph
    param_tensor(buf, g)  # creates the param (if not yet) that the output maps onto
    st = _state(g)
    v = st.values[id(buf)][1]
    st.latest[id(buf)] = new
    g.set_update(buffer_output_name(v.name), new.value, v)


def _is_tensor_like(x: Any) -> bool:
    return isinstance(x, (Tensor, Value))


# ---- Module --------------------------------------------------------------------------------------

class _IncompatibleKeys(NamedTuple):
    missing_keys: list[str]
    unexpected_keys: list[str]


class Module:
    """Base class of layers: subclasses set parameters/submodules as attributes and define
    `forward`.

    Example:

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc1 = nn.Linear(784, 128)
                self.fc2 = nn.Linear(128, 10)

            def forward(self, x):
                return self.fc2(nn.relu(self.fc1(x)))
    """

    def __init__(self) -> None:
        object.__setattr__(self, "_params", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    # ---- registration --------------------------------------------------------------------------
    def __setattr__(self, name: str, value: Any) -> None:
        if "_params" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__}: call super().__init__() before assigning "
                                 f"attribute {name!r}")
        for d in (self._params, self._buffers, self._modules):
            d.pop(name, None)
        if isinstance(value, Buffer):
            self._buffers[name] = value
        elif isinstance(value, Parameter):
            self._params[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        else:
            object.__setattr__(self, name, value)
            return
        self.__dict__.pop(name, None)

    def __getattr__(self, name: str) -> Any:
        d = self.__dict__
        for k in ("_params", "_buffers", "_modules"):
            if k in d and name in d[k]:
                return d[k][name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __delattr__(self, name: str) -> None:
        for d in (self._params, self._buffers, self._modules):
            if name in d:
                del d[name]
                return
        object.__delattr__(self, name)

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        """Adds a parameter (None: declared absent, e.g. a layer without bias)."""
        if param is None:
            object.__setattr__(self, name, None)
        else:
            setattr(self, name, param)

    def register_buffer(self, name: str, data: Any, persistent: bool = True) -> None:
        """Adds a buffer (in the state dict unless persistent=False)."""
        setattr(self, name, data if isinstance(data, Buffer) else Buffer(data, persistent))

    def add_module(self, name: str, module: "Module | None") -> None:
        setattr(self, name, module)

    # ---- traversal -----------------------------------------------------------------------------
    def children(self) -> Iterator["Module"]:
        yield from self._modules.values()

    def named_children(self) -> Iterator[tuple[str, "Module"]]:
        yield from self._modules.items()

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, "Module"]]:
        """This module and all below it, with dotted names ('' for this one)."""
        seen: set[int] = set()

        def walk(m: Module, pre: str):
            if id(m) in seen:
                return
            seen.add(id(m))
            yield pre, m
            for n, c in m._modules.items():
                if c is not None:
                    yield from walk(c, f"{pre}.{n}" if pre else n)
        yield from walk(self, prefix)

    def modules(self) -> Iterator["Module"]:
        for _, m in self.named_modules():
            yield m

    def _named_tensors(self, with_buffers: bool, persistent_only: bool = True,
                       with_params: bool = True) -> Iterator[tuple[str, Parameter]]:
        seen: set[int] = set()
        for mname, m in self.named_modules():
            items: list[tuple[str, Parameter]] = []
            if with_params:
                items += list(m._params.items())
            if with_buffers:
                items += [(k, b) for k, b in m._buffers.items()
                          if not persistent_only or b.persistent]
            for k, p in items:
                if id(p) in seen:  # shared (tied) parameters appear once, as in PyTorch
                    continue
                seen.add(id(p))
                yield (f"{mname}.{k}" if mname else k), p

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """(state-dict name, Parameter) for every trainable parameter.

        A parameter not yet traced gets this name as its `p.name`; tracing sets `p.name` to the
        name under the root module called, which is the graph param's name.
        """
        for n, p in self._named_tensors(with_buffers=False):
            name = f"{prefix}.{n}" if prefix else n
            if p.name is None:
                p.name = name
            yield name, p

    def parameters(self) -> list[Parameter]:
        """The trainable parameters; each knows its graph `name` (for `gc.grad(wrt=...)`)."""
        return [p for _, p in self.named_parameters()]

    def named_buffers(self) -> Iterator[tuple[str, Buffer]]:
        for n, b in self._named_tensors(with_buffers=True, persistent_only=False, with_params=False):
            yield n, b  # type: ignore[misc]

    def buffers(self) -> list[Buffer]:
        return [b for _, b in self.named_buffers()]

    def parameter_names(self) -> list[str]:
        """State-dict names of the trainable parameters (the graph's param names when traced)."""
        return [n for n, _ in self.named_parameters()]

    def num_parameters(self) -> int:
        return int(sum(p.numel() for p in self.parameters()))

    # ---- state ---------------------------------------------------------------------------------
    def state_dict(self) -> "OrderedDict[str, np.ndarray]":
        """Name -> copy of the array, for parameters and persistent buffers (PyTorch's names)."""
        return OrderedDict((n, p.data.copy()) for n, p in self._named_tensors(with_buffers=True))

    def load_state_dict(self, state_dict: dict[str, Any], strict: bool = True) -> _IncompatibleKeys:
        """Copies arrays into the parameters and buffers (in place, so traced graphs see them).

        Accepts numpy arrays or anything `np.asarray` takes (a PyTorch state dict works as is).
        With strict=True, raises naming every missing, unexpected and wrongly shaped tensor.
        """
        own = OrderedDict(self._named_tensors(with_buffers=True))
        given = {k: _to_numpy(v) for k, v in state_dict.items()}
        missing = [k for k in own if k not in given]
        unexpected = [k for k in given if k not in own]
        wrong = [f"{k}: expected shape {own[k].shape}, got {given[k].shape}"
                 for k in own if k in given and given[k].shape != own[k].shape]
        problems = []
        if wrong:
            problems.append("wrongly shaped: " + "; ".join(wrong))
        if strict and missing:
            problems.append("missing: " + ", ".join(missing))
        if strict and unexpected:
            problems.append("unexpected: " + ", ".join(unexpected))
        if problems:
            raise KeyError(f"{user_frame()}: load_state_dict into {type(self).__name__}: "
                           + " | ".join(problems))
        for k, p in own.items():
            if k in given:
                np.copyto(p.data, given[k].astype(p.data.dtype, copy=False))
        return _IncompatibleKeys(missing, unexpected)

    # ---- modes and dtypes ------------------------------------------------------------------------
    def train(self, mode: bool = True) -> "Module":
        """Sets training mode (dropout on, batch statistics) here and below; returns self."""
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self) -> "Module":
        """Sets inference mode (dropout off, running statistics); returns self.

        A graph traced before must be traced again (`fn.trace()`) to see the change.
        """
        return self.train(False)

    def to(self, *args: Any, dtype: Any = None, device: Any = None, **kwargs: Any) -> "Module":
        """Casts every float parameter and buffer to `dtype` ("float32" / "float64"), as torch's
        Module.to. A device ("cpu", "cuda", a torch.device) is accepted and ignored: where a
        model runs is chosen by `gc.compile(..., device=)` / `gc.Trainer(..., device=)`."""
        for a in args:
            if _is_device(a):
                device = a
            else:
                dtype = a
        if dtype is None:
            return self
        dt = canonical_dtype(dtype)
        for _, p in self._named_tensors(with_buffers=True, persistent_only=False):
            if p.data.dtype.kind == "f":
                p.data = p.data.astype(dt)
        return self

    def double(self) -> "Module":
        return self.to("float64")

    def float(self) -> "Module":
        return self.to("float32")

    def apply(self, fn: Callable[["Module"], None]) -> "Module":
        """Calls fn on every submodule (children first) and on self, as torch's Module.apply."""
        for c in self.children():
            c.apply(fn)
        fn(self)
        return self

    # ---- calling ---------------------------------------------------------------------------------
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} defines no forward()")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        items = list(args) + list(kwargs.values())
        g = next((x.graph for x in _flat(items) if _is_tensor_like(x)), None) or current_graph()
        if g is None:
            return _eager_call(self, args, kwargs)
        ctx = next((c for c in reversed(_ACTIVE) if c.graph is g), None)
        pushed = None
        if ctx is None or id(self) not in ctx.module_names:
            pushed = _Ctx(g, self)
            _state(g).names.append(pushed.names)
            _ACTIVE.append(pushed)
        try:
            return self.forward(*args, **kwargs)
        finally:
            if pushed is not None:
                _ACTIVE.remove(pushed)

    def layer_name(self) -> str:
        """'Linear' or "Linear '0.fc'": the class and, while traced, the name under its root."""
        for ctx in reversed(_ACTIVE):
            n = ctx.module_names.get(id(self))
            if n:
                return f"{type(self).__name__} {n!r}"
        return type(self).__name__

    def check_input(self, x: Tensor, ranks: tuple[int, ...], features: dict[int, int] | None = None,
                    expected: str | None = None) -> Tensor:
        """Raises a GraphBuildError at the user's line if x's rank or feature dims are wrong.

        Args:
            x: the input.
            ranks: allowed ranks.
            features: axis -> required size.
            expected: the expected shape, as text, for the message (e.g. "(N, 784)").
        """
        if not isinstance(x, Tensor):
            from ..dsl import _tensor
            x = _tensor(x)
        ok = x.ndim in ranks and all(-x.ndim <= a < x.ndim and x.shape[a] == n
                                     for a, n in (features or {}).items())
        if not ok:
            shape = "(" + ", ".join(str(d) for d in x.shape) + ("," if x.ndim == 1 else "") + ")"
            raise GraphBuildError(f"{user_frame()}: {self.layer_name()} expects input of shape "
                                  f"{expected}, got {shape}")
        return x

    # ---- printing ----------------------------------------------------------------------------
    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        if self._modules:
            for n, m in self._modules.items():
                sub = repr(m).replace("\n", "\n  ")
                lines.append(f"  ({n}): {sub}")
            return lines[0] + "\n" + "\n".join(lines[1:]) + "\n)"
        return lines[0] + ")"


def _flat(items: Any) -> Iterator[Any]:
    for x in items:
        if isinstance(x, (list, tuple)):
            yield from _flat(x)
        else:
            yield x


def _to_numpy(v: Any) -> np.ndarray:
    if hasattr(v, "detach"):  # a torch tensor
        v = v.detach().cpu().numpy()
    return np.asarray(v)


# ---- eager calls (numpy in, numpy out) -------------------------------------------------------------

def _eager_call(module: Module, args: tuple, kwargs: dict) -> Any:
    """Traces `module` on inputs shaped like the given arrays and runs it on the numpy backend."""
    from ..eager import run_eagerly
    g = Graph(f"{type(module).__name__}_eager")
    feeds: dict[str, np.ndarray] = {}

    def lift(x: Any, hint: str) -> Any:
        if isinstance(x, (list, tuple)):
            return type(x)(lift(v, f"{hint}_{i}") for i, v in enumerate(x))
        if isinstance(x, np.ndarray) or hasattr(x, "detach"):
            arr = _to_numpy(x)
            if arr.dtype.kind in "iu":
                arr = arr.astype(np.int64)
            feeds[hint] = arr
            return g.input(hint, arr.shape, canonical_dtype(arr.dtype))
        return x

    with g:
        a = [lift(x, f"arg{i}") for i, x in enumerate(args)]
        kw = {k: lift(v, k) for k, v in kwargs.items()}
        out = module(*a, **kw)
        leaves: list[Tensor] = [t for t in _flat([out]) if isinstance(t, Tensor)]
        for i, t in enumerate(leaves):
            g.output(**{f"out{i}": t})
    for v in g.with_role(Role.RNG_SEED, Role.RNG_COUNTER):
        feeds[v.name] = np.int64(0)
    res = run_eagerly(g, feeds)
    arrays = iter(res[f"out{i}"] for i in range(len(leaves)))
    names = _state(g).values
    by_name = {v.name: p for p, v in names.values()}
    for key, bname in g.updates.items():
        np.copyto(by_name[bname].data, res[key])

    def rebuild(x: Any) -> Any:
        if isinstance(x, (list, tuple)):
            return type(x)(rebuild(v) for v in x)
        return next(arrays) if isinstance(x, Tensor) else x
    return rebuild(out)
