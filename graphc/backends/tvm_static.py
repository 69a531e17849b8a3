"""Static-shape specialisation for the TVM backend: one compiled module per concrete size.

A graph with symbolic dims ("N") compiles into one module that serves every size, but its loops
have symbolic trip counts: a matmul whose rows are symbolic is padded to the register tile and
loses K blocking, elementwise loops cannot be split into whole vectors, and LLVM cannot unroll
them. When the sizes are known (a training step feeds batches of one size) the module compiled
with the symbols fixed runs faster (MLP training step: ~10% on one thread).

`StaticShapes` decides, per call, which module serves the inputs: the first `MAX_STATIC`
distinct sizes each get a module of their own (compiled on first use, then from the on-disk
cache); any further size runs on the symbolic module, so a stream of varying sizes does not
compile without end (torch.compile's "automatic dynamic" policy).
"""
from __future__ import annotations

import os
from typing import Sequence

from ..ir.errors import GraphcError
from ..ir.graph import Graph
from ..ir.types import parse_dim

#: distinct sizes one executable compiles static modules for; later sizes use the symbolic one
MAX_STATIC = 4
_ENV = "GRAPHC_TVM_STATIC_SHAPES"


def static_shapes_enabled(option: bool | None, default: bool) -> bool:
    """Whether to specialise: `option` if given, else GRAPHC_TVM_STATIC_SHAPES ("1"/"0"), else
    `default`.

    Raises:
        GraphcError: the variable holds something other than 0/1/true/false/on/off.
    """
    if option is not None:
        return bool(option)
    raw = os.environ.get(_ENV, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "on", "yes"):
        return True
    if raw in ("0", "false", "off", "no"):
        return False
    raise GraphcError(f"{_ENV}={raw!r}: expected 1 or 0")


def graph_symbols(graph: Graph) -> set[str]:
    """The symbols in the shapes of the graph's inputs and parameters."""
    out: set[str] = set()
    for v in graph.inputs + graph.params:
        for d in v.type.shape:
            out.update(parse_dim(d)[1])
    return out


def solve(graph: Graph, shapes: Sequence[Sequence[int]]) -> dict[str, int] | None:
    """The symbol sizes that make the graph's input types match `shapes` (one per input), or
    None where some symbol is not determined by a dim of the form `c*S` or the sizes disagree.

    >>> # inputs x: (N, 784), y: (N,) fed (128, 784) and (128,) -> {"N": 128}
    """
    bind: dict[str, int] = {}
    for v, shape in zip(graph.inputs, shapes):
        if len(shape) != len(v.type.shape):
            return None
        for d, n in zip(v.type.shape, shape):
            coef, syms = parse_dim(d)
            if len(syms) == 1 and sum(syms.values()) == 1 and coef > 0:
                s = next(iter(syms))
                if n % coef or bind.setdefault(s, n // coef) != n // coef:
                    return None
    for v, shape in zip(graph.inputs, shapes):  # products of symbols ("N*T"), constants
        for d, n in zip(v.type.shape, shape):
            coef, syms = parse_dim(d)
            if any(s not in bind for s in syms):
                return None
            size = coef
            for s in syms.elements():
                size *= bind[s]
            if size != n:
                return None
    return bind


class StaticShapes:
    """Which module serves a call: a bind dict for a static module, or None for the symbolic one.

    Args:
        graph: the graph being compiled.
        enabled: specialise at all (False: always the symbolic module).
    """

    def __init__(self, graph: Graph, enabled: bool):
        self.graph = graph
        self.symbols = graph_symbols(graph)
        self.enabled = enabled and bool(self.symbols)
        self._seen: dict[tuple, dict[str, int] | None] = {}
        self._count = 0

    def bind_for(self, shapes: tuple) -> dict[str, int] | None:
        """The bind dict for inputs of these shapes (a tuple of shape tuples), or None."""
        got = self._seen.get(shapes, False)
        if got is not False:
            return got  # type: ignore[return-value]
        bind = solve(self.graph, shapes) if self.enabled and self._count < MAX_STATIC else None
        if bind is not None and set(bind) >= self.symbols:
            self._count += 1
        else:
            bind = None
        self._seen[shapes] = bind
        return bind
