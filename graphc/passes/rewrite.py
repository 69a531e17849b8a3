"""The rewrite-rule engine: patterns and replacements written with the DSL, applied to a fixed point.

A rule is two DSL functions over pattern variables::

    @rule(lambda x: x * 1.0)
    def mul_one(m, x):
        '''x * 1 -> x'''
        return gc.broadcast_to(x, m.shape)

The pattern is traced once into a tiny graph. It matches a node when the ops and the dataflow
agree: each pattern variable binds one value (a variable used twice must bind the same value),
each literal in the pattern (here `1.0`) matches a value that is known to equal it everywhere.
Attributes of pattern nodes are not compared (the pattern was traced with placeholder types);
a `when` guard or the replacement itself inspects them through the `Match`
(``inner, outer = m.nodes``). The replacement runs on the graph being rebuilt, so the DSL checks
its types; it may return None to decline. New nodes inherit the matched node's source line and
provenance, and the result takes the matched node's name.

The engine knows nothing about particular ops: rules carry all op knowledge, and what counts as
a known literal is a hook (`literal=`) that the rule set may extend.
"""
from __future__ import annotations

import inspect
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from ..frontends.dsl import Tensor
from ..ir.errors import GraphcError
from ..ir.graph import Graph, Node, Value
from ..ir.printer import node_in_context
from ..ir.types import TensorType

LiteralFn = Callable[[Value], "np.ndarray | None"]


# ---- rebuilding graphs (shared by every pass) -----------------------------------------------------

def new_frame(graph: Graph) -> tuple[Graph, dict[Value, Value]]:
    """An empty graph with `graph`'s name, meta, inputs and params (param data shared, not copied)."""
    g = Graph(graph.name)
    g.meta = dict(graph.meta)
    vmap: dict[Value, Value] = {}
    for v in graph.inputs:
        vmap[v] = g.add_input(v.name, v.type)
    for v in graph.params:
        vmap[v] = g.add_param(v.name, v.data)
    return g, vmap


def copy_node(g: Graph, node: Node, inputs: Sequence[Value]) -> Value:
    """Adds a copy of `node` over `inputs` to `g`, keeping its name, source and provenance."""
    return g.add_node(node.op, list(inputs), node.attrs, node.output.type, node.output.name,
                      node.source, node.origin)


def set_outputs(new: Graph, old: Graph, vmap: dict[Value, Value]) -> Graph:
    """Points `new`'s outputs, under the same names and in the same order, at the mapped values."""
    new.outputs = {k: vmap[v] for k, v in old.outputs.items()}
    return new


def constant_literal(v: Value) -> np.ndarray | None:
    """The array a value is known to hold at build time: the payload of a literal node."""
    p = v.producer
    if p is not None and p.op.arity == 0 and "value" in p.attrs:
        return np.asarray(p.attrs["value"])
    return None


def uniform_scalar(arr: np.ndarray | None) -> Any:
    """The one value all elements of `arr` share, or None (also for empty arrays)."""
    if arr is None or arr.size == 0:
        return None
    first = arr.reshape(-1)[0]
    return first if np.all(arr == first) else None  # NaN never equals itself: not uniform


# ---- rules -------------------------------------------------------------------------------------------

@dataclass
class Match:
    """One match of a rule: the matched root node, all matched nodes and the variables' bindings.

    Attributes:
        root: the node being rewritten (not yet in the graph).
        nodes: the matched nodes, in the order the pattern built them (root last).
        values: pattern variable name -> bound value.
    """

    root: Node
    nodes: list[Node]
    values: dict[str, Value]
    literal_fn: LiteralFn = field(repr=False, default=constant_literal)

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


