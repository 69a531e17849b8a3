"""Running a freshly traced graph on numpy arrays, for eager calls (`model(x_numpy)`, `fn(x)`).

It runs the reference interpreter (graphc.ops.interpret) directly, with the same feed checks as
every backend, so the frontends need no backend to answer an eager call.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..ir.feeds import bind_feeds
from ..ir.graph import Graph
from ..ir.verify import verify
from ..ops.interpret import interpret


def run_eagerly(graph: Graph, feeds: dict[str, Any]) -> dict[str, np.ndarray]:
    """Runs `graph` on `feeds` with the numpy reference kernels; {output name: array}.

    Raises:
        FeedError: a missing, unknown or mis-shaped feed.
        VerifyError: the graph is invalid.
    """
    verify(graph)
    arrays, bindings = bind_feeds(graph, feeds)
    env = interpret(graph, arrays, bindings)
    return {k: env[v.name] for k, v in graph.outputs.items()}
