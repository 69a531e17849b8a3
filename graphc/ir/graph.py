"""The IR: a Graph of Nodes over typed Values, built in order (so always topologically sorted)."""
from __future__ import annotations

import contextlib
import re
from typing import TYPE_CHECKING, Any, Callable, Iterator

import numpy as np

from .errors import GraphBuildError, user_frame
from .types import Dim, TensorType, canonical_dtype

if TYPE_CHECKING:  # pragma: no cover
    from ..frontends.dsl import Tensor
    from ..ops.base import Op

_GRAPH_STACK: list["Graph"] = []


def current_graph() -> "Graph | None":
    """The innermost graph opened with `with Graph(...)`, or None."""
    return _GRAPH_STACK[-1] if _GRAPH_STACK else None


class Value:
    """A typed value: a graph input, a parameter (with its initial data) or a node's output."""

    __slots__ = ("name", "type", "graph", "producer", "kind", "data")

    def __init__(self, name: str, type: TensorType, graph: "Graph", kind: str,
                 producer: "Node | None" = None, data: np.ndarray | None = None):
        self.name, self.type, self.graph, self.kind = name, type, graph, kind
        self.producer, self.data = producer, data

    @property
    def shape(self) -> tuple[Dim, ...]:
        return self.type.shape

    @property
    def dtype(self) -> str:
        return self.type.dtype

    def __repr__(self) -> str:
        return f"%{self.name}: {self.type}"


class Node:
    """One application of a primitive op; its single output is `node.output`."""

    __slots__ = ("op", "inputs", "attrs", "output", "source", "origin")

    def __init__(self, op: "Op", inputs: list[Value], attrs: dict[str, Any],
                 source: str | None = None, origin: str | None = None):
        self.op, self.inputs, self.attrs = op, list(inputs), dict(attrs)
        self.source, self.origin = source, origin
        self.output: Value = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        from .printer import format_node
        return format_node(self)


_NAME_OK = re.compile(r"[^A-Za-z0-9_.:/\-]")


