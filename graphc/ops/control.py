"""Control flow: the `scan` primitive, a loop whose body is a Graph held in an attribute.

Why a primitive and not a composite: a composite is a fixed DAG, so a loop written with the DSL
is unrolled and grows with the sequence length (an LSTM at T=512 had 9,751 forward nodes). `scan`
keeps one body whatever the trip count, and its length may be symbolic.

A scan node reads ``[*init, *xs, *consts]`` (``n_carry`` carries, ``n_xs`` scanned inputs with the
loop axis first, then loop-invariant values the body reads, such as weights) and holds:

- ``body``: a Graph whose inputs are (carry..., x_t..., const...) and whose outputs are
  (new carry..., y_t...); each new carry has its carry's type.
- ``length``: ``(L,)``, the trip count (an int or a symbol such as "T"); ``reverse``: walk t = L-1 .. 0
  (ys stay indexed by t, as in JAX).
- ``index``: which result this node is. graphc nodes have one output, so a scan with K results is
  K nodes sharing one body and one input list: ``index < n_carry`` is a final carry, otherwise
  the stacked ys ``(length, *y_t.shape)`` of body output ``index``. The reference kernel and the
  ONNX lowering compute such a group once (memoized on the body and inputs).

The gradient stores per-step residuals: a forward scan over the body's vjp graph, cut at the
forward/backward boundary, stacks every forward value the backward part reads (one (L, ...)
tensor per residual); a reverse scan over the backward part then pulls the cotangents back, one
step at a time, carrying the cotangent of the carry and the running sums of the constants'
cotangents. Storing residuals costs memory L x (residual bytes) instead of recomputing the body's
forward part inside the backward loop; it keeps the backward loop as cheap as an unrolled
backward pass.
"""
from __future__ import annotations

import weakref
from typing import Any, Callable

import numpy as np

from ..ir.graph import Graph, Value
from ..ir.types import TensorType, normalize_dim
from .base import OPS, Op, register

#: set by graphc.passes.autodiff (a layer above): body Graph -> its vjp Graph (see autodiff.vjp)
_body_vjp: Callable[..., Graph] | None = None

#: residual body -> the body it extends: its first outputs are that body's outputs, computed the
#: same way, followed by the residuals (see `extended_body`)
_EXTENDS: "weakref.WeakKeyDictionary[Graph, Graph]" = weakref.WeakKeyDictionary()


def extended_body(body: Graph) -> Graph | None:
    """The body that `body` extends with residual outputs (made by scan's gradient), or None.

    A scan over `body` with the same inputs computes every result of a scan over the returned
    body at the same index, so a pass may run the loop once (passes/merge_scans.py).
    """
    return _EXTENDS.get(body)


def set_body_differentiator(fn: Callable[..., Graph]) -> None:
    """Registers autodiff's `vjp(graph, wrt, cotangents, simplify=False)` for scan bodies."""
    global _body_vjp
    _body_vjp = fn


def _split(n_carry: int, n_xs: int, items: list) -> tuple[list, list, list]:
    return items[:n_carry], items[n_carry:n_carry + n_xs], items[n_carry + n_xs:]


def _bind(sym_types: list[TensorType], shapes: list[tuple]) -> dict[str, int]:
    """Sizes of the plain symbols of `sym_types` read off concrete shapes."""
    out: dict[str, int] = {}
    for t, shape in zip(sym_types, shapes):
        for d, n in zip(t.shape, shape):
            if isinstance(d, str) and d.isidentifier():
                out[d] = int(n)
    return out


# the results of the last few scans run by the reference kernel: the K nodes of one scan read the
# same arrays, so the body runs once per group (arrays are compared by value, copies held here)
_MEMO: list[tuple[tuple, list[np.ndarray], list[np.ndarray]]] = []


