"""Runs a `Program` forward and through `gc.grad` on each backend and compares with float64 numpy.

`run_program(p)` builds the program's loss graph in float64, differentiates it with `gc.grad`
(wrt every float input) and runs it on the numpy backend: that is the reference. Then it builds
and differentiates the same program in `p.dtype` and runs it on each backend asked for; every
output (the loss, the forward outputs, every gradient) must match the reference in shape, dtype
and value (ints and bools exactly, floats within `TOL[dtype]`, NaN where the reference has NaN).

A mismatch that belongs to a bug listed in `KNOWN` (a feature of the program and a backend) is
counted as known, not failed; every other mismatch is returned in `Result.mismatches`.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

import numpy as np

import graphc as gc
from graphc.ir.types import eval_dim
from differential.graph_gen import Program

#: (rtol, atol) of a backend's result in this dtype against the float64 reference; atol is
#: relative to the output's largest reference magnitude (at least 1), so it scales with the data.
#: Over 2,500 random graphs the worst float32 error used 11% of it and float64 ones under 1%; a
#: wrong constant or a dropped term is off by far more. (layer_norm over a slice of near-equal
#: values amplifies float32 rounding ~300x, more in its gradient: the generator avoids those.)
TOL = {"float32": (1e-4, 1e-4), "float64": (1e-10, 1e-10)}


def ort_lacks_float64(g: gc.Graph) -> bool:
    """Whether onnxruntime's CPU build lacks a float64 kernel for an op of `g` (erf, conv2d,
    conv_transpose2d, avg_pool2d: each op says so in `onnxruntime_cpu_missing`); such a float64
    program runs on onnxruntime in float32 instead."""
    return any("float64" in getattr(n.op, "onnxruntime_cpu_missing", ()) for n in g.nodes)


#: onnx.reference computes Erf in float32 (np.vectorize(erf, otypes="f")): a float64 graph with
#: erf gets float32 tolerances there
ONNX_REF_F32_OPS = {"erf"}


def _grouped_conv_t(n, bindings) -> bool:
    return n.op.name == "conv_transpose2d" and n.attrs.get("groups", 1) > 1


def _empty_conv_t(n, bindings) -> bool:
    return n.op.name == "conv_transpose2d" and any(
        eval_dim(d, bindings) == 0 for v in (n.inputs[0], n.output) for d in v.type.shape)


def _unit_stride_max_pool(n, bindings) -> bool:
    return n.op.name in ("max_pool2d", "max_pool2d_grad") and tuple(n.attrs["stride"]) == (1, 1)


#: nodes that onnx.reference (onnx 1.23) runs wrongly, each with the reason: a graph holding one
#: is not run there (numpy and onnxruntime still check it)
ONNX_REF_BROKEN = [
    (_grouped_conv_t, "onnx.reference's ConvTranspose is wrong for group > 1 (it reshapes W to "
                      "(group, C/group, ...)); avg_pool2d's and grouped conv2d's gradients use "
                      "one"),
    (_empty_conv_t, "onnx.reference's ConvTranspose raises on an empty input (its loop over the "
                    "batch never sets the result) or with no output channels (a reshape to "
                    "(0, -1, k)); conv2d's gradient uses one"),
    (_unit_stride_max_pool, "onnx.reference's MaxPool with strides (1, 1) returns wrong Indices "
                            "(max_pool2d_grad's lowering reads them) and, with pads (0, p) or "
                            "(p, 0), wrong values or an error (ORT and numpy agree)"),
]


@dataclass
class Known:
    """A mismatch whose cause is known: programs with `feature` may differ on `backends`."""

    feature: str
    backends: tuple
    reason: str


#: known mismatches, each pinned by a test in test_differential.py that xfails while it lasts
KNOWN: list[Known] = []


@dataclass
class Result:
    """What one program did: per backend, the worst error as a share of the tolerance."""

    graphs: int = 0
    runs: dict = field(default_factory=dict)          # backend -> number of runs
    worst: dict = field(default_factory=dict)         # backend/dtype -> worst error / tolerance
    skipped: dict = field(default_factory=dict)       # backend -> reason
    mismatches: list = field(default_factory=list)    # (backend, text)
    known: list = field(default_factory=list)         # (backend, Known)
    primitives: set = field(default_factory=set)      # graphc primitives in the gradient graph
    nodes: int = 0                                    # nodes of the float64 gradient graph
    seconds: float = 0.0

    def __str__(self) -> str:
        lines = [f"runs {self.runs}, worst error/tolerance {self.worst}"]
        lines += [f"skipped {b}: {r}" for b, r in self.skipped.items()]
        lines += [f"known mismatch on {b}: {k.reason}" for b, k in self.known]
        lines += [f"MISMATCH on {b}: {t}" for b, t in self.mismatches]
        return "\n".join(lines)


def grad_graph(p: Program, dtype: str, fused: bool = False) -> gc.Graph:
    """The program's loss graph in `dtype` through `gc.grad` (wrt every float input). `fused`
    passes it through the pipelines a training step uses: "fuse-forward" (softmax, layer_norm,
    gemm, loss fusions) before autodiff, "fold-transposes" and "fuse-step" after it."""
    g, wrt = p.build(dtype)
    if fused:
        g = gc.get_pipeline("fuse-forward")(g)
    gg = gc.grad(g, wrt=wrt) if wrt else g
    if fused:
        gg = gc.get_pipeline("fuse-step")(gc.get_pipeline("fold-transposes")(gg))
    return gg


def op_names(g: gc.Graph) -> set[str]:
    return {n.op.name for n in g.nodes}


def compare(got: dict, want: dict, dtype: str, tol_dtype: str | None = None
            ) -> tuple[list[str], float]:
    """(mismatch texts, worst error as a share of the tolerance) of `got` against `want`."""
    rtol, atol = TOL[tol_dtype or dtype]
    problems, worst = [], 0.0
    if list(got) != list(want):
        return [f"outputs {list(got)}, reference {list(want)}"], np.inf
    for k, w in want.items():
        g = np.asarray(got[k])
        exp_dtype = np.dtype(dtype) if w.dtype.kind == "f" else w.dtype
        if g.dtype != exp_dtype:
            problems.append(f"{k}: dtype {g.dtype}, expected {exp_dtype}")
            continue
        if g.shape != w.shape:
            problems.append(f"{k}: shape {g.shape}, reference {w.shape}")
            continue
        if w.dtype.kind != "f":
            if not np.array_equal(g, w):
                i = np.argwhere(g != w)[0]
                problems.append(f"{k}: at {tuple(i)} got {g[tuple(i)]}, reference {w[tuple(i)]}")
            continue
        if not w.size:
            continue
        g64 = g.astype(np.float64)
        nan_w, nan_g = np.isnan(w), np.isnan(g64)
        if not np.array_equal(nan_w, nan_g):
            i = tuple(np.argwhere(nan_w != nan_g)[0])
            problems.append(f"{k}: at {i} got {g64[i]}, reference {w[i]} (NaN differs)")
            continue
        inf_w = np.isinf(w)
        if not np.array_equal(np.where(inf_w, w, 0), np.where(np.isinf(g64), g64, 0)):
            i = tuple(np.argwhere(np.isinf(w) != np.isinf(g64))[0]) if \
                np.any(np.isinf(w) != np.isinf(g64)) else tuple(np.argwhere(inf_w)[0])
            problems.append(f"{k}: at {i} got {g64[i]}, reference {w[i]} (Inf differs)")
            continue
        fin = np.isfinite(w)
        scale = max(1.0, float(np.max(np.abs(w[fin]), initial=0.0)))
        err = np.abs(g64 - w)
        lim = atol * scale + rtol * np.abs(w)
        share = np.where(fin, err / lim, 0.0)
        i = np.unravel_index(int(np.argmax(share)), share.shape)
        worst = max(worst, float(share[i]))
        if share[i] > 1:
            problems.append(f"{k}: at {tuple(int(j) for j in i)} got {g64[i]!r}, reference "
                            f"{w[i]!r} (|diff| {err[i]:.3g} > {lim[i]:.3g}; rtol {rtol}, atol "
                            f"{atol} x scale {scale:.3g})")
    return problems, worst


def _run(backend: str, g: gc.Graph, feeds: dict) -> dict:
    if backend == "onnx_reference":
        from onnx.reference import ReferenceEvaluator
        model = gc.to_onnx(g)
        names = [o.name for o in model.graph.output]
        return dict(zip(names, ReferenceEvaluator(model).run(None, feeds)))
    return gc.compile(g, backend)(**feeds)


def run_program(p: Program, backends=("numpy", "onnxruntime", "onnx_reference")) -> Result:
    """Runs `p` on `backends` against the float64 numpy reference; never raises for a mismatch
    (a backend that raises is a mismatch too)."""
    t0 = time.perf_counter()
    res = Result(graphs=1)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        g64 = grad_graph(p, "float64")
        want = gc.compile(g64, "numpy")(**p.feeds("float64"))
        res.primitives = op_names(g64)
        res.nodes = len(g64.nodes)
        graphs = {("float64", False): g64}
        for name in backends:
            # "backend:fused": the graph made with the training step's fusion pipelines
            backend, _, variant = name.partition(":")
            fused = variant == "fused"
            dtype = p.dtype
            if name == "numpy" and dtype == "float64":
                continue  # that is the reference itself
            if backend == "onnxruntime" and dtype == "float64" and ort_lacks_float64(g64):
                dtype = "float32"
            if backend == "onnx_reference":
                broken = [why for pred, why in ONNX_REF_BROKEN
                          if any(pred(n, p.bindings) for n in g64.nodes)]
                if broken:
                    res.skipped[name] = "; ".join(broken)
                    continue
            if (dtype, fused) not in graphs:
                graphs[dtype, fused] = grad_graph(p, dtype, fused)
            g = graphs[dtype, fused]
            if fused:
                res.primitives |= op_names(g)
            tol_dtype = "float32" if (backend == "onnx_reference" and dtype == "float64"
                                      and op_names(g) & ONNX_REF_F32_OPS) else dtype
            key = f"{name}/{dtype}"
            res.runs[name] = res.runs.get(name, 0) + 1
            try:
                got = _run(backend, g, p.feeds(dtype))
                problems, worst = compare(got, want, dtype, tol_dtype)
            except Exception as exc:  # noqa: BLE001 - a backend that raises is a mismatch
                problems, worst = [f"raised {type(exc).__name__}: {exc}"], np.inf
            known = next((k for k in KNOWN if k.feature in p.features and backend in k.backends),
                         None) if problems else None
            if known is not None:
                res.known.append((name, known))  # excused: not in the error statistics
                continue
            res.mismatches += [(key, t) for t in problems]
            res.worst[key] = max(res.worst.get(key, 0.0), worst)
    res.seconds = time.perf_counter() - t0
    return res
