"""The one place where arrays entering a graph are checked against its inputs.

Every batch that enters an executable (`Executable.run`), a training stepper
(`Stepper.check_batch`) or the eager interpreter passes through a `FeedChecker`:

- names: every required input is fed, nothing unknown is;
- shapes: the rank, each static dim, and each symbolic dim ("N", "2*N") bound to one size
  across all the inputs of the run;
- dtypes: a feed of another dtype of the same kind is cast (float64 -> float32, int32 -> int64,
  bool -> int); an integer cast that would change a value is an error, as is another kind;
- integer ranges: an input with a `ValueRange` (declared with `gc.spec(..., range=(lo, hi))`,
  or inferred from `cross_entropy` / `nll_loss` labels) must hold values in [lo, hi) only.

Errors are FeedErrors that name the input, the dim or the value and its index:
``batch input 'y': label 10 at index 37 is outside [0, 10) (...)``.

The checker is compiled once per graph, so a check costs a few microseconds of Python per input
plus one vectorised max over each ranged input; `first_nonfinite` (a full pass over the data,
too slow for every step) is what the Trainer uses to name NaN/Inf in data.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

import numpy as np

from .errors import FeedError
from .graph import Graph, Value, ValueRange
from .types import parse_dim

__all__ = ["FeedChecker", "bind_feeds", "first_nonfinite", "check_finite"]


def _index(a: np.ndarray, flat: int) -> str:
    """'37' for a 1-d array, '(3, 5)' otherwise: the index of element `flat`."""
    if a.ndim == 1:
        return str(flat)
    return str(tuple(int(i) for i in np.unravel_index(flat, a.shape))) if a.ndim else "()"


class _Input:
    """The compiled signature of one input: what `FeedChecker.check` compares a feed with."""

    __slots__ = ("name", "type", "dtype", "rank", "static", "symbols", "compound", "range", "lo0")

    def __init__(self, v: Value):
        self.name, self.type = v.name, v.type
        self.dtype = np.dtype(v.type.dtype)
        self.rank = v.type.rank
        static, symbols, compound = [], [], []
        for axis, d in enumerate(v.type.shape):
            if isinstance(d, (int, np.integer)):
                static.append((axis, int(d)))
                continue
            coef, syms = parse_dim(d)
            if coef == 1 and len(syms) == 1 and sum(syms.values()) == 1:
                symbols.append((axis, next(iter(syms))))
            else:
                compound.append((axis, d, coef, dict(syms)))
        self.static, self.symbols, self.compound = tuple(static), tuple(symbols), tuple(compound)
        r = v.range if v.kind == "input" else None
        self.range: ValueRange | None = r
        # [0, hi): one max over the unsigned view catches negatives (they become huge) too
        self.lo0 = (np.dtype(f"u{self.dtype.itemsize}")
                    if r is not None and r.lo == 0 and self.dtype.kind in "iu" else None)


class FeedChecker:
    """Checks feeds against a graph's inputs; compiled once, called on every batch.

    Args:
        graph: the graph whose inputs are fed.
        names: the inputs that must be fed (default: every graph input). A training stepper
            passes its batch inputs; it feeds the others itself.
        what: how errors call a feed ("feed", "batch input").
        allow_params: parameters may also be fed by name (checked like inputs).
        contiguous: return C-contiguous arrays (for backends that bind raw buffers).

    Example:
        >>> arrays, bindings = FeedChecker(g).check({"x": x, "y": y})   # bindings {"N": 32}
    """

    def __init__(self, graph: Graph, names: Iterable[str] | None = None, what: str = "feed",
                 allow_params: bool = True, contiguous: bool = False):
        self.graph, self.what, self.contiguous = graph, what, contiguous
        by_name = {v.name: v for v in graph.inputs}
        self.names = list(by_name) if names is None else list(names)
        unknown = [n for n in self.names if n not in by_name]
        if unknown:
            raise FeedError(f"graph {graph.name!r} has no input named {', '.join(map(repr, unknown))}")
        self._required = [_Input(by_name[n]) for n in self.names]
        self._optional = {p.name: _Input(p) for p in graph.params} if allow_params else {}
        self._compound = any(s.compound for s in self._required)

    # ---- the per-batch path -------------------------------------------------------------------
    def check(self, feeds: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, int]]:
        """The feeds as arrays of the declared dtypes, and the sizes of the symbolic dims.

        Raises:
            FeedError: a missing or unknown name, a wrong rank or size, a symbol fed two sizes,
                a dtype of another kind (or an integer cast that changes a value), a value
                outside a declared range. The message names the input and the dim or the value
                and its index.
        """
        if feeds.__class__ is not dict and not isinstance(feeds, Mapping):
            raise FeedError(f"{self._graph_word()}: feeds must be a dict {{input name: array}}, "
                            f"got {type(feeds).__name__}")
        out: dict[str, np.ndarray] = {}
        bindings: dict[str, int] = {}
        for s in self._required:
            try:
                a = feeds[s.name]
            except KeyError:
                raise self._missing(feeds) from None
            out[s.name] = self._one(s, a, bindings)
        if len(feeds) != len(out):
            for k, a in feeds.items():
                if k not in out:
                    s = self._optional.get(k)
                    if s is None:
                        raise self._unknown(feeds)
                    out[k] = self._one(s, a, bindings)
        if self._compound:
            self._check_compound(out, bindings)
        return out, bindings

    def _one(self, s: _Input, a: Any, bindings: dict[str, int]) -> np.ndarray:
        if a.__class__ is not np.ndarray:
            a = np.asarray(a)
        if a.dtype is not s.dtype and a.dtype != s.dtype:
            a = self._cast(s, a)
        shape = a.shape
        if len(shape) != s.rank:
            raise FeedError(f"{self.what} {s.name!r} has shape {shape}, expected {s.type} "
                            f"(rank {s.rank})")
        for axis, d in s.static:
            if shape[axis] != d:
                raise FeedError(f"{self.what} {s.name!r} has shape {shape}, expected {s.type}: "
                                f"dim {axis} is {shape[axis]}, expected {d}")
        for axis, sym in s.symbols:
            n = bindings.setdefault(sym, shape[axis])
            if n != shape[axis]:
                raise self._symbol_clash(s, shape, axis, sym, bindings)
        if s.range is not None and a.size:
            r = s.range
            # the fast path: one reduction; the exact (slower) check only when something is off
            suspect = (a.view(s.lo0).max() >= r.hi if s.lo0 is not None
                       else a.min() < r.lo or a.max() >= r.hi)
            if suspect and (r.ignore is None or r.outside(a).any()):
                raise self._out_of_range(s, a)
        if self.contiguous and not a.flags.c_contiguous:
            a = np.ascontiguousarray(a)
        return a

    # ---- the slow paths: only when something is off ----------------------------------------------
    def _graph_word(self) -> str:
        spec = getattr(self.graph, "spec", None)
        return f"training step {self.graph.name!r}" if spec is not None else f"graph {self.graph.name!r}"

    def _missing(self, feeds: Mapping[str, Any]) -> FeedError:
        missing = [s.name for s in self._required if s.name not in feeds]
        if self.what == "feed":
            return FeedError(f"graph {self.graph.name!r}: missing feed for input "
                             f"{', '.join(map(repr, missing))}")
        return FeedError(f"{self._graph_word()}: missing {self.what}(s) {', '.join(map(repr, missing))}; "
                         f"it takes {', '.join(self.names)}")

    def _unknown(self, feeds: Mapping[str, Any]) -> FeedError:
        known = {s.name for s in self._required} | set(self._optional)
        unknown = [k for k in feeds if k not in known]
        return FeedError(f"{self._graph_word()} has no input named {', '.join(map(repr, unknown))}; "
                         f"its inputs are {', '.join(self.names) or '(none)'}")

    def _cast(self, s: _Input, a: np.ndarray) -> np.ndarray:
        have, want = a.dtype, s.dtype
        if not (have.kind == want.kind or (have.kind in "iub" and want.kind in "iu")):
            raise FeedError(f"{self.what} {s.name!r} has dtype {have}, expected {want} "
                            f"(declared {s.type})")
        if want.kind in "iu" and a.size and not np.can_cast(have, want, "safe"):
            info = np.iinfo(want)
            bad = (a < info.min) | (a > info.max)
            if bad.any():
                i = int(np.argmax(bad.reshape(-1)))
                raise FeedError(f"{self.what} {s.name!r}: value {a.reshape(-1)[i]} at index "
                                f"{_index(a, i)} does not fit its declared dtype {want} "
                                f"(fed as {have})")
        return a.astype(want)

    def _symbol_clash(self, s: _Input, shape: tuple[int, ...], axis: int, sym: str,
                      bindings: dict[str, int]) -> FeedError:
        # find who set the symbol: the first input (in order) that binds it
        for t in self._required:
            if t is s:
                break
            if any(x == sym for _, x in t.symbols):
                who = f"{self.what} {t.name!r}"
                break
        else:
            who = "another feed"
        return FeedError(f"{self.what} {s.name!r} has shape {shape}: dim {axis} ({sym}) is "
                         f"{shape[axis]}, but {who} set {sym} = {bindings[sym]}")

    def _check_compound(self, out: dict[str, np.ndarray], bindings: dict[str, int]) -> None:
        for s in self._required:
            for axis, d, coef, syms in s.compound:
                n = out[s.name].shape[axis]
                unbound = [x for x in syms if x not in bindings]
                if len(unbound) == 1 and syms[unbound[0]] == 1:
                    rest = coef * int(np.prod([bindings[x] ** p for x, p in syms.items()
                                               if x != unbound[0]], dtype=np.int64))
                    if rest and n % rest == 0:
                        bindings[unbound[0]] = n // rest
                        continue
                    raise FeedError(f"{self.what} {s.name!r} has shape {out[s.name].shape}: dim "
                                    f"{axis} ({d}) is {n}, which is not a multiple of {rest}")
                if unbound:
                    continue  # a product of unknown symbols: nothing to check it against
                want = coef * int(np.prod([bindings[x] ** p for x, p in syms.items()], dtype=np.int64))
                if n != want:
                    sizes = ", ".join(f"{x} = {bindings[x]}" for x in syms)
                    raise FeedError(f"{self.what} {s.name!r} has shape {out[s.name].shape}: dim "
                                    f"{axis} ({d}) is {n}, but {sizes} make it {want}")

    def _out_of_range(self, s: _Input, a: np.ndarray) -> FeedError:
        r = s.range
        assert r is not None
        flat = a.reshape(-1)
        bad = r.outside(flat)
        i = int(np.argmax(bad))
        count = int(bad.sum())
        noun = "label" if r.origin else "value"
        why = f" ({r.origin})" if r.origin else " (its declared range)"
        more = f"; {count} of {a.size} values are outside" if count > 1 else ""
        return FeedError(f"{self.what} {s.name!r}: {noun} {flat[i]} at index {_index(a, i)} is "
                         f"outside {r}{why}{more}")


def bind_feeds(graph: Graph, feeds: dict[str, Any], allow_params: bool = True
               ) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Checks feeds against the graph's inputs; returns (arrays by name, symbol -> size).

    A one-shot `FeedChecker(graph, allow_params=allow_params).check(feeds)`.

    Raises:
        FeedError: unknown names, missing inputs, wrong rank/size/dtype, a symbol bound to two
            different sizes, or a value outside an input's declared range.
    """
    return FeedChecker(graph, allow_params=allow_params).check(feeds)


