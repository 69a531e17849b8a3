"""The IR: a Graph of Nodes over typed Values, built in order (so always topologically sorted)."""
from __future__ import annotations

import contextlib
import re
from typing import TYPE_CHECKING, Any, Callable, Iterator

import numpy as np

from .errors import GraphBuildError, user_frame
from .roles import Role
from .types import Dim, TensorType, canonical_dtype

if TYPE_CHECKING:  # pragma: no cover
    from ..ops.base import Op
    from .program import TrainingProgram

_GRAPH_STACK: list["Graph"] = []

# The DSL, a layer above, tells the IR how to hand a Value to the user (as a Tensor) and how to
# turn what the user passes to `Graph.output` (Tensors, numbers) into Values; the IR never
# imports it. Without a DSL loaded, the conveniences speak plain Values.
_wrap_value: Callable[["Value"], Any] = lambda v: v
_to_value: Callable[[Any, "Graph"], "Value"] | None = None


def set_value_adapter(wrap: Callable[["Value"], Any], to_value: Callable[[Any, "Graph"], "Value"]
                      ) -> None:
    """Registers the frontend's Value -> user object and user object -> Value conversions."""
    global _wrap_value, _to_value
    _wrap_value, _to_value = wrap, to_value


def current_graph() -> "Graph | None":
    """The innermost graph opened with `with Graph(...)`, or None."""
    return _GRAPH_STACK[-1] if _GRAPH_STACK else None


class ValueRange:
    """The half-open integer interval [lo, hi) every element of an integer input must lie in.

    Declared with `gc.spec(("N",), "int64", range=(0, 10))` or inferred from a loss
    (`cross_entropy(logits, y)` with C classes gives [0, C)); `origin` says where an inferred
    range came from. The feed checker (`graphc.ir.feeds`) rejects a batch with a value outside.
    Unpacks as `lo, hi = value.range`. `ignore` is one more value allowed outside [lo, hi)
    (a loss's `ignore_index`, e.g. -100 for padding labels).
    """

    __slots__ = ("lo", "hi", "origin", "ignore")

    def __init__(self, lo: int, hi: int, origin: str | None = None, ignore: int | None = None):
        lo, hi = int(lo), int(hi)
        if hi <= lo:
            raise ValueError(f"range ({lo}, {hi}) is empty: it is half-open [lo, hi), so hi must "
                             "be greater than lo")
        self.lo, self.hi, self.origin = lo, hi, origin
        self.ignore = None if ignore is None or lo <= int(ignore) < hi else int(ignore)

    def outside(self, a: np.ndarray) -> np.ndarray:
        """A bool mask of the elements of `a` that are neither in [lo, hi) nor `ignore`."""
        bad = (a < self.lo) | (a >= self.hi)
        return bad & (a != self.ignore) if self.ignore is not None else bad

    @classmethod
    def of(cls, r: "ValueRange | tuple[int, int] | None") -> "ValueRange | None":
        """A ValueRange from a (lo, hi) pair (or None / a ValueRange, returned as is)."""
        if r is None or isinstance(r, ValueRange):
            return r
        try:
            lo, hi = r
            if not all(isinstance(b, (int, np.integer)) and not isinstance(b, bool) for b in (lo, hi)):
                raise TypeError
        except (TypeError, ValueError):
            raise ValueError(f"range must be a pair of ints (lo, hi) meaning [lo, hi), got {r!r}") from None
        return cls(lo, hi)

    def intersect(self, lo: int, hi: int, origin: str | None) -> "ValueRange":
        """The narrower of this range and [lo, hi) (with `origin` where it narrows this one).

        Raises ValueError when they do not overlap.
        """
        nlo, nhi = max(self.lo, lo), min(self.hi, hi)
        if (nlo, nhi) == (self.lo, self.hi):
            return self
        if nhi <= nlo:
            raise ValueError(f"{self} and [{lo}, {hi}) do not overlap")
        return ValueRange(nlo, nhi, origin or self.origin, self.ignore)

    def __iter__(self):
        return iter((self.lo, self.hi))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ValueRange):
            return (self.lo, self.hi, self.ignore) == (other.lo, other.hi, other.ignore)
        if isinstance(other, tuple):
            return tuple(self) == other and self.ignore is None
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.lo, self.hi, self.ignore))

    def __str__(self) -> str:
        return f"[{self.lo}, {self.hi})" + (f" or {self.ignore}" if self.ignore is not None else "")

    def __repr__(self) -> str:
        extra = (f", {self.origin!r}" if self.origin else "") + \
            (f", ignore={self.ignore}" if self.ignore is not None else "")
        return f"ValueRange({self.lo}, {self.hi}{extra})"


