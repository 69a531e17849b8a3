"""Graph statistics: FLOPs per node and in total, parameter counts, activation memory, op mix.

FLOPs come from each primitive's `cost` rule (graphc/ops), evaluated on types whose symbolic dims
are bound to sizes (``bindings={"N": 128}``); a symbol left unbound counts as 1, so the figures
are then "per unit of that symbol" and the summary says so.
"""
from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from ..ir.graph import Graph, Node, Value
from ..ir.types import TensorType, dim_symbols, eval_dim


@dataclass
class NodeStats:
    """One node's figures under the summary's bindings."""

    name: str
    op: str
    type: TensorType          #: the output type as written in the graph (symbolic dims kept)
    shape: tuple[int, ...]    #: the output shape with the bindings applied
    flops: int
    bytes: int                #: size of the output
    source: str | None
    backward: bool            #: made by the autodiff pass (node.origin is set)
    scope: str = "(top)"      #: name scope (`fc1`); a gradient counts toward its value's scope


@dataclass
class ParamStats:
    """One parameter's size."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    count: int
    bytes: int


@dataclass
class GraphSummary:
    """Statistics of a graph; `str()` gives a plain-text report, `node_table()` every node."""

    graph: str
    bindings: dict[str, int]
    unbound: list[str]
    inputs: list[tuple[str, TensorType, int]]
    outputs: list[tuple[str, TensorType]]
    params: list[ParamStats]
    nodes: list[NodeStats]
    peak_bytes: int
    peak_node: str | None
    peak_index: int
    activation_bytes: int
    op_histogram: dict[str, tuple[int, int]] = field(default_factory=dict)  #: op -> (count, FLOPs)

    # ---- totals ------------------------------------------------------------------------------
    @property
    def flops(self) -> int:
        """All nodes' FLOPs."""
        return sum(n.flops for n in self.nodes)

    @property
    def forward_flops(self) -> int:
        return sum(n.flops for n in self.nodes if not n.backward)

    @property
    def backward_flops(self) -> int:
        return sum(n.flops for n in self.nodes if n.backward)

    @property
    def param_count(self) -> int:
        return sum(p.count for p in self.params)

    @property
    def param_bytes(self) -> int:
        return sum(p.bytes for p in self.params)

    def to_dict(self) -> dict[str, Any]:
        """The figures as plain Python data (for JSON)."""
        return {
            "graph": self.graph, "bindings": dict(self.bindings), "unbound": list(self.unbound),
            "flops": self.flops, "forward_flops": self.forward_flops,
            "backward_flops": self.backward_flops, "param_count": self.param_count,
            "param_bytes": self.param_bytes, "peak_bytes": self.peak_bytes,
            "peak_node": self.peak_node, "activation_bytes": self.activation_bytes,
            "op_histogram": {k: {"count": c, "flops": f} for k, (c, f) in self.op_histogram.items()},
            "nodes": [{"name": n.name, "op": n.op, "shape": list(n.shape), "flops": n.flops,
                       "bytes": n.bytes, "source": n.source, "backward": n.backward}
                      for n in self.nodes],
            "params": [{"name": p.name, "shape": list(p.shape), "dtype": p.dtype, "count": p.count,
                        "bytes": p.bytes} for p in self.params],
            "scopes": [{"scope": sc, "nodes": n, "forward_flops": f, "backward_flops": b,
                        "params": p} for sc, n, f, b, p in self.by_scope()],
        }

    # ---- text ----------------------------------------------------------------------------------
    def __str__(self) -> str:
        return self.report()

    def report(self, top: int = 10, max_params: int = 40, max_scopes: int = 40) -> str:
        """The summary as text: totals, the op histogram, FLOPs and parameters per name scope,
        the `top` costliest nodes and the parameters."""
        binds = ", ".join(f"{k}={v}" for k, v in self.bindings.items())
        lines = [f"graph {self.graph!r}" + (f" with {binds}" if binds else "")]
        if self.unbound:
            lines.append(f"  note: {', '.join(self.unbound)} not bound (counted as 1); pass "
                         f"bindings={{{', '.join(repr(s) + ': ...' for s in self.unbound)}}}")
        for name, t, b in self.inputs:
            lines.append(f"  input   {name}: {t}  ({format_bytes(b)})")
        for name, t in self.outputs:
            lines.append(f"  output  {name}: {t}")
        n_back = sum(1 for n in self.nodes if n.backward)
        lines.append(f"  params  {len(self.params)} tensors, {self.param_count:,} values, "
                     f"{format_bytes(self.param_bytes)}")
        lines.append(f"  nodes   {len(self.nodes)}" + (f" ({len(self.nodes) - n_back} forward, "
                                                        f"{n_back} backward)" if n_back else ""))
        lines.append(f"  FLOPs   {format_count(self.flops)}" + (
            f" (forward {format_count(self.forward_flops)}, backward "
            f"{format_count(self.backward_flops)})" if n_back else ""))
        at = (f" at %{self.peak_node} (node {self.peak_index + 1} of {len(self.nodes)})"
              if self.peak_node else "")
        lines.append(f"  memory  peak live activations {format_bytes(self.peak_bytes)}{at}; "
                     f"all node outputs {format_bytes(self.activation_bytes)}")
        total = self.flops or 1
        rows = [(op, f"{c}", format_count(f), f"{100 * f / total:.1f}%")
                for op, (c, f) in sorted(self.op_histogram.items(),
                                         key=lambda kv: (-kv[1][1], -kv[1][0], kv[0]))]
        if rows:
            lines += ["", *_table(("op", "count", "FLOPs", "share"), rows, right=(1, 2, 3))]
        scopes = self.by_scope()
        if len(scopes) > 1:
            rows = [(sc, str(n), format_count(f), format_count(b), f"{p:,}")
                    for sc, n, f, b, p in scopes[:max_scopes]]
            lines += ["", *_table(("scope", "nodes", "fwd FLOPs", "bwd FLOPs", "params"), rows,
                                  right=(1, 2, 3, 4))]
            if len(scopes) > max_scopes:
                lines.append(f"  ... {len(scopes) - max_scopes} more scopes")
        costly = sorted((n for n in self.nodes if n.flops), key=lambda n: -n.flops)[:top]
        if costly:
            lines += ["", f"  top {len(costly)} nodes by FLOPs"]
            lines += _table(("node", "op", "shape", "FLOPs", "share", "source"),
                            [_node_row(n, total) for n in costly], right=(3, 4))
        if self.params:
            rows = [(p.name, _shape_text(p.shape), f"{p.count:,}", format_bytes(p.bytes))
                    for p in self.params[:max_params]]
            lines += ["", *_table(("parameter", "shape", "values", "bytes"), rows, right=(2, 3))]
            if len(self.params) > max_params:
                lines.append(f"  ... {len(self.params) - max_params} more parameters")
        return "\n".join(lines)

    def by_scope(self) -> list[tuple[str, int, int, int, int]]:
        """(scope, nodes, forward FLOPs, backward FLOPs, parameter values) per name scope.

        A scope is a value's name up to its last dot (`fc1.matmul` -> `fc1`); gradient values
        (`d_fc1.relu`, `d_fc1.relu.matmul`) count toward the scope of the forward value they
        are the gradient of.
        """
        rows: dict[str, list[int]] = {}
        for n in self.nodes:
            r = rows.setdefault(n.scope, [0, 0, 0, 0])
            r[0] += 1
            r[2 if n.backward else 1] += n.flops
        for p in self.params:
            rows.setdefault(scope_of(p.name), [0, 0, 0, 0])[3] += p.count
        return [(k, *v) for k, v in rows.items()]

    def node_table(self) -> str:
        """Every node in order: name, op, bound shape, FLOPs, share, output bytes, source."""
        total = self.flops or 1
        rows = [_node_row(n, total) + (format_bytes(n.bytes),) for n in self.nodes]
        return "\n".join(_table(("node", "op", "shape", "FLOPs", "share", "source", "bytes"),
                                rows, right=(3, 4, 6)))


