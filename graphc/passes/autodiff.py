"""Reverse-mode autodiff as a graph transformation: a Graph in, a Graph with gradients out.

The backward graph is built from each primitive's `vjp` rule, written in the DSL, so it is an
ordinary graph: printable, simplifiable, exportable to ONNX and differentiable again (`hvp`).

The pass walks the nodes on the path from `wrt` to the differentiated outputs in reverse
topological order, sums cotangents where a value fans out, and un-broadcasts each rule's result
to its input's shape (rules may answer in the broadcast output shape). Every node it creates
carries `origin = "grad of <op> @ <forward node's source line>"` and that source line, and each
cotangent is named after its forward value (`d_fc1.weight`).
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from ..frontends import dsl
from ..frontends.dsl import Tensor
from ..ir.errors import GraphcError
from ..ir.graph import Graph, Node, Value
from ..ir.printer import node_in_context
from ..ir.roles import Role
from ..ir.types import TensorType, broadcast_shapes
from ..ir.verify import verify

__all__ = ["AutodiffError", "grad", "vjp", "hvp", "check_differentiable"]


class AutodiffError(GraphcError, ValueError):
    """A gradient cannot be derived: bad `wrt` or `of`, or ops without a gradient rule."""


# ---- resolving what to differentiate --------------------------------------------------------------

def _lookup(graph: Graph, item: Any, what: str) -> Value:
    """The value of `graph` that `item` (a name, Value, Tensor or named object) stands for."""
    if isinstance(item, Tensor):
        item = item.value
    if isinstance(item, Value):
        if item.graph is graph:
            return item
        name = item.name  # a value of the graph this one was derived from: match by name
    elif isinstance(item, str):
        name = item
    elif isinstance(getattr(item, "name", None), str):
        name = item.name
    else:
        raise AutodiffError(f"{what}: expected a value, a Tensor or a name, got {type(item).__name__}")
    if not graph.has_value(name):
        import difflib
        close = difflib.get_close_matches(name, [v.name for v in graph.values()], n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        params = ", ".join(p.name for p in graph.params) or "(none)"
        inputs = ", ".join(v.name for v in graph.inputs) or "(none)"
        raise AutodiffError(f"{what}: graph {graph.name!r} has no value named {name!r}{hint}\n"
                            f"  its parameters are {params}\n  its inputs are {inputs}")
    return graph.value(name)


def _where_defined(v: Value) -> str:
    if v.kind == "node":
        src = v.producer.source
        return f"made by {v.producer.op.name}" + (f" at {src}" if src else "")
    return f"a graph {'parameter' if v.kind == 'param' else 'input'}"


def _resolve_wrt(graph: Graph, wrt: Any) -> list[Value]:
    if wrt is None:  # nn buffers (batch-norm running statistics) are state, not trainable
        vals = [p for p in graph.params if p.type.is_float and p.role is Role.PARAM]
        if not vals:
            raise AutodiffError(f"graph {graph.name!r} has no float parameters; name the values to "
                                "differentiate with wrt=[...]")
        return vals
    if isinstance(wrt, (str, Value, Tensor)) or not isinstance(wrt, Iterable):
        wrt = [wrt]
    vals = [_lookup(graph, w, "wrt") for w in wrt]
    seen: set[Value] = set()
    for v in vals:
        if v in seen:
            raise AutodiffError(f"wrt names %{v.name} twice")
        seen.add(v)
        if not v.type.is_float:
            raise AutodiffError(
                f"wrt: cannot differentiate with respect to %{v.name} ({v.type}, {_where_defined(v)}): "
                f"gradients exist only for float values, and {v.type.dtype} values are discrete")
    return vals


def _resolve_of(graph: Graph, of: Any) -> tuple[str, Value]:
    """(output key, value) of the differentiated output; default: the first output."""
    if not graph.outputs:
        raise AutodiffError(f"graph {graph.name!r} has no outputs to differentiate")
    if of is None:
        key = next(iter(graph.outputs))
        return key, graph.outputs[key]
    if isinstance(of, str) and of in graph.outputs:
        return of, graph.outputs[of]
    v = _lookup(graph, of, "of")
    keys = [k for k, o in graph.outputs.items() if o is v]
    return (keys[0] if keys else v.name), v


def _scalar_loss(graph: Graph, of: Any) -> Value:
    key, v = _resolve_of(graph, of)
    if not v.type.is_float:
        raise AutodiffError(f"output {key!r} of graph {graph.name!r} is {v.type}, not a float scalar; "
                            "only float outputs have gradients")
    if not all(d == 1 for d in v.type.shape):
        others = [k for k, o in graph.outputs.items() if all(d == 1 for d in o.type.shape)
                  and o.type.is_float]
        hint = f" (scalar outputs: {', '.join(others)}; pass of=...)" if others else ""
        raise AutodiffError(
            f"output {key!r} of graph {graph.name!r} ({_where_defined(v)}) is {v.type}, not a "
            f"scalar: gc.grad needs a "
            f"scalar loss{hint}. Reduce it (gc.mean / gc.sum) or use gc.vjp(graph, wrt, "
            f"cotangents={{{key!r}: None}}) to pull back a cotangent of that shape")
    return v


# ---- which nodes carry gradient -------------------------------------------------------------------

def _diff_inputs(node: Node) -> list[Value]:
    """The inputs of `node` a gradient can flow to: float, and not declared non-differentiable."""
    if not node.op.differentiable or not node.output.type.is_float:
        return []
    return [v for i, v in enumerate(node.inputs) if i not in node.op.nondiff_inputs and v.type.is_float]


def _reach_forward(graph: Graph, sources: Iterable[Value]) -> set[Value]:
    """Values that depend differentiably on any of `sources`."""
    reach = set(sources)
    for n in graph.nodes:
        if any(v in reach for v in _diff_inputs(n)):
            reach.add(n.output)
    return reach


def _reach_backward(graph: Graph, sinks: Iterable[Value]) -> set[Value]:
    """Values that any of `sinks` depends on differentiably."""
    reach = set(sinks)
    for n in reversed(graph.nodes):
        if n.output in reach:
            reach.update(_diff_inputs(n))
    return reach


def _path_nodes(graph: Graph, wrt: Sequence[Value], sinks: Sequence[Value]
                ) -> tuple[list[Node], set[Value]]:
    """Nodes on a differentiable path from `wrt` to `sinks`, in order; and the forward reach."""
    fwd = _reach_forward(graph, wrt)
    bwd = _reach_backward(graph, sinks)
    return [n for n in graph.nodes if n.output in fwd and n.output in bwd], fwd


def check_differentiable(graph: Graph, wrt: Any = None, of: Any = None) -> list[Node]:
    """Every node on a path from `wrt` to the loss whose primitive has no gradient rule.

    Args:
        graph: the graph.
        wrt: values (or names) to differentiate with respect to; None means every float parameter.
        of: the output to differentiate (default: the first); it need not be a scalar here.

    Returns:
        The offending nodes, in graph order (empty when `gc.grad` can proceed). Each node carries
        its user source line (`node.source`). Ops declared non-differentiable (comparisons,
        argmax, stop_gradient) cut the path instead and are not listed.
    """
    wrt_vals = _resolve_wrt(graph, wrt)
    _, loss = _resolve_of(graph, of)
    nodes, _ = _path_nodes(graph, wrt_vals, [loss])
    return [n for n in nodes if n.op.vjp is None]


def _missing_rules_error(graph: Graph, nodes: list[Node]) -> AutodiffError:
    lines = [f"cannot differentiate graph {graph.name!r}: {len(nodes)} op(s) on the path to the loss "
             "have no gradient rule:"]
    for n in nodes:
        lines.append(f"  {n.source or '?'}: {n.op.name} (%{n.output.name})")
    lines.append("in context:")
    for n in nodes:
        lines.append(node_in_context(graph, n, radius=1))
    lines.append("wrap such a value in gc.stop_gradient(...) if no gradient should flow through it")
    return AutodiffError("\n".join(lines))


# ---- the reverse pass -------------------------------------------------------------------------------

def _fit(ct: Tensor, t: TensorType, node: Node, graph: Graph) -> Tensor:
    """`ct` summed over broadcast axes (or broadcast up) to exactly the type `t`."""
    if ct.dtype != t.dtype:
        raise AutodiffError(f"{node.source or '?'}: the gradient rule of {node.op.name} returned "
                            f"{ct.dtype} for a {t.dtype} input\n{node_in_context(graph, node)}")
    cs, ts = tuple(ct.shape), tuple(t.shape)
    if cs == ts:
        return ct
    lead = len(cs) - len(ts)
    if lead >= 0 and all(d == e or d == 1 for d, e in zip(ts, cs[lead:])):
        axes = tuple(range(lead)) + tuple(lead + i for i, (d, e) in enumerate(zip(ts, cs[lead:]))
                                          if d == 1 and e != 1)
        out = dsl.sum(ct, axes, keepdims=True) if axes else ct
        return dsl.reshape(out, ts)
    try:
        if broadcast_shapes(cs, ts) == ts:
            return dsl.broadcast_to(ct, ts)
    except ValueError:
        pass
    raise AutodiffError(f"{node.source or '?'}: the gradient rule of {node.op.name} returned shape "
                        f"{cs} for an input of shape {ts}\n{node_in_context(graph, node)}")


class _Backward:
    """One reverse sweep over a graph, appending the backward nodes to that same graph."""

    def __init__(self, graph: Graph):
        self.g = graph
        self.ct: dict[Value, Value] = {}
        self.named: set[Value] = set()
        self.created: set[Value] = set()

    def _add(self, v: Value, c: Value) -> None:
        old = self.ct.get(v)
        if old is None:
            self.ct[v] = c
            return
        with self.g:  # this graph, even while another is being built (a scan body's vjp)
            self.ct[v] = dsl.add(Tensor(old), Tensor(c)).value

    def _name(self, v: Value) -> Value:
        """The cotangent of v, renamed d_<v> when this pass made it and nothing named it yet."""
        c = self.ct[v]
        if c not in self.named and c in self.created:
            self.g.rename(c, f"d_{v.name}")
            self.named.add(c)
        return c

    def run(self, wrt: Sequence[Value], seeds: Sequence[tuple[Value, Value]]) -> list[Value | None]:
        g = self.g
        nodes, fwd = _path_nodes(g, wrt, [v for v, _ in seeds])
        missing = [n for n in nodes if n.op.vjp is None]
        if missing:
            raise _missing_rules_error(g, missing)
        for v, c in seeds:
            self.named.add(c)
            self._add(v, c)
        for node in reversed(nodes):
            out = node.output
            if out not in self.ct:
                continue
            gy = self._name(out)
            origin = f"grad of {node.op.name}" + (f" @ {node.source}" if node.source else "")
            start = len(g.nodes)
            with g, g.origin(origin), g.name_scope(f"d_{out.name}"):
                try:
                    res = node.op.vjp(Tensor(gy), *[Tensor(v) for v in node.inputs], y=Tensor(out),
                                      **node.attrs)
                except (GraphcError, ValueError, TypeError) as exc:
                    raise AutodiffError(f"{node.source or '?'}: the gradient rule of {node.op.name} "
                                        f"failed: {exc}\n{node_in_context(g, node)}") from exc
                res = tuple(res)
                if len(res) != len(node.inputs):
                    raise AutodiffError(f"the gradient rule of {node.op.name} returned {len(res)} "
                                        f"cotangents for {len(node.inputs)} inputs")
                diff = set(_diff_inputs(node))
                for inp, r in zip(node.inputs, res):
                    if r is None or inp not in diff or inp not in fwd:
                        continue
                    r = r if isinstance(r, Tensor) else Tensor(dsl.as_value(r, g, inp.type.dtype))
                    self._add(inp, _fit(r, inp.type, node, g).value)
            for n in g.nodes[start:]:
                n.source = node.source  # errors in backward nodes point at the forward line
                self.created.add(n.output)
        grads: list[Value | None] = []
        for v in wrt:
            grads.append(self._name(v) if v in self.ct else None)
        return grads

    def zeros(self, v: Value) -> Value:
        """A zero gradient for a value the loss does not depend on."""
        with self.g, self.g.origin(f"grad: the loss does not depend on {v.name}"):
            z = dsl.broadcast_to(dsl.constant(np.zeros((), v.type.dtype)), v.type.shape).value
        self.g.rename(z, f"d_{v.name}")
        return z


def _drop_unused(g: Graph, start: int) -> None:
    """Removes nodes made after index `start` that no output needs (rules answer every input)."""
    live = set(g.outputs.values())
    keep: list[Node] = []
    for i in range(len(g.nodes) - 1, -1, -1):
        n = g.nodes[i]
        if i >= start and n.output not in live:
            g._values.pop(n.output.name, None)  # frees the name; the node is gone
            continue
        keep.append(n)
        live.update(n.inputs)
    g.nodes = keep[::-1]


def _out_key(outputs: Mapping[str, Value], base: str) -> str:
    if base not in outputs:
        return base
    k = 2
    while f"d{k}_{base[2:]}" in outputs:
        k += 1
    return f"d{k}_{base[2:]}"


def _finish(g: Graph, start: int, simplify: bool) -> Graph:
    _drop_unused(g, start)
    verify(g)
    if simplify:
        from .pipeline import get_pipeline  # late: the pipeline's passes use the DSL
        g = get_pipeline("simplify")(g)
    return g


def _differentiate(graph: Graph, wrt: Any, seeds_for: Callable[[Graph, dict], list], name: str
                   ) -> tuple[Graph, list[Value], list[Value], int]:
    """Clones `graph`, seeds the clone with `seeds_for(clone, value map)`, runs the reverse sweep.

    Returns (clone, its wrt values, their gradients, index of the first backward node).
    """
    wrt_src = _resolve_wrt(graph, wrt)
    g, vmap = graph.clone(name)
    start = len(g.nodes)
    wrt_vals = [vmap[v] for v in wrt_src]
    seeds = seeds_for(g, vmap)
    bw = _Backward(g)
    grads = bw.run(wrt_vals, seeds)
    grads = [c if c is not None else bw.zeros(v) for v, c in zip(wrt_vals, grads)]
    return g, wrt_vals, grads, start


def grad(graph: Graph, wrt: Any = None, of: Any = None, *, simplify: bool = True,
         name: str | None = None) -> Graph:
    """The gradient graph of a scalar output.

    Args:
        graph: the forward graph (it is not modified).
        wrt: parameters or inputs (values, Tensors or names) to differentiate with respect to;
            None means every float parameter.
        of: the output to differentiate (an output name); default the first. It must be a
            scalar; for other outputs use `gc.vjp`.
        simplify: run the default simplification pipeline on the result.
        name: the new graph's name (default `<name>_grad`).

    Returns:
        A new Graph with the same inputs whose outputs are the original outputs followed by one
        gradient per `wrt` entry, named `d_<name>` (e.g. `d_fc1.weight`), in `wrt` order.

    Raises:
        AutodiffError: `wrt` names no value of the graph or a non-float one, the output is not a
            scalar, or ops on the path have no gradient rule (all of them are listed).
    """
    loss_src = _scalar_loss(graph, of)

    def seeds(g, vmap):
        loss = vmap[loss_src]
        with g, g.origin("grad: seed d(loss)/d(loss) = 1"):
            one = dsl.constant(np.ones(tuple(loss.type.shape), loss.type.dtype))
        g.rename(one.value, f"d_{loss.name}")
        return [(loss, one.value)]

    g, wrt_vals, grads, start = _differentiate(graph, wrt, seeds, name or f"{graph.name}_grad")
    for v, c in zip(wrt_vals, grads):
        g.outputs[_out_key(g.outputs, f"d_{v.name}")] = c
    g.meta["grad_of"] = loss_src.name
    return _finish(g, start, simplify)


def _cotangent_value(g: Graph, spec: Any, like: Value, input_name: str, role: Role,
                     target: str) -> Value:
    """A new `role` input pairing with `target` (spec None) or a constant (an array) of `like`'s type."""
    if spec is None:
        return g.add_input(g.unique_name(input_name), like.type, role, target)
    arr = np.asarray(spec, dtype=like.type.dtype)
    with g, g.origin(f"cotangent of {like.name}"):
        c = dsl.constant(arr)
        if tuple(arr.shape) != tuple(like.type.shape):
            try:
                c = dsl.broadcast_to(c, like.type.shape)
            except GraphcError as exc:
                raise AutodiffError(f"cotangent for {like.name}: shape {arr.shape} does not fit "
                                    f"{like.type}: {exc}") from None
    return c.value


