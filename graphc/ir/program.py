"""TrainingProgram: the typed description of a training-step graph, read from its roles.

`gc.training_step` returns the step Graph with `graph.spec` set to a TrainingProgram. Steppers,
exporters, checkpoints and the Trainer read it; nobody matches input names.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import GraphcError
from .roles import Role

if TYPE_CHECKING:  # pragma: no cover
    from .graph import Graph


@dataclass
class TrainingProgram:
    """Which inputs and outputs of a step graph play which role.

    Attributes:
        batch: names of the DATA inputs fed from the data each step.
        params: names of the carried PARAM inputs (trained), followed by the BUFFER inputs
            (batch-norm running statistics: carried the same way, no gradient, no optimizer state).
        state: names of the OPTIMIZER_STATE inputs (`<param>.<slot>`, torch.optim's slot names).
        step: name of the int64 STEP input (updates already applied).
        lr: name of the LR input.
        rng_seed: name of the RNG_SEED input, or None if the model draws no random numbers.
        metrics: scalar outputs returned to the host each step; the loss first.
        updates: output name -> the carried input it replaces on the next step.
        initial: initial values of every carried input.
        optimizer: the optimizer whose rule the graph contains.
        lr_dtype: dtype of the learning-rate input.
        reports: the PipelineReport of every pipeline that built the graph, by pipeline name.
    """

    batch: list[str]
    params: list[str]
    state: list[str]
    step: str
    lr: str
    rng_seed: str | None
    metrics: list[str]
    updates: dict[str, str]
    initial: dict[str, np.ndarray] = field(repr=False)
    optimizer: Any = None
    lr_dtype: str = "float32"
    reports: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, graph: "Graph", metrics: list[str], initial: dict[str, np.ndarray],
           optimizer: Any = None, reports: dict[str, Any] | None = None) -> "TrainingProgram":
        """Reads the program off `graph`'s roles and `graph.updates`; GraphcError if one is amiss."""
        def names(*roles: Role) -> list[str]:
            return [v.name for v in graph.inputs if v.role in roles]

        def one(role: Role, required: bool = True) -> str | None:
            v = graph.role_input(role)
            if v is None and required:
                raise GraphcError(f"graph {graph.name!r} has no {role} input; it is not a training step")
            return v.name if v is not None else None

        lr = graph.role_input(Role.LR)
        carried = names(Role.PARAM, Role.BUFFER, Role.OPTIMIZER_STATE)
        replaced = set(graph.updates.values())
        stale = [n for n in carried if n not in replaced]
        if stale:
            raise GraphcError(f"graph {graph.name!r}: carried input(s) {', '.join(stale)} have no "
                              "output that replaces them")
        missing = [n for n in carried if n not in initial]
        if missing:
            raise GraphcError(f"graph {graph.name!r}: no initial value for {', '.join(missing)}")
        return cls(batch=names(Role.DATA, Role.GRADIENT), params=names(Role.PARAM) + names(Role.BUFFER),
                   state=names(Role.OPTIMIZER_STATE), step=one(Role.STEP) or "",
                   lr=lr.name if lr is not None else "", rng_seed=one(Role.RNG_SEED, required=False),
                   metrics=list(metrics), updates=dict(graph.updates), initial=initial,
                   optimizer=optimizer, lr_dtype=lr.type.dtype if lr is not None else "float32",
                   reports=dict(reports or {}))

    @property
    def carried(self) -> list[str]:
        """Inputs carried from step to step: parameters (and buffers) then optimizer state."""
        return self.params + self.state

    def output_for(self, name: str) -> str:
        """The output that replaces carried input `name`."""
        for out, src in self.updates.items():
            if src == name:
                return out
        raise KeyError(f"no output replaces {name!r}; carried inputs are {', '.join(self.carried)}")

    def report(self) -> str:
        """Every pipeline's per-pass table, in the order they ran."""
        return "\n\n".join(f"[{name}]\n{rep}" for name, rep in self.reports.items())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (no arrays), e.g. for a stand-alone ONNX training script."""
        return {"batch": self.batch, "params": self.params, "state": self.state, "step": self.step,
                "lr": self.lr, Role.RNG_SEED.value: self.rng_seed, "metrics": self.metrics,
                "updates": self.updates, "lr_dtype": self.lr_dtype,
                "optimizer": repr(self.optimizer)}


#: the earlier public name of TrainingProgram
TrainingSpec = TrainingProgram


def program_of(graph: "Graph") -> TrainingProgram:
    """The TrainingProgram of a step graph; a clear error for any other graph."""
    spec = getattr(graph, "spec", None)
    if not isinstance(spec, TrainingProgram):
        raise GraphcError(f"graph {getattr(graph, 'name', graph)!r} is not a training step; build one "
                          "with gc.training_step(loss_graph, params, optimizer)")
    return spec