def scope_of(name: str, forward: set[str] | frozenset[str] = frozenset()) -> str:
    """`fc1.matmul` -> `fc1`; no dot -> `(top)`.

    A gradient's name is `d_` + the forward value's name (+ `.op` for the nodes computing it):
    with the forward names given, `d_fc1.relu.matmul` -> `fc1.relu` -> `fc1`.
    """
    if name.startswith("d_") and forward:
        base = name[2:]
        while base not in forward and "." in base:
            base = base.rsplit(".", 1)[0]
        if base in forward:
            name = base
    return name.rsplit(".", 1)[0] if "." in name else "(top)"


def _node_row(n: NodeStats, total: int) -> tuple[str, ...]:
    return (("*" if n.backward else "") + n.name, n.op, _shape_text(n.shape), format_count(n.flops),
            f"{100 * n.flops / total:.1f}%", n.source or "")


def _shape_text(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]], right: tuple[int, ...] = ()
           ) -> list[str]:
    """Plain-text columns, two-space indented; columns in `right` are right-aligned."""
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]

    def fmt(cells):
        out = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))]
        return ("  " + "  ".join(out)).rstrip()
    return [fmt(header), fmt(tuple("-" * w for w in widths))] + [fmt(r) for r in rows]


def format_count(n: float) -> str:
    """1234567 -> '1.23 M' (SI prefixes; plain below 1000)."""
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{int(n)}"


def format_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{int(n)} B"


# ---- computing ----------------------------------------------------------------------------------

class _Binder:
    """Evaluates symbolic dims under the bindings; unbound symbols count as 1 and are recorded."""

    def __init__(self, bindings: Mapping[str, int] | None):
        self.bindings = {k: int(v) for k, v in (bindings or {}).items()}
        self.unbound: set[str] = set()

    def dim(self, d) -> int:
        if isinstance(d, (int, np.integer)):
            return int(d)
        missing = [s for s in dim_symbols(d) if s not in self.bindings]
        self.unbound.update(missing)
        return eval_dim(d, {**self.bindings, **{s: 1 for s in missing}})

    def type(self, t: TensorType) -> TensorType:
        return TensorType(tuple(self.dim(d) for d in t.shape), t.dtype)

    def attrs(self, node: Node) -> dict[str, Any]:
        attrs = dict(node.attrs)
        for k in node.op.shape_attrs:
            if k in attrs:
                attrs[k] = tuple(self.dim(d) for d in attrs[k])
        return attrs


