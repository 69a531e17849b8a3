"""The op contract: every primitive is one class holding all of its rules.

A primitive defines, in one block:

- ``infer(*types, **attrs) -> TensorType``: output type; raises ValueError/TypeError for bad input.
- ``ref(*arrays, **attrs) -> ndarray``: the numpy kernel, the living definition of the op.
- ``vjp(g, *xs, y, **attrs) -> tuple``: cotangent of each input (a DSL Tensor or None), written
  with graphc's own DSL so the backward graph is an ordinary graph. Un-broadcasting is done by the
  autodiff pass, so a rule may return a gradient in the broadcast (output) shape. A rule whose
  derivative can be infinite (log, sqrt, div, pow, exp) multiplies g by it with the `safe_mul`
  primitive (0 where g == 0), so a branch that `where` did not take gets 0, never 0 * inf = nan.
- ``onnx(e, *xs, **attrs) -> str`` and ``tvm(e, *xs, **attrs)``: lowerings given an emitter; ops
  never import onnx or tvm.

Attributes named in ``shape_attrs`` hold dims that may be symbolic; backends resolve them.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..ir.types import TensorType

OPS: dict[str, "Op"] = {}


class Op:
    """Base class of primitives. Subclasses are registered with `@register`."""

    name: str = ""
    #: number of inputs, or None for variadic
    arity: int | None = 1
    #: False when the output carries no gradient at all (argmax, comparisons, random)
    differentiable: bool = True
    #: indices of inputs that never receive a gradient (integer indices, seeds)
    nondiff_inputs: tuple[int, ...] = ()
    #: attributes holding (possibly symbolic) dims
    shape_attrs: tuple[str, ...] = ()
    #: optional rules, filled in by each primitive
    vjp: Callable[..., Any] | None = None
    onnx: Callable[..., Any] | None = None
    tvm: Callable[..., Any] | None = None

    def infer(self, *types: TensorType, **attrs: Any) -> TensorType:
        raise NotImplementedError

    def ref(self, *xs: np.ndarray, **attrs: Any) -> np.ndarray:
        raise NotImplementedError

    def cost(self, *xs: TensorType, y: TensorType, **attrs: Any) -> int:
        """FLOPs of one application to static types (graphc.inspect): one per output element."""
        return static_numel(y)

    # -- helpers used by the IR, not overridden ---------------------------------------------
    def infer_checked(self, types: list[TensorType], attrs: dict[str, Any]) -> TensorType:
        if self.arity is not None and len(types) != self.arity:
            raise ValueError(f"takes {self.arity} inputs, got {len(types)}")
        t = self.infer(*types, **attrs)
        if not isinstance(t, TensorType):
            raise TypeError(f"infer returned {type(t).__name__}, not TensorType")
        return t

    def has_vjp(self) -> bool:
        return self.vjp is not None

    def __repr__(self) -> str:
        return f"<op {self.name}>"


def register(cls: type[Op]) -> type[Op]:
    """Class decorator: instantiates the primitive and adds it to the registry under `cls.name`."""
    if not cls.name:
        cls.name = cls.__name__
    if cls.name in OPS:
        raise ValueError(f"primitive {cls.name!r} is defined twice")
    OPS[cls.name] = cls()
    return cls


def get_op(name: str) -> Op:
    try:
        return OPS[name]
    except KeyError:
        raise KeyError(f"no primitive named {name!r}") from None


# ---- small shared helpers for infer rules -------------------------------------------------------

def fmt_shape(t: TensorType) -> str:
    return "(" + ", ".join(str(d) for d in t.shape) + ")"


def norm_axis(axis: int, rank: int) -> int:
    if not -rank <= axis < max(rank, 1):
        raise ValueError(f"axis {axis} is out of range for rank {rank}")
    return axis % rank if rank else 0


def norm_axes(axes, rank: int) -> tuple[int, ...]:
    if axes is None:
        return tuple(range(rank))
    if isinstance(axes, (int, np.integer)):
        axes = (int(axes),)
    out = tuple(sorted({norm_axis(int(a), rank) for a in axes}))
    return out


def require_float(t: TensorType, what: str = "input") -> None:
    if not t.is_float:
        raise TypeError(f"{what} must be float32 or float64, got {t.dtype}")


def static_numel(t: TensorType) -> int:
    """The element count of a type whose dims are all ints (cost rules get bound types)."""
    n = t.numel()
    if not isinstance(n, int):
        raise ValueError(f"type {t} has symbolic dims; bind them before counting")
    return n
