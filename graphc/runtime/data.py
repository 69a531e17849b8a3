"""Data for training: dicts of arrays batched along axis 0, with a seeded, replayable shuffle."""
from __future__ import annotations

from typing import Any, Iterable, Iterator, Mapping

import numpy as np

Batch = dict[str, np.ndarray]


def num_examples(data: Mapping[str, Any]) -> int:
    """The common length of the arrays in a dict; ValueError naming arrays that disagree."""
    lens = {k: len(v) for k, v in data.items()}
    if not lens:
        raise ValueError("the data dict is empty")
    if len(set(lens.values())) != 1:
        raise ValueError("data arrays have different lengths along axis 0: "
                         + ", ".join(f"{k}={n}" for k, n in lens.items()))
    return next(iter(lens.values()))


def epoch_order(n: int, epoch: int, seed: int, shuffle: bool) -> np.ndarray:
    """The example order of one epoch: a permutation drawn from (seed, epoch) alone.

    Deriving each epoch's order from (seed, epoch) rather than from a running generator means a
    resumed run sees exactly the orders the uninterrupted run would have seen.
    """
    if not shuffle:
        return np.arange(n)
    return np.random.default_rng([int(seed), int(epoch)]).permutation(n)


def batches(data: "Mapping[str, Any] | Iterable[Mapping[str, Any]]", batch_size: int | None = None,
            shuffle: bool = False, seed: int = 0, epoch: int = 0, drop_last: bool = False,
            names: Iterable[str] | None = None) -> Iterator[Batch]:
    """Yields batches as dicts of arrays.

    Args:
        data: a dict of arrays (batched along axis 0) or an iterable of such dicts (used as is).
        batch_size: examples per batch (None: the whole dict as one batch).
        shuffle: visit examples in a seeded random order.
        seed, epoch: pick the order (see `epoch_order`).
        drop_last: skip a last partial batch (kept by default; graphs use a symbolic batch dim).
        names: keep only these keys (others, e.g. extra columns, are dropped).
    """
    keep = set(names) if names is not None else None
    if not isinstance(data, Mapping):
        for b in data:
            yield {k: np.asarray(v) for k, v in b.items() if keep is None or k in keep}
        return
    arrays = {k: np.asarray(v) for k, v in data.items() if keep is None or k in keep}
    n = num_examples(arrays)
    bs = n if batch_size is None else int(batch_size)
    if bs <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    order = epoch_order(n, epoch, seed, shuffle)
    for start in range(0, n, bs):
        idx = order[start:start + bs]
        if drop_last and len(idx) < bs:
            return
        if not shuffle:
            yield {k: v[start:start + bs] for k, v in arrays.items()}
        else:
            yield {k: v[idx] for k, v in arrays.items()}


def num_batches(data: Any, batch_size: int | None, drop_last: bool = False) -> int | None:
    """How many batches `batches` yields, or None for an iterable of unknown length."""
    if isinstance(data, Mapping):
        n = num_examples(data)
        bs = n if batch_size is None else batch_size
        return n // bs if drop_last else -(-n // bs)
    try:
        return len(data)  # type: ignore[arg-type]
    except TypeError:
        return None


def train_test_split(data: Mapping[str, Any], test_fraction: float = 0.2, seed: int = 0
                     ) -> tuple[Batch, Batch]:
    """Splits a dict of arrays into (train, test) with a seeded permutation."""
    n = num_examples(data)
    order = np.random.default_rng(seed).permutation(n)
    k = int(round(n * (1 - test_fraction)))
    return ({key: np.asarray(v)[order[:k]] for key, v in data.items()},
            {key: np.asarray(v)[order[k:]] for key, v in data.items()})


def standardize(train: np.ndarray, *others: np.ndarray, eps: float = 1e-12
                ) -> tuple[np.ndarray, ...]:
    """(x - mean) / std with the statistics of `train`, applied to train and the others."""
    mu, sd = train.mean(0), train.std(0) + eps
    return tuple((a - mu) / sd for a in (train,) + others)