@register
class scan(Op):
    """(final carries, stacked ys) of ``carry, y_t = body(carry, x_t, consts)`` over t < length"""
    arity = None
    shape_attrs = ("length",)

    def infer(self, *types, body, n_carry, n_xs, length, reverse=False, index=0):
        if not isinstance(body, Graph):
            raise TypeError(f"body must be a Graph, got {type(body).__name__}")
        length = _length(length)
        ins = list(body.inputs)
        if len(ins) != len(types):
            raise ValueError(f"body {body.name!r} takes {len(ins)} inputs, the scan node gives "
                             f"{len(types)}")
        cs, xs, ks = _split(n_carry, n_xs, list(types))
        bc, bx, bk = _split(n_carry, n_xs, ins)
        for what, outer, inner, lead in (("carry", cs, bc, False), ("x", xs, bx, True),
                                         ("const", ks, bk, False)):
            for j, (t, v) in enumerate(zip(outer, inner)):
                want = TensorType((length,) + tuple(v.type.shape), v.type.dtype) if lead else v.type
                if t != want:
                    raise ValueError(f"{what} {j}: the body's input %{v.name} needs {want}, got {t}")
        outs = list(body.outputs.values())
        if len(outs) < n_carry:
            raise ValueError(f"body {body.name!r} returns {len(outs)} values for {n_carry} carries")
        for j, (o, c) in enumerate(zip(outs, bc)):
            if o.type != c.type:
                raise ValueError(f"carry {j}: the body takes {c.type} and returns {o.type}; a carry "
                                 "keeps its shape and dtype")
        if not 0 <= index < len(outs):
            raise ValueError(f"index {index} is out of range for {len(outs)} results")
        o = outs[index]
        return o.type if index < n_carry else TensorType((length,) + tuple(o.type.shape), o.type.dtype)

    def cost(self, *xs, y, body, n_carry, n_xs, length, **attrs):
        """The body's FLOPs times the trip count, shared among the scan's K result nodes (0 where
        a size stays unknown)."""
        from ..ir.types import eval_dim
        try:
            L = int(_length(length))
            cs, sx, ks = _split(n_carry, n_xs, list(xs))
            outer = cs + [TensorType(tuple(t.shape[1:]), t.dtype) for t in sx] + ks
            b = _bind([v.type for v in body.inputs], [t.shape for t in outer])
            bind = lambda t: TensorType(tuple(eval_dim(d, b) for d in t.shape), t.dtype)  # noqa: E731
            total = 0
            for n in body.nodes:
                at = dict(n.attrs)
                for k in n.op.shape_attrs:
                    if k in at:
                        at[k] = tuple(eval_dim(d, b) for d in at[k])
                total += n.op.cost(*[bind(i.type) for i in n.inputs], y=bind(n.output.type), **at)
            # the K nodes of one scan share its work: each counts 1/K of it
            return total * L // max(len(body.outputs), 1)
        except (KeyError, ValueError, TypeError):
            return 0

    def ref(self, *arrays, body, n_carry, n_xs, length, reverse=False, index=0):
        length = int(_length(length))
        key = (id(body), bool(reverse), int(length))
        for k, arrs, res in _MEMO:
            if k == key and len(arrs) == len(arrays) and all(
                    a is b or (a.shape == np.shape(b) and np.array_equal(a, b, equal_nan=True))
                    for a, b in zip(arrs, arrays)):
                return res[index]
        from .interpret import interpret
        cs, xs, ks = _split(n_carry, n_xs, list(arrays))
        bindings = _bind([v.type for v in body.inputs],
                         [np.shape(a) for a in cs] + [np.shape(x)[1:] for x in xs]
                         + [np.shape(a) for a in ks])
        carry = list(cs)
        out_vals = list(body.outputs.values())
        steps = range(length - 1, -1, -1) if reverse else range(length)
        ys: list[list[np.ndarray]] = [[None] * length for _ in out_vals[n_carry:]]  # type: ignore
        for t in steps:
            feeds = {v.name: a for v, a in zip(body.inputs, carry + [x[t] for x in xs] + ks)}
            env = interpret(body, feeds, bindings)
            res = [env[o.name] for o in out_vals]
            carry = res[:n_carry]
            for j, y in enumerate(res[n_carry:]):
                ys[j][t] = y
        stacked = [np.stack(y) if length else np.zeros((0,) + tuple(
            _static(o.type.shape, bindings)), o.type.dtype) for y, o in zip(ys, out_vals[n_carry:])]
        result = [np.asarray(c) for c in carry] + stacked
        # copies: a caller may change a fed array in place (finite differences do)
        _MEMO.append((key, [np.array(a, copy=True) for a in arrays], result))
        del _MEMO[:-4]
        return result[index]

    def vjp(self, g, *xs, y, body, n_carry, n_xs, length, reverse=False, index=0):
        return _scan_vjp(g, list(xs), body, n_carry, n_xs, length, reverse, index)

    def onnx(self, e, *xs, body, n_carry, n_xs, length, reverse=False, index=0):
        return e.scan(list(xs), body, n_carry, n_xs, length, reverse, index)

    def tvm(self, e, *xs, body, n_carry, n_xs, length, reverse=False, index=0):
        return e.scan(list(xs), body, n_carry, n_xs, length, reverse, index)


