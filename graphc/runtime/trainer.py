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

import functools
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from ..ir.errors import FeedError, GraphcError
from ..ir.feeds import FeedChecker, check_finite, first_nonfinite
from ..ir.graph import Graph
from ..ir.program import program_of
from ..ir.roles import Role
from ..optim.base import Optimizer
from ..optim.loss_scaling import SKIP_METRIC as _SKIP
from ..optim.schedules import as_schedule
from .checkpoint import (CheckpointError, check_compatible, load_latest, remove_leftovers,
                         save_checkpoint)
from .early_stopping import EarlyStopping
from .data import batches, check_batch_size, named_data, num_batches, num_examples
from .history import History
from .metrics import prune, with_metrics
from .stepper import make_stepper
from .training import precision_dtype, training_step


class NonFiniteLossError(GraphcError, FloatingPointError):
    """The loss became NaN or Inf; training stopped instead of continuing on garbage."""


def _check_lr(lr: float, where: str) -> float:
    """`lr` if it is a finite number >= 0; ValueError naming `where` otherwise."""
    if not (lr >= 0.0 and lr < math.inf):  # also false for NaN
        raise ValueError(f"{where}: the learning rate must be a finite number >= 0, got {lr} "
                         "(a negative one would climb the loss: gradient ascent)")
    return lr


