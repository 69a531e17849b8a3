"""EarlyStopping: when `Trainer.fit` stops because a monitored figure stopped improving."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class EarlyStopping:
    """Stops `fit` when `monitor` has not improved by `min_delta` for `patience` epochs.

    Attributes:
        monitor: a history key ("val_loss" by default; falls back to "loss" without validation).
        patience: epochs without improvement before stopping.
        min_delta: the smallest change that counts as an improvement.
        mode: "min", "max", or "auto" (max for names containing "acc").
        restore_best: put back the parameters of the best epoch when stopping.
    """

    monitor: str = "val_loss"
    patience: int = 3
    min_delta: float = 0.0
    mode: str = "auto"
    restore_best: bool = True

    def better(self, new: float, best: float | None) -> bool:
        mx = self.mode == "max" or (self.mode == "auto" and "acc" in self.monitor)
        if best is None:
            return True
        return new > best + self.min_delta if mx else new < best - self.min_delta