def scan_group(node: Any) -> tuple | None:
    """The key the K result nodes of one scan share (body, inputs, direction, length): a scan
    with K results is K `scan` nodes differing only in ``index``; None for any other node."""
    if node.op is not OPS["scan"]:
        return None
    a = node.attrs
    return (id(a["body"]), tuple(id(i) for i in node.inputs), a.get("reverse"), str(a.get("length")))


def _length(length):
    """The trip count held in the `length` attribute, a 1-tuple (a shape attribute)."""
    return normalize_dim(length[0] if isinstance(length, (tuple, list)) else length)


def _static(shape, bindings):
    return tuple(d if isinstance(d, int) else bindings.get(d, 0) for d in shape)


# ---- the gradient ---------------------------------------------------------------------------------

def _split_backward(bv: Graph, n_fwd_inputs: int) -> tuple[set, list]:
    """The backward nodes of a vjp graph (those reading a cotangent input), and the forward values
    (body inputs or forward nodes' outputs) they read: the residuals."""
    cot = set(bv.inputs[n_fwd_inputs:])
    bwd_vals = set(cot)
    bwd_nodes = []
    for n in bv.nodes:
        if any(i in bwd_vals for i in n.inputs):
            bwd_vals.add(n.output)
            bwd_nodes.append(n)
    needed: list[Value] = []
    seen: set = set()
    for n in bwd_nodes:
        for i in n.inputs:
            if i not in bwd_vals and i not in seen:
                seen.add(i)
                needed.append(i)
    return set(bwd_nodes), needed


