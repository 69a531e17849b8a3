"""The optimizer contract: an update rule written as graph code.

An optimizer turns, for one parameter, (param, grad, state tensors, lr, step) into the new
parameter and the new state tensors, with graphc's DSL. The training-step compiler calls it once
per parameter while it builds the step graph, so the update runs inside the compiled graph and
never as a Python loop over arrays at run time.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..frontends import dsl
from ..frontends.dsl import Tensor


@dataclass
class UpdateContext:
    """What an update rule may read besides its parameter: the step's shared scalars.

    Attributes:
        lr: the learning rate, a scalar input of the step graph (fed from the host schedule).
        step: int64 scalar, the number of updates already applied (0 on the first step).
    """

    lr: Tensor
    step: Tensor
    _cache: dict[Any, Tensor] | None = None

    def scalar(self, key: str, dtype: str, build) -> Tensor:
        """A per-dtype scalar built once per step graph (so all parameters share it)."""
        if self._cache is None:
            self._cache = {}
        k = (key, dtype)
        if k not in self._cache:
            self._cache[k] = build()
        return self._cache[k]

    def lr_as(self, dtype: str) -> Tensor:
        """The learning rate in `dtype` (a cast only when the parameter's dtype differs)."""
        if self.lr.dtype == dtype:
            return self.lr
        return self.scalar("lr", dtype, lambda: dsl.cast(self.lr, dtype))

    def t(self, dtype: str) -> Tensor:
        """The 1-based step number torch.optim calls `step`, as a float scalar."""
        return self.scalar("t", dtype, lambda: dsl.cast(self.step + np.int64(1), dtype))

    def first(self) -> Tensor:
        """bool scalar: this is the first update (torch.optim's lazily created state)."""
        return self.scalar("first", "bool", lambda: dsl.equal(self.step, np.int64(0)))


class Optimizer:
    """Base class: subclasses list their state slots and write `update` in the DSL.

    Attributes:
        lr: the base learning rate (the default schedule feeds it unchanged).
        slots: names of the per-parameter state tensors, as torch.optim names them.
    """

    lr: float = 1e-3
    slots: tuple[str, ...] = ()

    def init_state(self, slot: str, param: np.ndarray) -> np.ndarray:
        """Initial value of one state tensor for a parameter (zeros unless overridden)."""
        return np.zeros_like(param)

    def active_slots(self) -> tuple[str, ...]:
        """The slots this configuration actually uses (e.g. no momentum buffer at momentum=0)."""
        return self.slots

    def update(self, p: Tensor, g: Tensor, state: dict[str, Tensor], ctx: UpdateContext
               ) -> tuple[Tensor, dict[str, Tensor]]:
        """Returns (new parameter, new state by slot name)."""
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        """The constructor arguments, for checkpoints and reprs."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"


def c(x: float, like: Tensor) -> Tensor:
    """A scalar constant in the dtype of `like` (keeps float64 updates in float64)."""
    return dsl.constant(np.asarray(x, like.dtype), graph=like.graph)
