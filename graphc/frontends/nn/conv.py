"""Conv1d, ConvTranspose2d and AdaptiveAvgPool2d, with PyTorch's names, layouts and init.

All three are composites of existing primitives: Conv1d is conv2d over a size-1 height axis,
ConvTranspose2d the conv_transpose2d primitive plus a bias, AdaptiveAvgPool2d a mean, an
avg_pool2d or two constant averaging matrices (see `gc.adaptive_avg_pool2d`).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ...ir.errors import GraphBuildError, user_frame
from ...ir.types import canonical_dtype
from . import functional as F
from . import init
from .module import Module, Parameter


def _ints(v, n: int, what: str) -> tuple[int, ...]:
    if isinstance(v, (int, np.integer)):
        return (int(v),) * n
    out = tuple(int(x) for x in v)
    if len(out) != n:
        raise GraphBuildError(f"{user_frame()}: {what}: expected an int or {n} ints, got {v!r}")
    return out


def _check_channels(cls: str, in_channels: int, out_channels: int, groups: int,
                    padding_mode: str) -> None:
    if padding_mode != "zeros":
        raise GraphBuildError(f"{user_frame()}: {cls}: only padding_mode='zeros' is supported, got "
                              f"{padding_mode!r}")
    if groups < 1 or in_channels % groups or out_channels % groups:
        raise GraphBuildError(f"{user_frame()}: {cls}: in_channels {in_channels} and out_channels "
                              f"{out_channels} must divide by groups={groups}")


def _reset_conv(weight: Parameter, bias: Parameter | None) -> None:
    """PyTorch's default: kaiming_uniform(a=sqrt(5)) for the weight, U(+-1/sqrt(fan_in)) for the
    bias, fan_in = weight.shape[1] * kernel size (for a transposed conv: out / groups * kernel)."""
    init.kaiming_uniform_(weight, a=math.sqrt(5))
    if bias is not None:
        init.default_uniform_(bias, int(np.prod(weight.shape[1:])))


class Conv1d(Module):
    """1-D convolution over (N, C, L); weight (out, in / groups, k), bias (out,), as in PyTorch.

    `padding` may be an int, "valid" or "same" (stride 1, odd dilated kernel).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, padding_mode: str = "zeros",
                 dtype: str = "float32"):
        super().__init__()
        _check_channels("Conv1d", in_channels, out_channels, groups, padding_mode)
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size = _ints(kernel_size, 1, "Conv1d kernel_size")
        self.stride = _ints(stride, 1, "Conv1d stride")
        self.dilation = _ints(dilation, 1, "Conv1d dilation")
        self.groups = int(groups)
        self.padding = padding if padding in ("valid", "same") else _ints(padding, 1, "Conv1d padding")
        dt = canonical_dtype(dtype)
        self.weight = Parameter(np.zeros((out_channels, in_channels // groups) + self.kernel_size, dt))
        self.register_parameter("bias", Parameter(np.zeros((out_channels,), dt)) if bias else None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        _reset_conv(self.weight, self.bias)

    def forward(self, x):
        x = self.check_input(x, (3,), {1: self.in_channels}, f"(N, {self.in_channels}, L)")
        pad = self.padding if isinstance(self.padding, str) else self.padding[0]
        return F.conv1d(x, self.weight, self.bias, self.stride[0], pad, self.dilation[0],
                        self.groups)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}")


class ConvTranspose2d(Module):
    """Transposed 2-D convolution over (N, C, H, W); weight (in, out / groups, kh, kw) as in
    PyTorch. `forward(x, output_size=None)` picks the output_padding that gives output_size."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 output_padding=0, groups: int = 1, bias: bool = True, dilation=1,
                 padding_mode: str = "zeros", dtype: str = "float32"):
        super().__init__()
        _check_channels("ConvTranspose2d", in_channels, out_channels, groups, padding_mode)
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size = _ints(kernel_size, 2, "ConvTranspose2d kernel_size")
        self.stride = _ints(stride, 2, "ConvTranspose2d stride")
        self.padding = _ints(padding, 2, "ConvTranspose2d padding")
        self.output_padding = _ints(output_padding, 2, "ConvTranspose2d output_padding")
        self.dilation = _ints(dilation, 2, "ConvTranspose2d dilation")
        self.groups = int(groups)
        for op, s, d in zip(self.output_padding, self.stride, self.dilation):
            if not 0 <= op < max(s, d):
                raise GraphBuildError(f"{user_frame()}: ConvTranspose2d: output_padding "
                                      f"{self.output_padding} must be smaller than stride "
                                      f"{self.stride} or dilation {self.dilation}")
        dt = canonical_dtype(dtype)
        self.weight = Parameter(np.zeros((in_channels, out_channels // groups) + self.kernel_size, dt))
        self.register_parameter("bias", Parameter(np.zeros((out_channels,), dt)) if bias else None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        _reset_conv(self.weight, self.bias)

    def _output_padding(self, x, output_size: Sequence[int] | None) -> tuple[int, ...]:
        if output_size is None:
            return self.output_padding
        size = tuple(int(s) for s in output_size)[-2:]
        out = []
        for i in range(2):
            n = x.shape[2 + i]
            smallest = ((n - 1) * self.stride[i] - 2 * self.padding[i]
                        + self.dilation[i] * (self.kernel_size[i] - 1) + 1)
            extra = size[i] - smallest
            if not 0 <= extra < max(self.stride[i], self.dilation[i]):
                raise GraphBuildError(
                    f"{user_frame()}: {self.layer_name()}: output_size {tuple(output_size)} is not "
                    f"reachable from {tuple(x.shape)}: dim {i} can be {smallest} to "
                    f"{smallest + max(self.stride[i], self.dilation[i]) - 1}")
            out.append(extra)
        return tuple(out)

    def forward(self, x, output_size: Sequence[int] | None = None):
        x = self.check_input(x, (4,), {1: self.in_channels}, f"(N, {self.in_channels}, H, W)")
        return F.conv_transpose2d(x, self.weight, self.bias, self.stride, self.padding,
                                  self._output_padding(x, output_size), self.groups,
                                  self.dilation)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}")


class AdaptiveAvgPool2d(Module):
    """Mean over PyTorch's adaptive bins to `output_size` (an int, or a pair; None keeps a dim)
    of (N, C, H, W) or (C, H, W) with static H and W."""

    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def forward(self, x):
        x = self.check_input(x, (3, 4), None, "(N, C, H, W) or (C, H, W)")
        return F.adaptive_avg_pool2d(x, self.output_size)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"

