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
from ..ir.roles import Role
from ..ir.types import TensorType, dim_symbols, eval_dim
from .memory import MemoryEstimate, step_memory


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
    scope: str = "(top)"      #: name scope (`fc1`); a gradient counts toward its forward op's scope
    part: str = "forward"     #: "forward", "backward" or "optimizer" (the update rule)
    saved: bool = False       #: a forward value some backward node reads (kept for backward)
    origin: str | None = None  #: the autodiff origin (`grad of conv2d @ model.py:14`)
    live_bytes: int = 0       #: bytes live while this node runs in a step (`memory.step_memory`)


@dataclass
class LayerStats:
    """One module scope's training cost (`fc1`): FLOPs per part and bytes per kind."""

    scope: str
    forward_flops: int = 0
    backward_flops: int = 0      #: backward nodes charged to the forward op they come from
    optimizer_flops: int = 0     #: the update rule of this scope's parameters (`opt.fc1.weight`)
    param_bytes: int = 0
    grad_bytes: int = 0          #: one gradient per trained parameter
    state_bytes: int = 0         #: optimizer state (Role.OPTIMIZER_STATE inputs)
    saved_bytes: int = 0         #: forward activations read by the backward pass
    nodes: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


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
    #: per module scope training cost, in order of first appearance (see `LayerStats`)
    layers: list[LayerStats] = field(default_factory=list)
    #: peak bytes of one run from a liveness analysis over the node order, modelled on
    #: onnxruntime's CPU executor (graphc.inspect.memory): inputs, constants and a training
    #: step's bound outputs held throughout, node outputs from producer to last reader, reshapes
    #: as views, in-place activations, what a lowering or kernel holds inside a node
    step_peak_bytes: int = 0
    step_peak_node: str | None = None
    memory: MemoryEstimate | None = None  #: the liveness analysis behind `step_peak_bytes`
    trained: list[str] = field(default_factory=list)  #: parameters that get a gradient

    # ---- totals ------------------------------------------------------------------------------
    @property
    def flops(self) -> int:
        """All nodes' FLOPs."""
        return sum(n.flops for n in self.nodes)

    @property
    def forward_flops(self) -> int:
        return sum(n.flops for n in self.nodes if n.part == "forward")

    @property
    def backward_flops(self) -> int:
        return sum(n.flops for n in self.nodes if n.part == "backward")

    @property
    def optimizer_flops(self) -> int:
        return sum(n.flops for n in self.nodes if n.part == "optimizer")

    @property
    def grad_bytes(self) -> int:
        return sum(r.grad_bytes for r in self.layers)

    @property
    def state_bytes(self) -> int:
        return sum(r.state_bytes for r in self.layers)

    @property
    def saved_bytes(self) -> int:
        return sum(r.saved_bytes for r in self.layers)

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
            "backward_flops": self.backward_flops, "optimizer_flops": self.optimizer_flops,
            "param_count": self.param_count, "param_bytes": self.param_bytes,
            "grad_bytes": self.grad_bytes, "state_bytes": self.state_bytes,
            "saved_bytes": self.saved_bytes, "step_peak_bytes": self.step_peak_bytes,
            "step_peak_node": self.step_peak_node,
            "step_memory": self.memory.to_dict() if self.memory else None,
            "peak_bytes": self.peak_bytes,
            "peak_node": self.peak_node, "activation_bytes": self.activation_bytes,
            "op_histogram": {k: {"count": c, "flops": f} for k, (c, f) in self.op_histogram.items()},
            "nodes": [{"name": n.name, "op": n.op, "shape": list(n.shape), "flops": n.flops,
                       "bytes": n.bytes, "source": n.source, "backward": n.backward,
                       "part": n.part, "scope": n.scope, "saved": n.saved, "origin": n.origin,
                       "live_bytes": n.live_bytes}
                      for n in self.nodes],
            "layers": [r.to_dict() for r in self.layers],
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
        n_back = sum(1 for n in self.nodes if n.part == "backward")
        n_opt = sum(1 for n in self.nodes if n.part == "optimizer")
        lines.append(f"  params  {len(self.params)} tensors, {self.param_count:,} values, "
                     f"{format_bytes(self.param_bytes)}")
        lines.append(f"  nodes   {len(self.nodes)}" + (
            f" ({len(self.nodes) - n_back - n_opt} forward, {n_back} backward"
            + (f", {n_opt} optimizer" if n_opt else "") + ")" if n_back or n_opt else ""))
        lines.append(f"  FLOPs   {format_count(self.flops)}" + (
            f" (forward {format_count(self.forward_flops)}, backward "
            f"{format_count(self.backward_flops)})" if n_back else ""))
        at = (f" at %{self.peak_node} (node {self.peak_index + 1} of {len(self.nodes)})"
              if self.peak_node else "")
        lines.append(f"  memory  peak live activations {format_bytes(self.peak_bytes)}{at}; "
                     f"all node outputs {format_bytes(self.activation_bytes)}")
        training = self.optimizer_flops or self.state_bytes or self.backward_flops
        if training:
            lines.append(f"  step    FLOPs forward {format_count(self.forward_flops)}, backward "
                         f"{format_count(self.backward_flops)}, optimizer "
                         f"{format_count(self.optimizer_flops)}; bytes: params "
                         f"{format_bytes(self.param_bytes)}, grads {format_bytes(self.grad_bytes)}, "
                         f"optimizer state {format_bytes(self.state_bytes)}, saved for backward "
                         f"{format_bytes(self.saved_bytes)}")
            lines.append("  " + self.peak_text())
            rows = [(r.scope, format_count(r.forward_flops), format_count(r.backward_flops),
                     format_count(r.optimizer_flops), format_bytes(r.param_bytes),
                     format_bytes(r.grad_bytes), format_bytes(r.state_bytes),
                     format_bytes(r.saved_bytes)) for r in self.layers[:max_scopes]]
            lines += ["", *_table(("layer", "fwd FLOPs", "bwd FLOPs", "opt FLOPs", "params",
                                   "grads", "opt state", "saved"), rows,
                                  right=(1, 2, 3, 4, 5, 6, 7))]
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

    def peak_text(self) -> str:
        """One line on the step's peak memory: total, where, resident and transient parts."""
        m = self.memory
        if m is None:
            return f"peak of the step {format_bytes(self.step_peak_bytes)}"
        at = f" at %{m.peak_node}" if m.peak_node else ""
        return (f"peak of the step {format_bytes(m.peak_bytes)}{at} = resident "
                f"{format_bytes(m.resident_bytes)} (inputs, state, bound outputs) + transient "
                f"{format_bytes(m.transient_peak_bytes)} (liveness over the node order, "
                f"onnxruntime CPU model)")

    def by_scope(self) -> list[tuple[str, int, int, int, int]]:
        """(scope, nodes, forward FLOPs, backward FLOPs, parameter values) per name scope.

        A scope is a value's name up to its last dot (`fc1.matmul` -> `fc1`); backward nodes
        count toward the scope of the forward op they come from (`node.origin`); optimizer
        nodes are left out here (see `layers` for forward, backward and optimizer per scope).
        """
        rows: dict[str, list[int]] = {}
        for n in self.nodes:
            r = rows.setdefault(n.scope, [0, 0, 0, 0])
            r[0] += 1
            if n.part != "optimizer":
                r[2 if n.part == "backward" else 1] += n.flops
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
    parts = _parts(graph)
    scopes = _scopes(graph, parts)
    readers_part: dict[Value, set[str]] = collections.defaultdict(set)
    for node in graph.nodes:
        for v in node.inputs:
            readers_part[v].add(parts[node])
    for node in graph.nodes:
        t = b.type(node.output.type)
        f = _cost(node, b)
        nodes.append(NodeStats(node.output.name, node.op.name, node.output.type,
                               tuple(int(d) for d in t.shape), f, _nbytes(t), node.source,
                               node.origin is not None, scopes[node], parts[node],
                               parts[node] == "forward" and "backward" in readers_part[node.output],
                               node.origin))
        hist[node.op.name][0] += 1
        hist[node.op.name][1] += f
    param_values = graph.params + [v for v in graph.inputs if v.role is Role.PARAM]
    params = [ParamStats(p.name, tuple(int(d) for d in p.type.shape), p.type.dtype,
                         int(np.prod(p.type.shape, dtype=np.int64)), _nbytes(p.type))
              for p in param_values]
    inputs = [(v.name, v.type, _nbytes(b.type(v.type))) for v in graph.inputs]
    peak, at = _peak(graph, b)
    trained = _trained(graph)
    layers = _layers(graph, nodes, params, trained, b)
    mem = step_memory(graph, b.bindings)
    for st, live in zip(nodes, mem.live_bytes):
        st.live_bytes = live
    return GraphSummary(
        layers=layers, step_peak_bytes=mem.peak_bytes, trained=trained, memory=mem,
        step_peak_node=mem.peak_node,
        graph=graph.name, bindings=dict(b.bindings), unbound=sorted(b.unbound), inputs=inputs,
        outputs=[(k, v.type) for k, v in graph.outputs.items()], params=params, nodes=nodes,
        peak_bytes=peak, peak_node=graph.nodes[at].output.name if at >= 0 and graph.nodes else None,
        peak_index=at, activation_bytes=sum(n.bytes for n in nodes),
        op_histogram={k: (c, f) for k, (c, f) in hist.items()})


