"""ONNX import handlers for the random ops, registered in the table of onnx_import_ops.py.

RandomUniform, RandomNormal, RandomUniformLike, RandomNormalLike, Bernoulli and Dropout (with
training_mode=True) draw from graphc's counter-based generator (the `random_uniform` primitive,
graphc/ops/nn.py): every value is a pure function of the graph's `rng_seed` / `rng_step` inputs
(declared on first use, as `F.dropout` does), the draw site and the element index, so a run
replays on every backend. Each node draws its own stream (its site number is mixed into the
seed), and the node's ONNX `seed` attribute, when given, is mixed in too. The values therefore
differ from those of onnxruntime's or onnx's reference generator; only the distributions match
(tests/frontends/test_onnx_import_random.py checks the moments). Normal values come from
Box-Muller over two uniform draws (the cosine by
onnx_import_math's series composite, as the importer's Cos).
"""
from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..ir.types import Dim
from . import dsl
from .dsl import Tensor
from .functional import rng_inputs
from .onnx_import_math import sin_cos
from .onnx_import_ops import Val, handler

if TYPE_CHECKING:  # pragma: no cover
    from .onnx_import import _Ctx

#: the op types whose values come from the generator: never folded at import
RANDOM_OPS = ("RandomUniform", "RandomNormal", "RandomUniformLike", "RandomNormalLike",
              "Bernoulli", "Dropout")

#: the float types the generator draws in directly; narrower ones draw float32 and are cast
_DRAW_DTYPES = ("float32", "float64")
#: the seed offset between two draw sites of one graph (as F.dropout)
_SITE_STRIDE = 1000003


def _seed_offset(seed: float) -> int:
    """A stream offset in [1, 2^31) from an ONNX float `seed` attribute (its float32 bits)."""
    bits = struct.unpack("<I", struct.pack("<f", float(seed)))[0]
    return (bits * 0x9E3779B1) % ((1 << 31) - 1) + 1


def uniform(c: _Ctx, shape: Sequence[Dim], dtype: str) -> Tensor:
    """Uniform [0, 1) values of `shape` and float `dtype` from this node's own stream."""
    g = c.imp.g
    seed, step = rng_inputs(g)
    draw = dsl.get_op("random_uniform")
    offset = _SITE_STRIDE * sum(1 for n in g.nodes if n.op is draw)
    if "seed" in c.attrs:
        offset += _seed_offset(c.attr("seed"))
    if offset:
        seed = seed + dsl.constant(np.int64(offset), graph=g)
    if dtype in _DRAW_DTYPES:
        return dsl.random_uniform(seed, step, tuple(shape), dtype)
    # float16's range ends below the generator's 2^24 steps: draw float32, cast once
    return dsl.cast(dsl.random_uniform(seed, step, tuple(shape), "float32"), dtype)


def normal(c: _Ctx, shape: Sequence[Dim], dtype: str) -> Tensor:
    """Standard normal values (Box-Muller over two uniform draws) of `shape` and `dtype`."""
    work = dtype if dtype in _DRAW_DTYPES else "float32"
    u1, u2 = uniform(c, shape, work), uniform(c, shape, work)
    radius = dsl.sqrt(dsl.log(1.0 - u1) * -2.0)  # 1 - u1 in (0, 1]: the log is finite
    # graphc has no cos primitive: the importer's float64 series composite (as ONNX Cos)
    _, cos = sin_cos(dsl.cast(u2, "float64") * (2.0 * np.pi))
    z = radius * (cos if work == "float64" else dsl.cast(cos, work))
    return z if work == dtype else dsl.cast(z, dtype)


def _float_dtype(c: _Ctx, default: str) -> str:
    """The node's `dtype` attribute as a graphc dtype name (default `default`), a float type."""
    dtype = c.imp.dtype_of(int(c.attr("dtype")), c) if "dtype" in c.attrs else default
    if not dtype.startswith(("float", "bfloat")):
        raise c.fail(f"dtype {dtype} is not a floating-point type")
    return dtype


def _shape(c: _Ctx) -> tuple[int, ...]:
    """The `shape` attribute, every dim a non-negative int."""
    if "shape" not in c.attrs:
        raise c.fail("attribute 'shape' is missing")
    shape = tuple(int(d) for d in np.atleast_1d(c.attr("shape")))
    if any(d < 0 for d in shape):
        raise c.fail(f"shape {list(shape)} has a negative dim")
    return shape


