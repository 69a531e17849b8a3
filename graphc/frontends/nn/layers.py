"""Basic layers: Linear, Conv2d, pools, Flatten, Dropout, Embedding and activation modules.

Parameter names, layouts and default initializations follow PyTorch (Linear weight (out, in),
Conv2d weight (out, in / groups, kh, kw)), so state dicts convert one to one.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from ...ir.errors import GraphBuildError, user_frame
from ...ir.types import canonical_dtype
from .. import dsl
from . import functional as F
from . import init
from .module import Module, Parameter


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, (int, np.integer)) else tuple(int(x) for x in v)  # type: ignore


def _empty(shape, dtype: str) -> np.ndarray:
    return np.zeros(shape, canonical_dtype(dtype))


class Identity(Module):
    """y = x."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__()

    def forward(self, x):
        return x


class Linear(Module):
    """y = x W^T + b, W of shape (out_features, in_features).

    Args:
        in_features: size of the input's last axis.
        out_features: size of the output's last axis.
        bias: whether to add a learned bias.
        dtype: parameter dtype.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 dtype: str = "float32"):
        super().__init__()
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.weight = Parameter(_empty((out_features, in_features), dtype))
        self.register_parameter("bias", Parameter(_empty((out_features,), dtype)) if bias else None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's default: kaiming_uniform(a=sqrt(5)), i.e. U(+-1/sqrt(in)) for W and b."""
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            init.default_uniform_(self.bias, self.in_features)

    def forward(self, x):
        x = self.check_input(x, tuple(range(1, 9)), {-1: self.in_features},
                             f"(*, {self.in_features})")
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, " \
               f"bias={self.bias is not None}"


class Conv2d(Module):
    """2-D convolution over (N, C, H, W); weight (out, in / groups, kh, kw) as in PyTorch.

    `padding` may be an int, a pair, "valid" or "same" (stride 1).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, padding_mode: str = "zeros",
                 dtype: str = "float32"):
        super().__init__()
        if padding_mode != "zeros":
            raise GraphBuildError(f"{user_frame()}: Conv2d: only padding_mode='zeros' is supported")
        if in_channels % groups or out_channels % groups:
            raise GraphBuildError(f"{user_frame()}: Conv2d: in_channels {in_channels} and "
                                  f"out_channels {out_channels} must divide by groups={groups}")
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size, self.stride = _pair(kernel_size), _pair(stride)
        self.dilation, self.groups = _pair(dilation), int(groups)
        if padding == "valid":
            padding = 0
        elif padding == "same":
            if self.stride != (1, 1) or any(d * (k - 1) % 2 for d, k in zip(self.dilation,
                                                                              self.kernel_size)):
                raise GraphBuildError(f"{user_frame()}: Conv2d: padding='same' needs stride 1 and an "
                                      "odd (dilated) kernel")
            padding = tuple(d * (k - 1) // 2 for d, k in zip(self.dilation, self.kernel_size))
        self.padding = _pair(padding)
        kh, kw = self.kernel_size
        self.weight = Parameter(_empty((out_channels, in_channels // groups, kh, kw), dtype))
        self.register_parameter("bias", Parameter(_empty((out_channels,), dtype)) if bias else None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.weight.shape[1] * self.kernel_size[0] * self.kernel_size[1]
            init.default_uniform_(self.bias, fan_in)

    def forward(self, x):
        x = self.check_input(x, (4,), {1: self.in_channels}, f"(N, {self.in_channels}, H, W)")
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation,
                        self.groups)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}")


class _Pool2d(Module):
    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False):
        super().__init__()
        if ceil_mode:
            raise GraphBuildError(f"{user_frame()}: {type(self).__name__}: ceil_mode=True is not "
                                  "supported")
        self.kernel_size = _pair(kernel_size)
        self.stride = _pair(stride) if stride is not None else self.kernel_size
        self.padding = _pair(padding)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class MaxPool2d(_Pool2d):
    """Max over kernel_size windows of (N, C, H, W) (stride defaults to kernel_size)."""

    def forward(self, x):
        x = self.check_input(x, (4,), None, "(N, C, H, W)")
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding)


class AvgPool2d(_Pool2d):
    """Mean over kernel_size windows of (N, C, H, W) (stride defaults to kernel_size)."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
                 count_include_pad: bool = True):
        super().__init__(kernel_size, stride, padding, ceil_mode)
        self.count_include_pad = count_include_pad

    def forward(self, x):
        x = self.check_input(x, (4,), None, "(N, C, H, W)")
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.count_include_pad)


