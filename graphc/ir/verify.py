"""verify(): types match inference, order is topological, nothing dangles or crosses graphs."""
from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import VerifyError
from .printer import node_in_context

if TYPE_CHECKING:  # pragma: no cover
    from .graph import Graph


def verify(g: "Graph") -> None:
    """Raises VerifyError naming the offending node, shown in context."""
    defined = set()
    names: set[str] = set()
    checked: set[int] = set()

    def fail(node, msg):
        where = f"{node.source}: " if node is not None and node.source else ""
        ctx = node_in_context(g, node) if node is not None else str(g)
        raise VerifyError(f"{where}graph {g.name!r}: {msg}\n{ctx}")

    for v in g.inputs + g.params:
        if v.graph is not g:
            fail(None, f"value %{v.name} belongs to graph {v.graph.name!r}")
        if v.name in names:
            fail(None, f"duplicate value name %{v.name}")
        names.add(v.name)
        defined.add(v)
    for n in g.nodes:
        for i in n.inputs:
            if i.graph is not g:
                fail(n, f"{n.op.name}: input %{i.name} belongs to another graph ({i.graph.name!r})")
            if i not in defined:
                fail(n, f"{n.op.name}: input %{i.name} is used before it is defined")
        try:
            t = n.op.infer_checked([i.type for i in n.inputs], n.attrs)
        except Exception as exc:  # noqa: BLE001 - reported with context
            fail(n, f"{n.op.name}: type inference fails: {exc}")
        if t != n.output.type:
            fail(n, f"{n.op.name}: output is typed {n.output.type} but inference gives {t}")
        for k, body in n.attrs.items():  # a loop body (scan) is verified with its node
            if type(body) is type(g) and id(body) not in checked:
                checked.add(id(body))
                try:
                    verify(body)
                except VerifyError as exc:
                    fail(n, f"{n.op.name}: its {k} graph is broken: {exc}")
        if n.output.producer is not n:
            fail(n, f"{n.op.name}: output %{n.output.name} has another producer")
        if n.output.name in names:
            fail(n, f"duplicate value name %{n.output.name}")
        names.add(n.output.name)
        defined.add(n.output)
    for k, v in g.outputs.items():
        if v not in defined:
            fail(None, f"output {k!r} (%{v.name}) is not defined in the graph")
