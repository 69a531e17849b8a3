"""History: per-epoch figures of a training run, and a loss/accuracy plot written as a PNG."""
from __future__ import annotations

import os
from typing import Any


class History:
    """Per-epoch metrics of `Trainer.fit`: `history.epochs` is a list of dicts.

    Each dict has "epoch" (1-based), "step" (global steps done), the training metrics averaged
    over the epoch ("loss", "accuracy", ...), "val_<name>" for validation metrics, "time" (s) and
    "examples_per_s".
    """

    def __init__(self, epochs: list[dict[str, Any]] | None = None):
        self.epochs: list[dict[str, Any]] = list(epochs or [])
        self.steps: list[float] = []  # the loss of every step, for fine-grained curves

    def append(self, row: dict[str, Any]) -> None:
        self.epochs.append(dict(row))

    def __getitem__(self, key: str) -> list[Any]:
        """The series of one metric across epochs, e.g. `history["val_accuracy"]`."""
        if not any(key in r for r in self.epochs):
            raise KeyError(f"history has no metric {key!r}; it has {', '.join(self.keys())}")
        return [r.get(key) for r in self.epochs]

    def keys(self) -> list[str]:
        out: list[str] = []
        for r in self.epochs:
            out += [k for k in r if k not in out]
        return out

    def __len__(self) -> int:
        return len(self.epochs)

    def last(self) -> dict[str, Any]:
        return self.epochs[-1] if self.epochs else {}

    def to_dict(self) -> dict[str, Any]:
        return {"epochs": self.epochs, "steps": self.steps}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "History":
        h = cls(d.get("epochs", []))
        h.steps = list(d.get("steps", []))
        return h

    def __repr__(self) -> str:
        last = ", ".join(f"{k}={v:.4g}" for k, v in self.last().items() if isinstance(v, float))
        return f"<History {len(self)} epochs{': ' + last if last else ''}>"

    def plot(self, path: str | os.PathLike, title: str | None = None) -> str:
        """Writes a PNG of the loss (and accuracy, when recorded) per epoch; returns the path."""
        # the Agg canvas directly: no pyplot global state, no display needed
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        keys = self.keys()
        acc = [k for k in ("accuracy", "val_accuracy") if k in keys]
        fig = Figure(figsize=(10 if acc else 5.5, 4))
        FigureCanvasAgg(fig)
        axes = fig.subplots(1, 2) if acc else [fig.subplots(1, 1)]
        axes = list(axes)
        ep = self["epoch"] if "epoch" in keys else list(range(1, len(self) + 1))
        for k in ("loss", "val_loss"):
            if k in keys:
                axes[0].plot(ep, self[k], marker="o", label=k)
        axes[0].set_xlabel("epoch")
        axes[0].set_ylabel("loss")
        if "loss" in keys and all(v is not None and v > 0 for v in self["loss"]):
            axes[0].set_yscale("log")
        axes[0].legend()
        axes[0].grid(alpha=0.3)
        if acc:
            for k in acc:
                axes[1].plot(ep, self[k], marker="o", label=k)
            axes[1].set_xlabel("epoch")
            axes[1].set_ylabel("accuracy")
            axes[1].legend()
            axes[1].grid(alpha=0.3)
        from matplotlib.ticker import MaxNLocator
        for ax in axes:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        path = os.fspath(path)
        fig.savefig(path, dpi=100)
        return path