def _check_checkpoint_target(checkpoint: "str | os.PathLike") -> None:
    """Fails early on a checkpoint path fit could not write: an existing directory (a checkpoint
    is a path prefix: `dir/ckpt`, not `dir`), or a directory graphc cannot create or write to."""
    text = os.fspath(checkpoint)
    p = Path(text)
    if p.is_dir() or text.endswith(("/", os.sep)):
        raise ValueError(f"fit: checkpoint={text!r} is a directory, but a checkpoint path is a file "
                         f"prefix (graphc adds .safetensors/.json suffixes beside it); pass a path "
                         f"inside it, e.g. checkpoint={str(p / 'ckpt')!r}")
    parent = p.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        # named like a checkpoint write's temporary file, so that if a kill lands between
        # creating and deleting it, the next start's cleanup (remove_leftovers) removes it
        probe = parent / f".{p.name}.safetensors.tmp-{os.getpid()}"
        fd = os.open(probe, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise CheckpointError(f"fit: cannot write checkpoints to {text!r}: directory {str(parent)!r} "
                              f"is not writable ({exc.strerror or exc}); pass checkpoint= a path in a "
                              "writable directory (checked when fit starts, before any training)") from None


def _sync_on_exit(fit: Callable) -> Callable:
    """Wraps `fit` so that however it ends (returning, an error, Ctrl-C) the model and the graph's
    parameters hold the weights of the last completed step, not those of before the call."""
    @functools.wraps(fit)
    def guarded(self: "Trainer", *args: Any, **kwargs: Any) -> Any:
        before = self.stepper.step_count
        try:
            return fit(self, *args, **kwargs)
        except BaseException as exc:
            if self.stepper.step_count != before:
                try:
                    self.sync()
                except Exception as again:  # never hide the error that stopped training
                    exc.add_note(f"(writing the trained weights back into the model failed too: "
                                 f"{again!r})")
            raise
    return guarded


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
        distributed: "auto" (default): under `torchrun` (WORLD_SIZE > 1) train data-parallel on
            torch.distributed (gloo on cpu, nccl on cuda; `pip install 'graphc[distributed]'`):
            `batch_size` is the global batch, each rank runs its shard, gradients and metrics
            are averaged, rank 0 writes checkpoints (see graphc.runtime.distributed). True
            requires a launcher; False never distributes.
        check_sync_every: in a distributed run, check every N steps that all ranks hold
            bitwise identical parameters (0: never), naming the first one that differs.
        sync_batchnorm: in a distributed run, average batch-norm running statistics across
            ranks after every step (default: each rank keeps its own, as PyTorch DDP does; the
            batch statistics of the forward pass stay per shard either way).
        precision: "fp32" (default), "bf16" or "fp16": the mixed-precision policy of
            `gc.training_step` (products in low precision, master weights and optimizer state
            float32). "fp16" adds dynamic loss scaling; steps it skips for an overflowing
            gradient are counted in `trainer.skipped_steps` and each history row's
            "skipped_steps". `evaluate` runs the float32 forward graph on the master weights.
        backend_options: keyword options of the backend's stepper, e.g.
            ``{"threads": 2, "spin": False}`` or, on onnxruntime CUDA with static shapes,
            ``{"cuda_graph": True}`` (one captured CUDA graph per ping-pong parity).
    """

    def __init__(self, loss_fn: Any, model_or_params: Any = None, optimizer: Optimizer | None = None,
                 backend: str = "onnxruntime", device: str = "cpu",
                 schedule: "Callable[[int], float] | float | None" = None,
                 clip_grad_norm: float | None = None,
                 metrics: "Iterable[str] | Mapping[str, Callable] | None" = None, seed: int = 0,
                 progress: bool = True, distributed: Any = "auto", check_sync_every: int = 0,
                 sync_batchnorm: bool = False, precision: str = "fp32",
                 backend_options: "Mapping[str, Any] | None" = None):
        from ..optim.optimizers import SGD
        self.loss_fn = loss_fn
        self.user_graph = _graph_of(loss_fn)
        self.model = model_or_params if hasattr(model_or_params, "load_state_dict") else None
        self.optimizer = optimizer if optimizer is not None else SGD(lr=0.01)
        self.backend, self.device, self.seed, self.progress = backend, device, int(seed), progress
        if schedule is not None and not callable(schedule):
            _check_lr(float(schedule), "Trainer(schedule=...)")
        self.schedule = as_schedule(schedule, self.optimizer.lr)
        self._metrics_arg = metrics
        self.graph = with_metrics(self.user_graph, metrics)
        scalar = [k for k, v in self.graph.outputs.items()
                  if v.type.rank == 0 and k not in self.graph.updates]
        self.step_graph = training_step(self.graph, model_or_params, self.optimizer,
                                        metrics=scalar, clip_grad_norm=clip_grad_norm,
                                        precision=precision)
        self.precision = precision
        self.skipped_steps = 0  # updates dropped by fp16 loss scaling (an overflowing gradient)
        self.spec = program_of(self.step_graph)
        self.loss_name = self.spec.metrics[0]
        from .distributed import init_distributed
        self.dist = init_distributed(distributed, device)
        if self.dist is None:
            self.stepper = make_stepper(self.step_graph, backend, device, self.seed,
                                        **dict(backend_options or {}))
        else:  # the same program as gradient and apply parts with an all-reduce between them
            from .distributed import SplitStepper, split_training_step
            if precision_dtype(precision) is not None:
                raise NotImplementedError(f"Trainer(precision={precision!r}) is not wired into "
                                          "distributed training yet; use precision='fp32' there")
            trained = [n for n in self.spec.params if self.step_graph.value(n).role is Role.PARAM]
            split = split_training_step(self.graph, trained, self.optimizer,
                                        [m for m in self.spec.metrics
                                         if m not in ("grad_norm", _SKIP)],
                                        clip_grad_norm)
            self.stepper = SplitStepper(split, self.dist, self.spec, backend, device, self.seed,
                                        check_sync_every, sync_batchnorm)
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
    def save_checkpoint(self, path: str, extra: dict[str, Any] | None = None, keep: int = 2) -> str:
        """Saves parameters, optimizer state, step, epoch, rng seed and history atomically.

        Args:
            path: the base path: the files are `<path>.step-<step:08d>.safetensors` and `.json`.
            extra: more JSON-able metadata to store.
            keep: how many checkpoints of this series to keep, this one included (older ones are
                deleted after it is written; see `graphc.runtime.checkpoint.save_checkpoint`).

        Returns:
            The .safetensors file written (also `self.last_checkpoint`).

        Example: `trainer.save_checkpoint("run/ckpt")`; resume with `fit(..., resume="run/ckpt")`.
        """
        meta = {"graph": self.user_graph.name, "step": self.step, "epoch": self.epoch,
                "rng": {"seed": self.seed, "shuffle_seed": getattr(self, "_shuffle_seed", 0),
                        "scheme": "dropout from (rng_seed, step); shuffle from (seed, epoch)"},
                "optimizer": repr(self.optimizer), "params": self.spec.params,
                "state": self.spec.state, "history": self.history.to_dict(), **(extra or {})}
        state = self.stepper.state_dict()
        if self.dist is not None and not self.dist.is_main:  # rank 0 writes; the others wait for it
            from .checkpoint import series_path
            out = str(series_path(path, self.step)) if keep else str(path) + ".safetensors"
            self.dist.barrier(f"waiting for rank 0 to write checkpoint {out}")
            self.last_checkpoint = out
            return out
        out = save_checkpoint(path, state, meta, keep=keep)
        if self.dist is not None:
            self.dist.barrier(f"checkpoint {out} written, waiting for the other ranks")
        self.last_checkpoint = out
        return out

    def load_checkpoint(self, path: str) -> dict[str, Any]:
        """Restores the newest intact checkpoint at `path` and removes leftovers of killed writes.

        Args:
            path: the base path given to `fit(checkpoint=...)`/`save_checkpoint` (its newest intact
                entry is read; newer damaged ones are skipped with a CheckpointWarning naming
                them), or one .safetensors file, read alone.

        Returns:
            The checkpoint's metadata; `self.last_checkpoint` names the file read.

        Raises:
            CheckpointError: no intact checkpoint, or one that does not match this model (naming
                every tensor that differs).
        """
        loaded = load_latest(path)
        tensors, meta = loaded.tensors, loaded.meta
        expected = {n: (tuple(self.step_graph.value(n).type.shape), self.step_graph.value(n).type.dtype)
                    for n in self.spec.carried}
        try:
            check_compatible(tensors, expected, str(loaded.path))
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
        self.last_checkpoint = str(loaded.path)
        remove_leftovers(path)
        return meta

    # ---- training ------------------------------------------------------------------------------
    @_sync_on_exit
    def fit(self, train: Any, epochs: int = 1, batch_size: int = 32, validation: Any = None,
            shuffle: bool = True, seed: int = 0, resume: str | None = None,
            checkpoint: str | None = None, early_stopping: "EarlyStopping | int | None" = None,
            callbacks: Iterable[Callable[["Trainer", dict], Any]] = (),
            progress: bool | None = None, keep_checkpoints: int = 2) -> History:
        """Trains for `epochs` epochs (counting epochs already done when resuming).

        Args:
            train: a dict of arrays batched along axis 0 ({input name: array}), a tuple of
                arrays in the order of the graph's batch inputs (`(X, Y)` for `f(x, y)`), or a
                re-iterable collection of batch dicts (a list, or an object whose `__iter__`
                starts over each epoch). A dict or tuple is checked once when fit starts
                (names, shapes, dtypes, label ranges, NaN/Inf), with errors giving the row.
            epochs: the total number of epochs of the run.
            batch_size: examples per step, a positive int (a last partial batch is used too).
            validation: data evaluated after each epoch (`"val_<metric>"` in the history), in
                any form `train` takes; NaN/Inf in it is an error naming the input.
            shuffle: shuffle each epoch with an order drawn from (seed, epoch).
            seed: the shuffle seed.
            resume: a checkpoint to continue from (a `checkpoint` path: its newest intact
                checkpoint; a damaged newer one is skipped with a CheckpointWarning naming it);
                the continued run reproduces the
                uninterrupted one exactly on CPU.
            checkpoint: save a checkpoint after every epoch, as `<checkpoint>.step-<step:08d>
                .safetensors` plus `.json`; leftovers of a killed earlier write are removed
                when fit starts. It is a path prefix, not a directory: an existing directory is
                an error (pass `"dir/ckpt"`), and a directory that cannot be written is found
                when fit starts, not after the first epoch.
            keep_checkpoints: how many of those checkpoints to keep (the newest ones, at least 1),
                so a damaged newest one can fall back to the one before.
            early_stopping: an EarlyStopping, or an int patience on "val_loss".
            callbacks: functions `cb(trainer, epoch_row)` called after each epoch; returning
                True stops training.
            progress: override the Trainer's progress-bar setting.

        Returns:
            The History (also `trainer.history`).

        However fit ends (returning, an error, Ctrl-C), the model and the graph's parameters
        hold the weights of the last completed step; after a NaN/Inf loss, those of the step
        before it where the backend still has them (`Stepper.rollback`).

        Raises:
            NonFiniteLossError: the loss became NaN or Inf (names the step, the last good
                checkpoint, and a NaN/Inf in that batch's inputs if there is one).
            FeedError: a batch that does not fit the graph: a missing input, a wrong shape or
                dtype, a label outside [0, C), NaN/Inf in the data (names the input, the value
                and its index).
            ValueError / TypeError: empty data, a batch_size that is not a positive int, a
                negative or non-finite learning rate from the schedule, a checkpoint path that
                is a directory.
            CheckpointError: the checkpoint directory cannot be written.
        """
        from tqdm.auto import tqdm
        batch_size = check_batch_size(batch_size)
        train = self._prepare(train, "training data")
        if validation is not None:
            validation = self._prepare(validation, "validation data")
        if checkpoint is not None:
            _check_checkpoint_target(checkpoint)
        self._shuffle_seed = int(seed)
        if int(keep_checkpoints) < 1:
            raise ValueError(f"fit: keep_checkpoints must be at least 1, got {keep_checkpoints}")
        if resume is not None:
            meta = self.load_checkpoint(resume)
            if "shuffle_seed" in meta.get("rng", {}):
                self._shuffle_seed = int(meta["rng"]["shuffle_seed"])
        if checkpoint is not None:
            remove_leftovers(checkpoint)
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
        show = show and (self.dist is None or self.dist.is_main)
        names = self.spec.batch
        while self.epoch < epochs:
            epoch = self.epoch
            total = num_batches(train, batch_size)
            bar = tqdm(total=total, desc=f"epoch {epoch + 1}/{epochs}", unit="step", disable=not show,
                       leave=True, dynamic_ncols=True, mininterval=0.25)
            sums: dict[str, float] = {}
            seen, t0, last_post, skipped = 0, time.perf_counter(), 0.0, 0
            for k, batch in enumerate(batches(train, batch_size, shuffle, self._shuffle_seed, epoch,
                                              names=names)):
                n = len(next(iter(batch.values())))
                lr = float(self.schedule(self.step))
                if not (lr >= 0.0 and lr < math.inf):
                    _check_lr(lr, f"the schedule at step {self.step}")
                try:
                    out = self.stepper.step(batch, lr)
                except FeedError as exc:
                    raise FeedError(f"{exc} (training data: epoch {epoch + 1}, batch {k + 1})") from None
                loss = float(out[self.loss_name])
                if _SKIP in out:
                    skipped += int(out[_SKIP])
                if not math.isfinite(loss):
                    self._nonfinite(loss, epoch, k, batch)
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
            if seen == 0:
                raise ValueError(f"fit: the training data gave no examples in epoch {epoch + 1}; "
                                 "nothing was trained. Pass a non-empty dict of arrays or batches.")
            self.epoch = epoch + 1
            row: dict[str, Any] = {"epoch": self.epoch, "step": self.step}
            row.update({m: s / max(seen, 1) for m, s in sums.items() if m != _SKIP})
            if _SKIP in sums:
                self.skipped_steps += skipped
                row["skipped_steps"] = skipped
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
                self.save_checkpoint(checkpoint, keep=keep_checkpoints)
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

    def _nonfinite(self, loss: float, epoch: int, batch: int,
                   data: "Mapping[str, np.ndarray] | None" = None) -> None:
        step = self.step
        where = (f"the last good checkpoint is {self.last_checkpoint}" if self.last_checkpoint else
                 "no checkpoint was written (pass checkpoint=... to fit to keep one)")
        # the step that gave the NaN also wrote NaN weights: go back one step where the backend can
        weights = ("the model keeps the weights from before this step" if self.stepper.rollback()
                   else f"the model holds the weights this step wrote (the {self.stepper.backend} "
                        "stepper keeps no earlier copy)")
        cause = "Lower the learning rate, clip gradients (clip_grad_norm=...) or check the data for NaN/Inf."
        for name, a in (data or {}).items():
            found = first_nonfinite(a)
            if found is not None:
                cause = (f"The batch itself holds non-finite data: batch input {name!r} has {found[1]} "
                         f"at index {found[0]} of this batch; clean the data.")
                break
        raise NonFiniteLossError(
            f"loss is {loss} at step {step} (epoch {epoch + 1}, batch {batch + 1}); training "
            f"stopped so it does not continue on garbage; {weights}; {where}. {cause}")

    # ---- data -------------------------------------------------------------------------------------
    def _prepare(self, data: Any, what: str) -> Any:
        """The data as fit/evaluate consume it, checked once up front where it is in memory.

        A tuple/list of arrays maps onto the batch inputs in order; a dict is checked whole by the
        feed checker (names, shapes, dtypes, label ranges: its errors give the row in the data)
        and for NaN/Inf (one pass over the data, once per call rather than per step). An
        iterable of batches is returned as is; each batch is checked when it enters the stepper.
        """
        names = list(self.spec.batch)
        data = named_data(data, names, what)
        if isinstance(data, Mapping):
            arrays = {n: np.asarray(data[n]) for n in names}
            if not names or num_examples(arrays) == 0:
                raise ValueError(f"{what} is empty (0 examples); fit/evaluate need at least one")
            checker = FeedChecker(self.step_graph, names, what=f"{what}: input", allow_params=False)
            arrays, _ = checker.check(arrays)
            check_finite(arrays, f"{what}: input")
            return arrays
        if isinstance(data, (list, tuple)) and not data:
            raise ValueError(f"{what} is empty (no batches); fit/evaluate need at least one")
        return data

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
        """Every scalar output of the loss graph (loss, accuracy, metrics), averaged over `data`.

        Args:
            data: a dict {input name: array}, a tuple of arrays in the order of the batch
                inputs, or an iterable of batch dicts (as for `fit`).
            batch_size: examples per run, a positive int.

        Raises:
            ValueError / TypeError: empty data, a batch_size that is not a positive int.
            FeedError: data that does not fit the graph, a label out of range, or NaN/Inf in
                the data (naming the input and the index).
        """
        batch_size = check_batch_size(batch_size)
        data = self._prepare(data, "evaluation data")
        names = tuple(m for m in self.spec.metrics if m not in ("grad_norm", _SKIP))
        exe = self._executable(names)
        params = self.stepper.params()
        sums: dict[str, float] = {}
        seen = 0
        for batch in batches(data, batch_size):
            n = len(next(iter(batch.values())))
            out = exe.run(self._feeds(exe, batch, params))
            for k in names:
                v = float(out[k])
                if not math.isfinite(v):  # an iterable's batch was not checked up front: is it the data?
                    check_finite({name: a for name, a in batch.items() if name in self.spec.batch},
                                 f"evaluation data (examples {seen} to {seen + n - 1}): input")
                sums[k] = sums.get(k, 0.0) + v * n
            seen += n
        if seen == 0:
            raise ValueError("evaluate: the data gave no examples; pass a non-empty dict of arrays "
                             "or batches")
        return {k: s / seen for k, s in sums.items()}

    def predict(self, data: Any, batch_size: int = 1024, output: str | None = None) -> np.ndarray:
        """One output (default "logits", else the first non-scalar) for every example of `data`."""
        if output is None:
            output = "logits" if "logits" in self.graph.outputs else next(
                (k for k, v in self.graph.outputs.items() if v.type.rank > 0), None)
            if output is None:
                raise GraphcError("predict: the graph has no non-scalar output; name one with output=")
        batch_size = check_batch_size(batch_size)
        exe = self._executable((output,))
        params = self.stepper.params()
        parts = [exe.run(self._feeds(exe, b, params))[output] for b in batches(data, batch_size)]
        return np.concatenate(parts, axis=0)
