"""A new user's PyTorch script runs on graphc unchanged apart from its imports (issue 15).

SCRIPT is PyTorch code as a PyTorch user writes it: a Conv1d model with `x.view(x.size(0), -1)`,
`optim.Adam(model.parameters(), lr=1e-3)` and `F.cross_entropy(logits, y, ignore_index=-100)`. The same text is run
once under torch's imports and once under graphc's; graphc's copy is traced with
`@gc.function` and trained with `gc.Trainer` on a small generated dataset. Its forward loss and
one Adam step match torch's from the same weights (skipped without torch), and training reaches
a stated accuracy (always run).
"""
from __future__ import annotations

import numpy as np
import pytest

import graphc as gc

try:
    import torch
except ImportError:  # pragma: no cover
    torch = None

TORCH_IMPORTS = """
import torch
from torch import nn, optim
import torch.nn.functional as F
"""

GRAPHC_IMPORTS = """
import graphc as torch
from graphc import nn, optim
import graphc.nn.functional as F
"""

# ---- the user's script: not one character differs between the two runs ----------------------------
SCRIPT = """
class Net(nn.Module):
    def __init__(self, channels=2, length=16, classes=3):
        super().__init__()
        self.conv1 = nn.Conv1d(channels, 8, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(8, 8, kernel_size=3, padding=1)
        self.norm = nn.GroupNorm(2, 8)
        self.drop = nn.Identity()
        self.heads = nn.ModuleList([nn.Linear(8 * length, 32), nn.Linear(32, classes)])

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = self.norm(F.relu(self.conv2(x))) + x
        x = x.view(x.size(0), -1)
        x = torch.cat([x[:, : x.size(1) // 2], x[:, x.size(1) // 2 :]], dim=1)
        x = F.relu(self.heads[0](self.drop(x)))
        return self.heads[1](x)


def build():
    model = Net().to("cpu")
    optimizer = optim.Adam(model.parameters(), lr=1e-3)
    return model, optimizer


def loss_and_logits(model, x, y):
    logits = model(x)
    loss = F.cross_entropy(logits, y, ignore_index=-100)
    return loss, logits
"""


def load(imports: str) -> dict:
    ns: dict = {}
    exec(compile(imports + SCRIPT, "pytorch_style_script.py", "exec"), ns)
    return ns


def make_data(n: int, seed: int = 0) -> dict:
    """Three classes of noisy 2-channel signals of length 16: a rising ramp, a falling one, a wave."""
    rng = np.random.default_rng(seed)
    t = np.linspace(-1, 1, 16)
    templates = np.stack([np.stack([t, -t]), np.stack([-t, t]), np.stack([np.sin(6 * t), np.cos(6 * t)])])
    y = rng.integers(0, 3, n)
    x = templates[y] + 0.5 * rng.standard_normal((n, 2, 16))
    return {"x": x.astype(np.float32), "y": y.astype(np.int64)}


def graphc_loss_fn(model, loss_and_logits):
    @gc.function(x=gc.spec(("N", 2, 16)), y=gc.spec(("N",), "int64"))
    def loss_fn(x, y):
        loss, logits = loss_and_logits(model, x, y)
        return {"loss": loss, "logits": logits}
    return loss_fn


def test_pytorch_style_script_trains_with_gc_trainer():
    gc.manual_seed(0)
    ns = load(GRAPHC_IMPORTS)
    model, optimizer = ns["build"]()
    train, test = make_data(600, seed=0), make_data(300, seed=1)
    trainer = gc.Trainer(graphc_loss_fn(model, ns["loss_and_logits"]), model, optimizer=optimizer,
                         backend="onnxruntime", progress=False)
    trainer.fit(train, epochs=3, batch_size=32)
    res = trainer.evaluate(test)
    assert res["accuracy"] >= 0.95, res
    assert res["loss"] < 0.3, res


@pytest.mark.skipif(torch is None, reason="PyTorch is not installed")
def test_pytorch_style_script_matches_torch():
    """Same script, same weights: the same loss, and the same parameters after one Adam step."""
    torch.manual_seed(0)
    t_ns, g_ns = load(TORCH_IMPORTS), load(GRAPHC_IMPORTS)
    t_model, t_opt = t_ns["build"]()
    g_model, g_opt = g_ns["build"]()
    assert list(g_model.state_dict()) == list(t_model.state_dict())
    g_model.load_state_dict({k: v.detach().numpy() for k, v in t_model.state_dict().items()})
    batch = make_data(16, seed=2)

    t_loss, _ = t_ns["loss_and_logits"](t_model, torch.from_numpy(batch["x"]),
                                        torch.from_numpy(batch["y"]))
    loss_fn = graphc_loss_fn(g_model, g_ns["loss_and_logits"])
    g_loss = gc.compile(loss_fn.graph, "numpy")(**batch)["loss"]
    np.testing.assert_allclose(g_loss, t_loss.item(), rtol=1e-5)

    t_opt.zero_grad()
    t_loss.backward()
    t_opt.step()
    trainer = gc.Trainer(loss_fn, g_model, optimizer=g_opt, backend="numpy", progress=False)
    trainer.fit(batch, epochs=1, batch_size=16, shuffle=False)
    got = g_model.state_dict()
    for k, v in t_model.state_dict().items():
        np.testing.assert_allclose(got[k], v.detach().numpy(), rtol=1e-4, atol=1e-6, err_msg=k)
