"""Tensor types: dtypes and shapes whose dims are ints or symbols ("N", "8*N")."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Union

import ml_dtypes  # noqa: F401  - registers numpy's "bfloat16" dtype (onnx depends on it too)
import numpy as np

Dim = Union[int, str]

#: the integer dtypes with full arithmetic, besides int32 / int64
SMALL_INT_DTYPES = ("int8", "uint8", "int16", "uint16", "uint32", "uint64")
#: storage dtypes (ml_dtypes' float8 / float4 and 4- and 2-bit integers): tensors of these are
#: held, moved and converted (cast, reshape, quantize); a reference kernel computes them in
#: `compute_dtype` (float32, or int8 / uint8) and rounds the result back
FLOAT8_DTYPES = ("float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz",
                 "float8_e8m0fnu", "float4_e2m1fn")
PACKED_INT_DTYPES = ("int4", "uint4", "int2", "uint2")
STORAGE_DTYPES = FLOAT8_DTYPES + PACKED_INT_DTYPES
DTYPES = ("float32", "float64", "float16", "bfloat16", "int32", "int64", "bool") \
    + SMALL_INT_DTYPES + STORAGE_DTYPES
FLOAT_DTYPES = ("float32", "float64", "float16", "bfloat16") + FLOAT8_DTYPES
#: the low-precision floats: numpy has no bfloat16 arithmetic of its own, so the reference
#: kernels compute these in float32 and round the result back (`compute_dtype`)
LOW_PRECISION_DTYPES = ("float16", "bfloat16")
INT_DTYPES = ("int32", "int64") + SMALL_INT_DTYPES + PACKED_INT_DTYPES
UNSIGNED_DTYPES = ("uint8", "uint16", "uint32", "uint64", "uint4", "uint2")
_SHORT = {"float32": "f32", "float64": "f64", "float16": "f16", "bfloat16": "bf16",
          "int32": "i32", "int64": "i64", "bool": "bool", "int8": "i8", "uint8": "u8",
          "int16": "i16", "uint16": "u16", "uint32": "u32", "uint64": "u64",
          "float8_e4m3fn": "f8e4m3fn", "float8_e4m3fnuz": "f8e4m3fnuz", "float8_e5m2": "f8e5m2",
          "float8_e5m2fnuz": "f8e5m2fnuz", "float8_e8m0fnu": "f8e8m0fnu",
          "float4_e2m1fn": "f4e2m1fn", "int4": "i4", "uint4": "u4", "int2": "i2", "uint2": "u2"}
_FROM_SHORT = {v: k for k, v in _SHORT.items()}


# torch's short names (torch.float is float32, torch.int int32), not numpy's (np.dtype("float")
# is float64): a PyTorch user's "float" must not silently double every tensor
_TORCH_NAMES = {"float": "float32", "double": "float64", "long": "int64", "int": "int32",
                "half": "float16", "fp16": "float16", "bf16": "bfloat16", "fp32": "float32"}


def canonical_dtype(dtype) -> str:
    """Returns graphc's dtype name for a string, numpy dtype, numpy scalar type or torch dtype.

    The bare names are torch's: "float" is float32, "double" float64, "long" int64, "int"
    int32; Python's `float` / `int` types are numpy's (float64, int64), as in both libraries.

    Raises:
        TypeError: a dtype graphc does not support. Example: ``canonical_dtype("float") ->
            "float32"``.
    """
    if type(dtype).__module__ == "torch":  # torch.float32 and friends, without importing torch
        dtype = str(dtype).removeprefix("torch.")
    if isinstance(dtype, str) and dtype in _FROM_SHORT:
        return _FROM_SHORT[dtype]
    if isinstance(dtype, str) and dtype in _TORCH_NAMES:
        return _TORCH_NAMES[dtype]
    try:
        name = np.dtype(dtype).name
    except TypeError as exc:
        raise TypeError(f"unknown dtype {dtype!r}; graphc supports {', '.join(DTYPES)}") from exc
    if name not in DTYPES:
        raise TypeError(f"unsupported dtype {name!r}; graphc supports {', '.join(DTYPES)}")
    return name


def np_dtype(dtype: str) -> np.dtype:
    """numpy's dtype for a graphc dtype name ("bfloat16" is ml_dtypes' bfloat16)."""
    return np.dtype(dtype)


def compute_dtype(dtype: str) -> str:
    """The dtype a reference kernel computes a `dtype` tensor in: float32 for float16, bfloat16
    and the float8 / float4 storage dtypes (numpy lacks their math, and GPUs accumulate them in
    float32), int8 / uint8 for the 4- and 2-bit integers, else `dtype` itself.
    Example: ``compute_dtype("bfloat16") -> "float32"``."""
    if dtype in LOW_PRECISION_DTYPES or dtype in FLOAT8_DTYPES:
        return "float32"
    if dtype in PACKED_INT_DTYPES:
        return "uint8" if dtype in UNSIGNED_DTYPES else "int8"
    return dtype


def is_integer_dtype(dtype: str) -> bool:
    """True for the signed and unsigned integer dtypes (not bool).
    Example: ``is_integer_dtype("uint8") -> True``."""
    return dtype in INT_DTYPES


# ---- symbolic dims: a dim is an int or a product "k*A*B" of an int and symbols -------------

def parse_dim(d: Dim) -> tuple[int, Counter]:
    """Splits a dim into (integer coefficient, symbol multiset)."""
    if isinstance(d, (int, np.integer)):
        return int(d), Counter()
    if d is None:  # str(None) would make a symbol named "None"
        raise ValueError("a dim cannot be None here: name it with a symbol such as 'N' "
                         "(gc.spec turns None into a fresh anonymous symbol)")
    coef, syms = 1, Counter()
    for part in str(d).split("*"):
        part = part.strip()
        if part.lstrip("-").isdigit():
            coef *= int(part)
        elif part.isidentifier():
            syms[part] += 1
        else:
            raise ValueError(f"bad symbolic dim {d!r}: expected a name like 'N' or a product like '8*N'")
    return coef, syms


def make_dim(coef: int, syms: Counter) -> Dim:
    names = sorted(syms.elements())
    if not names:
        return coef
    return "*".join(([str(coef)] if coef != 1 else []) + names)


def normalize_dim(d: Dim) -> Dim:
    if isinstance(d, (int, np.integer)):
        return int(d)
    return make_dim(*parse_dim(d))


def dim_product(dims: Iterable[Dim]) -> Dim:
    coef, syms = 1, Counter()
    for d in dims:
        c, s = parse_dim(d)
        coef *= c
        syms.update(s)
    return make_dim(coef, syms) if coef != 0 else 0


def dim_divide(a: Dim, b: Dim) -> Dim | None:
    """a / b as a dim, or None when it does not divide exactly."""
    ca, sa = parse_dim(a)
    cb, sb = parse_dim(b)
    if cb == 0 or ca % cb or any(sa[k] < v for k, v in sb.items()):
        return None
    return make_dim(ca // cb, sa - sb)


def dim_symbols(d: Dim) -> list[str]:
    return sorted(parse_dim(d)[1].elements())


def eval_dim(d: Dim, bindings: dict[str, int]) -> int:
    coef, syms = parse_dim(d)
    for s, n in syms.items():
        if s not in bindings:
            raise KeyError(s)
        coef *= bindings[s] ** n
    return coef


def format_dim(d: Dim) -> str:
    return str(d)


@dataclass(frozen=True)
class TensorType:
    """The static type of a value: a shape of ints and symbols, and a dtype name."""

    shape: tuple[Dim, ...]
    dtype: str = "float32"

    def __post_init__(self):
        shape = tuple(normalize_dim(d) for d in self.shape)
        if any(isinstance(d, int) and d < 0 for d in shape):
            # a -1 batch dim is a common slip: graphc spells unknown sizes with a symbol
            raise ValueError(f"negative dim in shape {shape}; use a symbol such as 'N' for a size "
                             "known only at run time")
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "dtype", canonical_dtype(self.dtype))

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def is_float(self) -> bool:
        return self.dtype in FLOAT_DTYPES

    @property
    def is_static(self) -> bool:
        return all(isinstance(d, int) for d in self.shape)

    def numel(self) -> Dim:
        return dim_product(self.shape)

    def with_dtype(self, dtype: str) -> "TensorType":
        return TensorType(self.shape, dtype)

    def with_shape(self, shape) -> "TensorType":
        return TensorType(tuple(shape), self.dtype)

    def __str__(self) -> str:
        return f"{_SHORT[self.dtype]}[{', '.join(format_dim(d) for d in self.shape)}]"

    __repr__ = __str__


def parse_type(text: str) -> TensorType:
    """Parses 'f32[N, 784]' (the printer's form) back into a TensorType."""
    text = text.strip()
    head, _, rest = text.partition("[")
    if not rest.endswith("]"):
        raise ValueError(f"bad type {text!r}: expected like f32[N, 784]")
    body = rest[:-1].strip()
    dims = [] if not body else [d.strip() for d in body.split(",")]
    return TensorType(tuple(int(d) if d.lstrip("-").isdigit() else d for d in dims), head)


def broadcast_shapes(*shapes: tuple[Dim, ...]) -> tuple[Dim, ...]:
    """Numpy broadcasting with symbolic dims; raises ValueError naming the clashing dims."""
    rank = max((len(s) for s in shapes), default=0)
    out = []
    for i in range(rank):
        dims = [s[len(s) - rank + i] for s in shapes if len(s) - rank + i >= 0]
        real = {d for d in dims if d != 1}
        if len(real) > 1:
            raise ValueError(f"dims {' and '.join(map(str, sorted(real, key=str)))} at axis {i - rank} "
                             "cannot broadcast")
        out.append(real.pop() if real else 1)
    return tuple(out)


def promote_dtypes(a: str, b: str) -> str:
    if a == b:
        return a
    raise TypeError(f"dtypes {a} and {b} differ; cast one explicitly (gc.cast)")
