"""The text form of the IR: one node per line, with its type and the user's source line."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from .graph import Graph, Node, Value
    from .roles import Role


def format_attr(v: Any) -> str:
    if isinstance(v, np.ndarray):
        if v.ndim == 0:  # array2string prints 2.0 as "2."
            return repr(v.item())
        if v.size <= 4:
            # floatmode="unique": the shortest text that reads back to the same value (parser)
            return np.array2string(v.reshape(-1) if v.ndim else v, separator=", ",
                                   floatmode="unique").replace("\n", "")
        return f"<{v.dtype.name}{list(v.shape)}>"
    if isinstance(v, tuple):
        return "(" + ", ".join(format_attr(x) for x in v) + ("," if len(v) == 1 else "") + ")"
    if type(v).__name__ == "Graph":  # a loop body: printed once, as a block above its first use
        return f"@{v.name}"
    if isinstance(v, float):
        return repr(v)
    return str(v)


def format_node(node: "Node") -> str:
    args = [f"%{v.name}" for v in node.inputs]
    args += [f"{k}={format_attr(v)}" for k, v in node.attrs.items()]
    text = f"%{node.output.name}: {node.output.type} = {node.op.name}({', '.join(args)})"
    notes = [x for x in (node.origin, node.source) if x]
    if node.origin and node.source and node.source in node.origin:
        notes = [node.origin]
    return f"{text:<72}  # {' | '.join(notes)}" if notes else text


def format_role(v: "Value", default: "Role") -> str:
    """' @role' or ' @role(target)' for a value whose role is not the default; '' otherwise.

    An integer input with a declared value range ends with ' @range(lo, hi)'.
    """
    r = getattr(v, "range", None)
    rng = ("" if r is None else f" @range({r.lo}, {r.hi}"
           + (f", ignore={r.ignore})" if r.ignore is not None else ")"))
    if v.role is None or v.role is default:
        return rng
    return f" @{v.role.value}" + (f"({v.target})" if v.target is not None else "") + rng


def format_graph(g: "Graph", mark: "Node | None" = None) -> str:
    """The whole graph as text; `mark` flags one node with an arrow.

    Inputs and params that play a role other than the default (data, param) say so after their
    type (`%lr: f32[] @lr`, `param %bn.running_mean: f32[4] @buffer`), and an integer input
    with a value range says it (`%y: i64[N] @range(0, 10)`); an output that replaces
    state names what it replaces (`new.w=%w_1 @updates(w)`).
    """
    from .roles import Role
    ins = ", ".join(f"%{v.name}: {v.type}{format_role(v, Role.DATA)}" for v in g.inputs)
    lines = [f"graph {g.name}({ins}) {{"]
    for p in g.params:
        lines.append(f"  param %{p.name}: {p.type}{format_role(p, Role.PARAM)}")
    shown: set[int] = set()
    for n in g.nodes:
        for body in (a for a in n.attrs.values() if type(a).__name__ == "Graph"):
            if id(body) not in shown:  # the K nodes of one scan share their body
                shown.add(id(body))
                lines.append("  body @" + body.name + " = "
                             + format_graph(body).replace("\n", "\n  ").lstrip())
        lines.append(("> " if n is mark else "  ") + format_node(n))
    outs = ", ".join((f"{k}=%{v.name}" if k != v.name else f"%{v.name}")
                     + (f" @updates({g.updates[k]})" if k in g.updates else "")
                     for k, v in g.outputs.items())
    lines.append(f"  return {outs}")
    lines.append("}")
    return "\n".join(lines)


def node_in_context(g: "Graph", node: "Node", radius: int = 3) -> str:
    """A few lines of the graph around `node`, the node marked with '>'."""
    idx = g.nodes.index(node) if node in g.nodes else -1
    if idx < 0:
        return "  " + format_node(node)
    lo, hi = max(0, idx - radius), min(len(g.nodes), idx + radius + 1)
    lines = ["  ..."] if lo > 0 else []
    for n in g.nodes[lo:hi]:
        lines.append(("> " if n is node else "  ") + format_node(n))
    if hi < len(g.nodes):
        lines.append("  ...")
    return "\n".join(lines)
