"""Normalization layers: BatchNorm1d/2d (running statistics as graph state), LayerNorm and
GroupNorm."""
from __future__ import annotations

import numpy as np

from ...ir.errors import GraphBuildError, user_frame
from ...ir.types import canonical_dtype
from . import functional as F
from .module import Buffer, Module, Parameter, update_buffer


class _BatchNorm(Module):
    _ranks: tuple[int, ...] = ()
    _expected = ""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1,
                 affine: bool = True, track_running_stats: bool = True, dtype: str = "float32"):
        super().__init__()
        dt = canonical_dtype(dtype)
        self.num_features, self.eps, self.momentum = int(num_features), float(eps), float(momentum)
        self.affine, self.track_running_stats = affine, track_running_stats
        if affine:
            self.weight = Parameter(np.ones(num_features, dt))
            self.bias = Parameter(np.zeros(num_features, dt))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.running_mean = Buffer(np.zeros(num_features, dt))
            self.running_var = Buffer(np.ones(num_features, dt))
            # counted as in PyTorch (graphc always uses the fixed momentum, not a running average)
            self.num_batches_tracked = Buffer(np.zeros((), np.int64))
        else:
            for n in ("running_mean", "running_var", "num_batches_tracked"):
                object.__setattr__(self, n, None)

    def forward(self, x):
        x = self.check_input(x, self._ranks, {1: self.num_features},
                             self._expected.format(C=self.num_features))
        use_batch = self.training or not self.track_running_stats
        rm = self.running_mean if self.track_running_stats else None
        rv = self.running_var if self.track_running_stats else None
        if use_batch and rm is not None:
            y, new_m, new_v = F.batch_norm(x, rm.__graphc_tensor__(x.graph),
                                           rv.__graphc_tensor__(x.graph), self.weight, self.bias,
                                           True, self.momentum, self.eps)
            update_buffer(self.running_mean, new_m)
            update_buffer(self.running_var, new_v)
            nbt = self.num_batches_tracked.__graphc_tensor__(x.graph)
            update_buffer(self.num_batches_tracked, nbt + 1)
            return y
        y, _, _ = F.batch_norm(x, None if use_batch else rm, None if use_batch else rv,
                               self.weight, self.bias, use_batch, self.momentum, self.eps)
        return y

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


class BatchNorm1d(_BatchNorm):
    """Batch norm over (N, C) or (N, C, L): batch statistics in training (running statistics
    updated as `state:` graph outputs), running statistics in eval."""

    _ranks = (2, 3)
    _expected = "(N, {C}) or (N, {C}, L)"


class BatchNorm2d(_BatchNorm):
    """Batch norm over (N, C, H, W), per channel; see BatchNorm1d."""

    _ranks = (4,)
    _expected = "(N, {C}, H, W)"


class LayerNorm(Module):
    """(x - mean) / sqrt(var + eps) * weight + bias over the trailing `normalized_shape` dims."""

    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True,
                 bias: bool = True, dtype: str = "float32"):
        super().__init__()
        shape = (int(normalized_shape),) if isinstance(normalized_shape, (int, np.integer)) \
            else tuple(int(d) for d in normalized_shape)
        self.normalized_shape, self.eps = shape, float(eps)
        dt = canonical_dtype(dtype)
        if elementwise_affine:
            self.weight = Parameter(np.ones(shape, dt))
            self.register_parameter("bias", Parameter(np.zeros(shape, dt)) if bias else None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def forward(self, x):
        n = len(self.normalized_shape)
        x = self.check_input(x, tuple(range(n, 9)),
                             {-n + i: d for i, d in enumerate(self.normalized_shape)},
                             "(*, " + ", ".join(map(str, self.normalized_shape)) + ")")
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}"


class GroupNorm(Module):
    """Normalizes each sample over groups of channels of (N, C, *): (x - mean) / sqrt(var + eps)
    per (sample, group), then a per-channel weight (ones) and bias (zeros), as in PyTorch."""

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5, affine: bool = True,
                 dtype: str = "float32"):
        super().__init__()
        if num_groups < 1 or num_channels % num_groups:
            raise GraphBuildError(f"{user_frame()}: GroupNorm: num_channels {num_channels} must "
                                  f"divide by num_groups {num_groups}")
        self.num_groups, self.num_channels = int(num_groups), int(num_channels)
        self.eps, self.affine = float(eps), affine
        dt = canonical_dtype(dtype)
        if affine:
            self.weight = Parameter(np.ones(num_channels, dt))
            self.bias = Parameter(np.zeros(num_channels, dt))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def forward(self, x):
        x = self.check_input(x, tuple(range(2, 9)), {1: self.num_channels},
                             f"(N, {self.num_channels}, *)")
        return F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}"
