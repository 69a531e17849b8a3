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

from ..ir.feeds import FeedChecker
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
        # the one feed check (graphc.ir.feeds), compiled once for the batch inputs
        self._checker = FeedChecker(graph, self.spec.batch, what="batch input", allow_params=False,
                                    contiguous=True)

    def check_batch(self, batch: dict[str, Any]) -> dict[str, np.ndarray]:
        """The batch as C-contiguous arrays of the declared dtypes.

        Raises:
            FeedError: a missing or unknown batch input, a wrong rank or size, a symbolic dim
                ("N") of two sizes, a dtype of another kind, a label outside its range
                (`batch input 'y': label 10 at index 37 is outside [0, 10) ...`).
        """
        return self._checker.check(batch)[0]

    def step(self, batch: dict[str, Any], lr: float) -> dict[str, np.ndarray]:
        """Runs one training step; returns the scalar metrics (loss first) as numpy scalars.

        `batch` holds numpy arrays by input name; a backend may take device arrays too
        (onnxruntime: OrtValues, DLPack and CUDA-array-interface objects, uncopied).
        """
        out = self._step(self.check_batch(batch), np.asarray(lr, self._lr_dtype))
        self.step_count += 1
        return out

    def rollback(self) -> bool:
        """Puts parameters and state back to before the last step, where the backend still has them.

        Returns:
            True when it did (`step_count` goes back by one); False when this backend keeps no
            earlier state, or it was already used or overwritten since (then nothing changes).
            The Trainer calls it when a step's loss is NaN/Inf, so the model keeps finite weights.
        """
        if self.step_count == 0 or not self._rollback():
            return False
        self.step_count -= 1
        return True

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
        # np.asarray(order="C"), not np.ascontiguousarray: that one makes 0-d arrays shape (1,)
        self._set({n: np.asarray(values[n], order="C") for n in expect if n in values})

    # ---- backend hooks ------------------------------------------------------------------------
    def _step(self, batch: dict[str, np.ndarray], lr: np.ndarray) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _get(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _set(self, values: dict[str, np.ndarray]) -> None:
        raise NotImplementedError

    def _rollback(self) -> bool:
        """Restores the state from before the last step if still held (no copy); False if not.

        A stepper that swaps buffers or keeps its previous outputs can do this for free.
        """
        return False


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
        self._previous: dict[str, np.ndarray] | None = None  # the step's inputs, for rollback

    def _step(self, batch, lr):
        feeds = dict(batch, **self._carried)
        feeds[self.spec.step] = np.asarray(self.step_count, np.int64)
        feeds[self.spec.lr] = lr
        if self.spec.rng_seed:
            feeds[self.spec.rng_seed] = np.asarray(self.seed, np.int64)
        out = self.exe.run(feeds)
        self._previous = self._carried  # the outputs are new arrays: keeping the old costs nothing
        self._carried = {src: np.asarray(out[o]) for o, src in self.spec.updates.items()}
        return {m: np.asarray(out[m]) for m in self.spec.metrics}

    def _get(self):
        return {n: np.array(a, copy=True) for n, a in self._carried.items()}

    def _set(self, values):
        self._carried = {**self._carried, **{n: np.array(a, copy=True) for n, a in values.items()}}
        self._previous = None

    def _rollback(self):
        if self._previous is None:
            return False
        self._carried, self._previous = self._previous, None
        return True
