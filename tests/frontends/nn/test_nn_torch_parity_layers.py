"""PyTorch parity of the layers a PyTorch user reaches for first (issue 15, item 2): Conv1d,
ConvTranspose2d, AdaptiveAvgPool2d, GroupNorm, Identity, ModuleList and ModuleDict.

Same weights (torch's state dict loaded as is), same inputs -> same outputs and gradients
(float64 on the numpy reference, float32 on onnxruntime, whose CPU Conv has no float64 kernel);
default initializations draw from torch's distributions. Skipped cleanly without torch.
"""
import math

import numpy as np
import pytest

import graphc as gc
from graphc import nn

from nn_helpers import compare_with_torch, run, torch, trace

pytestmark = pytest.mark.skipif(torch is None, reason="PyTorch is not installed")


@pytest.fixture(autouse=True)
def _seed():
    if torch is not None:
        torch.manual_seed(0)
    gc.manual_seed(0)


def rnd(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def both_precisions(make_g, make_t, shape, grads32=False, **kw):
    """float64 on numpy (with gradients), float32 on onnxruntime."""
    compare_with_torch(make_g().double(), make_t().double(), [rnd(*shape)], backends=("numpy",), **kw)
    compare_with_torch(make_g(), make_t(), [rnd(*shape).astype(np.float32)],
                       backends=("onnxruntime",), grads=grads32, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kw", [dict(), dict(stride=2, padding=1), dict(padding=2, dilation=2),
                                dict(groups=2, padding="same"), dict(bias=False, padding="valid")])
def test_conv1d(kw):
    both_precisions(lambda: nn.Conv1d(4, 6, 3, **kw), lambda: torch.nn.Conv1d(4, 6, 3, **kw),
                    (2, 4, 9))


@pytest.mark.parametrize("kw", [dict(), dict(stride=2), dict(stride=2, padding=1, output_padding=1),
                                dict(groups=2, dilation=2), dict(stride=(2, 1), bias=False)])
def test_conv_transpose2d(kw):
    both_precisions(lambda: nn.ConvTranspose2d(4, 6, 3, **kw),
                    lambda: torch.nn.ConvTranspose2d(4, 6, 3, **kw), (2, 4, 5, 6))


