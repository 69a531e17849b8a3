"""Tracing: a Python function of Tensors -> a Graph (`@gc.function`)."""
from __future__ import annotations

import functools
import inspect
import itertools
from dataclasses import dataclass
from typing import Any, Callable

from ..ir.errors import GraphBuildError, user_frame
from ..ir.graph import Graph, ValueRange
from ..ir.types import Dim, TensorType
from .dsl import Tensor


@dataclass(frozen=True)
class Spec:
    """The declared shape, dtype and (integer inputs) value range of one traced input."""

    shape: tuple[Dim, ...]
    dtype: str = "float32"
    range: "tuple[int, int] | None" = None


_anonymous = itertools.count(1)


def _fresh_symbol() -> str:
    """A symbol no other dim shares ("_d1", "_d2", ...): what `None` in a spec's shape becomes."""
    return f"_d{next(_anonymous)}"


def spec(shape: tuple[Dim, ...], dtype: str = "float32",
         range: "tuple[int, int] | None" = None) -> Spec:
    """Declares an input of `shape` (ints or symbols like "N") and `dtype` for @gc.function.

    Args:
        shape: ints or symbols ("N"); a symbol must have one size across a run's inputs.
            `None` is an anonymous dim: a fresh symbol of its own, tied to no other dim
            (give two dims one name, "N", when they must agree).
        dtype: the element type; bare names are torch's ("float" is float32, "double"
            float64, "long" int64), as are torch dtypes (torch.float32).
        range: for an integer input, (lo, hi): every fed value must lie in [lo, hi)
            (half-open, like Python's range). Checked on every run and training step, with an
            error naming the input, the value and its index. Class labels of `cross_entropy` /
            `nll_loss` get [0, C) without it.

    Returns:
        A Spec.

    Raises:
        GraphBuildError: a bad shape or dtype, or a range that is empty or on a float input.

    Example: ``gc.spec(("N",), "int64", range=(0, 10))``
    """
    shape = tuple(_fresh_symbol() if d is None else d for d in shape)  # None: anonymous dim
    try:
        t = TensorType(shape, dtype)  # validates now, at the user's line
        r = ValueRange.of(range)
    except (TypeError, ValueError) as exc:
        raise GraphBuildError(f"{user_frame()}: gc.spec: {exc}") from None
    if r is not None and not t.dtype.startswith(("int", "uint")):
        raise GraphBuildError(f"{user_frame()}: gc.spec: range={range!r} needs an integer dtype, "
                              f"got {dtype!r}")
    return Spec(shape, t.dtype, None if r is None else (r.lo, r.hi))


def _outputs(g: Graph, result: Any) -> None:
    if isinstance(result, dict):
        g.output(**result)
    elif isinstance(result, (tuple, list)):
        g.output(**{f"output_{i}": r for i, r in enumerate(result)})
    elif result is not None:
        g.output(output=result)
    else:
        raise GraphBuildError(f"traced function {g.name!r} returned None; return a Tensor, a tuple "
                              "or a dict of Tensors")


class Function:
    """A traced function: `.graph` is its Graph; calling it inside another graph inlines it."""

    def __init__(self, fn: Callable[..., Any], specs: dict[str, Spec], name: str | None = None):
        self.fn, self.specs = fn, specs
        self.name = name or fn.__name__
        params = list(inspect.signature(fn).parameters)
        missing = [p for p in params if p not in specs]
        extra = [s for s in specs if s not in params]
        if missing or extra:
            raise GraphBuildError(f"@gc.function {self.name}: "
                                  + (f"no spec for argument(s) {', '.join(missing)}" if missing else "")
                                  + ("; " if missing and extra else "")
                                  + (f"spec(s) {', '.join(extra)} name no argument" if extra else ""))
        self.arg_names = params
        self._graph: Graph | None = None
        functools.update_wrapper(self, fn)

    def trace(self) -> Graph:
        """Traces the function afresh (e.g. after `model.eval()`) and returns the new Graph."""
        g = Graph(self.name)
        with g:
            args = {n: g.input(n, self.specs[n].shape, self.specs[n].dtype, range=self.specs[n].range)
                    for n in self.arg_names}
            _outputs(g, self.fn(**args))
        self._graph = g
        return g

    @property
    def graph(self) -> Graph:
        """The traced Graph (traced on first access)."""
        return self._graph if self._graph is not None else self.trace()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if any(isinstance(a, Tensor) for a in list(args) + list(kwargs.values())):
            return self.fn(*args, **kwargs)
        from .eager import run_eagerly
        feeds = dict(zip(self.arg_names, args), **kwargs)
        out = run_eagerly(self.graph, feeds)
        return next(iter(out.values())) if len(out) == 1 else out


def function(fn: Callable[..., Any] | None = None, *, name: str | None = None, **specs: Spec):
    """Decorator: traces `fn` into a Graph with one input per argument, typed by `specs`.

    Example:

        @gc.function(x=gc.spec(("N", 784)), y=gc.spec(("N",), "int64"))
        def loss_fn(x, y):
            return nn.cross_entropy(model(x), y)
    """
    def wrap(f: Callable[..., Any]) -> Function:
        return Function(f, specs, name)
    return wrap(fn) if fn is not None else wrap
