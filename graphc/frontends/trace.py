"""Tracing: a Python function of Tensors -> a Graph (`@gc.function`)."""
from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from typing import Any, Callable

from ..ir.errors import GraphBuildError
from ..ir.graph import Graph
from ..ir.types import Dim, TensorType
from .dsl import Tensor


@dataclass(frozen=True)
class Spec:
    """The declared shape and dtype of one traced input."""

    shape: tuple[Dim, ...]
    dtype: str = "float32"


def spec(shape: tuple[Dim, ...], dtype: str = "float32") -> Spec:
    """Declares an input of `shape` (ints or symbols like "N") and `dtype` for @gc.function."""
    TensorType(tuple(shape), dtype)  # validates now, at the user's line
    return Spec(tuple(shape), dtype)


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
            args = {n: g.input(n, self.specs[n].shape, self.specs[n].dtype) for n in self.arg_names}
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

    Example::

        @gc.function(x=gc.spec(("N", 784)), y=gc.spec(("N",), "int64"))
        def loss_fn(x, y):
            return nn.cross_entropy(model(x), y)
    """
    def wrap(f: Callable[..., Any]) -> Function:
        return Function(f, specs, name)
    return wrap(fn) if fn is not None else wrap
