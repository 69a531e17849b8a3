"""The rewrite-rule engine: patterns and replacements written with the DSL, applied to a fixed point.

A rule is two DSL functions over pattern variables::

    @rule(lambda x: x * 1.0)
    def mul_one(m, x):
        '''x * 1 -> x'''
        return gc.broadcast_to(x, m.shape)

The pattern is traced once into a tiny graph. It matches a node when the ops and the dataflow
agree: each pattern variable binds one value (a variable used twice must bind the same value),
each literal in the pattern (here `1.0`) matches a value that is known to equal it everywhere.
A pattern node over a commutative op (``op.traits.commutative``) matches both operand orders,
so the rule above also rewrites ``1 * x``; the matcher backtracks, so a later mismatch or a
`when` guard that says no makes it try the other order.

Attributes are not compared by default (the pattern was traced with placeholder types). A rule
constrains them with ``attrs={op name: {attribute: constraint}}``, applied to every node of that
op in the pattern: a plain value must be equal (a missing attribute takes the op's default), and
an `AttrTest` (`single_axis`, `last_axis`, `trailing_axes`, `every_axis`, `swapped_last_two`,
`identity_perm`, `bind`, `satisfies`) tests it against the matched node and may bind a name, which must
then bind equal values everywhere and reaches the replacement as ``m.attrs[name]``.
``traced_attrs=("keepdims",)`` instead asks every matched node to have the attribute as the
traced composite has it, node by node (an outer sum without keepdims, an inner one with)::

    @rule(lambda x: F.softmax(x, -1), traced_attrs=("keepdims",),
          attrs={op: {"axes": single_axis("axis")} for op in ("max", "sum")})
    def softmax_rule(m, x):
        '''exp(x - max x) / sum(exp(x - max x)) -> softmax(x)'''
        return dsl.apply("softmax", [x], {"axis": m.attrs["axis"]})

A `when` guard is for what attributes cannot say (types, single use, literal values). The
replacement runs on the graph being rebuilt, so the DSL checks its types; it may return None to
decline. New nodes inherit the matched node's source line and provenance, and the result takes
the matched node's name.

The engine knows nothing about particular ops: rules carry all op knowledge, and what counts as
a known literal is a hook (`literal=`) that the rule set may extend.
"""
from __future__ import annotations

import inspect
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from ..frontends.dsl import Tensor
from ..ir.errors import GraphcError
from ..ir.graph import Graph, Node, Value
from ..ir.printer import node_in_context
from ..ir.rebuild import copy_node, new_frame, set_outputs  # noqa: F401  (the one copy routine)
from ..ir.types import TensorType
from ..ops.base import Op, norm_axes

LiteralFn = Callable[[Value], "np.ndarray | None"]


# ---- literals -------------------------------------------------------------------------------------

def constant_literal(v: Value) -> np.ndarray | None:
    """The array a value is known to hold at build time: the payload of a literal node."""
    p = v.producer
    if p is not None and p.op.traits.constant:
        return np.asarray(p.attrs["value"])
    return None


def uniform_scalar(arr: np.ndarray | None) -> Any:
    """The one value all elements of `arr` share, or None (also for empty arrays)."""
    if arr is None or arr.size == 0:
        return None
    first = arr.reshape(-1)[0]
    return first if np.all(arr == first) else None  # NaN never equals itself: not uniform


# ---- attribute constraints -------------------------------------------------------------------------

#: what an `AttrTest` returns for an attribute that does not fit
NO_MATCH = object()


@dataclass(frozen=True)
class AttrTest:
    """A constraint on one attribute of a pattern node.

    Attributes:
        describe: what the attribute must be (shown in reprs).
        test: ``test(value, node) -> bound value or NO_MATCH``; `value` is the node's attribute
            (or the op's default), `node` the matched node (its input types give axes a rank).
        bind: optional name; every test binding it must give equal values, which reach the
            replacement as ``m.attrs[bind]``.
    """

    describe: str
    test: Callable[[Any, Node], Any]
    bind: str | None = None

    def __repr__(self) -> str:
        return f"<{self.describe}{f' as {self.bind}' if self.bind else ''}>"


def _axes(value: Any, node: Node) -> tuple[int, ...] | None:
    """`value` (an axis, axes or None for all) as sorted axes of the node's input 0, or None if bad."""
    try:
        return norm_axes(value, node.inputs[0].type.rank)
    except (TypeError, ValueError):
        return None


