"""Each optimizer's graph update equals torch.optim's formula, on numpy and onnxruntime.

The gradients are graph inputs here (gc.optimizer_graph), so the update rule is tested alone;
tests/runtime/test_training_step.py checks it again with gradients from gc.grad on an MLP.
"""
import numpy as np
import pytest

import graphc as gc
from graphc import optim

from optim.reference import CASES, REFS


def _run(name, kw, backend, steps=20, clip=None, dtype="float64"):
    rng = np.random.default_rng(0)
    params = {"w": rng.normal(size=(3, 4)).astype(dtype), "b": rng.normal(size=(4,)).astype(dtype)}
    opt = optim.OPTIMIZERS[name](**kw)
    st = gc.make_stepper(gc.optimizer_graph(opt, params, clip_grad_norm=clip), backend)
    ref = REFS[name](**kw)
    want = {k: v.copy() for k, v in params.items()}
    g_rng = np.random.default_rng(1)
    for _ in range(steps):
        grads = {k: g_rng.normal(size=v.shape).astype(dtype) for k, v in params.items()}
        out = st.step({f"grad.{k}": v for k, v in grads.items()}, kw["lr"])
        if clip is not None:
            total = np.sqrt(sum((g.astype(np.float64) ** 2).sum() for g in grads.values()))
            assert float(out["grad_norm"]) == pytest.approx(total, rel=1e-6)
            grads = {k: g * min(1.0, clip / (total + 1e-6)) for k, g in grads.items()}
        ref.step(want, grads, kw["lr"])
    return st.params(), want


@pytest.mark.parametrize("backend", ["numpy", "onnxruntime"])
@pytest.mark.parametrize("name,kw", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_update_matches_numpy_formula(name, kw, backend):
    got, want = _run(name, kw, backend)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("backend", ["numpy", "onnxruntime"])
def test_clip_by_global_norm(backend):
    got, want = _run("SGD", dict(lr=0.1, momentum=0.9), backend, steps=5, clip=0.5)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-10, atol=1e-12)


def test_float32_state_stays_float32():
    got, want = _run("Adam", dict(lr=0.01), "onnxruntime", steps=5, dtype="float32")
    assert got["w"].dtype == np.float32
    np.testing.assert_allclose(got["w"], want["w"], rtol=1e-5, atol=1e-6)




@pytest.mark.parametrize("name,kw", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_matches_torch_optim(name, kw):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    params = {"w": rng.normal(size=(3, 4)), "b": rng.normal(size=(4,))}
    tp = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    topt = getattr(torch.optim, name)(list(tp.values()), **kw)
    st = gc.make_stepper(gc.optimizer_graph(optim.OPTIMIZERS[name](**kw), params), "numpy")
    g_rng = np.random.default_rng(1)
    for _ in range(10):
        grads = {k: g_rng.normal(size=v.shape) for k, v in params.items()}
        for k, t in tp.items():
            t.grad = torch.tensor(grads[k])
        topt.step()
        st.step({f"grad.{k}": v for k, v in grads.items()}, kw["lr"])
    got = st.params()
    for k, t in tp.items():
        np.testing.assert_allclose(got[k], t.detach().numpy(), rtol=1e-10, atol=1e-12)


def test_defaults_follow_torch():
    torch = pytest.importorskip("torch")
    import inspect
    for name, cls in optim.OPTIMIZERS.items():
        ours = {k: p.default for k, p in inspect.signature(cls.__init__).parameters.items()
                if p.default is not inspect.Parameter.empty}
        theirs = {k: p.default for k, p in inspect.signature(getattr(torch.optim, name).__init__)
                  .parameters.items() if k in ours}
        for k, v in theirs.items():
            v = tuple(v) if isinstance(v, (tuple, list)) else v
            assert ours[k] == v, f"{name}.{k}: graphc {ours[k]!r}, torch {v!r}"


def test_bad_arguments_are_rejected_like_torch():
    with pytest.raises(ValueError, match="Nesterov"):
        optim.SGD(0.1, nesterov=True)
    with pytest.raises(ValueError, match="learning rate"):
        optim.Adam(-1.0)
    with pytest.raises(ValueError, match="beta"):
        optim.AdamW(betas=(1.0, 0.9))


def test_lr_is_an_input_so_changing_it_does_not_rebuild():
    params = {"w": np.ones((2,))}
    st = gc.make_stepper(gc.optimizer_graph(optim.SGD(1.0), params), "onnxruntime")
    session = st.session
    st.step({"grad.w": np.ones(2)}, 0.5)
    st.step({"grad.w": np.ones(2)}, 0.25)
    assert st.session is session
    np.testing.assert_allclose(st.params()["w"], 1 - 0.5 - 0.25)
