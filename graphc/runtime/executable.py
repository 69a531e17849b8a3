"""compile(): a Graph -> an Executable that checks feeds and runs on a registered backend."""
from __future__ import annotations

from typing import Any

from ..backends.base import Backend, available_backends, get_backend
from ..backends.executable import Executable, bind_feeds
from ..ir.graph import Graph
from ..ir.verify import verify

__all__ = ["Executable", "bind_feeds", "compile", "available_backends"]

_DEVICES = ("cpu", "cuda")


def compile(graph: Any, backend: "str | Backend" = "numpy", device: str = "cpu",
            **options: Any) -> Executable:
    """Compiles `graph` for a backend.

    Args:
        graph: the graph to run (a Graph or a `gc.function`; it is verified first).
        backend: a registered backend: "numpy" (the reference interpreter), "onnxruntime",
            "tvm", or one a third party registered with `gc.register_backend`.
        device: "cpu" or "cuda". Asking for a device the backend cannot target raises.
        **options: backend options (e.g. `target` for tvm, `opset` for onnxruntime).

    Returns:
        An Executable: `exe(**feeds) -> {output name: numpy array}`.

    Raises:
        ValueError: an unknown backend or device.

    Example:
        >>> exe = gc.compile(g, backend="onnxruntime"); exe(x=x)["loss"]
    """
    b = get_backend(backend)
    if device not in _DEVICES:
        raise ValueError(f"unknown device {device!r}; choose 'cpu' or 'cuda'")
    b.check_device(device)
    if not isinstance(graph, Graph) and isinstance(getattr(graph, "graph", None), Graph):
        graph = graph.graph
    verify(graph)
    return b.compile(graph, device, **options)