# ---- training steps: parts, scopes, per-layer bytes ---------------------------------------------

_STATE_ROLES = (Role.OPTIMIZER_STATE, Role.LR)


def _parts(graph: Graph) -> dict[Node, str]:
    """Each node's part: "backward" (made by autodiff: `node.origin` is set), "optimizer" (the
    update rule: name scope `opt.<param>`, an output that replaces carried state, or reading
    optimizer state, the learning rate or an optimizer value) or "forward"."""
    parts: dict[Node, str] = {}
    updated = {graph.outputs[k] for k in graph.updates}
    for node in graph.nodes:
        name = node.output.name
        if node.origin is not None:
            part = "backward"
        elif (name.startswith("opt.") or node.output in updated or
              any(v.role in _STATE_ROLES for v in node.inputs if v.producer is None) or
              any(v.producer is not None and parts.get(v.producer) == "optimizer"
                  for v in node.inputs)):
            part = "optimizer"
        else:
            part = "forward"
        parts[node] = part
    return parts


def _param_of(name: str, params: set[str]) -> str | None:
    """The parameter a `opt.fc1.weight.mul` / `fc1.weight.exp_avg` name belongs to (its longest
    prefix that is a parameter's name), or None. Update outputs are first mapped to the state
    they replace (`graph.updates`) by the caller."""
    for prefix in ("opt.", "d_"):
        if name.startswith(prefix):
            name = name[len(prefix):]
            break
    while name not in params and "." in name:
        name = name.rsplit(".", 1)[0]
    return name if name in params else None