def test_conv_transpose2d_output_size():
    t = torch.nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1).double()
    g = nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1).double()
    x = rnd(1, 3, 4, 4)

    class G(nn.Module):
        def __init__(self):
            super().__init__()
            self.up = g

        def forward(self, a):
            return self.up(a, output_size=(1, 2, 8, 8))

    class T(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.up = t

        def forward(self, a):
            return self.up(a, output_size=(1, 2, 8, 8))

    graph = compare_with_torch(G(), T(), [x], backends=("numpy",))
    assert graph.outputs["out0"].type.shape == (1, 2, 8, 8)
    with gc.Graph("bad") as bad, pytest.raises(gc.GraphBuildError, match="output_size .* not reachable"):
        g(bad.input("x", (1, 3, 4, 4), "float64"), output_size=(9, 9))


@pytest.mark.parametrize("size,shape", [(1, (2, 3, 7, 9)), ((2, 3), (2, 3, 6, 9)),
                                        ((3, 5), (2, 3, 7, 9)), ((None, 4), (2, 3, 5, 7)),
                                        ((4, 4), (3, 5, 5)), (7, (1, 2, 7, 7))])
def test_adaptive_avg_pool2d(size, shape):
    both_precisions(lambda: nn.AdaptiveAvgPool2d(size), lambda: torch.nn.AdaptiveAvgPool2d(size),
                    shape, grads32=True)


@pytest.mark.parametrize("groups,shape", [(2, (3, 4, 5)), (4, (2, 4, 3, 3)), (1, (2, 4, 6)),
                                          (4, (5, 4))])
@pytest.mark.parametrize("affine", [True, False])
def test_group_norm(groups, shape, affine):
    t = torch.nn.GroupNorm(groups, 4, affine=affine).double()
    if affine:
        with torch.no_grad():  # non-trivial affine parameters
            t.weight.uniform_(0.5, 1.5)
            t.bias.uniform_(-0.5, 0.5)
    g = nn.GroupNorm(groups, 4, affine=affine).double()
    x = rnd(*shape) * 2 + 1
    compare_with_torch(g, t, [x], backends=("numpy", "onnxruntime"))


def test_group_norm_with_symbolic_batch():
    g = nn.GroupNorm(2, 4)
    graph = trace(g, rnd(3, 4, 5).astype(np.float32), symbolic_batch=True)
    t = torch.nn.GroupNorm(2, 4)
    for n in (1, 3):
        x = rnd(n, 4, 5, seed=n).astype(np.float32)
        np.testing.assert_allclose(run(graph, x)["out0"], t(torch.from_numpy(x)).detach().numpy(),
                                   rtol=1e-5, atol=1e-6)


def test_identity():
    compare_with_torch(nn.Identity(3, unused=True), torch.nn.Identity(3, unused=True), [rnd(2, 3)])


@pytest.mark.parametrize("make", [
    lambda m: m.Conv1d(4, 6, 3), lambda m: m.Conv1d(4, 6, 5, groups=2, bias=False),
    lambda m: m.ConvTranspose2d(4, 6, 3), lambda m: m.ConvTranspose2d(4, 6, (3, 2), groups=2),
    lambda m: m.GroupNorm(2, 6)], ids=["conv1d", "conv1d_groups", "convT", "convT_groups", "gn"])
def test_default_init_and_layout_are_torchs(make):
    g, t = make(nn), make(torch.nn)
    want = {k: tuple(v.shape) for k, v in t.state_dict().items()}
    assert {k: v.shape for k, v in g.state_dict().items()} == want
    for name, tp in t.named_parameters():
        gp = g.state_dict()[name]
        lo, hi = tp.min().item(), tp.max().item()
        if lo == hi:  # constant init (norm weight / bias): identical values
            np.testing.assert_array_equal(gp, tp.detach().numpy())
            continue
        # torch's U(-b, b) with b = 1/sqrt(fan_in) for weight and bias alike
        fan_in = int(np.prod(t.weight.shape[1:]))
        bound = 1 / math.sqrt(fan_in)
        assert np.abs(gp).max() <= bound + 1e-7 and np.abs(tp.detach().numpy()).max() <= bound + 1e-7
        assert np.abs(gp).max() > 0.5 * bound


def test_module_list_and_dict_behave_as_torchs():
    g = nn.ModuleList([nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 4)])
    t = torch.nn.ModuleList([torch.nn.Linear(2, 3), torch.nn.ReLU(), torch.nn.Linear(3, 4)])
    for m in (g, t):
        m.insert(1, type(m[1])())
        del m[2]
        m.append(type(m[1])())
        m += [type(m[1])()]
        assert isinstance(m[1:], type(m)) and len(m[1:]) == len(m) - 1
        m[0] = m[0]
    assert list(g.state_dict()) == list(t.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert [type(m).__name__ for m in g] == [type(m).__name__ for m in t]
    assert type(g.pop(-1)).__name__ == type(t.pop(-1)).__name__ == "ReLU" and len(g) == len(t) == 4

    gd = nn.ModuleDict({"a": nn.Linear(2, 2)})
    td = torch.nn.ModuleDict({"a": torch.nn.Linear(2, 2)})
    for d, mod in ((gd, nn), (td, torch.nn)):
        d.update([("b", mod.Linear(2, 3))])
        d["c"] = mod.Tanh()
        del d["a"]
    assert list(gd) == list(td) == ["b", "c"] and "b" in gd and len(gd) == 2
    assert list(gd.state_dict()) == list(td.state_dict())
    assert type(gd.pop("c")).__name__ == "Tanh" and list(gd.keys()) == ["b"]


def test_module_list_and_dict_in_a_model():
    """A model holding layers in a ModuleList and a ModuleDict: torch's names, outputs, grads."""
    def build(m):
        class Net(m.Module):
            def __init__(self):
                super().__init__()
                self.blocks = m.ModuleList([m.Conv1d(2, 4, 3, padding=1), m.Conv1d(4, 4, 3)])
                self.heads = m.ModuleDict({"norm": m.GroupNorm(2, 4), "pool": m.Identity()})

            def forward(self, x):
                for blk in self.blocks:
                    x = blk(x).relu()
                return self.heads["pool"](self.heads["norm"](x)).flatten(1)
        return Net()

    g, t = build(nn), build(torch.nn)
    assert list(g.state_dict()) == list(t.state_dict())
    compare_with_torch(g.double(), t.double(), [rnd(3, 2, 7)], backends=("numpy",))
