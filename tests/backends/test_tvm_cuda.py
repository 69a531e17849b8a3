"""TVM's CUDA path, checked without a GPU: graphs lower, get dlight's GPU schedules and compile to
CUDA kernels (running them is bench/gpu_check.py's job, on a GPU)."""
from __future__ import annotations

import pytest

import graphc as gc
from graphc import optim

tvm = pytest.importorskip("tvm")
from graphc.backends import tvm_cuda  # noqa: E402

why = tvm_cuda.cuda_codegen_missing()
pytestmark = pytest.mark.skipif(why is not None, reason=f"no CUDA build here: {why}")


def _cuda_kernels(ex) -> int:
    def find(m):
        if m.kind == "cuda":
            return m
        return next((r for r in (find(i) for i in m.imports) if r is not None), None)

    cuda = find(ex.mod)
    assert cuda is not None, "the executable has no CUDA module"
    return cuda.inspect_source().count("__global__")


def test_the_cuda_target_gets_graphcs_dlight_pipeline(monkeypatch):
    from graphc.backends.tvm_schedule import optimize
    target = tvm.target.Target({"kind": "cuda", "arch": tvm_cuda.DEFAULT_ARCH})
    monkeypatch.setattr(tvm_cuda, "cuda_pipeline", lambda t: ("graphc's", str(t.kind)))
    assert optimize(target) == ("graphc's", "cuda")


def test_an_mlp_forward_compiles_to_cuda_kernels():
    ex = tvm_cuda.build_cuda(gc.models.mlp((6, 5, 4, 3), seed=0, with_loss=False))
    assert _cuda_kernels(ex) >= 3


def test_a_training_step_compiles_for_cuda_past_dlights_gemv_assertion():
    # TVM 0.27's dlight GEMV rule asserts on the mean loss (a full reduction); graphc's pipeline
    # lets it fall through to Reduction / Fallback instead of stopping the build
    step = gc.training_step(gc.models.mlp((6, 5, 4, 3), seed=0), optimizer=optim.Adam(0.01))
    assert _cuda_kernels(tvm_cuda.build_cuda(step)) >= 10
