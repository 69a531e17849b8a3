"""bind_feeds: the one place where arrays fed to a graph are checked against its inputs."""
from __future__ import annotations

from typing import Any

import numpy as np

from .errors import FeedError
from .graph import Graph
from .types import parse_dim


def bind_feeds(graph: Graph, feeds: dict[str, Any], allow_params: bool = True
               ) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Checks feeds against the graph's inputs; returns (arrays by name, symbol -> size).

    Raises FeedError for unknown names, missing inputs, wrong rank/size/dtype, or a symbol bound
    to two different sizes.
    """
    known = {v.name: v for v in graph.inputs}
    params = {v.name: v for v in graph.params}
    unknown = [k for k in feeds if k not in known and not (allow_params and k in params)]
    if unknown:
        raise FeedError(f"graph {graph.name!r} has no input named {', '.join(map(repr, unknown))}; "
                        f"its inputs are {', '.join(known) or '(none)'}")
    missing = [k for k in known if k not in feeds]
    if missing:
        raise FeedError(f"graph {graph.name!r}: missing feed for input {', '.join(map(repr, missing))}")
    out: dict[str, np.ndarray] = {}
    bindings: dict[str, int] = {}
    where: dict[str, str] = {}
    for name, arr in feeds.items():
        v = known.get(name) or params[name]
        a = np.asarray(arr)
        want = np.dtype(v.type.dtype)
        if a.dtype != want:
            same_kind = (a.dtype.kind == want.kind or (a.dtype.kind in "iu" and want.kind in "iu"))
            if not same_kind:
                raise FeedError(f"feed {name!r} has dtype {a.dtype}, expected {want} "
                                f"(declared {v.type})")
            a = a.astype(want)
        if a.ndim != v.type.rank:
            raise FeedError(f"feed {name!r} has shape {a.shape}, expected {v.type} (rank {v.type.rank})")
        for axis, (d, n) in enumerate(zip(v.type.shape, a.shape)):
            if isinstance(d, int):
                if d != n:
                    raise FeedError(f"feed {name!r} has shape {a.shape}, expected {v.type}: "
                                    f"dim {axis} is {n}, expected {d}")
                continue
            coef, syms = parse_dim(d)
            if coef == 1 and len(syms) == 1 and sum(syms.values()) == 1:
                s = next(iter(syms))
                if s in bindings and bindings[s] != n:
                    raise FeedError(f"feed {name!r} has shape {a.shape}: dim {axis} ({s}) is {n}, but "
                                    f"{where[s]} set {s} = {bindings[s]}")
                bindings.setdefault(s, n)
                where.setdefault(s, f"feed {name!r}")
        out[name] = a
    return out, bindings
