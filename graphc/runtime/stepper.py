"""make_stepper(): a training-step graph -> a Stepper on a registered backend."""
from __future__ import annotations

from typing import Any

from ..backends.base import Backend, get_backend
from ..backends.stepper import ExecutableStepper, Stepper
from ..ir.graph import Graph
from ..ir.program import program_of
from ..ir.verify import verify

__all__ = ["Stepper", "ExecutableStepper", "make_stepper"]


def make_stepper(graph: Graph, backend: "str | Backend" = "onnxruntime", device: str = "cpu",
                 seed: int = 0, **options: Any) -> Stepper:
    """A Stepper for a step graph on a registered backend ("numpy", "onnxruntime", "tvm", ...).

    Raises:
        GraphcError: `graph` is not a training step (see `gc.training_step`).
        ValueError: an unknown backend, or a device it cannot target.
    """
    b = get_backend(backend)
    b.check_device(device)
    program_of(graph)
    verify(graph)
    return b.stepper(graph, device, seed, **options)
