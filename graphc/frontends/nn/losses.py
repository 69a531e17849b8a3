"""Loss modules wrapping `graphc.nn.functional` (torch.nn's class names and arguments)."""
from __future__ import annotations

from . import functional as F
from .module import Module


class _Loss(Module):
    def __init__(self, reduction: str = "mean"):
        super().__init__()
        self.reduction = reduction


class MSELoss(_Loss):
    """mean((input - target)^2)."""

    def forward(self, input, target):
        return F.mse_loss(input, target, self.reduction)


class L1Loss(_Loss):
    """mean(|input - target|)."""

    def forward(self, input, target):
        return F.l1_loss(input, target, self.reduction)


class HuberLoss(_Loss):
    """Quadratic within delta, linear outside."""

    def __init__(self, reduction: str = "mean", delta: float = 1.0):
        super().__init__(reduction)
        self.delta = delta

    def forward(self, input, target):
        return F.huber_loss(input, target, self.reduction, self.delta)


class SmoothL1Loss(_Loss):
    """Huber loss / beta."""

    def __init__(self, reduction: str = "mean", beta: float = 1.0):
        super().__init__(reduction)
        self.beta = beta

    def forward(self, input, target):
        return F.smooth_l1_loss(input, target, self.reduction, self.beta)


class BCELoss(_Loss):
    """Binary cross-entropy on probabilities."""

    def forward(self, input, target):
        return F.binary_cross_entropy(input, target, self.reduction)


class BCEWithLogitsLoss(_Loss):
    """Binary cross-entropy on logits (stable)."""

    def forward(self, input, target):
        return F.binary_cross_entropy_with_logits(input, target, self.reduction)


class CrossEntropyLoss(_Loss):
    """Softmax cross-entropy against int labels or probabilities, with label smoothing.

    Int labels that are a graph input must lie in [0, C): every batch is checked (see
    `graphc.nn.functional.cross_entropy` for what the graph itself does with one outside).
    """

    def __init__(self, reduction: str = "mean", label_smoothing: float = 0.0,
                 ignore_index: int | None = None):
        super().__init__(reduction)
        self.label_smoothing, self.ignore_index = label_smoothing, ignore_index

    def forward(self, input, target):
        return F.cross_entropy(input, target, self.reduction, self.label_smoothing,
                               ignore_index=self.ignore_index)


class NLLLoss(_Loss):
    """Negative log likelihood of int labels given log-probabilities (labels in [0, C), checked)."""

    def __init__(self, reduction: str = "mean", ignore_index: int | None = None):
        super().__init__(reduction)
        self.ignore_index = ignore_index

    def forward(self, input, target):
        return F.nll_loss(input, target, self.reduction, ignore_index=self.ignore_index)


class MultiMarginLoss(_Loss):
    """Multiclass hinge: sum_{j != y} max(0, margin - x[y] + x[j])^p / C."""

    def __init__(self, p: int = 1, margin: float = 1.0, reduction: str = "mean"):
        super().__init__(reduction)
        self.p, self.margin = p, margin

    def forward(self, input, target):
        return F.multi_margin_loss(input, target, self.p, self.margin, self.reduction)
