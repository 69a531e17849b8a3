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
What passes and backends may assume about an op without knowing which op it is (a view, a
commutative product, the Relax op it lowers to) is declared with it in ``traits`` (`OpTraits`):
a pass asks ``op.traits.commutative``, never ``op.name == "add"``.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..ir.types import TensorType, np_dtype

OPS: dict[str, "Op"] = {}


@dataclass(frozen=True)
class OpTraits:
    """Facts about a primitive that passes and backends rely on instead of its name.

    Attributes:
        elementwise: output element i depends only on element i of each (broadcast) input.
        broadcasting: a binary op whose two operands broadcast with numpy rules, so an explicit
            expand of an operand is redundant when the result keeps its shape.
        commutative: ``f(a, b) == f(b, a)`` for a binary op (up to NaN payloads and the sign of a
            zero); rewrite patterns over it match both operand orders.
        view_like: the output holds every element of input 0 unchanged, moved, repeated or
            relabelled (reshape, expand, transpose, stop_gradient): a view of a uniform literal is
            that literal, and a view of finite values is finite.
        converts_dtype: the output is input 0 converted elementwise to the dtype of the output
            (cast); from an integer or bool input it holds no NaN or Inf.
        selects: each output element is taken from input 1 or input 2 as the bool input 0 says
            (where).
        concatenates: the output is the inputs joined along ``attrs["axis"]`` (concat).
        reduction: the output reduces input 0 over ``attrs["axes"]`` (None: all) with
            ``attrs["keepdims"]`` (sum, mean, max, min).
        constant: the op has no inputs and its node holds the value in ``attrs["value"]``.
        low_precision: a product (matmul, gemm, convolution) that a mixed-precision policy runs
            in float16/bfloat16 with float32 accumulation (PyTorch autocast's
            "lower_precision_fp" list; graphc.passes.autocast).
        added_term: the index of an optional input that is added to the product, scaled by
            ``attrs["beta"]`` (gemm's c); None when there is none.
        exact_bits: the op reads its inputs' bits as stored (bitcast): the reference interpreter
            passes float16 / float8 / 4-bit inputs unchanged instead of widening them to their
            compute dtype.
        relax_op: the dotted name under ``tvm.relax.op`` that the generic Unary and Binary TVM
            rules call with the inputs (``"exp"``, ``"nn.relu"``); None for ops with their own rule.

    Example::

        traits = OpTraits(elementwise=True, broadcasting=True, commutative=True, relax_op="add")
    """

    elementwise: bool = False
    broadcasting: bool = False
    commutative: bool = False
    view_like: bool = False
    converts_dtype: bool = False
    selects: bool = False
    concatenates: bool = False
    reduction: bool = False
    constant: bool = False
    low_precision: bool = False
    added_term: int | None = None
    exact_bits: bool = False
    relax_op: str | None = None


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
    #: what passes and backends may assume about this op (see `OpTraits`)
    traits: OpTraits = OpTraits()
    #: output dtypes for which onnxruntime's CPU build has no kernel of this op's ONNX lowering
    #: (a session would fail with NOT_IMPLEMENTED); the onnxruntime backend refuses such nodes
    #: on the CPU before it creates a session, naming each one and its source line. The default
    #: is bfloat16: onnxruntime's CPU build (1.31) has bfloat16 kernels for Cast and almost nothing
    #: else (no Add, MatMul, Exp, ReduceSum, Relu...), and its Python binding cannot feed numpy
    #: bfloat16 arrays; float16 has CPU kernels for nearly every op graphc emits.
    onnxruntime_cpu_missing: tuple[str, ...] = ("bfloat16",)
    #: the ONNX opset from which this op's ONNX lowering accepts bfloat16 (Conv, MaxPool,
    #: AveragePool, ConvTranspose: 22); below it the exporter runs the node in float32 between
    #: Casts
    onnx_bfloat16_opset: int = 0
    #: where onnxruntime's CPU kernel of this op's ONNX lowering puts its output (read by
    #: graphc.inspect's memory estimate): "new" (a buffer of its own), "alias" (a view of input
    #: 0: Reshape), "inplace" (may take input 0's buffer when that input dies here: the kernels
    #: declaring ``MayInplace(0, 0)``, unary activations and Cast)
    onnx_output_buffer: str = "new"
    #: optional rules, filled in by each primitive
    vjp: Callable[..., Any] | None = None
    onnx: Callable[..., Any] | None = None
    tvm: Callable[..., Any] | None = None

    def infer(self, *types: TensorType, **attrs: Any) -> TensorType:
        raise NotImplementedError

    def ref(self, *xs: np.ndarray, **attrs: Any) -> np.ndarray:
        raise NotImplementedError

    def onnx_scratch_bytes(self, ins: list[TensorType], out: TensorType, attrs: dict[str, Any],
                           dies: list[bool]) -> int:
        """Bytes this op's ONNX lowering holds at its worst beyond its inputs and output, on
        onnxruntime's CPU build, for static types (negative: an input dying here is dropped
        before the output is allocated; `dies` says which do). 0 for most ops."""
        return 0

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

    def relax_fn(self, e: Any) -> Callable[..., Any]:
        """The Relax op named by ``traits.relax_op``, looked up on the emitter's ``e.R``.

        Raises:
            NotImplementedError: the op declares no ``relax_op``.
        """
        name = self.traits.relax_op
        if not name:
            raise NotImplementedError(f"{self.name} declares no relax_op trait")
        fn = e.R
        for part in name.split("."):
            fn = getattr(fn, part)
        return fn

    def attr_default(self, name: str) -> Any:
        """The value an attribute takes when a node omits it: the default in `infer`'s signature.

        Returns None when `infer` has no such keyword or no default for it.
        """
        defaults = self.__dict__.get("_attr_defaults")
        if defaults is None:  # each primitive is one instance: read its signature once
            params = inspect.signature(self.infer).parameters.values()
            defaults = {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}
            self._attr_defaults = defaults
        return defaults.get(name)

    def __repr__(self) -> str:
        return f"<op {self.name}>"


def register(cls: type[Op]) -> type[Op]:
    """Class decorator: instantiates the primitive and adds it to the registry under `cls.name`."""
    if not cls.name:
        cls.name = cls.__name__
    if cls.name in OPS:
        raise ValueError(f"primitive {cls.name!r} is defined twice")
    if not isinstance(cls.traits, OpTraits):
        raise TypeError(f"primitive {cls.name!r}: traits must be an OpTraits, got {cls.traits!r}")
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


def static_bytes(t: TensorType) -> int:
    """The bytes of a type whose dims are all ints."""
    return static_numel(t) * np_dtype(t.dtype).itemsize


def static_numel(t: TensorType) -> int:
    """The element count of a type whose dims are all ints (cost rules get bound types)."""
    n = t.numel()
    if not isinstance(n, int):
        raise ValueError(f"type {t} has symbolic dims; bind them before counting")
    return n