class Value:
    """A typed value: a graph input, a parameter (with its initial data) or a node's output.

    Attributes:
        kind: where it comes from: "input", "param" or "node".
        role: what it is for (inputs and params; None for node outputs), see `Role`.
        target: for COTANGENT / TANGENT / GRADIENT inputs, the name of the output or value it
            pairs with; None otherwise.
        range: for integer inputs, the ValueRange [lo, hi) fed values must lie in (declared
            with `gc.spec(..., range=...)` or inferred from a loss); None: unchecked.
    """

    __slots__ = ("name", "type", "graph", "producer", "kind", "data", "role", "target", "range")

    def __init__(self, name: str, type: TensorType, graph: "Graph", kind: str,
                 producer: "Node | None" = None, data: np.ndarray | None = None,
                 role: Role | None = None, target: str | None = None,
                 range: "ValueRange | None" = None):
        self.name, self.type, self.graph, self.kind = name, type, graph, kind
        self.producer, self.data = producer, data
        self.role, self.target, self.range = role, target, range

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
        #: output name -> name of the input or param whose value it replaces on the next run
        #: (a buffer's new running statistics, a training step's new parameters and state)
        self.updates: dict[str, str] = {}
        #: the TrainingProgram of a training-step graph (made by `gc.training_step`), else None
        self.spec: "TrainingProgram | None" = None
        #: free-form annotations only; nothing in graphc reads a key of it to decide anything
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

    def add_input(self, name: str, type: TensorType, role: Role = Role.DATA,
                  target: str | None = None,
                  range: "ValueRange | tuple[int, int] | None" = None) -> Value:
        """Appends a graph input of `type` playing `role`; GraphBuildError if the name is taken.

        `range` ([lo, hi), integer inputs only) is checked on every feed by `graphc.ir.feeds`.
        """
        if name in self._values:
            raise GraphBuildError(f"{user_frame()}: graph {self.name!r} already has a value named {name!r}")
        try:
            range = ValueRange.of(range)
        except ValueError as exc:
            raise GraphBuildError(f"{user_frame()}: input {name!r}: {exc}") from None
        if range is not None and np.dtype(type.dtype).kind not in "iu":
            raise GraphBuildError(f"{user_frame()}: input {name!r}: a range applies to integer inputs, "
                                  f"not {type}")
        v = self._register(Value(name, type, self, "input", role=role, target=target, range=range))
        self.inputs.append(v)
        return v

    def add_param(self, name: str, data: np.ndarray, role: Role = Role.PARAM) -> Value:
        """Appends a parameter holding `data` (PARAM, or BUFFER for non-trained state)."""
        if name in self._values:
            raise GraphBuildError(f"{user_frame()}: graph {self.name!r} already has a value named {name!r}")
        data = np.asarray(data)
        t = TensorType(tuple(int(d) for d in data.shape), canonical_dtype(data.dtype))
        v = self._register(Value(name, t, self, "param", data=data, role=role))
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
    def input(self, name: str, shape: tuple[Dim, ...], dtype: str = "float32",
              role: Role = Role.DATA, range: "tuple[int, int] | None" = None) -> Any:
        """Declares a graph input (a DSL Tensor); dims may be ints or symbols such as "N".

        `range=(lo, hi)` declares that an integer input's values lie in [lo, hi); every feed
        is checked against it (FeedError naming the value and its index).
        """
        try:
            t = TensorType(tuple(shape), dtype)
        except (TypeError, ValueError) as exc:
            raise GraphBuildError(f"{user_frame()}: input {name!r}: {exc}") from None
        return _wrap_value(self.add_input(name, t, role, range=range))

    def param(self, name: str, shape: tuple[int, ...] | None = None,
              init: np.ndarray | Callable | None = None, dtype: str = "float32") -> Any:
        """Declares a trainable parameter holding its initial value.

        Args:
            name: unique name (e.g. "fc1.weight").
            shape: static shape; may be omitted when `init` is an array.
            init: a numpy array, an initializer `f(shape, dtype) -> array`, or None for zeros.
            dtype: used when `init` is not an array.

        Returns:
            The parameter as a DSL Tensor.
        """
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
        return _wrap_value(self.add_param(name, data))

    def _as_value(self, v: Any) -> Value:
        if isinstance(v, Value):
            return v
        if _to_value is None:
            raise GraphBuildError(f"{user_frame()}: graph outputs are Values here (no DSL loaded), "
                                  f"got {type(v).__name__}")
        return _to_value(v, self)

    def output(self, *values: Any, **named: Any) -> None:
        """Marks graph outputs, positionally (named after the value) or by keyword."""
        for v in values:
            val = self._as_value(v)
            self.outputs[val.name] = val
        for k, v in named.items():
            self.outputs[k] = self._as_value(v)
        self._updates_last()

    def set_update(self, key: str, value: Value, replaces: Value) -> None:
        """Makes `value` the output `key` that replaces input/param `replaces` on the next run."""
        if replaces.graph is not self or replaces.kind == "node":
            raise GraphBuildError(f"{user_frame()}: output {key!r} can only replace an input or a "
                                  f"parameter of graph {self.name!r}, not %{replaces.name}")
        self.outputs.pop(key, None)
        self.outputs[key] = value
        self.updates[key] = replaces.name

    def _updates_last(self) -> None:
        # state updates stay after the user's outputs, so the loss remains the first output
        for k in [k for k in self.outputs if k in self.updates]:
            self.outputs[k] = self.outputs.pop(k)

    def with_role(self, *roles: Role) -> list[Value]:
        """The inputs and params playing any of `roles`, inputs first, in declaration order."""
        return [v for v in self.inputs + self.params if v.role in roles]

    def role_targets(self, role: Role) -> dict[str, str]:
        """{target: input name} for inputs of a pairing role (COTANGENT, TANGENT, GRADIENT)."""
        return {v.target: v.name for v in self.inputs if v.role is role and v.target is not None}

    def role_input(self, role: Role) -> Value | None:
        """The one input playing `role` (seed, counter, step, lr), or None."""
        found = [v for v in self.inputs if v.role is role]
        if len(found) > 1:
            raise GraphBuildError(f"graph {self.name!r} has {len(found)} {role} inputs: "
                                  f"{', '.join(v.name for v in found)}")
        return found[0] if found else None

    # ---- views ---------------------------------------------------------------------------------
    def values(self) -> list[Value]:
        return self.inputs + self.params + [n.output for n in self.nodes]

    def users(self) -> dict[Value, list[Node]]:
        out: dict[Value, list[Node]] = {v: [] for v in self.values()}
        for n in self.nodes:
            for i in n.inputs:
                out.setdefault(i, []).append(n)
        return out

    def live_nodes(self) -> set[Node]:
        """The nodes some output depends on (walked backwards from the outputs)."""
        live: set[Node] = set()
        stack = [v.producer for v in self.outputs.values() if v.producer is not None]
        while stack:
            n = stack.pop()
            if n not in live:
                live.add(n)
                stack.extend(i.producer for i in n.inputs if i.producer is not None)
        return live

    def single_use(self) -> set[str]:
        """Names of the values read by exactly one live node and not graph outputs.

        Dead nodes (left by a pass for `eliminate_dead_code`) are not users, so a fusion that must
        not duplicate work ("the product has no other user") sees the same graph whether or not
        dead code was removed first.
        """
        live = self.live_nodes()
        count: dict[str, int] = {}
        for n in self.nodes:
            if n in live:
                for i in n.inputs:
                    count[i.name] = count.get(i.name, 0) + 1
        outs = {v.name for v in self.outputs.values()}
        return {k for k, c in count.items() if c == 1 and k not in outs}

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
    def clone(self, name: str | None = None, nodes: bool = True
              ) -> tuple["Graph", dict[Value, Value]]:
        """A copy of the structure, roles and updates (param data shared).

        Args:
            name: the copy's name (default: this graph's).
            nodes: copy the nodes and outputs too; False gives the inputs and params alone, for
                a pass that rebuilds the body with `copy_node`.

        Returns:
            (graph, old -> new value map).
        """
        g = Graph(name or self.name)
        g.meta = dict(self.meta)
        g.spec = self.spec
        vmap: dict[Value, Value] = {}
        for v in self.inputs:
            vmap[v] = g.add_input(v.name, v.type, v.role, v.target, v.range)
        for v in self.params:
            vmap[v] = g.add_param(v.name, v.data, v.role)
        if nodes:
            for n in self.nodes:
                g.copy_node(n, vmap)
            g.outputs = {k: vmap[v] for k, v in self.outputs.items()}
            g.updates = dict(self.updates)
        return g, vmap

    def copy_node(self, n: Node, vmap: dict[Value, Value]) -> Value:
        """Appends a copy of node `n` (of another graph) reading `vmap[input]`; records its output."""
        out = self.add_node(n.op, [vmap[i] for i in n.inputs], n.attrs, n.output.type,
                            n.output.name, n.source, n.origin)
        vmap[n.output] = out
        return out

    def prune(self, outputs: "list[str]") -> "Graph":
        """A copy computing only `outputs`, with only the inputs and params they need."""
        missing = [o for o in outputs if o not in self.outputs]
        if missing:
            raise KeyError(f"graph {self.name!r} has no output {', '.join(map(repr, missing))}; "
                           f"its outputs are {', '.join(self.outputs)}")
        need: set[Value] = set()
        stack = [self.outputs[o] for o in outputs]
        while stack:
            v = stack.pop()
            if v not in need:
                need.add(v)
                if v.producer is not None:
                    stack.extend(v.producer.inputs)
        g = Graph(self.name)
        g.meta = dict(self.meta)
        vmap: dict[Value, Value] = {}
        for v in self.inputs:
            if v in need:
                vmap[v] = g.add_input(v.name, v.type, v.role, v.target, v.range)
        for v in self.params:
            if v in need:
                vmap[v] = g.add_param(v.name, v.data, v.role)
        for n in self.nodes:
            if n.output in need:
                g.copy_node(n, vmap)
        g.outputs = {o: vmap[self.outputs[o]] for o in outputs}
        g.updates = {o: s for o, s in self.updates.items() if o in g.outputs and s in
                     {v.name for v in g.inputs + g.params}}
        return g

    def finish_copy(self, src: "Graph", vmap: dict[Value, Value]) -> "Graph":
        """Sets outputs and updates from `src` through `vmap`, after a pass rebuilt the body."""
        self.outputs = {k: vmap[v] for k, v in src.outputs.items()}
        self.updates = dict(src.updates)
        return self
