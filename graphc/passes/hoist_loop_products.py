"""hoist_loop_products: a loop's running sum of products becomes one product after the loop.

Scan's gradient accumulates the cotangent of a loop constant in a carry; for a weight read by a
product inside the body (an RNN's hidden-to-hidden matrix) the backward body updates it with

    dW_new = gemm(a_t, b_t, dW, trans_a=True)        (or dW + a_t.T @ b_t)

once per step: L small products of M = batch rows. When `a_t` is a scanned input (a residual
stacked by the forward loop) and `b_t` a per-step value, the sum over the steps is one product of
the stacked values, reshaped to 2-D:

    dW_final = gemm(reshape(A, (L*N, k)), reshape(B, (L*N, m)), dW_init, trans_a=True)

This pass drops such a carry from the body, stacks `b_t` as a loop output if it is not one
already, and emits that product after the loop. One large product instead of L small ones: fewer
kernels and a better-shaped matrix product (bench/results.md, W3). The sum's order changes, so
the results equal the loop's up to rounding: this belongs to the fusing pipeline ("fuse-step"),
not to the bit-exact "simplify".
"""
from __future__ import annotations

from dataclasses import dataclass

from ..ir.graph import Graph, Node, Value
from ..ir.rebuild import copy_node, new_frame, set_outputs
from ..ir.types import dim_product
from ..ops.base import get_op
from ..ops.control import scan_group
from .pipeline import register_pass


#: the ops this pass's patterns are made of (matched by identity, as rewrite patterns are)
_GEMM, _MATMUL, _TRANSPOSE, _ADD = (get_op(n) for n in ("gemm", "matmul", "transpose", "add"))


@dataclass(frozen=True)
class _Hoist:
    carry: int    # the carry's position
    x: int        # the scanned input a_t is (its position among the xs)
    b: Value      # the per-step right factor b_t (a body value)


def _plain_gemm(n: Node, with_c: bool) -> bool:
    a = n.attrs
    return (n.op is _GEMM and len(n.inputs) == (3 if with_c else 2) and bool(a.get("trans_a"))
            and not a.get("trans_b") and a.get("alpha", 1.0) == 1.0 and a.get("beta", 1.0) == 1.0)


def _product(v: Value, users: dict[Value, list[Node]]) -> tuple[Value, Value] | None:
    """(a, b) where `v` = a.T @ b is computed only for this sum, else None."""
    n = v.producer
    if n is None or len(users.get(v, [])) != 1:
        return None
    if _plain_gemm(n, with_c=False):
        return n.inputs[0], n.inputs[1]
    if n.op is _MATMUL and n.inputs[0].producer is not None:
        t = n.inputs[0].producer
        if t.op is _TRANSPOSE and t.attrs.get("axes") == (1, 0):
            return t.inputs[0], n.inputs[1]
    return None


def _find(body: Graph, n_carry: int, n_xs: int) -> list[_Hoist]:
    """The carries of `body` that only accumulate a.T @ b with a scanned a."""
    users = body.users()
    ins, outs = list(body.inputs), list(body.outputs.values())
    xs = {v: i for i, v in enumerate(ins[n_carry:n_carry + n_xs])}
    found = []
    for j in range(n_carry):
        c, new = ins[j], outs[j]
        if [u.output for u in users.get(c, [])] != [new] or outs.count(new) != 1 or c in outs \
                or len(users.get(new, [])) != 0 or new.producer is None:
            continue
        n = new.producer
        ab = None
        if _plain_gemm(n, with_c=True) and n.inputs[2] is c:
            ab = (n.inputs[0], n.inputs[1])
        elif n.op is _ADD and c in n.inputs and n.inputs[0] is not n.inputs[1]:
            other = n.inputs[1] if n.inputs[0] is c else n.inputs[0]
            ab = _product(other, users)
        if ab is None or ab[0] not in xs or ab[0].type.rank != 2 or ab[1].type.rank != 2 \
                or c.type.shape != (ab[0].type.shape[1], ab[1].type.shape[1]):
            continue
        found.append(_Hoist(j, xs[ab[0]], ab[1]))
    return found


