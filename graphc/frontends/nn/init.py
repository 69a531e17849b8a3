"""In-place initializers for module parameters, as torch.nn.init (`xavier_uniform_(w)`).

Each draws from graphc's initializer generator (`gc.manual_seed` seeds it) unless given a seed,
and writes into the parameter's array; the factory forms `f(shape, dtype)` are in `gc.init`.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import initializers as _I
from ..initializers import fans

calculate_fan_in_and_fan_out = fans


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """The recommended gain for a nonlinearity (torch.nn.init.calculate_gain)."""
    if nonlinearity == "leaky_relu":
        a = 0.01 if param is None else param
        return math.sqrt(2.0 / (1 + a * a))
    if nonlinearity == "selu":
        return 3.0 / 4
    if nonlinearity in ("conv1d", "conv2d", "conv3d", "conv_transpose2d"):
        return 1.0
    return _I._gain(nonlinearity, 0.0)


def _fill(p: Any, init) -> Any:
    arr = p.data if hasattr(p, "data") and isinstance(p.data, np.ndarray) else p
    np.copyto(arr, init(arr.shape, arr.dtype.name))
    return p


def zeros_(p: Any) -> Any:
    """Fills with 0."""
    return _fill(p, _I.zeros())


def ones_(p: Any) -> Any:
    """Fills with 1."""
    return _fill(p, _I.ones())


def constant_(p: Any, value: float) -> Any:
    """Fills with `value`."""
    return _fill(p, _I.constant(value))


def normal_(p: Any, mean: float = 0.0, std: float = 1.0, seed: int | None = None) -> Any:
    """Fills from N(mean, std^2)."""
    return _fill(p, _I.normal(mean, std, seed))


def uniform_(p: Any, a: float = 0.0, b: float = 1.0, seed: int | None = None) -> Any:
    """Fills from U(a, b)."""
    return _fill(p, _I.uniform(a, b, seed))


def xavier_uniform_(p: Any, gain: float = 1.0, seed: int | None = None) -> Any:
    """Fills from U(-a, a), a = gain sqrt(6 / (fan_in + fan_out))."""
    return _fill(p, _I.xavier_uniform(gain, seed))


def xavier_normal_(p: Any, gain: float = 1.0, seed: int | None = None) -> Any:
    """Fills from N(0, std^2), std = gain sqrt(2 / (fan_in + fan_out))."""
    return _fill(p, _I.xavier_normal(gain, seed))


def kaiming_uniform_(p: Any, a: float = 0.0, mode: str = "fan_in",
                     nonlinearity: str = "leaky_relu", seed: int | None = None) -> Any:
    """Fills from U(-b, b), b = gain sqrt(3 / fan) (He)."""
    return _fill(p, _I.kaiming_uniform(a, mode, nonlinearity, seed))


def kaiming_normal_(p: Any, a: float = 0.0, mode: str = "fan_in",
                    nonlinearity: str = "leaky_relu", seed: int | None = None) -> Any:
    """Fills from N(0, std^2), std = gain / sqrt(fan) (He)."""
    return _fill(p, _I.kaiming_normal(a, mode, nonlinearity, seed))


he_uniform_, he_normal_ = kaiming_uniform_, kaiming_normal_


def default_uniform_(p: Any, fan_in: int) -> Any:
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)): PyTorch's default for Linear/Conv/RNN weights."""
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    return uniform_(p, -bound, bound)
