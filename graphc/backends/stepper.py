"""Steppers: run a training-step graph again and again, keeping parameters and state on the backend.

A Stepper feeds the batch, the step number and the learning rate each step and gets back the
scalar metrics; parameters and optimizer state never leave the backend between steps (on
onnxruntime they stay in OrtValues, swapped between two buffers). `state_dict()` copies them out,
`load_state_dict()` copies them in (checkpoints, resume, writing trained values back). What plays
which part comes from the graph's TrainingProgram (`graph.spec`), never from input names.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..ir.errors import FeedError
from ..ir.graph import Graph
from ..ir.program import TrainingProgram, program_of
from .executable import Executable


class Stepper:
    """Base class: backends implement `_step`, `_get` and `_set`.

    Attributes:
        graph: the step graph.
        spec: its TrainingSpec.
        step_count: number of steps taken (fed as the graph's `step` input).
        seed: the rng seed fed to the graph's `rng_seed` input (if it has one).
    """

    backend = ""

    def __init__(self, graph: Graph, device: str = "cpu", seed: int = 0):
        self.graph, self.device, self.seed = graph, device, int(seed)
        self.spec: TrainingProgram = program_of(graph)
        self.step_count = 0
        self._inputs = {v.name: v for v in graph.inputs}
        self._lr_dtype = np.dtype(self.spec.lr_dtype)
        # per batch input: (name, dtype, rank, ((axis, static size), ...)) for a fast check
        self._batch_sig = [(n, np.dtype(self._inputs[n].type.dtype), self._inputs[n].type.rank,
                            tuple((i, d) for i, d in enumerate(self._inputs[n].type.shape)
                                  if isinstance(d, int)))
                           for n in self.spec.batch]

    def check_batch(self, batch: dict[str, Any]) -> dict[str, np.ndarray]:
        """The batch as arrays of the declared dtypes; FeedError for missing/unknown/bad feeds."""
        missing = [n for n in self.spec.batch if n not in batch]
        if missing:
            raise FeedError(f"training step {self.graph.name!r}: missing batch input(s) "
                            f"{', '.join(map(repr, missing))}; it takes {', '.join(self.spec.batch)}")
        out = {}
        for n, want, rank, static in self._batch_sig:
            a = batch[n]
            if not isinstance(a, np.ndarray):
                a = np.asarray(a)
            if a.dtype != want:
                if a.dtype.kind != want.kind and not (a.dtype.kind in "iub" and want.kind in "iu"):
                    raise FeedError(f"batch input {n!r} has dtype {a.dtype}, expected "
                                    f"{self._inputs[n].type}")
                a = a.astype(want)
            shape = a.shape
            if len(shape) != rank or any(shape[i] != d for i, d in static):
                raise FeedError(f"batch input {n!r} has shape {shape}, expected {self._inputs[n].type}")
            out[n] = a if a.flags.c_contiguous else np.ascontiguousarray(a)
        return out

    def step(self, batch: dict[str, Any], lr: float) -> dict[str, np.ndarray]:
        """Runs one training step; returns the scalar metrics (loss first) as numpy scalars."""
        out = self._step(self.check_batch(batch), np.asarray(lr, self._lr_dtype))
        self.step_count += 1
        return out

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of every parameter and optimizer-state tensor, by input name."""
        return self._get()

    def params(self) -> dict[str, np.ndarray]:
        """Copies of the trained parameters."""
        d = self._get()
        return {n: d[n] for n in self.spec.params}

    def load_state_dict(self, values: dict[str, np.ndarray], strict: bool = True) -> None:
        """Overwrites parameters/state; names the missing, unexpected or mis-shaped tensors."""
        expect = {n: self._inputs[n].type for n in self.spec.carried}
        problems = []
        if strict:
            missing = [n for n in expect if n not in values]
            if missing:
                problems.append(f"missing: {', '.join(missing)}")
        unexpected = [n for n in values if n not in expect]
        if unexpected:
            problems.append(f"unexpected: {', '.join(unexpected)}")
        for n, a in values.items():
            if n in expect:
                t = expect[n]
                a = np.asarray(a)
                if tuple(a.shape) != tuple(t.shape) or a.dtype != np.dtype(t.dtype):
                    problems.append(f"{n}: checkpoint has {a.dtype}{list(a.shape)}, model has {t}")
        if problems:
            raise ValueError(f"state does not match training step {self.graph.name!r}: "
                             + "; ".join(problems))
        self._set({n: np.ascontiguousarray(values[n]) for n in expect if n in values})

    # ---- backend hooks ------------------------------------------------------------------------
    def _step(self, batch: dict[str, np.ndarray], lr: np.ndarray) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _get(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _set(self, values: dict[str, np.ndarray]) -> None:
        raise NotImplementedError


class ExecutableStepper(Stepper):
    """A Stepper over any compiled Executable: carried values round-trip through the host.

    The fallback for backends without a device-resident stepper of their own; correct everywhere,
    but each step copies parameters and state in and out.
    """

    def __init__(self, graph: Graph, exe: Executable, device: str = "cpu", seed: int = 0):
        super().__init__(graph, device, seed)
        self.backend = exe.backend
        self.exe = exe
        self._carried = {n: np.array(a, copy=True) for n, a in self.spec.initial.items()}

    def _step(self, batch, lr):
        feeds = dict(batch, **self._carried)
        feeds[self.spec.step] = np.asarray(self.step_count, np.int64)
        feeds[self.spec.lr] = lr
        if self.spec.rng_seed:
            feeds[self.spec.rng_seed] = np.asarray(self.seed, np.int64)
        out = self.exe.run(feeds)
        self._carried = {src: np.asarray(out[o]) for o, src in self.spec.updates.items()}
        return {m: np.asarray(out[m]) for m in self.spec.metrics}

    def _get(self):
        return {n: np.array(a, copy=True) for n, a in self._carried.items()}

    def _set(self, values):
        self._carried.update({n: np.array(a, copy=True) for n, a in values.items()})