def _new_body(body: Graph, hoists: list[_Hoist], n_carry: int) -> tuple[Graph, dict[Value, int]]:
    """`body` without the hoisted carries, returning each b_t as a y (appended where it is not
    one already); and, for each b_t (a value of `body`), its output index in the new body."""
    drop = {h.carry for h in hoists}
    new = Graph(body.name)
    vmap: dict[Value, Value] = {}
    for i, v in enumerate(body.inputs):
        if i not in drop:
            vmap[v] = new.add_input(v.name, v.type)
    outs = list(body.outputs.items())
    dead = {outs[j][1].producer for j in drop}
    for n in body.nodes:
        if n not in dead:
            vmap[n.output] = copy_node(new, n, [vmap[i] for i in n.inputs])
    new.outputs = {k: vmap[v] for j, (k, v) in enumerate(outs) if j not in drop}
    index: dict[Value, int] = {}
    for h in hoists:
        ys = [j for j in range(n_carry, len(outs)) if outs[j][1] is h.b]
        if ys:
            index[h.b] = ys[0] - len(drop)
        elif h.b not in index:
            new.outputs[new.unique_name(f"hoisted_{h.b.name}")] = vmap[h.b]
            index[h.b] = len(new.outputs) - 1
    return new, index


def _reshape2(g: Graph, v: Value, src: Node) -> Value:
    """`v` (L, N, k) as (L*N, k), named after it, with `src`'s source line."""
    op = get_op("reshape")
    shape = (dim_product(list(v.type.shape[:2])), v.type.shape[2])
    t = op.infer(v.type, shape=shape)
    return g.add_node(op, [v], {"shape": t.shape}, t, f"{v.name}.flat", src.source, src.origin)


@register_pass("hoist_loop_products")
def hoist_loop_products(graph: Graph) -> Graph:
    """A copy of `graph` whose loops' running sums of a_t.T @ b_t (a_t scanned) are one product
    after the loop; `graph` itself where there are none."""
    plans: dict[tuple, tuple[Graph, dict[Value, int], list[_Hoist]]] = {}
    for n in graph.nodes:
        key = scan_group(n)
        if key is not None:
            if key not in plans:
                hs = _find(n.attrs["body"], int(n.attrs["n_carry"]), int(n.attrs["n_xs"]))
                if hs:
                    plans[key] = (*_new_body(n.attrs["body"], hs, int(n.attrs["n_carry"])), hs)
    if not plans:
        return graph
    new, vmap = new_frame(graph)
    groups: dict[tuple, list[Node]] = {}
    for n in graph.nodes:
        if scan_group(n) is not None:
            groups.setdefault(scan_group(n), []).append(n)
    done: set[tuple] = set()
    for n in graph.nodes:
        key = scan_group(n)
        if key not in plans:
            vmap[n.output] = copy_node(new, n, [vmap[i] for i in n.inputs])
        elif key not in done:
            done.add(key)
            _rebuild_group(new, vmap, groups[key], *plans[key])
    return set_outputs(new, graph, vmap)


def _rebuild_group(g: Graph, vmap: dict[Value, Value], nodes: list[Node], body: Graph,
                   y_index: dict[Value, int], hoists: list[_Hoist]) -> None:
    """Emits the group's scan nodes over the new `body` and the hoisted products, and maps the
    old result nodes to them."""
    first = nodes[0]
    n_carry = int(first.attrs["n_carry"])
    drop = {h.carry: h for h in hoists}
    ins = [vmap[v] for i, v in enumerate(first.inputs) if i not in drop]
    attrs = dict(first.attrs, body=body, n_carry=n_carry - len(drop))
    scan = get_op("scan")
    made: dict[int, Value] = {}

    def result(index: int, name: str) -> Value:
        if index not in made:
            a = dict(attrs, index=index)
            t = scan.infer(*[v.type for v in ins], **a)
            made[index] = g.add_node(scan, ins, a, t, name, first.source, first.origin)
        return made[index]

    for n in nodes:  # the kept results: a carry or y moves down by the carries dropped before it
        k = int(n.attrs.get("index", 0))
        if k not in drop:
            vmap[n.output] = result(k - sum(1 for j in drop if j < k), n.output.name)
    gemm = _GEMM
    for n in nodes:
        h = drop.get(int(n.attrs.get("index", 0)))
        if h is None:
            continue
        stacked_a = _reshape2(g, vmap[first.inputs[n_carry + h.x]], n)
        stacked_b = _reshape2(g, result(y_index[h.b], f"{n.output.name}.steps"), n)
        init = vmap[first.inputs[h.carry]]
        a = {"trans_a": True}
        t = gemm.infer(stacked_a.type, stacked_b.type, init.type, **a)
        vmap[n.output] = g.add_node(gemm, [stacked_a, stacked_b, init], a, t, n.output.name,
                                    n.source, n.origin)