def single_axis(bind: str | None = None) -> AttrTest:
    """Exactly one axis (`axes` or `axis` of input 0); binds it as a non-negative int."""
    def test(value: Any, node: Node) -> Any:
        ax = _axes(value, node)
        return ax[0] if ax is not None and len(ax) == 1 else NO_MATCH
    return AttrTest("one axis", test, bind)


def last_axis(bind: str | None = None) -> AttrTest:
    """Exactly the last axis of input 0; binds it as a non-negative int."""
    def test(value: Any, node: Node) -> Any:
        ax = _axes(value, node)
        return ax[0] if ax == (node.inputs[0].type.rank - 1,) else NO_MATCH
    return AttrTest("the last axis", test, bind)


def trailing_axes(bind: str | None = None) -> AttrTest:
    """One or more axes that end at the last axis of input 0; binds the first of them."""
    def test(value: Any, node: Node) -> Any:
        ax = _axes(value, node)
        rank = node.inputs[0].type.rank
        return ax[0] if ax and ax == tuple(range(ax[0], rank)) else NO_MATCH
    return AttrTest("trailing axes", test, bind)


def every_axis() -> AttrTest:
    """Every axis of input 0 (None, the reductions' default, included)."""
    def test(value: Any, node: Node) -> Any:
        ax = _axes(value, node)
        return ax if ax == tuple(range(node.inputs[0].type.rank)) else NO_MATCH
    return AttrTest("every axis", test)


def swapped_last_two() -> AttrTest:
    """A permutation of input 0's axes that swaps the last two and keeps the rest (rank >= 2)."""
    def test(value: Any, node: Node) -> Any:
        r = node.inputs[0].type.rank
        want = tuple(range(r - 2)) + (r - 1, r - 2)
        return want if r >= 2 and tuple(value) == want else NO_MATCH
    return AttrTest("the last two axes swapped", test)


def identity_perm() -> AttrTest:
    """The identity permutation of input 0's axes."""
    def test(value: Any, node: Node) -> Any:
        want = tuple(range(node.inputs[0].type.rank))
        return want if tuple(value) == want else NO_MATCH
    return AttrTest("the identity permutation", test)


def bind(name: str) -> AttrTest:
    """Any value, bound to `name`: nodes binding the same name must agree (``pad(pad(x, v), v)``)."""
    return AttrTest("any value", lambda value, node: value, name)


def satisfies(pred: Callable[[Any, Node], bool], describe: str, bind: str | None = None) -> AttrTest:
    """Any test `pred(value, node)` of one attribute; binds the value itself."""
    return AttrTest(describe, lambda value, node: value if pred(value, node) else NO_MATCH, bind)


AttrSpec = dict[str, dict[str, Any]]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    try:
        return bool(a == b)
    except (TypeError, ValueError):  # arrays: compared by value
        return bool(np.array_equal(a, b))


# ---- patterns --------------------------------------------------------------------------------------

@dataclass
class Match:
    """One match of a pattern: the matched root node, all matched nodes and the bindings.

    Attributes:
        root: the node being rewritten (for a rule: not yet in the graph).
        nodes: the matched nodes, in the order the pattern built them (root last), whatever
            operand order a commutative op was matched in.
        values: pattern variable name -> bound value.
        attrs: attribute name bound by an `AttrTest` -> its (normalized) value.
    """

    root: Node
    nodes: list[Node]
    values: dict[str, Value]
    literal_fn: LiteralFn = field(repr=False, default=constant_literal)
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def type(self) -> TensorType:
        """The type of the matched root's output (a replacement must produce exactly this type)."""
        return self.root.output.type

    @property
    def shape(self) -> tuple:
        return self.root.output.type.shape

    @property
    def dtype(self) -> str:
        return self.root.output.type.dtype

    def __getitem__(self, name: str) -> Tensor:
        return Tensor(self.values[name])

    def literal(self, name: str) -> np.ndarray | None:
        """The build-time array bound to variable `name`, if it is a known literal."""
        return self.literal_fn(self.values[name])


