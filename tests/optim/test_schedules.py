"""Learning-rate schedules equal torch.optim.lr_scheduler step by step."""
import math

import pytest

from graphc.optim import schedules as S


def test_closed_forms():
    assert S.constant(0.1)(100) == 0.1
    assert S.step_decay(1.0, 10, 0.5)(25) == 0.25
    assert S.exponential(1.0, 0.9)(3) == pytest.approx(0.729)
    c = S.cosine(1.0, 100, 0.1)
    assert c(0) == 1.0 and c(100) == pytest.approx(0.1) and c(50) == pytest.approx(0.55)
    assert c(200) == pytest.approx(0.1)
    w = S.linear_warmup(S.constant(1.0), 10)
    assert [w(t) for t in (0, 5, 10, 20)] == [0.0, 0.5, 1.0, 1.0]


def _torch_lrs(make, steps):
    torch = pytest.importorskip("torch")
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.5)
    sch = make(torch.optim.lr_scheduler, opt)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sch.step()
    return out


@pytest.mark.parametrize("ours,theirs", [
    (S.step_decay(0.5, 7, 0.3), lambda L, o: L.StepLR(o, 7, 0.3)),
    (S.exponential(0.5, 0.95), lambda L, o: L.ExponentialLR(o, 0.95)),
    (S.cosine(0.5, 30, 0.01), lambda L, o: L.CosineAnnealingLR(o, 30, 0.01)),
    (S.linear_warmup(0.5, 10, 0.1), lambda L, o: L.LinearLR(o, 0.1, 1.0, 10)),
])
def test_matches_torch_schedulers(ours, theirs):
    want = _torch_lrs(theirs, 30)
    for t, lr in enumerate(want):
        assert math.isclose(ours(t), lr, rel_tol=1e-9, abs_tol=1e-12), (t, ours(t), lr)