class Rule:
    """A rewrite rule: a traced DSL pattern, a DSL replacement and an optional guard."""

    def __init__(self, name: str, pattern: Callable[..., Tensor], replace: Callable[..., Any],
                 when: Callable[[Match], bool] | None = None,
                 types: dict[str, Any] | None = None):
        doc = inspect.getdoc(replace)
        if not doc:
            raise ValueError(f"rule {name!r} needs a one-line formula docstring")
        self.name, self.formula = name, doc.splitlines()[0]
        self.replace_fn, self.when = replace, when
        self.var_names = list(inspect.signature(pattern).parameters)
        self._trace(pattern, types or {})

    def _trace(self, pattern: Callable[..., Tensor], types: dict[str, Any]) -> None:
        g = Graph(f"pattern:{self.name}")
        with g:
            args = [Tensor(g.add_input(n, _var_type(types.get(n)))) for n in self.var_names]
            out = pattern(*args)
        out = out.value if isinstance(out, Tensor) else out
        if not isinstance(out, Value) or out.producer is None:
            raise ValueError(f"rule {self.name!r}: the pattern must build at least one node")
        self.pattern = g
        self.root_op = out.producer.op.name
        self.pnodes = g.nodes
        self.proot = out.producer
        self._literals = {n: uniform_scalar(constant_literal(n.output)) for n in g.nodes
                          if n.op.arity == 0}

    def __repr__(self) -> str:
        return f"<rule {self.name}: {self.formula}>"

    def match(self, node: Node, literal: LiteralFn = constant_literal) -> Match | None:
        """The match of this rule's pattern rooted at `node`, or None."""
        binding: dict[Value, Value] = {}
        found: dict[Node, Node] = {}

        def walk(pv: Value, tv: Value) -> bool:
            if pv.producer is None:  # a pattern variable
                if pv in binding:
                    return binding[pv] is tv
                binding[pv] = tv
                return True
            pn = pv.producer
            if pn.op.arity == 0:  # a literal: tv must hold the same value everywhere
                want = self._literals[pn]
                have = uniform_scalar(literal(tv))
                return want is not None and have is not None and bool(want == have)
            tn = tv.producer
            if tn is None or tn.op is not pn.op or len(tn.inputs) != len(pn.inputs):
                return False
            if pn in found:
                return found[pn] is tn
            if not all(walk(p, t) for p, t in zip(pn.inputs, tn.inputs)):
                return False
            found[pn] = tn
            return True

        if not walk(self.proot.output, node.output):
            return None
        m = Match(node, [found[p] for p in self.pnodes if p in found],
                  {v.name: binding[v] for v in self.pattern.inputs if v in binding}, literal)
        if self.when is not None and not self.when(m):
            return None
        return m

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
         types: dict[str, Any] | None = None, name: str | None = None
         ) -> Callable[[Callable[..., Any]], Rule]:
    """Decorator making a `Rule` from a replacement function `fn(m, *vars) -> Tensor | None`.

    Args:
        pattern: a DSL function of the pattern variables (its parameter names name them).
        when: optional guard on the `Match`.
        types: placeholder types for tracing the pattern, by variable name: a dtype string, a
            shape tuple, a TensorType or a gc.spec (default float32 of shape (A, B)).
        name: rule name (default: the function's name).
    """
    def wrap(fn: Callable[..., Any]) -> Rule:
        return Rule(name or fn.__name__, pattern, fn, when, types)
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
        return sum(self.fired.values())

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
    by_op: dict[str, list[Rule]] = {}
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


def _sweep(graph: Graph, by_op: dict[str, list[Rule]], literal: LiteralFn, fired: Counter
           ) -> tuple[Graph, int]:
    new, vmap = new_frame(graph)
    count = 0
    with new:  # replacements build with the DSL into the new graph
        for node in graph.nodes:
            ins = [vmap[i] for i in node.inputs]
            result = None
            rules = by_op.get(node.op.name)
            if rules:
                cand = Node(node.op, ins, node.attrs, node.source, node.origin)
                cand.output = Value(node.output.name, node.output.type, new, "node", producer=cand)
                for r in rules:
                    m = r.match(cand, literal)
                    if m is None:
                        continue
                    result = _replace(new, graph, node, r, m)
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


__all__ = ["Rule", "Match", "RewriteStats", "RuleError", "rule", "apply_rules", "new_frame",
           "copy_node", "set_outputs", "constant_literal", "uniform_scalar"]
