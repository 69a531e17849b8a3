"""TVM on CUDA: the Relax pipeline graphc compiles with for a CUDA target.

It is TVM's own CUDA pipeline (`relax.backend.cuda`: legalize, fuse, dlight default schedules,
CUDA-graph rewriting of the VM's launches, memory planning) with one change: each dlight GPU rule
(`Matmul`, `GEMV`, `Reduction`, `GeneralReduction`) may fail on a function and fall through to
the next, ending with `dlight.gpu.Fallback`. TVM 0.27's `GEMV` rule asserts on a full reduction
to a scalar (a mean loss: `dlight/analysis/gemv.py`, `assert s_loops`), which stops the stock
pipeline on every training step.

`build_cuda` compiles for CUDA without a GPU (TVM's CUDA codegen and nvcc suffice), which is how
the tests check, on a CPU-only machine, that a graph lowers, schedules and compiles for CUDA.
"""
from __future__ import annotations

import os
import shutil
import sys
from typing import Any

#: the GPU architecture `build_cuda` targets when none is given (the H200 is sm_90)
DEFAULT_ARCH = "sm_90"


def _log(msg: str) -> None:
    if os.environ.get("GRAPHC_TVM_LOG"):
        print(f"graphc.tvm_cuda: {msg}", file=sys.stderr)


def _safe(rule: Any) -> Any:
    """`rule` (a dlight ScheduleRule) made to return None, not raise, where it cannot apply."""
    from tvm.s_tir.dlight.base import ScheduleRule

    class Safe(ScheduleRule):
        def apply(self, func, target, tunable):
            try:
                return rule.apply(func, target, tunable)
            except Exception as exc:  # noqa: BLE001 - the next rule gets the function
                attrs = getattr(func, "attrs", None)
                name = (attrs.get("global_symbol") if attrs else None) or "a function"
                why = str(exc).strip()[-200:] or type(exc).__name__
                _log(f"{type(rule).__name__} failed on {name}: {why}")
                return None

    return Safe()


def default_schedule() -> Any:
    """`dlight.ApplyDefaultSchedule` with the GPU rules in TVM's order, each allowed to fail."""
    from tvm.s_tir import dlight as dl
    return dl.ApplyDefaultSchedule(_safe(dl.gpu.Matmul()), _safe(dl.gpu.GEMV()),
                                   _safe(dl.gpu.Reduction()), _safe(dl.gpu.GeneralReduction()),
                                   dl.gpu.Fallback())


def cuda_pipeline(target: Any) -> Any:
    """The Relax pipeline for a CUDA `target` (pass it to `tvm.compile` as `relax_pipeline`)."""
    import tvm
    from tvm.relax.backend.cuda import pipeline as cuda

    @tvm.transform.module_pass(opt_level=0)
    def _pipeline(mod, _ctx):
        # TVM's legalization, its own ApplyDefaultSchedule replaced by `default_schedule()`
        legalize = [p for p in cuda.legalize_passes(target)
                    if getattr(getattr(p, "info", None), "name", "") != "ApplyDefaultSchedule"]
        with target:
            seq = tvm.transform.Sequential(
                cuda.library_dispatch_passes(target)
                + legalize + [default_schedule()]
                + cuda.dataflow_lower_passes(target)
                + cuda.finalize_passes(target))
            return seq(mod)

    return _pipeline


def cuda_codegen_missing() -> str | None:
    """Why this TVM cannot compile for CUDA here (None when it can): no CUDA codegen, or no nvcc."""
    import tvm
    if tvm.get_global_func("target.build.cuda", allow_missing=True) is None:
        return "this TVM build has no CUDA codegen (target.build.cuda)"
    if shutil.which("nvcc") is None and not os.path.exists("/usr/local/cuda/bin/nvcc"):
        return "nvcc is not on PATH, so TVM cannot compile the CUDA kernels it generates"
    return None


def build_cuda(graph: Any, arch: str | None = None) -> Any:
    """Compiles `graph` for CUDA (`arch`, default `DEFAULT_ARCH`), with or without a GPU present.

    Returns:
        the `tvm.relax` executable (run it with `relax.VirtualMachine(ex, tvm.cuda(0))`).

    Raises:
        GraphcError: TVM has no CUDA codegen here or no nvcc (see `cuda_codegen_missing`).

    Example: ``ex = build_cuda(gc.models.mlp((784, 256, 10)))``
    """
    import tvm

    from ..ir.errors import GraphcError
    from .tvm import lower_to_relax
    why = cuda_codegen_missing()
    if why:
        raise GraphcError(f"graph {graph.name!r}: cannot build for CUDA: {why}")
    target = tvm.target.Target({"kind": "cuda", "arch": arch or DEFAULT_ARCH})
    return tvm.compile(lower_to_relax(graph), target=target, relax_pipeline=cuda_pipeline(target))
