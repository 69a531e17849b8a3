"""Dynamic loss scaling for float16 training, as graph code (torch.amp.GradScaler's rule).

The step graph carries three scalars as optimizer state:

- ``amp.loss_scale`` (float32, initially ``init_scale`` = 2**16): the backward pass differentiates
  ``loss * loss_scale``, so small float16 gradients do not flush to zero;
- ``amp.growth_tracker`` (int64): good steps since the scale last changed;
- ``amp.skipped`` (int64): steps skipped so far (the Trainer reports it).

Each step, as ``GradScaler.unscale_`` / ``step`` / ``update`` do: the gradients are multiplied by
``1 / loss_scale`` (float32); if any element of any gradient is NaN or Inf, the parameters and the
optimizer state keep their values (the update is skipped), the scale is multiplied by
``backoff_factor`` (0.5) and the tracker reset; otherwise the update is applied and the tracker
incremented, and when it reaches ``growth_interval`` (2000) the scale is multiplied by
``growth_factor`` (2) and the tracker reset. The optimizer sees ``step - skipped`` as its step
number, so Adam's bias correction counts applied updates only, as torch's optimizer does when
GradScaler skips ``optimizer.step()``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..frontends import dsl
from ..frontends.dsl import Tensor
from ..ir.graph import Graph, Value
from ..ir.roles import Role, update_output_name
from ..ir.types import TensorType

SCALE = "amp.loss_scale"
TRACKER = "amp.growth_tracker"
SKIPPED = "amp.skipped"
#: the forward graph's extra output: the loss times the scale, which autodiff differentiates
SCALED_LOSS = "amp.scaled_loss"
#: the step's per-step metric: 1.0 when this step's update was skipped, else 0.0
SKIP_METRIC = "amp.skip"


@dataclass(frozen=True)
class LossScaler:
    """GradScaler's settings (torch.amp.GradScaler's defaults).

    Example: ``gc.training_step(loss_fn, model, opt, precision="fp16",
    loss_scaler=LossScaler(init_scale=1024.0))``.
    """

    init_scale: float = 2.0 ** 16
    growth_factor: float = 2.0
    backoff_factor: float = 0.5
    growth_interval: int = 2000

    def scale_loss(self, fwd: Graph, loss: str) -> Graph:
        """A copy of `fwd` with the input ``amp.loss_scale`` and the output ``amp.scaled_loss``."""
        g, _ = fwd.clone()
        with g:
            s = g.add_input(SCALE, TensorType((), "float32"))
            lv = Tensor(g.outputs[loss])
            scaled = (lv if lv.dtype == "float32" else dsl.cast(lv, "float32")) * Tensor(s)
            g.outputs[SCALED_LOSS] = scaled.value
        return g

    def initial_state(self) -> dict[str, np.ndarray]:
        return {SCALE: np.asarray(self.init_scale, np.float32), TRACKER: np.asarray(0, np.int64),
                SKIPPED: np.asarray(0, np.int64)}

    def add_state_inputs(self, sg: Graph) -> dict[str, Value]:
        """The three carried scalars as OPTIMIZER_STATE inputs of the step graph `sg`."""
        return {SCALE: sg.add_input(SCALE, TensorType((), "float32"), Role.OPTIMIZER_STATE),
                TRACKER: sg.add_input(TRACKER, TensorType((), "int64"), Role.OPTIMIZER_STATE),
                SKIPPED: sg.add_input(SKIPPED, TensorType((), "int64"), Role.OPTIMIZER_STATE)}

    def unscale(self, sg: Graph, grads: list[Value], state: dict[str, Value]
                ) -> tuple[list[Value], Tensor]:
        """Gradients times 1/scale, and a bool scalar: every element of every one is finite."""
        with sg:
            inv = 1.0 / Tensor(state[SCALE])
            out, bad = [], None
            for gv in grads:
                g = Tensor(gv)
                u = g * (inv if g.dtype == "float32" else dsl.cast(inv, g.dtype))
                out.append(u.value)
                # NaN * 0 and Inf * 0 are NaN: the sum is 0 exactly when u is finite
                z = dsl.sum(u * 0.0)
                z = z if z.dtype == "float32" else dsl.cast(z, "float32")
                bad = z if bad is None else bad + z
            ok = bad == 0.0
        return out, ok

    def step_number(self, sg: Graph, step: Value, state: dict[str, Value]) -> Value:
        """The optimizer's step number: updates applied, not counting skipped steps."""
        with sg:
            return (Tensor(step) - Tensor(state[SKIPPED])).value

    def finish(self, sg: Graph, ok: Tensor, state: dict[str, Value]) -> Tensor:
        """Keeps the old parameters and state where `ok` is false; adds the scale's update.

        Returns the float32 scalar that is 1 when the update was skipped."""
        with sg:
            for key, src in list(sg.updates.items()):
                if src in state:
                    continue
                old, new = sg.value(src), sg.outputs[key]
                kept = dsl.where(ok, Tensor(new), Tensor(old))
                sg.outputs[key] = kept.value
                sg.set_update(key, kept.value, old)
            scale, tracker, skipped = (Tensor(state[k]) for k in (SCALE, TRACKER, SKIPPED))
            counted = dsl.where(ok, tracker + 1, 0)
            grow = ok & (counted >= self.growth_interval)
            new_scale = dsl.where(ok, dsl.where(grow, scale * self.growth_factor, scale),
                                  scale * self.backoff_factor)
            new_tracker = dsl.where(grow, 0, counted)
            new_skipped = skipped + dsl.cast(dsl.logical_not(ok), "int64")
            for name, t in ((SCALE, new_scale), (TRACKER, new_tracker), (SKIPPED, new_skipped)):
                key = update_output_name(name)
                sg.outputs[key] = t.value
                sg.set_update(key, t.value, state[name])
            skip = dsl.cast(dsl.logical_not(ok), "float32")
        return skip
