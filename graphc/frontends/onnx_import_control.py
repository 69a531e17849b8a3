"""ONNX import of control flow: If, Loop and Scan, with their subgraphs imported in place.

graphc graphs are static, so an If whose condition is known at import takes one branch, and one
decided at run time computes both branches and selects (both must give the same shapes); a Loop
runs a trip count and conditions known at import, and a Scan a static sequence length, unrolled
one body copy per step.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from . import dsl
from .dsl import Tensor
from .onnx_import_ops import Val, handler

if TYPE_CHECKING:  # pragma: no cover
    from .onnx_import import _Ctx

#: loops and scans are unrolled: at most this many body copies
_MAX_ITERATIONS = 4096


def _known_bool(v: Val) -> bool | None:
    """The truth of a condition known at import, or None when it is computed at run time."""
    if v is None or isinstance(v, Tensor) or np.asarray(v).dtype == object:
        return None
    return bool(np.asarray(v).reshape(-1)[0])


def _bind(gp, values: Sequence[Val]) -> dict[str, Val]:
    return {vi.name: v for vi, v in zip(gp.input, values)}


@handler("If")
def _if(c: _Ctx) -> Sequence[Val]:
    then_g, else_g = c.attr("then_branch"), c.attr("else_branch")
    cond = _known_bool(c.inputs[0])
    if cond is not None:
        g = then_g if cond else else_g
        return c.imp.run_subgraph(g, {}, "then_branch" if cond else "else_branch")
    a = c.imp.run_subgraph(then_g, {}, "then_branch")
    b = c.imp.run_subgraph(else_g, {}, "else_branch")
    pick = dsl.reshape(c.t(0), ())
    outs = []
    for i, (x, y) in enumerate(zip(a, b)):
        x = x if isinstance(x, Tensor) else c.imp.constant(np.asarray(x), c)
        y = y if isinstance(y, Tensor) else c.imp.constant(np.asarray(y), c)
        if x.shape != y.shape or x.dtype != y.dtype:
            raise c.fail(f"output {i}: the branches give {x.type} and {y.type}; a condition "
                         "decided at run time needs the same type from both")
        outs.append(dsl.where(pick, x, y))
    return outs


@handler("Loop")
def _loop(c: _Ctx) -> Sequence[Val]:
    body = c.attr("body")
    trips = None
    if c.has(0):
        trips = int(np.asarray(c.const(0, "trip count M")).reshape(-1)[0])
    cond: Val = c.const(1, "cond") if c.has(1) else np.asarray(True)
    state = list(c.inputs[2:])
    scans: list[list[Val]] = []
    i = 0
    while trips is None or i < trips:
        go = _known_bool(cond)
        if go is None:
            raise c.fail(f"the loop condition after iteration {i} is computed at run time; graphc "
                         "unrolls loops, so it must be known when importing")
        if not go:
            break
        if i >= _MAX_ITERATIONS:
            raise c.fail(f"more than {_MAX_ITERATIONS} iterations to unroll")
        outs = c.imp.run_subgraph(body, _bind(body, [np.asarray(i, np.int64), np.asarray(go)]
                                              + state), f"body iteration {i}")
        cond, state = outs[0], outs[1:1 + len(state)]
        scans.append(outs[1 + len(state):])
        i += 1
    n_scan = len(body.output) - 1 - len(state)
    if n_scan and not scans:
        raise c.fail("a Loop that runs no iteration has scan outputs of unknown shape")
    stacked = [_stack(c, [s[k] for s in scans], 0) for k in range(n_scan)]
    return list(state) + stacked


def _stack(c: _Ctx, parts: list[Val], axis: int) -> Tensor:
    ts = [p if isinstance(p, Tensor) else c.imp.constant(np.asarray(p), c) for p in parts]
    return dsl.stack(ts, axis)


@handler("Scan")
def _scan(c: _Ctx) -> Sequence[Val]:
    if c.opset < 9:
        raise c.fail("Scan before opset 9 (with a batch axis) is not supported")
    body = c.attr("body")
    n_in = int(c.attr("num_scan_inputs"))
    ins = list(c.inputs)
    state, xs = ins[:len(ins) - n_in], [c.t(len(ins) - n_in + j) for j in range(n_in)]
    in_axes = [int(a) for a in c.attr("scan_input_axes", [0] * n_in)]
    in_dirs = [int(d) for d in c.attr("scan_input_directions", [0] * n_in)]
    n_out = len(body.output) - len(state)
    out_axes = [int(a) for a in c.attr("scan_output_axes", [0] * n_out)]
    out_dirs = [int(d) for d in c.attr("scan_output_directions", [0] * n_out)]
    in_axes = [a % x.ndim for a, x in zip(in_axes, xs)]
    lengths = {x.shape[a] for x, a in zip(xs, in_axes)}
    if len(lengths) != 1 or not isinstance(next(iter(lengths)), int):
        raise c.fail(f"scan inputs need one static sequence length, got {sorted(map(str, lengths))}")
    steps = lengths.pop()
    if steps > _MAX_ITERATIONS:
        raise c.fail(f"more than {_MAX_ITERATIONS} steps to unroll")
    per_step: list[list[Val]] = []
    for t in range(steps):
        cur = [dsl.squeeze(dsl.slice(x, [steps - 1 - t if d else t], [(steps - 1 - t if d else t)
                                                                     + 1], [a]), a)
               for x, a, d in zip(xs, in_axes, in_dirs)]
        outs = c.imp.run_subgraph(body, _bind(body, state + cur), f"body step {t}")
        state = outs[:len(state)]
        per_step.append(outs[len(state):])
    results = []
    for k in range(n_out):
        parts = [p[k] for p in per_step]
        if out_dirs[k]:
            parts = parts[::-1]
        first = parts[0]
        rank = (first.ndim if isinstance(first, Tensor) else np.asarray(first).ndim) + 1
        results.append(_stack(c, parts, out_axes[k] % rank))
    return list(state) + results


# ---- optional values: graphc has none, so an optional tensor is always present -----------------

@handler("OptionalHasElement")
def _optional_has_element(c: _Ctx) -> Val:
    """True for a given (tensor) input, false when the input is left out."""
    return np.asarray(c.has(0))


@handler("OptionalGetElement")
def _optional_get_element(c: _Ctx) -> Val:
    if not c.has(0):
        raise c.fail("the optional input is empty")
    return c.inputs[0]