def first_nonfinite(a: Any) -> tuple[str, float] | None:
    """(index text, value) of the first NaN or Inf in a float array, or None (also for ints).

    A full pass over the data: for a dataset once, or after a loss went non-finite; not per step.

    Example: ``first_nonfinite(np.array([[0.0, np.nan]]))`` -> ``("(0, 1)", nan)``
    """
    a = np.asarray(a)
    if a.dtype.kind not in "fc" or not a.size:
        return None
    flat = a.reshape(-1)
    if np.isfinite(flat.sum()):  # one cheap reduction first; a huge finite sum falls through
        return None
    bad = ~np.isfinite(flat)
    if not bad.any():
        return None
    i = int(np.argmax(bad))
    return _index(a, i), float(flat[i])


def check_finite(arrays: Mapping[str, Any], what: str = "input") -> None:
    """Raises FeedError naming the first array (and index) that holds a NaN or an Inf.

    Example: ``check_finite({"x": x}, "validation input")`` ->
    ``FeedError: validation input 'x' has nan at index (3, 7) ...``
    """
    for name, a in arrays.items():
        found = first_nonfinite(a)
        if found is not None:
            idx, val = found
            raise FeedError(f"{what} {name!r} has {val} at index {idx}; NaN/Inf in the data would "
                            "make the loss and every metric NaN. Clean or impute the data first.")