def _scopes(graph: Graph, parts: dict[Node, str]) -> dict[Node, str]:
    """The module scope each node is charged to.

    Forward nodes: their name's scope (`conv2.conv2d` -> `conv2`). Backward nodes: the scope of
    the forward op they come from (`node.origin` = `grad of conv2d @ model.py:14`), so conv2's
    input gradient `d_pool1.max_pool2d` is charged to conv2, not pool1. Where several forward
    nodes share that op and source line, the one whose input or output the gradient's name
    names wins. Optimizer nodes: the scope of their parameter (`opt.fc1.weight.mul` -> `fc1`).
    """
    pnames = {v.name for v in graph.params} | {v.name for v in graph.inputs if v.role is Role.PARAM}
    by_origin: dict[str, list[Node]] = collections.defaultdict(list)
    forward_names = {v.name for v in graph.inputs + graph.params}
    for node in graph.nodes:
        if parts[node] == "forward":
            forward_names.add(node.output.name)
            key = f"grad of {node.op.name}" + (f" @ {node.source}" if node.source else "")
            by_origin[key].append(node)
    prefixes = {scope_of(n) for n in forward_names}
    replaces = {graph.outputs[k]: src for k, src in graph.updates.items()}
    out: dict[Node, str] = {}
    for node in graph.nodes:
        name, part = node.output.name, parts[node]
        scope = None
        if part == "optimizer":
            p = _param_of(replaces.get(node.output, name), pnames)
            scope = scope_of(p) if p else None
        elif part == "backward":
            cands = by_origin.get(node.origin or "", [])
            found = {out[c] for c in cands}
            if len(found) == 1:
                scope = found.pop()
            elif cands:
                base = name[2:] if name.startswith("d_") else name
                while scope is None:
                    hit = [c for c in cands if c.output.name == base or
                           any(v.name == base for v in c.inputs)]
                    if hit:
                        scope = out[hit[0]]
                    elif "." in base:
                        base = base.rsplit(".", 1)[0]
                    else:
                        break
        if scope is None:
            scope = scope_of(name, forward_names)
            if scope == "(top)" and part == "forward" and name in prefixes:
                scope = name  # `loss` computed after `loss.constant`, ...: the scope's result
        out[node] = scope
    return out


def _trained(graph: Graph) -> list[str]:
    """The parameters that get a gradient: a training step's `spec.params`, else those with a
    `d_<name>` value."""
    if graph.spec is not None:
        return list(graph.spec.params)
    names = {n.output.name for n in graph.nodes}
    return [v.name for v in graph.params + graph.inputs
            if v.role is Role.PARAM and f"d_{v.name}" in names]


def _layers(graph: Graph, nodes: list[NodeStats], params: list[ParamStats], trained: list[str],
            b: _Binder) -> list[LayerStats]:
    rows: dict[str, LayerStats] = {}

    def row(scope: str) -> LayerStats:
        return rows.setdefault(scope, LayerStats(scope))
    trained_set = set(trained)
    for p in params:
        r = row(scope_of(p.name))
        r.param_bytes += p.bytes
        if p.name in trained_set:
            r.grad_bytes += p.bytes
    pnames = {p.name for p in params}
    for v in graph.inputs:
        if v.role is Role.OPTIMIZER_STATE:
            owner = _param_of(v.name, pnames)
            row(scope_of(owner) if owner else scope_of(v.name)).state_bytes += \
                _nbytes(b.type(v.type))
    for n in nodes:
        r = row(n.scope)
        r.nodes += 1
        setattr(r, f"{n.part}_flops", getattr(r, f"{n.part}_flops") + n.flops)
        if n.saved:
            r.saved_bytes += n.bytes
    order = {n.scope: i for i, n in reversed(list(enumerate(nodes)))}
    return sorted(rows.values(), key=lambda r: order.get(r.scope, len(nodes)))