def _nbytes(t: TensorType) -> int:
    n = 1
    for d in t.shape:
        n *= int(d)
    return n * np.dtype(t.dtype).itemsize


def node_flops(node: Node, bindings: Mapping[str, int] | None = None) -> int:
    """FLOPs of one node (its op's `cost` rule) with symbolic dims bound (unbound ones as 1)."""
    b = _Binder(bindings)
    return _cost(node, b)


def _cost(node: Node, b: _Binder) -> int:
    ins = [b.type(v.type) for v in node.inputs]
    try:
        return int(node.op.cost(*ins, y=b.type(node.output.type), **b.attrs(node)))
    except Exception as exc:  # noqa: BLE001 - reported with the node in context
        from ..ir.errors import GraphcError
        from ..ir.printer import node_in_context
        where = f"{node.source}: " if node.source else ""
        raise GraphcError(f"{where}{node.op.name}: cost rule failed: {exc}\n"
                          f"{node_in_context(node.output.graph, node)}") from exc


def flops(graph: Graph, bindings: Mapping[str, int] | None = None) -> int:
    """Total FLOPs of one run of `graph` with symbolic dims bound (unbound ones count as 1)."""
    b = _Binder(bindings)
    return sum(_cost(n, b) for n in graph.nodes)


def param_count(graph: Graph) -> int:
    """The number of parameter values (elements over all parameter tensors)."""
    return sum(int(np.prod(p.type.shape, dtype=np.int64)) for p in graph.params)


def peak_memory(graph: Graph, bindings: Mapping[str, int] | None = None) -> tuple[int, int]:
    """(peak live bytes, index of the node where it is reached) over the graph's node order.

    A value is live from its producer (inputs: from the start) to its last consumer, and graph
    outputs to the end; while a node runs its inputs and its output are live together.
    Parameters are not counted (see `summary(...).param_bytes`).
    """
    b = _Binder(bindings)
    return _peak(graph, b)


def _peak(graph: Graph, b: _Binder) -> tuple[int, int]:
    n = len(graph.nodes)
    if n == 0:
        return sum(_nbytes(b.type(v.type)) for v in graph.inputs), -1
    last: dict[Value, int] = {}
    for i, node in enumerate(graph.nodes):
        for v in node.inputs:
            last[v] = i
    for v in graph.outputs.values():
        last[v] = n - 1
    delta = [0] * (n + 1)
    born = [(v, 0) for v in graph.inputs] + [(node.output, i) for i, node in enumerate(graph.nodes)]
    for v, i in born:
        size = _nbytes(b.type(v.type))
        delta[i] += size
        delta[max(last.get(v, i), i) + 1] -= size
    peak, at, live = 0, 0, 0
    for i in range(n):
        live += delta[i]
        if live > peak:
            peak, at = live, i
    return peak, at


def summary(graph: Graph, bindings: Mapping[str, int] | None = None) -> GraphSummary:
    """Statistics of `graph`: FLOPs per node and in total, parameters, activation memory.

    Args:
        graph: any graph (forward, gradient or training step); nodes made by autodiff count as
            backward.
        bindings: sizes of symbolic dims, e.g. ``{"N": 128}``; unbound symbols count as 1.

    Returns:
        A GraphSummary; `print(summary)` shows a text report, `summary.node_table()` every node,
        `summary.to_dict()` plain data.
    """
    b = _Binder(bindings)
    nodes, hist = [], collections.defaultdict(lambda: [0, 0])
    forward = {v.name for v in graph.inputs + graph.params}
    forward.update(n.output.name for n in graph.nodes if n.origin is None)
    for node in graph.nodes:
        t = b.type(node.output.type)
        f = _cost(node, b)
        nodes.append(NodeStats(node.output.name, node.op.name, node.output.type,
                               tuple(int(d) for d in t.shape), f, _nbytes(t), node.source,
                               node.origin is not None, scope_of(node.output.name, forward)))
        hist[node.op.name][0] += 1
        hist[node.op.name][1] += f
    params = [ParamStats(p.name, tuple(int(d) for d in p.type.shape), p.type.dtype,
                         int(np.prod(p.type.shape, dtype=np.int64)), _nbytes(p.type))
              for p in graph.params]
    inputs = [(v.name, v.type, _nbytes(b.type(v.type))) for v in graph.inputs]
    peak, at = _peak(graph, b)
    return GraphSummary(
        graph=graph.name, bindings=dict(b.bindings), unbound=sorted(b.unbound), inputs=inputs,
        outputs=[(k, v.type) for k, v in graph.outputs.items()], params=params, nodes=nodes,
        peak_bytes=peak, peak_node=graph.nodes[at].output.name if at >= 0 and graph.nodes else None,
        peak_index=at, activation_bytes=sum(n.bytes for n in nodes),
        op_histogram={k: (c, f) for k, (c, f) in hist.items()})
