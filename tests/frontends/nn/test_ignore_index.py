"""cross_entropy / nll_loss with ignore_index: torch's meaning, and the range check allows it."""
from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc import nn

torch = pytest.importorskip("torch", reason="compares with torch.nn.functional")


def _graph(fn, reduction):
    with gc.Graph("ce") as g:
        z = g.input("z", ("N", 5), "float64")
        y = g.input("y", ("N",), "int64")
        g.output(loss=fn(z, y, reduction))
    return g


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("kind", ["cross_entropy", "nll_loss"])
def test_ignore_index_matches_torch(kind, reduction):
    rng = np.random.default_rng(0)
    z = rng.standard_normal((7, 5))
    y = np.array([0, -100, 4, 2, -100, 1, 3])
    if kind == "cross_entropy":
        g = _graph(lambda a, b, r: nn.functional.cross_entropy(a, b, reduction=r, ignore_index=-100),
                   reduction)
        want = torch.nn.functional.cross_entropy(torch.tensor(z, requires_grad=True), torch.tensor(y),
                                                 reduction=reduction, ignore_index=-100)
    else:
        g = _graph(lambda a, b, r: nn.functional.nll_loss(gc.log_softmax(a, -1), b, r, ignore_index=-100),
                   reduction)
        want = torch.nn.functional.nll_loss(torch.log_softmax(torch.tensor(z), -1), torch.tensor(y),
                                            reduction=reduction, ignore_index=-100)
    for backend in ("numpy", "onnxruntime"):
        got = gc.compile(g, backend)(z=z, y=y)["loss"]
        np.testing.assert_allclose(got, want.detach().numpy(), rtol=1e-10, atol=1e-12)
    assert "ignore=-100" in str(g)  # the range the feed check uses says so, and parses back
    assert str(gc.parse_graph(str(g), params=gc.elided_constants(g))) == str(g)


def test_ignored_examples_get_no_gradient():
    g = _graph(lambda a, b, r: gc.cross_entropy(a, b, r, ignore_index=-1), "mean")
    d = gc.compile(gc.grad(g, wrt=["z"]), "numpy")(z=np.ones((3, 5)), y=np.array([-1, 2, -1]))["d_z"]
    assert np.all(d[[0, 2]] == 0) and np.any(d[1] != 0)


def test_a_padding_label_without_ignore_index_is_refused_naming_the_option():
    g = _graph(lambda a, b, r: gc.cross_entropy(a, b, r), "mean")
    with pytest.raises(gc.FeedError, match="-100 at index 1.*ignore_index"):
        gc.compile(g, "numpy")(z=np.zeros((3, 5)), y=np.array([0, -100, 1]))
    g = _graph(lambda a, b, r: gc.cross_entropy(a, b, r, ignore_index=-100), "mean")
    with pytest.raises(gc.FeedError, match="label 7 at index 2"):
        gc.compile(g, "numpy")(z=np.zeros((3, 5)), y=np.array([0, -100, 7]))
