"""The op table: one row (`OpInfo`) per registered primitive, driving every per-op test.

Import it from any test module as::

    from ops.op_db import OP_DB, OpInfo, Sample, single_op_graph, sample_id

(`tests/` is on sys.path because `tests/conftest.py` lives there.)

A row names the primitive, a `samples(rng, dtype) -> list[Sample]` function drawing inputs inside
the op's domain (log/sqrt positive, away from kinks and ties so finite differences work), the
dtypes to test, whether the op has a gradient, tolerances and skips. A skip maps a check name, or
"check/dtype", to the reason (naming the missing kernel). Check names used by the suites:
"infer", "onnxruntime", "onnx_reference", "onnx_checker", "symbolic", "grad", "tvm",
"tvm_symbolic".

The input generators and `Sample` live in `tests/ops/op_samples.py`.

`single_op_graph(info, sample, dtype)` builds a graph with inputs x0..xk and one output "y", the
primitive applied once; `symbolic=True` declares the inputs with the sample's symbolic shapes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

import graphc as gc
from graphc.frontends.dsl import apply
from graphc.ops import OPS
from ops.op_samples_control import scan_samples
from ops.op_samples import (  # noqa: F401  (Sample and the constants are re-exported)
    FLOATS,
    NUMERIC,
    ALL,
    Sample,
    _uniform,
    _pos,
    _away0,
    _arr,
    _unary_samples,
    _sign_samples,
    _int_unary_samples,
    _binary_samples,
    _div_samples,
    _minmax_samples,
    _compare_samples,
    _bool_binary_samples,
    _where_samples,
    _cast_samples,
    _identity_samples,
    _constant_samples,
    _reduce_samples,
    _argmax_samples,
    _matmul_samples,
    _reshape_samples,
    _transpose_samples,
    _expand_samples,
    _concat_samples,
    _slice_samples,
    _gather_samples,
    _pad_samples,
    _conv_samples,
    _conv_t_samples,
    _maxpool_samples,
    _avgpool_samples,
    _maxpool_grad_samples,
    _safe_mul_samples,
    _gather_grad_samples,
    _random_samples,
    _gemm_samples,
    _softmax_samples,
    _layer_norm_samples,
    _size_samples,
    _softmax_ce_samples,
    _bce_samples,
    _bitwise_samples,
    _bitwise_not_samples,
    _shift_samples,
    _bitcast_samples)

#: default (rtol, atol) of forward checks against the numpy reference. The reference computes
#: float16/bfloat16 in float32 and rounds once; a backend may round intermediates (a few ulps:
#: float16 has 11 significant bits, bfloat16 8)
DEFAULT_TOL = {"float32": (1e-5, 1e-6), "float64": (1e-10, 1e-12),
               "float16": (4e-3, 2e-3), "bfloat16": (3e-2, 2e-2)}

#: the low-precision dtypes a row with float32 samples is also drawn in (`OpInfo.low_precision`)
LOW_PRECISION = ("float16", "bfloat16")


@dataclass
class OpInfo:
    """A row of the op table.

    Attributes:
        name: the primitive's registry name (graphc.ops.OPS key).
        samples: `samples(rng, dtype) -> list[Sample]`.
        dtypes: dtypes the samples are drawn in (the dtype of the op's main input).
        grad: whether gradient tests apply (default: the op's `differentiable`).
        tol: (rtol, atol) by dtype, or by "check/dtype" for one check.
        skips: check name (or "check/dtype") -> reason.
        low_precision: the float16/bfloat16 dtypes the row is also drawn in, by
            tests/ops/test_ops_low_precision.py (default: both, for a row with float32 samples).
            onnxruntime's missing kernels in them are skipped from the op's
            ``onnxruntime_cpu_missing``, with the reason.
    """

    name: str
    samples: Callable[[np.random.Generator, str], list[Sample]]
    dtypes: tuple[str, ...] = FLOATS
    grad: bool | None = None
    tol: dict[str, tuple[float, float]] = field(default_factory=dict)
    skips: dict[str, str] = field(default_factory=dict)
    low_precision: tuple[str, ...] | None = None

    def __post_init__(self):
        if self.low_precision is None:
            self.low_precision = LOW_PRECISION if "float32" in self.dtypes else ()
        if self.grad is None:
            self.grad = OPS[self.name].differentiable if self.name in OPS else False

    @property
    def op(self):
        return OPS[self.name]

    def tolerance(self, check: str, dtype: str) -> tuple[float, float]:
        """(rtol, atol) for `check` in `dtype`: 'check/dtype', then dtype, then the default."""
        for key in (f"{check}/{dtype}", dtype, check):
            if key in self.tol:
                return self.tol[key]
        return DEFAULT_TOL.get(dtype, (0.0, 0.0))

    def skip_reason(self, check: str, dtype: str | None = None,
                    sample: Sample | None = None) -> str | None:
        """Why `check` does not run for this row (in `dtype`, on `sample`), or None when it runs."""
        if check == "onnxruntime" and dtype == "bfloat16":
            return ("onnxruntime's Python binding cannot feed or fetch numpy bfloat16 arrays "
                    "(Numpy_type 256), and its CPU build has bfloat16 kernels for Cast alone")
        if (check == "onnxruntime" and dtype in LOW_PRECISION and self.name in OPS
                and dtype in self.op.onnxruntime_cpu_missing):
            return (f"onnxruntime's CPU build has no {dtype} kernel for {self.name}'s ONNX "
                    "lowering (declared in its onnxruntime_cpu_missing)")
        for skips in ((sample.skips if sample is not None else {}), self.skips):
            if dtype is not None and f"{check}/{dtype}" in skips:
                return skips[f"{check}/{dtype}"]
            if check in skips:
                return skips[check]
        return None

    def get_samples(self, dtype: str, seed: int = 0) -> list[Sample]:
        """The row's samples in `dtype`, drawn from a generator seeded by (seed, name, dtype)."""
        key = [seed] + [ord(c) for c in f"{self.name}/{dtype}"]
        return self.samples(np.random.default_rng(key), dtype)


def sample_id(sample: Sample, k: int) -> str:
    shapes = "_".join("x".join(map(str, a.shape)) or "s" for a in sample.inputs)
    return f"{k}-{sample.name or shapes}"


def grad_inputs(info: OpInfo, sample: Sample) -> tuple[int, ...]:
    """Indices of the sample's inputs that gradients are checked for."""
    if sample.grad_inputs is not None:
        return tuple(sample.grad_inputs)
    return tuple(i for i, a in enumerate(sample.inputs)
                 if a.dtype.kind == "f" and i not in info.op.nondiff_inputs)


def single_op_graph(info: OpInfo, sample: Sample, dtype: str | None = None, *,
                    symbolic: bool = False, params: bool = False):
    """A graph applying the primitive once: inputs x0..xk, output "y".

    Args:
        info: the row.
        sample: the sample whose input shapes and dtypes (and attrs) the graph takes.
        dtype: the row dtype the sample was drawn in (only used in the graph's name).
        symbolic: declare inputs with `sample.symbolic` shapes and use `sample.sym_attrs`.
        params: make the differentiable inputs (see `grad_inputs`) parameters holding the sample
            values instead of graph inputs; they are then left out of the feeds.

    Returns:
        (graph, feeds): feeds maps input names to the sample arrays.
    """
    if symbolic and sample.symbolic is None:
        raise ValueError(f"{info.name}: sample {sample.name!r} has no symbolic shapes")
    shapes = sample.symbolic if symbolic else [a.shape for a in sample.inputs]
    attrs = (sample.sym_attrs if sample.sym_attrs is not None else sample.attrs) if symbolic \
        else sample.attrs
    as_param = set(grad_inputs(info, sample)) if params else set()
    g = gc.Graph(f"{info.name}_{dtype or 'sample'}")
    feeds = {}
    with g:
        xs = []
        for i, (a, shape) in enumerate(zip(sample.inputs, shapes)):
            if i in as_param:
                xs.append(g.param(f"x{i}", init=a.copy()))
            else:
                xs.append(g.input(f"x{i}", tuple(shape), a.dtype.name))
                feeds[f"x{i}"] = a
        g.output(y=apply(info.name, xs, dict(attrs)))
    return g, feeds


# ---- the table ----------------------------------------------------------------------------------

_ORT_NO_F64 = "onnxruntime has no float64 kernel for {}"

_BIT_DTYPES = ("int8", "uint8", "int16", "int32", "int64", "uint64")
_UNSIGNED = ("uint8", "uint16", "uint32", "uint64")
_NO_BITCAST = ("ONNX has BitCast from opset 26 only, and the op table exports at graphc's default "
               "opset 18 (tests/ops/test_ops_bitwise.py runs it on onnxruntime at opset 28)")

OP_DB: list[OpInfo] = [
    # elementwise unary
    OpInfo("neg", _int_unary_samples(_uniform), NUMERIC),
    OpInfo("exp", _unary_samples(_uniform)),
    OpInfo("log", _unary_samples(_pos)),
    OpInfo("sqrt", _unary_samples(_pos)),
    OpInfo("abs", _int_unary_samples(_away0), NUMERIC),
    OpInfo("tanh", _unary_samples(_uniform)),
    OpInfo("sigmoid", _unary_samples(lambda r, s, d: _uniform(r, s, d, -6.0, 6.0))),
    OpInfo("relu", _int_unary_samples(_away0), NUMERIC),
    OpInfo("erf", _unary_samples(_uniform),
           # onnx.reference's Erf computes in float32 (np.vectorize(erf, otypes="f"))
           tol={"onnx_reference/float64": (1e-6, 1e-7)},
           skips={"onnxruntime/float64": _ORT_NO_F64.format("Erf")}),
    OpInfo("sign", _sign_samples, NUMERIC),
    # binary
    OpInfo("add", _binary_samples(_arr), NUMERIC),
    OpInfo("sub", _binary_samples(_arr), NUMERIC),
    OpInfo("mul", _binary_samples(_arr), NUMERIC),
    OpInfo("div", _div_samples, NUMERIC),
    OpInfo("pow", _binary_samples(_pos, _uniform),
           skips={"tvm/bfloat16": "TVM 0.27's LegalizeOps has no bfloat16 power (IsFloatType check)"}),
    OpInfo("maximum", _minmax_samples, NUMERIC),
    OpInfo("minimum", _minmax_samples, NUMERIC),
    OpInfo("equal", _compare_samples, ALL),
    OpInfo("less", _compare_samples, NUMERIC),
    OpInfo("less_equal", _compare_samples, NUMERIC),
    OpInfo("greater", _compare_samples, NUMERIC),
    OpInfo("greater_equal", _compare_samples, NUMERIC),
    OpInfo("logical_and", _bool_binary_samples, ("bool",)),
    OpInfo("logical_or", _bool_binary_samples, ("bool",)),
    OpInfo("logical_not", lambda r, d: [Sample([_arr(r, (3, 4), "bool")], symbolic=[("N", 4)])],
           ("bool",)),
    OpInfo("where", _where_samples, ALL,
           skips={f"onnxruntime/{t}": f"onnxruntime has no {t} kernel for Where"
                  for t in ("bool", "int16", "uint16", "uint64")}),
    OpInfo("cast", _cast_samples, ALL),
    OpInfo("stop_gradient", _identity_samples, ALL),
    OpInfo("constant", _constant_samples, ALL),
    # reductions and matmul
    OpInfo("sum", _reduce_samples(), NUMERIC),
    OpInfo("mean", _reduce_samples()),
    OpInfo("max", _reduce_samples(True), NUMERIC),
    OpInfo("min", _reduce_samples(True), NUMERIC),
    OpInfo("argmax", _argmax_samples, NUMERIC,
           skips={"tvm/bfloat16": "TVM 0.27's BF16ComputeLegalize fails on argmax's bfloat16 "
                                  "comparison (StructuralEqual check)"}),
    OpInfo("matmul", _matmul_samples, NUMERIC),
    # shapes and indexing
    OpInfo("reshape", _reshape_samples, ALL),
    OpInfo("transpose", _transpose_samples, ALL),
    OpInfo("expand", _expand_samples, ALL,
           skips={"tvm/bfloat16": "TVM 0.27's BF16StorageLegalize fails on a bfloat16 broadcast "
                                  "of a scalar (dtype mismatch on BufferStore)"}),
    OpInfo("concat", _concat_samples, ALL),
    OpInfo("slice", _slice_samples, ALL),
    OpInfo("gather", _gather_samples, ALL),
    OpInfo("pad", _pad_samples, ALL),
    # neural-network ops
    # TVM accumulates float16 convolutions in float16
    OpInfo("conv2d", _conv_samples, tol={"float32": (1e-5, 1e-5), "tvm/float16": (1e-2, 1e-2)},
           skips={"onnxruntime/float64": _ORT_NO_F64.format("Conv")}),
    OpInfo("conv_transpose2d", _conv_t_samples,
           tol={"float32": (1e-5, 1e-5), "tvm/float16": (1e-2, 1e-2)},
           skips={"onnxruntime/float64": _ORT_NO_F64.format("ConvTranspose")}),
    OpInfo("max_pool2d", _maxpool_samples),
    OpInfo("avg_pool2d", _avgpool_samples,
           skips={"onnxruntime/float64": _ORT_NO_F64.format("AveragePool")}),
    # its 24 random mantissa bits are scaled by 2**-24, beyond float16's range: float32 only
    OpInfo("random_uniform", _random_samples, low_precision=()),
    # primitives used by gradient rules
    OpInfo("max_pool2d_grad", _maxpool_grad_samples,
           skips={"tvm/bfloat16": "TVM 0.27's BF16ComputeLegalize fails on the bfloat16 "
                                  "window comparison (StructuralEqual check)"}),
    OpInfo("safe_mul", _safe_mul_samples),
    OpInfo("gather_grad", _gather_grad_samples),
    # fused primitives made by the fusion passes (graphc/ops/fused.py)
    OpInfo("gemm", _gemm_samples),
    OpInfo("softmax", _softmax_samples),
    OpInfo("size", _size_samples),
    OpInfo("layer_norm", _layer_norm_samples, tol={"float32": (1e-5, 1e-5)}),
    OpInfo("softmax_cross_entropy", _softmax_ce_samples,
           tol={"float32": (1e-5, 1e-5), "tvm/float16": (3e-2, 5e-3)}),
    OpInfo("bce_with_logits", _bce_samples),
    # integer bit operations and bitcast (graphc/ops/bitwise.py)
    OpInfo("bitwise_and", _bitwise_samples, _BIT_DTYPES),
    OpInfo("bitwise_or", _bitwise_samples, _BIT_DTYPES),
    OpInfo("bitwise_xor", _bitwise_samples, _BIT_DTYPES),
    OpInfo("bitwise_not", _bitwise_not_samples, _BIT_DTYPES),
    # ONNX BitShift takes signed integers only from opset 28: unsigned rows (the signed refs are
    # checked against onnx's reference in test_ops_bitwise.py)
    OpInfo("shift_left", _shift_samples, _UNSIGNED),
    OpInfo("shift_right", _shift_samples, _UNSIGNED),
    OpInfo("bitcast", _bitcast_samples, ("float32", "int32", "float16", "uint8", "int64"),
           low_precision=(),
           skips={"onnxruntime": _NO_BITCAST, "onnx_reference": _NO_BITCAST,
                  "onnx_checker": _NO_BITCAST,
                  "tvm": "TVM 0.27's Relax has no reinterpret op (tvm.relax.op lacks one), so "
                         "bitcast has no TVM rule"}),
    # control flow (graphc/ops/control.py): a loop with a body subgraph
    OpInfo("scan", scan_samples, low_precision=(),
           skips={"tvm_symbolic": "the TVM backend unrolls scan at lowering time (the graphc IR "
                                  "stays rolled), so it needs a static trip count"}),
]

OP_BY_NAME: dict[str, OpInfo] = {info.name: info for info in OP_DB}
