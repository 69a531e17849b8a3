"""Trainer: fit / evaluate / predict around a compiled training step, with checkpoints.

    trainer = gc.Trainer(loss_fn, model, optimizer=optim.Adam(1e-3), backend="onnxruntime")
    history = trainer.fit(train, epochs=5, batch_size=128, validation=test, checkpoint="run/ckpt")
    history.plot("loss.png")

`loss_fn` is a loss Graph or a `gc.function`; every parameter is trained unless
`model_or_params` says otherwise. The step graph (forward, backward, optimizer) is compiled once;
the learning-rate schedule is fed per step; parameters stay on the backend until `fit` returns,
when the trained values are written back into the graph's parameters and the model.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from ..ir.errors import GraphcError
from ..ir.graph import Graph
from ..ir.program import program_of
from ..ir.roles import Role
from ..optim.base import Optimizer
from ..optim.schedules import as_schedule
from .checkpoint import CheckpointError, check_compatible, load_checkpoint, save_checkpoint
from .data import batches, num_batches
from .history import History
from .metrics import prune, with_metrics
from .stepper import make_stepper
from .training import training_step


class NonFiniteLossError(GraphcError, FloatingPointError):
    """The loss became NaN or Inf; training stopped instead of continuing on garbage."""


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


def _graph_of(loss_fn: Any) -> Graph:
    if isinstance(loss_fn, Graph):
        return loss_fn
    g = getattr(loss_fn, "graph", None)
    if isinstance(g, Graph):
        return g
    raise TypeError(f"Trainer needs a loss Graph or a gc.function, got {type(loss_fn).__name__}")


class Trainer:
    """Trains a loss graph with a graphc optimizer on numpy, onnxruntime or TVM.

    Args:
        loss_fn: a loss Graph or `gc.function` (scalar "loss" output, or the first output).
        model_or_params: None (train every float parameter), parameter names, or a model
            (with `named_parameters()`/`state_dict()`); a model with `load_state_dict` receives
            the trained values after `fit`.
        optimizer: a `graphc.optim` optimizer (default SGD(lr=0.01)).
        backend: a registered backend: "onnxruntime" (default), "numpy", "tvm", or one
            registered with `gc.register_backend`. Training and evaluation both run on it.
        device: "cpu" or "cuda".
        schedule: learning rate per global step: a callable (see graphc.optim.schedules), a
            number, or None for the optimizer's lr.
        clip_grad_norm: clip gradients to this global norm.
        metrics: extra metrics: output names of the loss graph, or {name: fn(values) -> scalar
            Tensor}. "accuracy" is added when the graph has "logits" and a "y" input.
        seed: the seed of dropout masks (the graph's `rng_seed` input).
        progress: show a tqdm progress bar.
    """

    def __init__(self, loss_fn: Any, model_or_params: Any = None, optimizer: Optimizer | None = None,
                 backend: str = "onnxruntime", device: str = "cpu",
                 schedule: "Callable[[int], float] | float | None" = None,
                 clip_grad_norm: float | None = None,
                 metrics: "Iterable[str] | Mapping[str, Callable] | None" = None, seed: int = 0,
                 progress: bool = True):
        from ..optim.optimizers import SGD
        self.loss_fn = loss_fn
        self.user_graph = _graph_of(loss_fn)
        self.model = model_or_params if hasattr(model_or_params, "load_state_dict") else None
        self.optimizer = optimizer if optimizer is not None else SGD(lr=0.01)
        self.backend, self.device, self.seed, self.progress = backend, device, int(seed), progress
        self.schedule = as_schedule(schedule, self.optimizer.lr)
        self._metrics_arg = metrics
        self.graph = with_metrics(self.user_graph, metrics)
        scalar = [k for k, v in self.graph.outputs.items()
                  if v.type.rank == 0 and k not in self.graph.updates]
        self.step_graph = training_step(self.graph, model_or_params, self.optimizer,
                                        metrics=scalar, clip_grad_norm=clip_grad_norm)
        self.spec = program_of(self.step_graph)
        self.loss_name = self.spec.metrics[0]
        self.stepper = make_stepper(self.step_graph, backend, device, self.seed)
        self.history = History()
        self.epoch = 0
        self.last_checkpoint: str | None = None
        self._eval_exes: dict[tuple[str, ...], Any] = {}

    # ---- state -------------------------------------------------------------------------------
    @property
    def step(self) -> int:
        """Global steps done so far."""
        return self.stepper.step_count

    def state_dict(self) -> dict[str, np.ndarray]:
        """Name -> numpy array for every parameter of the graph (trained values where trained)."""
        out = {p.name: np.array(p.data, copy=True) for p in self.user_graph.params}
        out.update(self.stepper.params())
        return out

    def optimizer_state(self) -> dict[str, np.ndarray]:
        """The optimizer state tensors by name (`<param>.<slot>`)."""
        d = self.stepper.state_dict()
        return {n: d[n] for n in self.spec.state}

    def sync(self) -> None:
        """Writes the current trained values into the graph's parameters and the model."""
        trained = self.stepper.params()
        for g in {id(self.user_graph): self.user_graph, id(self.graph): self.graph}.values():
            for p in g.params:
                if p.name in trained:
                    # in place where possible: graphc.nn modules share these arrays
                    if isinstance(p.data, np.ndarray) and p.data.shape == trained[p.name].shape \
                            and p.data.flags.writeable:
                        np.copyto(p.data, trained[p.name])
                    else:
                        p.data = trained[p.name]
        if self.model is not None:
            sd = self.model.state_dict() if hasattr(self.model, "state_dict") else {}
            upd = {k: trained[k] for k in sd if k in trained} if sd else dict(trained)
            if sd:
                upd = {k: upd.get(k, np.asarray(v)) for k, v in sd.items()}
            self.model.load_state_dict(upd)

    # ---- checkpoints ---------------------------------------------------------------------------
    def save_checkpoint(self, path: str, extra: dict[str, Any] | None = None) -> str:
        """Saves parameters, optimizer state, step, epoch, rng seed and history atomically."""
        meta = {"graph": self.user_graph.name, "step": self.step, "epoch": self.epoch,
                "rng": {"seed": self.seed, "shuffle_seed": getattr(self, "_shuffle_seed", 0),
                        "scheme": "dropout from (rng_seed, step); shuffle from (seed, epoch)"},
                "optimizer": repr(self.optimizer), "params": self.spec.params,
                "state": self.spec.state, "history": self.history.to_dict(), **(extra or {})}
        out = save_checkpoint(path, self.stepper.state_dict(), meta)
        self.last_checkpoint = out
        return out

    def load_checkpoint(self, path: str) -> dict[str, Any]:
        """Restores a checkpoint; CheckpointError names every tensor that does not match."""
        tensors, meta = load_checkpoint(path)
        expected = {n: (tuple(self.step_graph.value(n).type.shape), self.step_graph.value(n).type.dtype)
                    for n in self.spec.carried}
        try:
            check_compatible(tensors, expected, str(path))
        except CheckpointError as exc:
            if meta.get("optimizer") and meta["optimizer"] != repr(self.optimizer):
                raise CheckpointError(f"{exc} (it was written with {meta['optimizer']}; this trainer "
                                      f"uses {self.optimizer!r})") from None
            raise
        self.stepper.load_state_dict(tensors)
        self.stepper.step_count = int(meta["step"])
        self.epoch = int(meta["epoch"])
        self.seed = int(meta["rng"]["seed"])
        self.stepper.seed = self.seed
        self.history = History.from_dict(meta.get("history", {}))
        self.last_checkpoint = str(path)
        return meta

    # ---- training ------------------------------------------------------------------------------
    def fit(self, train: Any, epochs: int = 1, batch_size: int = 32, validation: Any = None,
            shuffle: bool = True, seed: int = 0, resume: str | None = None,
            checkpoint: str | None = None, early_stopping: "EarlyStopping | int | None" = None,
            callbacks: Iterable[Callable[["Trainer", dict], Any]] = (),
            progress: bool | None = None) -> History:
        """Trains for `epochs` epochs (counting epochs already done when resuming).

        Args:
            train: a dict of arrays batched along axis 0, or a re-iterable collection of batch
                dicts (a list, or an object whose __iter__ starts over each epoch).
            epochs: the total number of epochs of the run.
            batch_size: examples per step (a last partial batch is used too).
            validation: data evaluated after each epoch ("val_<metric>" in the history).
            shuffle: shuffle each epoch with an order drawn from (seed, epoch).
            seed: the shuffle seed.
            resume: a checkpoint to continue from; the continued run reproduces the
                uninterrupted one exactly on CPU.
            checkpoint: save a checkpoint here after every epoch.
            early_stopping: an EarlyStopping, or an int patience on "val_loss".
            callbacks: functions `cb(trainer, epoch_row)` called after each epoch; returning
                True stops training.
            progress: override the Trainer's progress-bar setting.

        Returns:
            The History (also `trainer.history`).

        Raises:
            NonFiniteLossError: the loss became NaN or Inf (names the step and the last good
                checkpoint).
        """
        from tqdm.auto import tqdm
        self._shuffle_seed = int(seed)
        if resume is not None:
            meta = self.load_checkpoint(resume)
            if "shuffle_seed" in meta.get("rng", {}):
                self._shuffle_seed = int(meta["rng"]["shuffle_seed"])
        if isinstance(early_stopping, int):
            early_stopping = EarlyStopping(patience=early_stopping)
        if early_stopping is not None and validation is None and early_stopping.monitor.startswith("val_"):
            early_stopping.monitor = early_stopping.monitor[4:]
        if not isinstance(train, Mapping) and iter(train) is train and epochs - self.epoch > 1:
            raise ValueError("fit: `train` is a one-shot iterator, which would be empty after the "
                             "first epoch; pass a dict of arrays, a list of batches or another "
                             "re-iterable collection")
        best, best_state, waited = None, None, 0
        show = self.progress if progress is None else progress
        names = self.spec.batch
        while self.epoch < epochs:
            epoch = self.epoch
            total = num_batches(train, batch_size)
            bar = tqdm(total=total, desc=f"epoch {epoch + 1}/{epochs}", unit="step", disable=not show,
                       leave=True, dynamic_ncols=True, mininterval=0.25)
            sums: dict[str, float] = {}
            seen, t0, last_post = 0, time.perf_counter(), 0.0
            for k, batch in enumerate(batches(train, batch_size, shuffle, self._shuffle_seed, epoch,
                                              names=names)):
                n = len(next(iter(batch.values())))
                lr = float(self.schedule(self.step))
                out = self.stepper.step(batch, lr)
                loss = float(out[self.loss_name])
                if not math.isfinite(loss):
                    self._nonfinite(loss, epoch, k)
                self.history.steps.append(loss)
                for m, v in out.items():
                    sums[m] = sums.get(m, 0.0) + float(v) * n
                seen += n
                bar.update(1)
                now = time.perf_counter()
                if show and now - last_post > 0.25:
                    bar.set_postfix(loss=f"{sums[self.loss_name] / seen:.4f}",
                                    ex_s=f"{seen / max(now - t0, 1e-9):.0f}", refresh=False)
                    last_post = now
            dt = time.perf_counter() - t0
            self.epoch = epoch + 1
            row: dict[str, Any] = {"epoch": self.epoch, "step": self.step}
            row.update({m: s / max(seen, 1) for m, s in sums.items()})
            row.update({"lr": float(self.schedule(max(self.step - 1, 0))), "time": dt,
                        "examples_per_s": seen / dt if dt > 0 else float("nan")})
            if validation is not None:
                row.update({f"val_{k}": v for k, v in self.evaluate(validation).items()})
            if show:
                post = {k: f"{v:.4f}" for k, v in row.items()
                        if k in (self.loss_name, "accuracy", "val_loss", "val_accuracy")}
                bar.set_postfix(post, ex_s=f"{row['examples_per_s']:.0f}", refresh=False)
            bar.close()
            self.history.append(row)
            if checkpoint is not None:
                self.save_checkpoint(checkpoint)
            stop = any(cb(self, row) is True for cb in callbacks)
            if early_stopping is not None:
                val = row.get(early_stopping.monitor)
                if val is None:
                    raise KeyError(f"early stopping monitors {early_stopping.monitor!r}, which the history "
                                   f"does not have; it has {', '.join(row)}")
                if early_stopping.better(val, best):
                    best, waited = val, 0
                    if early_stopping.restore_best:
                        best_state = self.stepper.state_dict()
                else:
                    waited += 1
                    if waited >= early_stopping.patience:
                        stop = True
                        if best_state is not None:
                            self.stepper.load_state_dict(best_state)
            if stop:
                break
        self.sync()
        return self.history

    def _nonfinite(self, loss: float, epoch: int, batch: int) -> None:
        where = (f"the last good checkpoint is {self.last_checkpoint}" if self.last_checkpoint else
                 "no checkpoint was written (pass checkpoint=... to fit to keep one)")
        raise NonFiniteLossError(
            f"loss is {loss} at step {self.step} (epoch {epoch + 1}, batch {batch + 1}); training "
            f"stopped so it does not continue on garbage; {where}. Lower the learning rate, clip "
            "gradients (clip_grad_norm=...) or check the data for NaN/Inf.")

    # ---- evaluation ---------------------------------------------------------------------------
    def _eval_graph(self) -> Graph:
        """The loss graph for evaluation: re-traced in eval mode when the model has one."""
        g = self.graph
        fn, model = self.loss_fn, self.model
        if (not isinstance(fn, Graph) and hasattr(fn, "trace") and model is not None
                and hasattr(model, "eval") and hasattr(model, "train")):
            has_rng = g.role_input(Role.RNG_SEED) is not None
            if has_rng or g.updates:  # dropout or batch norm: eval mode differs
                saved = getattr(fn, "_graph", None)
                model.eval()
                try:
                    g = with_metrics(fn.trace(), self._metrics_arg)
                finally:
                    model.train()
                    if saved is not None:
                        fn._graph = saved
        return g

    def _executable(self, outputs: tuple[str, ...]):
        if outputs not in self._eval_exes:
            from .executable import compile
            g = prune(self._eval_graph(), outputs)
            # evaluation runs on the backend that trains: a number in the history always comes
            # from the backend the user chose (a TVM compile is cached on disk after the first)
            self._eval_exes[outputs] = compile(g, self.backend, self.device)
        return self._eval_exes[outputs]

    def _feeds(self, exe, batch: dict[str, np.ndarray], params: dict[str, np.ndarray]) -> dict:
        g = exe.graph
        feeds = {v.name: batch[v.name] for v in g.inputs if v.name in batch}
        for v in g.inputs:
            if v.role is Role.RNG_SEED:
                feeds[v.name] = np.asarray(self.seed, np.int64)
            elif v.role is Role.RNG_COUNTER:
                feeds[v.name] = np.asarray(self.step, np.int64)
        feeds.update({p.name: params[p.name] for p in g.params if p.name in params})
        return feeds

    def evaluate(self, data: Any, batch_size: int = 1024) -> dict[str, float]:
        """Every scalar output of the loss graph (loss, accuracy, metrics), averaged over `data`."""
        names = tuple(m for m in self.spec.metrics if m != "grad_norm")
        exe = self._executable(names)
        params = self.stepper.params()
        sums: dict[str, float] = {}
        seen = 0
        for batch in batches(data, batch_size):
            n = len(next(iter(batch.values())))
            out = exe.run(self._feeds(exe, batch, params))
            for k in names:
                sums[k] = sums.get(k, 0.0) + float(out[k]) * n
            seen += n
        return {k: s / max(seen, 1) for k, s in sums.items()}

    def predict(self, data: Any, batch_size: int = 1024, output: str | None = None) -> np.ndarray:
        """One output (default "logits", else the first non-scalar) for every example of `data`."""
        if output is None:
            output = "logits" if "logits" in self.graph.outputs else next(
                (k for k, v in self.graph.outputs.items() if v.type.rank > 0), None)
            if output is None:
                raise GraphcError("predict: the graph has no non-scalar output; name one with output=")
        exe = self._executable((output,))
        params = self.stepper.params()
        parts = [exe.run(self._feeds(exe, b, params))[output] for b in batches(data, batch_size)]
        return np.concatenate(parts, axis=0)