def vjp(graph: Graph, wrt: Any = None, cotangents: Any = None, *, simplify: bool = True,
        name: str | None = None) -> Graph:
    """The vector-Jacobian product graph: cotangents of outputs pulled back to `wrt`.

    Args:
        graph: the forward graph.
        wrt: as for `grad`.
        cotangents: which outputs to pull back and with what: a dict {output name: None (a new
            graph input named `d_<output>`, of the output's type) or an array (a constant)}, or a
            list of output names (each a new input); None means every float output, each a new
            input.
        simplify: run the default simplification pipeline on the result.
        name: the new graph's name (default `<name>_vjp`).

    Returns:
        A Graph with the original inputs plus the cotangent inputs (role `Role.COTANGENT`;
        `graph.role_targets(Role.COTANGENT)` maps each output to its input), and outputs: the
        original outputs, then `d_<name>` per `wrt` entry.
    """
    if cotangents is None:
        cotangents = {k: None for k, v in graph.outputs.items() if v.type.is_float}
    elif isinstance(cotangents, str):
        cotangents = {cotangents: None}
    elif not isinstance(cotangents, Mapping):
        cotangents = {k: None for k in cotangents}
    for k in cotangents:
        if k not in graph.outputs:
            raise AutodiffError(f"cotangents: graph {graph.name!r} has no output {k!r}; its outputs "
                                f"are {', '.join(graph.outputs)}")
        if not graph.outputs[k].type.is_float:
            raise AutodiffError(f"cotangents: output {k!r} is {graph.outputs[k].type}; only float "
                                "outputs have cotangents")
    def seeds(g, vmap):
        out = []
        for k, spec in cotangents.items():
            v = vmap[graph.outputs[k]]
            c = _cotangent_value(g, spec, v, f"d_{k}", Role.COTANGENT, k)
            out.append((v, c))
        return out

    g, wrt_vals, grads, start = _differentiate(graph, wrt, seeds, name or f"{graph.name}_vjp")
    for v, c in zip(wrt_vals, grads):
        g.outputs[_out_key(g.outputs, f"d_{v.name}")] = c
    return _finish(g, start, simplify)


