"""The optimizer contract: an update rule written as graph code.

An optimizer turns, for one parameter, (param, grad, state tensors, lr, step) into the new
parameter and the new state tensors, with graphc's DSL. The training-step compiler calls it once
per parameter while it builds the step graph, so the update runs inside the compiled graph and
never as a Python loop over arrays at run time.
"""
from __future__ import annotations

import functools
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

    Every optimizer takes torch.optim's form too: the parameters first, then its arguments,
    `optim.Adam(model.parameters(), lr=1e-3)`; the parameters are kept (`_params`) and train
    when the Trainer or `gc.training_step` is given no other parameter list. Without them,
    `optim.Adam(lr=1e-3)` or `optim.Adam(1e-3)` works as before.

    Attributes:
        lr: the base learning rate (the default schedule feeds it unchanged).
        slots: names of the per-parameter state tensors, as torch.optim names them.
    """

    lr: float = 1e-3
    slots: tuple[str, ...] = ()
    #: the parameters given torch-style as the first argument, or None
    _params: "list[Any] | None" = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is not None:
            cls.__init__ = _accept_params_first(init)  # type: ignore[method-assign]

    @property
    def params(self) -> "list[Any] | None":
        """The parameters given as the first argument (torch.optim's form), or None."""
        return self._params

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


def _accept_params_first(init: Any) -> Any:
    """Wraps an optimizer's __init__ so that a leading non-number argument is its parameters."""
    @functools.wraps(init)
    def wrapped(self: Optimizer, *args: Any, **kwargs: Any) -> None:
        if args and not isinstance(args[0], (int, float, np.number)):
            self._params = _param_list(args[0], type(self).__name__)
            args = args[1:]
        init(self, *args, **kwargs)
    return wrapped


def _param_list(params: Any, who: str) -> list[Any]:
    """The parameters of `Optimizer(params, ...)`: an iterable of Parameters, names or Tensors."""
    if hasattr(params, "parameters") and callable(params.parameters):  # a model itself
        params = params.parameters()
    if isinstance(params, (str, bytes)) or not hasattr(params, "__iter__"):
        raise TypeError(f"{who}: the first argument is the learning rate (a number) or the "
                        f"parameters (an iterable, e.g. model.parameters()), got {params!r}")
    items = list(params)
    if any(isinstance(p, dict) for p in items):
        raise TypeError(f"{who}: parameter groups (dicts with their own options) are not supported; "
                        "pass one list of parameters and one set of options")
    if not items:
        raise ValueError(f"{who}: got an empty parameter list")
    return items