class Pattern:
    """A DSL function traced into a small graph, with attribute constraints; matches values.

    Args:
        fn: a DSL function of the pattern variables (its parameter names name them).
        types: placeholder types for tracing, by variable name (see `rule`).
        attrs: ``{op name: {attribute: value or AttrTest}}`` for every node of that op.
        traced_attrs: attribute names that must equal, node by node, what tracing `fn` gave
            (``("keepdims",)``: each reduction keeps dims exactly where the composite does).
        name: used in messages.

    Example::

        SWAP = Pattern(lambda x: dsl.transpose(x), attrs={"transpose": {"axes": swapped_last_two()}})
        SWAP.match(v)  # a Match binding "x", or None
    """

    def __init__(self, fn: Callable[..., Tensor], types: dict[str, Any] | None = None,
                 attrs: AttrSpec | None = None, traced_attrs: Sequence[str] = (),
                 name: str = "pattern"):
        self.name = name
        self.var_names = list(inspect.signature(fn).parameters)
        g = Graph(f"pattern:{name}")
        types = types or {}
        with g:
            args = [Tensor(g.add_input(n, _var_type(types.get(n)))) for n in self.var_names]
            out = fn(*args)
        out = out.value if isinstance(out, Tensor) else out
        if not isinstance(out, Value) or out.producer is None:
            raise ValueError(f"rule {name!r}: the pattern must build at least one node")
        self.graph = g
        self.root_op: Op = out.producer.op
        self.nodes = g.nodes
        self.root = out.producer
        self._literals = {n: uniform_scalar(constant_literal(n.output)) for n in g.nodes
                          if n.op.traits.constant}
        ops = {n.op.name: n.op for n in g.nodes}
        unknown = sorted(set(attrs or {}) - set(ops))
        if unknown:
            raise ValueError(f"rule {name!r}: attribute constraints name {unknown}, which the "
                             f"pattern does not build (it builds {sorted(ops)})")
        by_op = {ops[k]: list(v.items()) for k, v in (attrs or {}).items()}
        #: pattern node -> [(attribute, value or AttrTest)] that a matched node must satisfy
        self._checks: dict[Node, list[tuple[str, Any]]] = {}
        for n in g.nodes:
            traced = [(k, n.attrs[k] if k in n.attrs else n.op.attr_default(k)) for k in traced_attrs
                      if k in n.attrs or n.op.attr_default(k) is not None]
            if by_op.get(n.op) or traced:
                self._checks[n] = by_op.get(n.op, []) + traced

    def match(self, value: Value, literal: LiteralFn = constant_literal) -> Match | None:
        """The first match of this pattern rooted at `value`'s producer, or None."""
        if value.producer is None:
            return None
        return next(self.matches(value.producer, literal), None)

    def matches(self, node: Node, literal: LiteralFn = constant_literal) -> Iterator[Match]:
        """Every match rooted at `node` (operand orders of commutative ops tried in turn)."""
        binding: dict[Value, Value] = {}
        found: dict[Node, Node] = {}
        bound: dict[str, Any] = {}

        def attrs_fit(pn: Node, tn: Node) -> list[str] | None:
            """Checks pn's constraints on tn; the attribute names it newly bound, or None."""
            added: list[str] = []
            for key, want in self._checks.get(pn, ()):
                have = tn.attrs[key] if key in tn.attrs else tn.op.attr_default(key)
                if isinstance(want, AttrTest):
                    got = want.test(have, tn)
                    ok = got is not NO_MATCH
                    if ok and want.bind is not None:
                        if want.bind in bound:
                            ok = _same(bound[want.bind], got)
                        else:
                            bound[want.bind] = got
                            added.append(want.bind)
                else:
                    ok = _same(have, want)
                if not ok:
                    for k in added:
                        del bound[k]
                    return None
            return added

        def walk(pv: Value, tv: Value) -> Iterator[None]:
            pn = pv.producer
            if pn is None:  # a pattern variable
                if pv in binding:
                    if binding[pv] is tv:
                        yield
                    return
                binding[pv] = tv
                yield
                del binding[pv]
                return
            if pn.op.traits.constant:  # a literal: tv must hold the same value everywhere
                want, have = self._literals[pn], uniform_scalar(literal(tv))
                if want is not None and have is not None and bool(want == have):
                    yield
                return
            tn = tv.producer
            if tn is None or tn.op is not pn.op or len(tn.inputs) != len(pn.inputs):
                return
            if pn in found:
                if found[pn] is tn:
                    yield
                return
            added = attrs_fit(pn, tn)
            if added is None:
                return
            found[pn] = tn
            orders = [tn.inputs]
            if pn.op.traits.commutative and len(tn.inputs) == 2 and tn.inputs[0] is not tn.inputs[1]:
                orders.append(tn.inputs[::-1])
            for ins in orders:
                yield from walk_all(pn.inputs, ins, 0)
            del found[pn]
            for k in added:
                del bound[k]

        def walk_all(ps: Sequence[Value], ts: Sequence[Value], i: int) -> Iterator[None]:
            if i == len(ps):
                yield
                return
            for _ in walk(ps[i], ts[i]):
                yield from walk_all(ps, ts, i + 1)

        for _ in walk(self.root.output, node.output):
            yield Match(node, [found[p] for p in self.nodes if p in found],
                        {v.name: binding[v] for v in self.graph.inputs if v in binding}, literal,
                        dict(bound))


