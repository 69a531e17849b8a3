"""Gradient check: symbolic gradients against central finite differences, as a user tool.

For each value differentiated, the report gives the relative error

    ||g_num - g_sym|| / (||g_num|| + ||g_sym||)

over the checked entries, where g_num[i] = (f(x + eps e_i) - f(x - eps e_i)) / (2 eps).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..ir.errors import GraphcError
from ..ir.graph import Graph
from ..passes.autodiff import _resolve_wrt, _scalar_loss, grad

__all__ = ["GradCheckError", "GradCheckRow", "GradCheckReport", "check_grads"]


class GradCheckError(GraphcError, AssertionError):
    """Symbolic and numerical gradients disagree; the message is the report's table."""


@dataclass
class GradCheckRow:
    """The check of one value: how many entries were compared and how well they agree."""

    name: str
    shape: tuple[int, ...]
    checked: int
    total: int
    rel_error: float
    max_abs_error: float
    ok: bool
    numeric: np.ndarray = field(repr=False, default=None)  # type: ignore[assignment]
    symbolic: np.ndarray = field(repr=False, default=None)  # type: ignore[assignment]


@dataclass
class GradCheckReport:
    """The result of `check_grads`: one row per value; `str(report)` is a table."""

    graph: str
    of: str
    eps: float
    rtol: float
    atol: float
    rows: list[GradCheckRow]

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.rows)

    @property
    def max_rel_error(self) -> float:
        return max((r.rel_error for r in self.rows), default=0.0)

    def __getitem__(self, name: str) -> GradCheckRow:
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(name)

    def __str__(self) -> str:
        head = (f"gradient check of {self.of!r} in graph {self.graph!r}: central differences, "
                f"eps={self.eps:g}, pass if rel error <= {self.rtol:g} (or |diff| <= {self.atol:g})")
        cols = ("value", "shape", "checked", "rel error", "max |diff|", "")
        body = [(r.name, str(tuple(r.shape)), f"{r.checked}/{r.total}", f"{r.rel_error:.2e}",
                 f"{r.max_abs_error:.2e}", "ok" if r.ok else "FAIL") for r in self.rows]
        widths = [max(len(c), *(len(b[i]) for b in body)) if body else len(c) for i, c in enumerate(cols)]
        fmt = lambda row: "  " + "  ".join(s.ljust(w) for s, w in zip(row, widths)).rstrip()  # noqa: E731
        verdict = "all gradients agree" if self.ok else \
            f"{sum(not r.ok for r in self.rows)} of {len(self.rows)} gradients disagree"
        return "\n".join([head, fmt(cols)] + [fmt(b) for b in body] + [verdict])

    def raise_if_failed(self) -> "GradCheckReport":
        """Raises GradCheckError with the table unless every row passed."""
        if not self.ok:
            raise GradCheckError(str(self))
        return self


def check_grads(graph: Graph, feeds: dict[str, Any], wrt: Any = None, of: Any = None, *,
                eps: float | None = None, rtol: float | None = None, atol: float | None = None,
                samples: int | None = None, seed: int = 0, backend: str = "numpy",
                raise_on_fail: bool = False) -> GradCheckReport:
    """Compares `gc.grad`'s gradients with central finite differences.

    Args:
        graph: the forward graph with a scalar output `of` (default: the first output).
        feeds: arrays for the graph's inputs (parameters take their initial values unless fed).
        wrt: parameters or inputs to check (values or names); None means every float parameter.
        of: the output to differentiate.
        eps: the finite-difference step (default 1e-6 in float64, 1e-3 in float32).
        rtol: the largest relative error that passes (default 1e-5 in float64, 1e-2 in float32).
        atol: also pass when ||g_num - g_sym|| <= atol, for gradients that are zero up to
            rounding (default 1e-9 in float64, 1e-4 in float32).
        samples: check at most this many randomly chosen entries of each value (each costs two
            forward runs); None checks every entry.
        seed: picks the sampled entries.
        backend: where the symbolic gradient graph runs ("numpy", "onnxruntime" or "tvm"); the
            finite differences always use the numpy reference.
        raise_on_fail: raise GradCheckError with the report's table if any value fails.

    Returns:
        A GradCheckReport; `report.ok`, `report.rows`, and `print(report)` for the table.
    """
    from .executable import compile
    loss = _scalar_loss(graph, of)
    of_key = next((k for k, v in graph.outputs.items() if v is loss), loss.name)
    wrt_vals = _resolve_wrt(graph, wrt)
    f64 = all(v.type.dtype == "float64" for v in wrt_vals) and loss.type.dtype == "float64"
    eps = eps if eps is not None else (1e-6 if f64 else 1e-3)
    rtol = rtol if rtol is not None else (1e-5 if f64 else 1e-2)
    atol = atol if atol is not None else (1e-9 if f64 else 1e-4)

    g = grad(graph, wrt_vals, of=of_key)
    keys = list(g.outputs)[len(graph.outputs):]
    sym_out = compile(g, backend)(**feeds)
    forward = compile(graph, "numpy")
    base = {k: np.asarray(v) for k, v in feeds.items()}
    for v in wrt_vals:
        src = base[v.name] if v.name in base else v.data
        if src is None:
            raise GraphcError(f"check_grads: no value for %{v.name}; feed it")
        base[v.name] = np.array(src, dtype=v.type.dtype, copy=True)

    def f(vals):
        return float(np.asarray(forward(**vals)[of_key]).reshape(()))

    rng = np.random.default_rng(seed)
    rows = []
    for v, key in zip(wrt_vals, keys):
        arr = base[v.name]
        sym = np.asarray(sym_out[key], dtype=np.float64).reshape(arr.shape)
        idx = np.arange(arr.size)
        if samples is not None and arr.size > samples:
            idx = np.sort(rng.choice(arr.size, samples, replace=False))
        num = np.empty(len(idx))
        flat = arr.reshape(-1)
        for j, i in enumerate(idx):
            old = flat[i]
            flat[i] = old + eps
            hi = f(base)
            flat[i] = old - eps
            lo = f(base)
            flat[i] = old
            num[j] = (hi - lo) / (2 * eps)
        s = sym.reshape(-1)[idx]
        diff = float(np.linalg.norm(num - s))
        denom = float(np.linalg.norm(num) + np.linalg.norm(s))
        rel = diff / denom if denom > 0 else 0.0
        rows.append(GradCheckRow(v.name, tuple(arr.shape), len(idx), arr.size, rel,
                                 float(np.max(np.abs(num - s))) if len(idx) else 0.0,
                                 bool(rel <= rtol or diff <= atol), num, s))
    report = GradCheckReport(graph.name, of_key, eps, rtol, atol, rows)
    if raise_on_fail:
        report.raise_if_failed()
    return report