def _uniform_of(c: _Ctx, shape: Sequence[Dim], dtype: str) -> Tensor:
    """RandomUniform's values: uniform on [low, high)."""
    low, high = float(c.attr("low", 0.0)), float(c.attr("high", 1.0))
    if not (np.isfinite(low) and np.isfinite(high)) or high < low:
        raise c.fail(f"low={low} and high={high} must be finite with low <= high")
    work = dtype if dtype in _DRAW_DTYPES else "float32"
    u = uniform(c, shape, work) * np.asarray(high - low, work) + np.asarray(low, work)
    u = u if work == dtype else dsl.cast(u, dtype)
    if high > low:  # rounding can reach `high` itself: keep the range half-open
        below = np.nextafter(np.asarray(high, dtype), np.asarray(low, dtype))
        u = dsl.where(u < np.asarray(high, dtype), u, below)
    return u


def _normal_of(c: _Ctx, shape: Sequence[Dim], dtype: str) -> Tensor:
    """RandomNormal's values: normal with `mean` and standard deviation `scale`."""
    mean, scale = float(c.attr("mean", 0.0)), float(c.attr("scale", 1.0))
    if not (np.isfinite(mean) and np.isfinite(scale)) or scale < 0:
        raise c.fail(f"mean={mean} and scale={scale} must be finite with scale >= 0")
    work = dtype if dtype in _DRAW_DTYPES else "float32"
    z = normal(c, shape, work) * np.asarray(scale, work) + np.asarray(mean, work)
    return z if work == dtype else dsl.cast(z, dtype)


@handler("RandomUniform")
def _random_uniform(c: _Ctx) -> Val:
    return _uniform_of(c, _shape(c), _float_dtype(c, "float32"))


@handler("RandomNormal")
def _random_normal(c: _Ctx) -> Val:
    return _normal_of(c, _shape(c), _float_dtype(c, "float32"))


@handler("RandomUniformLike")
def _random_uniform_like(c: _Ctx) -> Val:
    x = c.t(0)
    return _uniform_of(c, x.shape, _float_dtype(c, x.dtype))


@handler("RandomNormalLike")
def _random_normal_like(c: _Ctx) -> Val:
    x = c.t(0)
    return _normal_of(c, x.shape, _float_dtype(c, x.dtype))


@handler("Bernoulli")
def _bernoulli(c: _Ctx) -> Val:
    p = c.t(0)
    if not p.dtype.startswith(("float", "bfloat")):
        raise c.fail(f"the probabilities have dtype {p.dtype}; Bernoulli needs a float type")
    to = c.imp.dtype_of(int(c.attr("dtype")), c) if "dtype" in c.attrs else p.dtype
    work = p.dtype if p.dtype in _DRAW_DTYPES else "float32"
    probs = p if work == p.dtype else dsl.cast(p, work)
    return dsl.cast(uniform(c, p.shape, work) < probs, to)


@handler("Dropout", static=(1, 2))
def _dropout(c: _Ctx) -> Sequence[Val]:
    x = c.t(0)
    training = c.has(2) and bool(np.asarray(c.const(2, "training_mode")).reshape(()))
    ratio = float(np.asarray(c.const(1, "ratio")).reshape(())) if c.has(1) else \
        float(c.attr("ratio", 0.5))
    want_mask = len(c.node.output) > 1 and bool(c.node.output[1])
    if not training or ratio == 0.0:  # the identity; a mask of all true
        if not want_mask:
            return [c.inputs[0]]
        return [c.inputs[0], dsl.broadcast_to(dsl.constant(np.ones((), bool)), x.shape)]
    if not 0.0 <= ratio <= 1.0:
        raise c.fail(f"ratio {ratio} is outside [0, 1]")
    if not x.dtype.startswith(("float", "bfloat")):
        raise c.fail(f"the input has dtype {x.dtype}; training-mode Dropout needs a float type")
    work = x.dtype if x.dtype in _DRAW_DTYPES else "float32"
    keep = uniform(c, x.shape, work) >= np.asarray(ratio, work)
    scale = 1.0 / (1.0 - ratio) if ratio < 1.0 else 0.0  # ratio 1 keeps nothing
    y = dsl.where(keep, x * np.asarray(scale, x.dtype), np.asarray(0, x.dtype))
    return [y, keep] if want_mask else [y]
