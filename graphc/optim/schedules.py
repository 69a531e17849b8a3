"""Learning-rate schedules, computed on the host and fed as the step graph's `lr` input.

A schedule is a callable `lr(step) -> float` of the 0-based global step, so changing it never
recompiles the step graph. Formulas follow torch.optim.lr_scheduler (with one scheduler step
per training step).
"""
from __future__ import annotations

import math
from typing import Callable

Schedule = Callable[[int], float]


class _Sched:
    def __call__(self, step: int) -> float:  # pragma: no cover - overridden
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in vars(self).items())})"


class constant(_Sched):
    """lr(t) = base_lr"""

    def __init__(self, base_lr: float):
        self.base_lr = base_lr

    def __call__(self, step: int) -> float:
        return float(self.base_lr)


class step_decay(_Sched):
    """`lr(t) = base_lr * gamma ** (t // step_size)` (torch StepLR)."""

    def __init__(self, base_lr: float, step_size: int, gamma: float = 0.1):
        if step_size <= 0:
            raise ValueError(f"step_size must be positive, got {step_size}")
        self.base_lr, self.step_size, self.gamma = base_lr, step_size, gamma

    def __call__(self, step: int) -> float:
        return float(self.base_lr * self.gamma ** (step // self.step_size))


class exponential(_Sched):
    """`lr(t) = base_lr * gamma ** t` (torch ExponentialLR)."""

    def __init__(self, base_lr: float, gamma: float):
        self.base_lr, self.gamma = base_lr, gamma

    def __call__(self, step: int) -> float:
        return float(self.base_lr * self.gamma ** step)


class cosine(_Sched):
    """`lr(t) = min_lr + (base_lr - min_lr) * (1 + cos(pi * min(t, T) / T)) / 2` (torch CosineAnnealingLR)."""

    def __init__(self, base_lr: float, total_steps: int, min_lr: float = 0.0):
        if total_steps <= 0:
            raise ValueError(f"total_steps must be positive, got {total_steps}")
        self.base_lr, self.total_steps, self.min_lr = base_lr, total_steps, min_lr

    def __call__(self, step: int) -> float:
        t = min(step, self.total_steps)
        return float(self.min_lr + (self.base_lr - self.min_lr) * (1 + math.cos(math.pi * t / self.total_steps)) / 2)


class linear_warmup(_Sched):
    """`lr(t) = after(t) * (start_factor + (1 - start_factor) * t / warmup_steps)` for `t < warmup_steps`, else `after(t)`."""

    def __init__(self, after: "Schedule | float", warmup_steps: int, start_factor: float = 0.0):
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
        self.after = after if callable(after) else constant(after)
        self.warmup_steps, self.start_factor = warmup_steps, start_factor

    def __call__(self, step: int) -> float:
        base = self.after(step)
        if step >= self.warmup_steps:
            return float(base)
        return float(base * (self.start_factor + (1 - self.start_factor) * step / self.warmup_steps))


def as_schedule(schedule: "Schedule | float | None", default_lr: float) -> Schedule:
    """A schedule from a callable, a number (constant) or None (the optimizer's lr)."""
    if schedule is None:
        return constant(default_lr)
    if callable(schedule):
        return schedule
    return constant(float(schedule))
