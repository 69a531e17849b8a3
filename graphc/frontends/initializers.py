"""Parameter initializers: callables `f(shape, dtype) -> ndarray`, seeded and PyTorch-compatible."""
from __future__ import annotations

import contextlib
import math
from typing import Callable, Iterator

import numpy as np

Initializer = Callable[[tuple, str], np.ndarray]
_STATE = {"rng": np.random.default_rng(0)}


def manual_seed(seed: int) -> None:
    """Seeds the generator used by initializers that are not given their own seed."""
    _STATE["rng"] = np.random.default_rng(seed)


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Within the block, initializers draw from a generator seeded with `seed`; afterwards the
    caller's generator continues where it was (building one model does not move its stream).

    Example:
        >>> with gc.init.seeded(0): model = nn.Linear(4, 2)
    """
    saved = _STATE["rng"]
    manual_seed(seed)
    try:
        yield
    finally:
        _STATE["rng"] = saved


def _rng(seed: int | None) -> np.random.Generator:
    return _STATE["rng"] if seed is None else np.random.default_rng(seed)


def fans(shape: tuple) -> tuple[int, int]:
    """(fan_in, fan_out) as torch.nn.init computes them: weights are (out, in, *kernel)."""
    if len(shape) < 2:
        n = int(shape[0]) if shape else 1
        return n, n
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return int(shape[1]) * receptive, int(shape[0]) * receptive


def zeros() -> Initializer:
    """All zeros."""
    return lambda shape, dtype="float32": np.zeros(shape, dtype)


def ones() -> Initializer:
    """All ones."""
    return lambda shape, dtype="float32": np.ones(shape, dtype)


def constant(value: float) -> Initializer:
    """All `value`."""
    return lambda shape, dtype="float32": np.full(shape, value, dtype)


def normal(mean: float = 0.0, std: float = 1.0, seed: int | None = None) -> Initializer:
    """N(mean, std^2)."""
    return lambda shape, dtype="float32": _rng(seed).normal(mean, std, shape).astype(dtype)


def uniform(a: float = 0.0, b: float = 1.0, seed: int | None = None) -> Initializer:
    """U(a, b)."""
    return lambda shape, dtype="float32": _rng(seed).uniform(a, b, shape).astype(dtype)


def xavier_uniform(gain: float = 1.0, seed: int | None = None) -> Initializer:
    """U(-a, a), a = gain * sqrt(6 / (fan_in + fan_out)) (Glorot)."""
    def f(shape, dtype="float32"):
        fi, fo = fans(shape)
        a = gain * math.sqrt(6.0 / (fi + fo))
        return _rng(seed).uniform(-a, a, shape).astype(dtype)
    return f


def xavier_normal(gain: float = 1.0, seed: int | None = None) -> Initializer:
    """N(0, std^2), std = gain * sqrt(2 / (fan_in + fan_out))."""
    def f(shape, dtype="float32"):
        fi, fo = fans(shape)
        return _rng(seed).normal(0, gain * math.sqrt(2.0 / (fi + fo)), shape).astype(dtype)
    return f


def _gain(nonlinearity: str, a: float) -> float:
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        return math.sqrt(2.0 / (1 + a * a))
    if nonlinearity in ("linear", "sigmoid"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    raise ValueError(f"unknown nonlinearity {nonlinearity!r}")


def kaiming_uniform(a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu",
                    seed: int | None = None) -> Initializer:
    """U(-b, b), b = gain * sqrt(3 / fan) (He)."""
    def f(shape, dtype="float32"):
        fan = fans(shape)[0 if mode == "fan_in" else 1]
        b = _gain(nonlinearity, a) * math.sqrt(3.0 / fan)
        return _rng(seed).uniform(-b, b, shape).astype(dtype)
    return f


def kaiming_normal(a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu",
                   seed: int | None = None) -> Initializer:
    """N(0, std^2), std = gain / sqrt(fan) (He)."""
    def f(shape, dtype="float32"):
        fan = fans(shape)[0 if mode == "fan_in" else 1]
        return _rng(seed).normal(0, _gain(nonlinearity, a) / math.sqrt(fan), shape).astype(dtype)
    return f


he_uniform, he_normal = kaiming_uniform, kaiming_normal