def _scan_vjp(g, xs, body: Graph, n_carry: int, n_xs: int, length, reverse: bool, index: int):
    from ..frontends import dsl
    from ..frontends.dsl import Tensor
    if _body_vjp is None:  # pragma: no cover - autodiff registers it when it is imported
        raise RuntimeError("scan's gradient needs graphc.passes.autodiff")
    graph = g.graph
    cs, xv, ks = _split(n_carry, n_xs, list(xs))
    b_in = list(body.inputs)
    b_out = list(body.outputs.items())
    diff_in = [v.name for v in b_in if v.type.is_float]
    cot_outs = {k: None for k, v in b_out if v.type.is_float}
    bv = _body_vjp(body, diff_in, cot_outs, simplify=False, name=f"{body.name}_vjp")
    n_in = len(b_in)
    bwd_nodes, needed = _split_backward(bv, n_in)
    bv_in = bv.inputs[:n_in]
    bvc, bvx, bvk = _split(n_carry, n_xs, bv_in)
    # residuals: forward values read by the backward part that are not x_t or consts (those the
    # backward loop reads directly)
    fwd_nodes = [n for n in bv.nodes if n not in bwd_nodes]
    # loop-invariant forward values (W^T, constants) are computed once outside the loop and read
    # by the backward body as constants, not stacked L times
    variant = set(bvc) | set(bvx)
    for n in fwd_nodes:
        if any(i in variant for i in n.inputs):
            variant.add(n.output)
    invariant = [v for v in needed if v.producer is not None and v not in variant]
    inv_need = set(invariant)
    for n in reversed(fwd_nodes):
        if n.output in inv_need:
            inv_need.update(i for i in n.inputs if i.producer is not None)
    inv_nodes = [n for n in fwd_nodes if n.output in inv_need]
    res_vals = [v for v in needed if not (v in bvx or v in bvk) and v not in inv_need]

    # forward scan that also emits the residuals
    fb = Graph(f"{body.name}_fwd")
    vm: dict[Value, Value] = {}
    for v in bv_in:
        vm[v] = fb.add_input(v.name, v.type)
    for n in fwd_nodes:
        fb.copy_node(n, vm)
    for j, (k, _) in enumerate(b_out):
        fb.outputs[f"o{j}"] = vm[bv.outputs[k]]
    for j, r in enumerate(res_vals):
        fb.outputs[f"r{j}"] = vm[r]
    n_bout = len(b_out)
    _EXTENDS[fb] = body
    attrs = dict(body=fb, n_carry=n_carry, n_xs=n_xs, length=length, reverse=reverse)
    stacked = [dsl.apply("scan", xs, dict(attrs, index=n_bout + j), name="scan_residual")
               for j in range(len(res_vals))]

    # the backward body: carry (d_carry..., d_const_sum...), xs (residual_t..., x_t..., dy_t), consts
    float_c = [j for j, v in enumerate(bvc) if v.type.is_float]
    float_k = [j for j, v in enumerate(bvk) if v.type.is_float]
    cot_in = {v.target: v for v in bv.inputs[n_in:]}
    rb = Graph(f"{body.name}_bwd")
    rm: dict[Value, Value] = {}
    dcar = {j: rb.add_input(f"dc{j}", bvc[j].type) for j in float_c}
    dacc = {j: rb.add_input(f"dk{j}", bvk[j].type) for j in float_k}
    for j, r in enumerate(res_vals):
        rm[r] = rb.add_input(f"res{j}", r.type)
    for j, v in enumerate(bvx):
        rm[v] = rb.add_input(f"x{j}", v.type)
    ykey = b_out[index][0] if index >= n_carry else None
    dy = rb.add_input("dy", cot_in[ykey].type) if ykey is not None and ykey in cot_in else None
    for j, v in enumerate(bvk):
        rm[v] = rb.add_input(f"k{j}", v.type)
    for j, v in enumerate(invariant):  # computed once outside the loop, read as constants
        rm[v] = rb.add_input(f"inv{j}", v.type)
    for j, (k, _) in enumerate(b_out):
        c = cot_in.get(k)
        if c is None:
            continue
        if j < n_carry:
            rm[c] = dcar[j] if j in dcar else None
        elif k == ykey:
            rm[c] = dy
        else:
            rm[c] = None
    with rb:
        for c_in, v in list(rm.items()):
            if v is None:  # a ys cotangent that is zero here
                rm[c_in] = dsl.broadcast_to(dsl.constant(np.zeros((), c_in.type.dtype)),
                                            c_in.type.shape).value
    for n in bv.nodes:
        if n in bwd_nodes:
            rb.copy_node(n, rm)

    def d_of(v: Value) -> Value:
        o = bv.outputs[f"d_{v.name}"]
        if o not in rm:  # a zero gradient made from forward values only
            with rb:
                rm[o] = dsl.broadcast_to(dsl.constant(np.zeros((), o.type.dtype)), o.type.shape).value
        return rm[o]

    for j in float_c:
        rb.outputs[f"dc{j}"] = d_of(bvc[j])
    with rb:
        for j in float_k:
            rb.outputs[f"dk{j}"] = dsl.add(Tensor(dacc[j]), Tensor(d_of(bvk[j]))).value
    float_x = [j for j, v in enumerate(bvx) if v.type.is_float]
    for j in float_x:
        rb.outputs[f"dx{j}"] = d_of(bvx[j])

    gt = g.value if isinstance(g, Tensor) else g
    om: dict[Value, Value] = {v: (k.value if isinstance(k, Tensor) else k) for v, k in zip(bvk, ks)}
    for n in inv_nodes:
        graph.copy_node(n, om)
    inv_outer = [Tensor(om[v]) for v in invariant]
    with graph:
        def zeros(v):
            return dsl.broadcast_to(dsl.constant(np.zeros((), v.type.dtype)), v.type.shape)
        init_c = [(Tensor(gt) if j == index else zeros(cs[j])) for j in float_c]
        init_k = [zeros(ks[j]) for j in float_k]
        seq = list(stacked) + list(xv) + ([Tensor(gt)] if dy is not None else [])
        r_in = init_c + init_k + seq + list(ks) + inv_outer
        n_rc = len(init_c) + len(init_k)
        rattrs = dict(body=rb, n_carry=n_rc, n_xs=len(seq), length=length, reverse=not reverse)
        out: list[Any] = [None] * len(xs)
        for pos, j in enumerate(float_c):
            out[j] = dsl.apply("scan", r_in, dict(rattrs, index=pos), name="d_scan_carry")
        for pos, j in enumerate(float_k):
            out[n_carry + n_xs + j] = dsl.apply("scan", r_in, dict(rattrs, index=len(float_c) + pos),
                                                name="d_scan_const")
        for pos, j in enumerate(float_x):
            out[n_carry + j] = dsl.apply("scan", r_in, dict(rattrs, index=n_rc + pos), name="d_scan_xs")
    return tuple(out)