class Rule:
    """A rewrite rule: a traced DSL pattern (`Pattern`), a DSL replacement and an optional guard."""

    def __init__(self, name: str, pattern: Callable[..., Tensor], replace: Callable[..., Any],
                 when: Callable[[Match], bool] | None = None,
                 types: dict[str, Any] | None = None, attrs: AttrSpec | None = None,
                 traced_attrs: Sequence[str] = ()):
        doc = inspect.getdoc(replace)
        if not doc:
            raise ValueError(f"rule {name!r} needs a one-line formula docstring")
        self.name, self.formula = name, doc.splitlines()[0]
        self.replace_fn, self.when = replace, when
        self.pattern = Pattern(pattern, types, attrs, traced_attrs, name)
        self.var_names = self.pattern.var_names

    @property
    def root_op(self) -> Op:
        """The op of the pattern's root: the rule is tried on nodes of this op only."""
        return self.pattern.root_op

    def __repr__(self) -> str:
        return f"<rule {self.name}: {self.formula}>"

    def matches(self, node: Node, literal: LiteralFn = constant_literal) -> Iterator[Match]:
        """Every match of this rule's pattern rooted at `node` that its guard accepts."""
        for m in self.pattern.matches(node, literal):
            if self.when is None or self.when(m):
                yield m

    def match(self, node: Node, literal: LiteralFn = constant_literal) -> Match | None:
        """The first match of this rule's pattern rooted at `node` that its guard accepts, or None."""
        return next(self.matches(node, literal), None)

    def apply(self, m: Match) -> Value | None:
        """Runs the replacement; returns its value, or None when the rule declines."""
        out = self.replace_fn(m, *(Tensor(m.values[n]) for n in self.var_names))
        if out is None:
            return None
        return out.value if isinstance(out, Tensor) else out


def _var_type(spec: Any) -> TensorType:
    if spec is None:
        return TensorType(("A", "B"), "float32")
    if isinstance(spec, TensorType):
        return spec
    if isinstance(spec, str):
        return TensorType(("A", "B"), spec)
    if hasattr(spec, "shape") and hasattr(spec, "dtype"):
        return TensorType(tuple(spec.shape), spec.dtype)
    return TensorType(tuple(spec), "float32")


def rule(pattern: Callable[..., Tensor], when: Callable[[Match], bool] | None = None,
         types: dict[str, Any] | None = None, name: str | None = None,
         attrs: AttrSpec | None = None, traced_attrs: Sequence[str] = ()
         ) -> Callable[[Callable[..., Any]], Rule]:
    """Decorator making a `Rule` from a replacement function `fn(m, *vars) -> Tensor | None`.

    Args:
        pattern: a DSL function of the pattern variables (its parameter names name them).
        when: optional guard on the `Match`, for what `attrs` cannot say (types, single use).
        types: placeholder types for tracing the pattern, by variable name: a dtype string, a
            shape tuple, a TensorType or a gc.spec (default float32 of shape (A, B)).
        name: rule name (default: the function's name).
        attrs: attribute constraints, ``{op name: {attribute: value or AttrTest}}``, applied to
            every node of that op in the pattern.
        traced_attrs: attributes each matched node must have as the traced pattern node has
            them (see `Pattern`).

    Returns:
        A decorator; e.g. ``@rule(lambda x: x * 1.0)`` over ``def mul_one(m, x)``.
    """
    def wrap(fn: Callable[..., Any]) -> Rule:
        return Rule(name or fn.__name__, pattern, fn, when, types, attrs, traced_attrs)
    return wrap