def hvp(graph: Graph, wrt: Any = None, vectors: Any = None, of: Any = None, *,
        simplify: bool = True, name: str | None = None) -> Graph:
    """The Hessian-vector product graph: the gradient of `<grad f, v>` with respect to `wrt`.

    Args:
        graph: the forward graph with a scalar output `of` (default: the first).
        wrt: as for `grad`.
        vectors: the vector v, one part per `wrt` entry: None (each part a new graph input named
            `v_<name>` with role `Role.TANGENT`: `graph.role_targets(Role.TANGENT)` maps each
            `wrt` name to it), or a dict by name / list in `wrt`
            order of arrays (constants), or of None for an input.
        simplify: run the default simplification pipeline on the result.
        name: the new graph's name (default `<name>_hvp`).

    Returns:
        A Graph whose outputs are the original outputs, the gradients `d_<name>`, then the
        products `hvp_<name>` = (d^2 f / d wrt^2) v, one per `wrt` entry.
    """
    _scalar_loss(graph, of)  # fail early, before building anything
    wrt_src = _resolve_wrt(graph, wrt)
    if vectors is None:
        vectors = [None] * len(wrt_src)
    elif isinstance(vectors, Mapping):
        unknown = [k for k in vectors if k not in {v.name for v in wrt_src}]
        if unknown:
            raise AutodiffError(f"vectors: {', '.join(unknown)} not among wrt "
                                f"({', '.join(v.name for v in wrt_src)})")
        vectors = [vectors.get(v.name) for v in wrt_src]
    else:
        vectors = list(vectors)
        if len(vectors) != len(wrt_src):
            raise AutodiffError(f"vectors: {len(vectors)} given for {len(wrt_src)} wrt values")
    g = grad(graph, wrt_src, of=of, simplify=False, name=name or f"{graph.name}_hvp")
    start = len(g.nodes)
    wrt_vals = [g.value(v.name) for v in wrt_src]
    d_keys = list(g.outputs)[len(graph.outputs):]
    with g, g.origin("hvp: <grad, v>"):
        total = None
        for v, key, spec in zip(wrt_vals, d_keys, vectors):
            vec = _cotangent_value(g, spec, v, f"v_{v.name}", Role.TANGENT, v.name)
            term = dsl.sum(Tensor(g.outputs[key]) * Tensor(vec))
            total = term if total is None else total + term
        one = dsl.constant(np.ones((), total.dtype))
    bw = _Backward(g)
    grads = bw.run(wrt_vals, [(total.value, one.value)])
    for v, c in zip(wrt_vals, grads):
        if c is None:
            c = bw.zeros(v)
        elif c in bw.created:
            g.rename(c, f"hvp_{v.name}")
        g.outputs[f"hvp_{v.name}"] = c
    return _finish(g, start, simplify)


# scan's gradient rule (graphc.ops.control) differentiates its body with `vjp`; ops sit below
# passes, so the rule receives it here instead of importing it
from ..ops import control as _control  # noqa: E402

_control.set_body_differentiator(vjp)
