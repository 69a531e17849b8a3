"""The numpy backend: the reference interpreter (graphc.ops.interpret) behind the backend protocol."""
from __future__ import annotations

from typing import Any

from ..ir.graph import Graph
from ..ops.interpret import interpret, resolve_attrs  # noqa: F401  (re-exported for callers)
from .base import Backend, register_backend
from .executable import Executable

class NumpyExecutable(Executable):
    """Runs a graph with the numpy reference kernels (slow, exact, always available)."""

    backend = "numpy"

    def _run(self, feeds, bindings):
        env = interpret(self.graph, feeds, bindings)
        return [env[v.name] for v in self.graph.outputs.values()]

class NumpyBackend(Backend):
    """The reference interpreter: every primitive's `ref` kernel, on the CPU."""

    name = "numpy"
    devices = ("cpu",)
    lowering_rule = "ref"

    def compile(self, graph: Graph, device: str = "cpu", **options: Any) -> Executable:
        return NumpyExecutable(graph, **options)

register_backend(NumpyBackend())
