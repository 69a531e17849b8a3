"""Executable: a compiled graph that checks its feeds and runs on one backend.

Every backend's executable derives from this class; its `run` checks the feeds with the graph's
`graphc.ir.feeds.FeedChecker` (names, ranks, sizes, dtypes, symbol bindings, declared integer
ranges), compiled on the first run, before `_run`.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..ir.feeds import FeedChecker, bind_feeds  # noqa: F401  (bind_feeds: re-exported)
from ..ir.graph import Graph


class Executable:
    """A compiled graph. Call it with numpy arrays by input name; get {output name: array}.

    Parameters are bound from their initial values unless fed by name. A backend may accept more
    (onnxruntime: device arrays such as OrtValues, bound without a copy; `outputs="ortvalue"`).
    """

    #: the name of the backend that made it (set by each backend's subclass)
    backend = ""

    def __init__(self, graph: Graph, device: str = "cpu"):
        self.graph = graph
        self.device = device
        self.input_names = [v.name for v in graph.inputs]
        self.output_names = list(graph.outputs)

    def __call__(self, **feeds: Any) -> dict[str, np.ndarray]:
        return self.run(feeds)

    def run(self, feeds: dict[str, Any]) -> dict[str, np.ndarray]:
        """Checks `feeds` (FeedError naming the input: see graphc.ir.feeds), runs, returns outputs."""
        checker = self.__dict__.get("_feed_checker")
        if checker is None or checker.graph is not self.graph:
            checker = self._feed_checker = FeedChecker(self.graph)
        arrays, bindings = checker.check(feeds)
        outs = self._run(arrays, bindings)
        return dict(zip(self.output_names, outs))

    def _run(self, feeds: dict[str, np.ndarray], bindings: dict[str, int]) -> list[np.ndarray]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.graph.name!r} on {self.backend}/{self.device}>"