class Graph:
    """A static computation graph.

    Build one with the DSL::

        with gc.Graph("mlp") as g:
            x = g.input("x", ("N", 784))
            w = g.param("w", (784, 10), init=gc.init.xavier_uniform())
            g.output(logits=x @ w)
    """

    def __init__(self, name: str = "graph"):
        self.name = name
        self.inputs: list[Value] = []
        self.params: list[Value] = []
        self.nodes: list[Node] = []
        self.outputs: dict[str, Value] = {}
        self.meta: dict[str, Any] = {}
        self._values: dict[str, Value] = {}
        self._counters: dict[str, int] = {}
        self._scopes: list[str] = []
        self._origin: list[str] = []

    # ---- context ---------------------------------------------------------------------------
    def __enter__(self) -> "Graph":
        _GRAPH_STACK.append(self)
        return self

    def __exit__(self, *exc) -> None:
        _GRAPH_STACK.remove(self)

    @contextlib.contextmanager
    def name_scope(self, prefix: str) -> Iterator[None]:
        """Prefixes the names of values made inside (`fc1.matmul_0`), for readable exports."""
        self._scopes.append(prefix)
        try:
            yield
        finally:
            self._scopes.pop()

    @contextlib.contextmanager
    def origin(self, text: str) -> Iterator[None]:
        """Tags every node made inside with provenance text (e.g. 'grad of matmul @ m.py:14')."""
        self._origin.append(text)
        try:
            yield
        finally:
            self._origin.pop()

    # ---- names -----------------------------------------------------------------------------
    def unique_name(self, hint: str) -> str:
        hint = _NAME_OK.sub("_", hint) or "v"
        if hint not in self._values:
            return hint
        base = re.sub(r"_\d+$", "", hint)
        n = self._counters.get(base, 0)
        while f"{base}_{n}" in self._values:
            n += 1
        self._counters[base] = n + 1
        return f"{base}_{n}"

    def _scoped(self, hint: str) -> str:
        return ".".join(self._scopes + [hint]) if self._scopes else hint

    def value(self, name: str) -> Value:
        """The value called `name`; KeyError listing close names otherwise."""
        try:
            return self._values[name]
        except KeyError:
            import difflib
            close = difflib.get_close_matches(name, list(self._values), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise KeyError(f"graph {self.name!r} has no value named {name!r}{hint}") from None

    def has_value(self, name: str) -> bool:
        return name in self._values

    # ---- building ----------------------------------------------------------------------------
    def _register(self, v: Value) -> Value:
        self._values[v.name] = v
        return v

    def add_input(self, name: str, type: TensorType) -> Value:
        if name in self._values:
            raise GraphBuildError(f"{user_frame()}: graph {self.name!r} already has a value named {name!r}")
        v = self._register(Value(name, type, self, "input"))
        self.inputs.append(v)
        return v

    def add_param(self, name: str, data: np.ndarray) -> Value:
        if name in self._values:
            raise GraphBuildError(f"{user_frame()}: graph {self.name!r} already has a value named {name!r}")
        data = np.asarray(data)
        t = TensorType(tuple(int(d) for d in data.shape), canonical_dtype(data.dtype))
        v = self._register(Value(name, t, self, "param", data=data))
        self.params.append(v)
        return v

    def add_node(self, op: "Op", inputs: list[Value], attrs: dict[str, Any], type: TensorType,
                 name: str | None = None, source: str | None = None,
                 origin: str | None = None) -> Value:
        """Appends a node whose output type was already inferred; returns its output."""
        node = Node(op, inputs, attrs, source, origin if origin is not None else
                    (self._origin[-1] if self._origin else None))
        out = Value(self.unique_name(self._scoped(name or op.name)), type, self, "node", producer=node)
        node.output = self._register(out)
        self.nodes.append(node)
        return out

    def rename(self, value: Value, name: str) -> None:
        """Gives `value` a new unique name."""
        del self._values[value.name]
        value.name = self.unique_name(name)
        self._values[value.name] = value

    # ---- DSL conveniences ----------------------------------------------------------------------
    def input(self, name: str, shape: tuple[Dim, ...], dtype: str = "float32") -> "Tensor":
        """Declares a graph input; dims may be ints or symbols such as "N"."""
        from ..frontends.dsl import Tensor
        try:
            t = TensorType(tuple(shape), dtype)
        except (TypeError, ValueError) as exc:
            raise GraphBuildError(f"{user_frame()}: input {name!r}: {exc}") from None
        return Tensor(self.add_input(name, t))

    def param(self, name: str, shape: tuple[int, ...] | None = None,
              init: np.ndarray | Callable | None = None, dtype: str = "float32") -> "Tensor":
        """Declares a trainable parameter holding its initial value.

        Args:
            name: unique name (e.g. "fc1.weight").
            shape: static shape; may be omitted when `init` is an array.
            init: a numpy array, an initializer `f(shape, dtype) -> array`, or None for zeros.
            dtype: used when `init` is not an array.
        """
        from ..frontends.dsl import Tensor
        if isinstance(init, np.ndarray) or (init is not None and not callable(init)):
            data = np.asarray(init)
            if data.dtype == np.float64 and dtype == "float32" and not isinstance(init, np.ndarray):
                data = data.astype(np.float32)
            if shape is not None and tuple(shape) != data.shape:
                raise GraphBuildError(f"{user_frame()}: param {name!r}: shape {tuple(shape)} but init "
                                      f"has shape {data.shape}")
        else:
            if shape is None or any(not isinstance(d, (int, np.integer)) for d in shape):
                raise GraphBuildError(f"{user_frame()}: param {name!r}: needs a static shape, got {shape}")
            shape = tuple(int(d) for d in shape)
            data = (np.zeros(shape, canonical_dtype(dtype)) if init is None
                    else np.asarray(init(shape, canonical_dtype(dtype))))
        return Tensor(self.add_param(name, data))

    def output(self, *values: Any, **named: Any) -> None:
        """Marks graph outputs, positionally (named after the value) or by keyword."""
        from ..frontends.dsl import as_value
        for v in values:
            val = as_value(v, self)
            self.outputs[val.name] = val
        for k, v in named.items():
            self.outputs[k] = as_value(v, self)
        # buffer updates ("state:<name>", made by nn layers while tracing) stay after the user's
        # outputs, so the loss remains the first output
        for k in [k for k in self.outputs if k.startswith("state:")]:
            self.outputs[k] = self.outputs.pop(k)

    # ---- views ---------------------------------------------------------------------------------
    def values(self) -> list[Value]:
        return self.inputs + self.params + [n.output for n in self.nodes]

    def users(self) -> dict[Value, list[Node]]:
        out: dict[Value, list[Node]] = {v: [] for v in self.values()}
        for n in self.nodes:
            for i in n.inputs:
                out.setdefault(i, []).append(n)
        return out

    def param_data(self) -> dict[str, np.ndarray]:
        return {p.name: p.data for p in self.params}

    def __str__(self) -> str:
        from .printer import format_graph
        return format_graph(self)

    def __repr__(self) -> str:
        return (f"<Graph {self.name!r}: {len(self.inputs)} inputs, {len(self.params)} params, "
                f"{len(self.nodes)} nodes, {len(self.outputs)} outputs>")

    def verify(self) -> "Graph":
        from .verify import verify
        verify(self)
        return self

    # ---- copying ---------------------------------------------------------------------------------
    def clone(self, name: str | None = None) -> tuple["Graph", dict[Value, Value]]:
        """A deep copy of the structure (param data shared); returns (graph, old->new value map)."""
        g = Graph(name or self.name)
        g.meta = dict(self.meta)
        vmap: dict[Value, Value] = {}
        for v in self.inputs:
            vmap[v] = g.add_input(v.name, v.type)
        for v in self.params:
            vmap[v] = g.add_param(v.name, v.data)
        for n in self.nodes:
            out = g.add_node(n.op, [vmap[i] for i in n.inputs], n.attrs, n.output.type, n.output.name,
                             n.source, n.origin)
            vmap[n.output] = out
        g.outputs = {k: vmap[v] for k, v in self.outputs.items()}
        return g, vmap
