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


def check_batch_size(batch_size: Any, what: str = "batch_size") -> int:
    """`batch_size` as a positive int; ValueError (TypeError for a non-int) saying what it got.

    Example: ``check_batch_size(0)`` raises ``ValueError: batch_size must be a positive int, got 0``.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise TypeError(f"{what} must be a positive int, got {batch_size!r} "
                        f"({type(batch_size).__name__})")
    if batch_size <= 0:
        raise ValueError(f"{what} must be a positive int, got {batch_size}")
    return int(batch_size)


def _is_array_like(x: Any) -> bool:
    return isinstance(x, np.ndarray) or (hasattr(x, "__array__") and not isinstance(x, Mapping)) \
        or (isinstance(x, (list, tuple)) and not any(isinstance(e, Mapping) for e in x[:1]))


def named_data(data: Any, names: "list[str]", what: str = "data") -> Any:
    """A dict {name: array} from `data` given as a dict, or as a tuple/list of arrays in `names` order.

    `(X, Y)` (a tuple or list of as many arrays as there are `names`) maps onto `names` in
    order: for a loss function `f(x, y)` that is `{"x": X, "y": Y}`; a single array is taken
    when there is one name. A dict must hold every name (other keys are kept;
    `batches(names=...)` drops them). Anything else (an iterable of batch dicts) is returned as is.

    Raises:
        ValueError: a tuple/list of arrays of another length, a single array for several names,
            or a dict missing a name; the message says to pass a dict {name: array}.
    """
    if isinstance(data, np.ndarray):
        if len(names) == 1:
            return {names[0]: data}
        raise ValueError(f"{what} is one array, but the graph has {len(names)} batch inputs "
                         f"({', '.join(names)}); pass a dict {{name: array}} or a tuple of arrays "
                         "in that order")
    if isinstance(data, Mapping):
        missing = [n for n in names if n not in data]
        if missing:
            raise ValueError(f"{what} has no {', '.join(map(repr, missing))}: the graph's batch inputs are "
                             f"{', '.join(names)}, and the dict has keys {', '.join(map(str, data)) or '(none)'}")
        return data
    if isinstance(data, (tuple, list)) and data and not any(isinstance(e, Mapping) for e in data):
        if not all(_is_array_like(e) for e in data):
            raise ValueError(f"{what}: expected a dict {{name: array}}, a tuple of arrays or a list of "
                             f"batch dicts, got a {type(data).__name__} of "
                             f"{', '.join(sorted({type(e).__name__ for e in data}))}")
        if len(data) != len(names):
            raise ValueError(f"{what} is a {type(data).__name__} of {len(data)} arrays, but the graph "
                             f"has {len(names)} batch input(s) ({', '.join(names)}); pass a dict "
                             f"{{name: array}}, e.g. {{{', '.join(repr(n) + ': ...' for n in names)}}}")
        return dict(zip(names, data))
    return data


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
        for i, b in enumerate(data):
            if b.__class__ is not dict and not isinstance(b, Mapping):
                raise TypeError(f"batch {i} of the data is a {type(b).__name__}; an iterable of "
                                "batches must yield dicts {name: array} (or pass one dict of arrays, "
                                "or a tuple of arrays in input order)")
            yield {k: np.asarray(v) for k, v in b.items() if keep is None or k in keep}
        return
    arrays = {k: np.asarray(v) for k, v in data.items() if keep is None or k in keep}
    n = num_examples(arrays)
    bs = n if batch_size is None else check_batch_size(batch_size)
    if n == 0:
        return
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
        bs = n if batch_size is None else check_batch_size(batch_size)
        if bs == 0:  # batch_size None on empty data
            return 0
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