# ---- applying rules ----------------------------------------------------------------------------------

@dataclass
class RewriteStats:
    """What one `apply_rules` call did: sweeps over the graph and how often each rule fired."""

    sweeps: int = 0
    fired: Counter = field(default_factory=Counter)
    per_sweep: list[int] = field(default_factory=list)

    @property
    def total(self) -> int:
        """Rewrites made in all sweeps."""
        return sum(self.fired.values())

    @property
    def changed(self) -> bool:
        """True when some rule fired: the output graph differs from the input."""
        return self.total > 0

    def __str__(self) -> str:
        rules = ", ".join(f"{k} x{v}" for k, v in self.fired.most_common())
        return f"{self.total} rewrites in {self.sweeps} sweeps: {rules or 'none'}"


class RuleError(GraphcError):
    """A rewrite rule produced a bad replacement (a bug in the rule, reported with context)."""


def apply_rules(graph: Graph, rules: Iterable[Rule], literal: LiteralFn = constant_literal,
                max_sweeps: int = 50) -> tuple[Graph, RewriteStats]:
    """Rewrites `graph` with `rules` until none applies; returns (new graph, stats).

    Each sweep rebuilds the graph in topological order, trying the rules (in order) on every node
    after its inputs were rewritten; sweeps repeat until one fires nothing.
    """
    by_op: dict[Op, list[Rule]] = {}
    for r in rules:
        by_op.setdefault(r.root_op, []).append(r)
    stats = RewriteStats()
    g = graph
    while True:
        if stats.sweeps >= max_sweeps:
            raise RuleError(f"rewrite rules did not reach a fixed point in {max_sweeps} sweeps on graph "
                            f"{graph.name!r}; still firing: {stats}")
        g, n = _sweep(g, by_op, literal, stats.fired)
        stats.sweeps += 1
        stats.per_sweep.append(n)
        if n == 0:
            return g, stats


def _sweep(graph: Graph, by_op: dict[Op, list[Rule]], literal: LiteralFn, fired: Counter
           ) -> tuple[Graph, int]:
    new, vmap = new_frame(graph)
    count = 0
    with new:  # replacements build with the DSL into the new graph
        for node in graph.nodes:
            ins = [vmap[i] for i in node.inputs]
            result = None
            rules = by_op.get(node.op)
            if rules:
                cand = Node(node.op, ins, node.attrs, node.source, node.origin)
                cand.output = Value(node.output.name, node.output.type, new, "node", producer=cand)
                for r in rules:
                    for m in r.matches(cand, literal):  # a declined match: try the next one
                        result = _replace(new, graph, node, r, m)
                        if result is not None:
                            break
                    if result is not None:
                        fired[r.name] += 1
                        count += 1
                        break
            vmap[node.output] = result if result is not None else copy_node(new, node, ins)
    return set_outputs(new, graph, vmap), count


def _replace(new: Graph, old: Graph, node: Node, r: Rule, m: Match) -> Value | None:
    start = len(new.nodes)
    try:
        with new.name_scope(node.output.name):  # helpers are named after what they replace
            out = r.apply(m)
    except GraphcError as exc:
        raise RuleError(f"rule {r.name} ({r.formula}) failed on\n{node_in_context(old, node)}\n"
                        f"{exc}") from exc
    if out is None:
        if len(new.nodes) != start:
            raise RuleError(f"rule {r.name} declined after building nodes; decide in `when`")
        return None
    if out.graph is not new or out.type != node.output.type:
        raise RuleError(f"rule {r.name} ({r.formula}) replaced a value of type {node.output.type} by "
                        f"%{out.name}: {out.type}\n{node_in_context(old, node)}")
    made = new.nodes[start:]
    for n in made:  # the replacement computes what the matched node computed: same provenance
        n.source, n.origin = node.source, node.origin
    if any(out.producer is n for n in made):
        new.rename(out, node.output.name)
    return out


__all__ = ["Rule", "Pattern", "Match", "AttrTest", "NO_MATCH", "RewriteStats", "RuleError", "rule",
           "apply_rules", "new_frame", "copy_node", "set_outputs", "constant_literal",
           "uniform_scalar", "single_axis", "last_axis", "trailing_axes", "every_axis",
           "swapped_last_two", "identity_perm", "bind", "satisfies"]
