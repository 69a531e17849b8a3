"""What a graph input or parameter is for, as a type: its `Role`.

A value's role is part of the IR, not a convention on its name: the training-step compiler, the
steppers, the exporters and the checkpoints ask `value.role` (and `graph.updates` for which output
replaces which state), never a prefix. This module is also the one place that spells the default
names the runtime gives role-carrying values and state-update outputs, so that exported models
keep readable, stable names (`rng_seed`, `new.fc1.weight`).
"""
from __future__ import annotations

import enum


class Role(enum.Enum):
    """The part a graph input or parameter plays.

    Attributes:
        DATA: an ordinary input fed by the caller each run (a training batch).
        PARAM: a trainable parameter (a graph param, or a step-graph input carried between steps).
        BUFFER: state the forward pass updates but no gradient trains (batch-norm running
            statistics); its new value is a graph output listed in `graph.updates`.
        OPTIMIZER_STATE: an optimizer slot (`<param>.<slot>`: momentum buffer, Adam moments).
        RNG_SEED: the int64 seed of counter-based random numbers (dropout masks).
        RNG_COUNTER: the int64 counter of counter-based random numbers (wired to the step).
        STEP: the int64 number of updates already applied.
        LR: the learning rate, fed each step from a host-side schedule.
        COTANGENT: a cotangent fed to a `gc.vjp` graph; `value.target` names the output.
        TANGENT: the vector of a `gc.hvp` graph; `value.target` names the value it pairs with.
        GRADIENT: a gradient fed to an optimizer-only graph; `value.target` names the parameter.
    """

    DATA = "data"
    PARAM = "param"
    BUFFER = "buffer"
    OPTIMIZER_STATE = "optimizer_state"
    RNG_SEED = "rng_seed"
    RNG_COUNTER = "rng_counter"
    STEP = "step"
    LR = "lr"
    COTANGENT = "cotangent"
    TANGENT = "tangent"
    GRADIENT = "gradient"

    @property
    def carried(self) -> bool:
        """True for roles whose value a training step replaces with an output (state)."""
        return self in (Role.PARAM, Role.BUFFER, Role.OPTIMIZER_STATE)

    @property
    def fed_by_runtime(self) -> bool:
        """True for scalar inputs the runtime feeds itself (seed, counter, step, learning rate)."""
        return self in (Role.RNG_SEED, Role.RNG_COUNTER, Role.STEP, Role.LR)

    def __str__(self) -> str:
        return self.value


#: default names of the role-carrying inputs the DSL and the training-step compiler create
RNG_SEED_NAME = "rng_seed"
RNG_COUNTER_NAME = "rng_step"
STEP_NAME = "step"
LR_NAME = "lr"

_UPDATE_PREFIX = "new."
_BUFFER_UPDATE_PREFIX = "state:"


def update_output_name(state: str) -> str:
    """The step-graph output holding the next value of carried input `state` (`'new.<state>'`)."""
    return _UPDATE_PREFIX + state


def buffer_output_name(buffer: str) -> str:
    """The loss-graph output holding a buffer's value after the forward pass (`'state:<buffer>'`)."""
    return _BUFFER_UPDATE_PREFIX + buffer


def gradient_input_name(param: str) -> str:
    """The input of an optimizer-only graph that feeds the gradient of `param` (`'grad.<param>'`)."""
    return f"grad.{param}"


def parse_role(text: str) -> Role:
    """The Role spelled `text` (its value, as the printer writes it); ValueError otherwise."""
    try:
        return Role(text)
    except ValueError:
        raise ValueError(f"unknown role {text!r}; roles are {', '.join(r.value for r in Role)}") from None
