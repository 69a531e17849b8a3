"""check_lowering(): every node of a graph whose op has no lowering for a backend, all at once."""
from __future__ import annotations

from ..ir.graph import Graph
from .base import Backend, MissingLowering, get_backend

__all__ = ["MissingLowering", "check_lowering"]


def check_lowering(graph: Graph, backend: "str | Backend" = "tvm", raise_on_missing: bool = False
                   ) -> list[MissingLowering]:
    """Lists every node whose primitive has no lowering for `backend`, with its source line.

    Args:
        graph: the graph to check.
        backend: a registered backend's name ("tvm", "onnxruntime" or "onnx", "numpy", or a
            third party's) or a Backend.
        raise_on_missing: raise a GraphcError naming all of them instead of returning.

    Returns:
        One entry per offending node, in graph order (empty when everything lowers).

    Raises:
        ValueError: `backend` is not registered.
    """
    return get_backend(backend).check_lowering(graph, raise_on_missing)