class Flatten(Module):
    """Merges dims start_dim..end_dim (default: all but the batch axis)."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x):
        return dsl.flatten(x, self.start_dim, self.end_dim)


class Dropout(Module):
    """Zeroes elements with probability p in training (scaling the rest by 1/(1-p)); identity in
    eval. Masks come from the graph's rng_seed / rng_step inputs (see gc.dropout)."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        if not 0 <= p < 1:
            raise GraphBuildError(f"{user_frame()}: Dropout: p must be in [0, 1), got {p}")
        self.p = float(p)

    def forward(self, x):
        return F.dropout(x, self.p, training=self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Embedding(Module):
    """Rows of a (num_embeddings, embedding_dim) table at integer indices; N(0, 1) init."""

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None,
                 dtype: str = "float32"):
        super().__init__()
        self.num_embeddings, self.embedding_dim = int(num_embeddings), int(embedding_dim)
        if padding_idx is not None and padding_idx < 0:
            padding_idx += num_embeddings
        self.padding_idx = padding_idx
        self.weight = Parameter(_empty((num_embeddings, embedding_dim), dtype))
        init.normal_(self.weight)
        if padding_idx is not None:
            self.weight.data[padding_idx] = 0

    def forward(self, x):
        x = dsl._tensor(x)
        if x.dtype not in ("int32", "int64"):
            raise GraphBuildError(f"{user_frame()}: {self.layer_name()} expects integer indices, got "
                                  f"{x.dtype} {tuple(x.shape)}")
        return F.embedding(x, self.weight, self.padding_idx)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}"


# ---- activations as modules ---------------------------------------------------------------------

class ReLU(Module):
    """max(x, 0)."""

    def __init__(self, inplace: bool = False):
        super().__init__()

    def forward(self, x):
        return F.relu(x)


class Sigmoid(Module):
    """1 / (1 + exp(-x))."""

    def forward(self, x):
        return F.sigmoid(x)


class Tanh(Module):
    """tanh(x)."""

    def forward(self, x):
        return F.tanh(x)


class LeakyReLU(Module):
    """x if x > 0 else negative_slope * x."""

    def __init__(self, negative_slope: float = 0.01, inplace: bool = False):
        super().__init__()
        self.negative_slope = negative_slope

    def forward(self, x):
        return F.leaky_relu(x, self.negative_slope)


class GELU(Module):
    """x Phi(x) (approximate='tanh' for the tanh form)."""

    def __init__(self, approximate: str = "none"):
        super().__init__()
        self.approximate = approximate

    def forward(self, x):
        return F.gelu(x, self.approximate)


class SiLU(Module):
    """x sigmoid(x)."""

    def forward(self, x):
        return F.silu(x)


class ELU(Module):
    """x if x > 0 else alpha (exp(x) - 1)."""

    def __init__(self, alpha: float = 1.0):
        super().__init__()
        self.alpha = alpha

    def forward(self, x):
        return F.elu(x, self.alpha)


class Softplus(Module):
    """log(1 + exp(beta x)) / beta."""

    def __init__(self, beta: float = 1.0):
        super().__init__()
        self.beta = beta

    def forward(self, x):
        return F.softplus(x, self.beta)


class Softmax(Module):
    """softmax along `dim`."""

    def __init__(self, dim: int = -1):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        return F.softmax(x, self.dim)


class LogSoftmax(Module):
    """log_softmax along `dim`."""

    def __init__(self, dim: int = -1):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        return F.log_softmax(x, self.dim)
