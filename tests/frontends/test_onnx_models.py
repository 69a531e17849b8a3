"""Whole models exported from PyTorch (torch.onnx.export) import, match PyTorch, and fine-tune.

ResNet-18 (the BasicBlock architecture, written here: torchvision is not a dependency) and a
small BERT-like encoder (token, position and segment embeddings, two layers of multi-head
self-attention with a padding mask, layer norm, GELU feed-forward, a pooler and a classifier).
The legacy TorchScript exporter (`dynamo=False`) is used: the dynamo exporter needs onnxscript,
which is not installed here. Without torch the tests skip, saying so.
"""
from __future__ import annotations

import math

import numpy as np
import onnx
import pytest

import graphc as gc
from graphc import nn, optim

torch = pytest.importorskip("torch", reason="the models are built and exported with torch.onnx")
tnn, F = torch.nn, torch.nn.functional
# the tracer's notes on shapes read as Python ints (the exported graph keeps them symbolic)
pytestmark = pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")


class BasicBlock(tnn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = tnn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = tnn.BatchNorm2d(cout)
        self.conv2, self.bn2 = tnn.Conv2d(cout, cout, 3, 1, 1, bias=False), tnn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = tnn.Sequential(tnn.Conv2d(cin, cout, 1, stride, bias=False),
                                             tnn.BatchNorm2d(cout))

    def forward(self, x):
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class ResNet18(tnn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.conv1, self.bn1 = tnn.Conv2d(3, 64, 7, 2, 3, bias=False), tnn.BatchNorm2d(64)
        self.maxpool = tnn.MaxPool2d(3, 2, 1)
        blocks, cin = [], 64
        for cout, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
            blocks += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
            cin = cout
        self.layers = tnn.Sequential(*blocks)
        self.fc = tnn.Linear(512, classes)

    def forward(self, x):
        x = self.layers(self.maxpool(F.relu(self.bn1(self.conv1(x)))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class EncoderLayer(tnn.Module):
    def __init__(self, d, heads, ff):
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.out = (tnn.Linear(d, d) for _ in range(4))
        self.ln1, self.ln2 = tnn.LayerNorm(d), tnn.LayerNorm(d)
        self.ff1, self.ff2 = tnn.Linear(d, ff), tnn.Linear(ff, d)

    def forward(self, x, mask_bias):
        n, t, d = x.shape

        def split(y):  # (n, t, d) -> (n, heads, t, d / heads)
            return y.reshape(n, t, self.heads, d // self.heads).transpose(1, 2)

        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        scores = q @ k.transpose(-1, -2) / math.sqrt(d // self.heads)
        att = torch.softmax(scores + mask_bias, dim=-1)
        x = self.ln1(x + self.out((att @ v).transpose(1, 2).reshape(n, t, d)))
        return self.ln2(x + self.ff2(F.gelu(self.ff1(x))))


class Bert(tnn.Module):
    def __init__(self, vocab=100, d=32, heads=4, ff=64, layers=2, max_len=16, classes=3):
        super().__init__()
        self.tok, self.pos = tnn.Embedding(vocab, d), tnn.Embedding(max_len, d)
        self.seg = tnn.Embedding(2, d)  # segment (token type) ids, all 0 here
        self.ln = tnn.LayerNorm(d)
        self.layers = tnn.ModuleList(EncoderLayer(d, heads, ff) for _ in range(layers))
        self.pool, self.cls = tnn.Linear(d, d), tnn.Linear(d, classes)

    def forward(self, ids, mask):
        pos = torch.arange(ids.shape[1]).unsqueeze(0)  # a Range to the symbolic length T
        x = self.ln(self.tok(ids) + self.pos(pos) + self.seg(torch.zeros_like(ids)))
        bias = (1.0 - mask[:, None, None, :].to(x.dtype)) * -10000.0  # padding is not attended to
        for layer in self.layers:
            x = layer(x, bias)
        return self.cls(torch.tanh(self.pool(x[:, 0])))


def _resnet18():
    torch.manual_seed(0)
    net = ResNet18()
    with torch.no_grad():  # batch-norm statistics and affine terms that are not the identity
        for m in net.modules():
            if isinstance(m, tnn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return net.eval()


def _export(net, args, path, names, dynamic, fold=True):
    torch.onnx.export(net, args, str(path), dynamo=False, input_names=names,
                      output_names=["logits"], dynamic_axes=dynamic, do_constant_folding=fold)
    return path


def _resnet_file(tmp_path, fold):
    net = _resnet18()
    path = _export(net, (torch.zeros(2, 3, 32, 32),), tmp_path / "resnet18.onnx", ["x"],
                   {"x": {0: "N"}}, fold)
    return net, path


def _bert_file(tmp_path):
    torch.manual_seed(0)
    net = Bert().eval()
    ids, mask = torch.randint(0, 100, (2, 8)), torch.ones(2, 8, dtype=torch.int64)
    path = _export(net, (ids, mask), tmp_path / "bert.onnx", ["ids", "mask"],
                   {"ids": {0: "N", 1: "T"}, "mask": {0: "N", 1: "T"}})
    return net, path


def _tokens(rng, n, t):
    ids = rng.integers(0, 100, (n, t))
    mask = np.ones((n, t), np.int64)
    mask[0, t // 2:] = 0  # the first sequence is padded
    return ids, mask


def _torch_out(net, *arrays):
    with torch.no_grad():
        return net(*(torch.from_numpy(a) for a in arrays)).numpy()


def _only(outputs):
    (out,) = outputs.values()
    return out


@pytest.mark.parametrize("fold", [True, False], ids=["bn_folded", "bn_kept"])
def test_resnet18_from_pytorch_matches_within_1e_4(tmp_path, fold):
    net, path = _resnet_file(tmp_path, fold)
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert ("BatchNormalization" in ops) == (not fold), ops  # torch folds it into Conv or keeps it
    g = gc.import_onnx(path)
    assert [tuple(v.type.shape) for v in g.inputs] == [("N", 3, 32, 32)]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 3, 32, 32)).astype(np.float32)  # another batch size than exported
    want = _torch_out(net, x)
    for backend in ("numpy", "onnxruntime"):
        got = _only(gc.compile(g, backend)(x=x))
        assert got.shape == (3, 10) and got.dtype == np.float32
        print(f"resnet18 ({'bn folded' if fold else 'bn kept'}) {backend}: max abs difference "
              f"{np.abs(got - want).max():.2e} (outputs up to {np.abs(want).max():.2f})")
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-4, err_msg=backend)
    assert np.abs(want).max() > 0.05  # a nonzero output: the comparison means something


def test_bert_encoder_from_pytorch_matches_within_1e_4_at_any_length(tmp_path):
    net, path = _bert_file(tmp_path)
    g = gc.import_onnx(path)
    assert [tuple(v.type.shape) for v in g.inputs] == [("N", "T"), ("N", "T")]
    rng = np.random.default_rng(0)
    for n, t in [(2, 8), (3, 12)]:  # the exported length and a longer one
        ids, mask = _tokens(rng, n, t)
        want = _torch_out(net, ids, mask)
        for backend in ("numpy", "onnxruntime"):
            got = _only(gc.compile(g, backend)(ids=ids, mask=mask))
            print(f"bert {n}x{t} {backend}: max abs difference {np.abs(got - want).max():.2e}")
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-4, err_msg=f"{backend} {n}x{t}")
    # the mask matters: unmasking the padding changes the first sequence's logits
    ids, mask = _tokens(rng, 2, 8)
    unmasked = _torch_out(net, ids, np.ones_like(mask))[0]
    assert np.abs(unmasked - _torch_out(net, ids, mask)[0]).max() > 1e-3


def _fine_tune(loss_fn, m, batch, steps, lr):
    """The loss on one fixed batch before and after `steps` Trainer steps (Adam, onnxruntime)."""
    tr = gc.Trainer(loss_fn, m, optimizer=optim.Adam(m.parameters(), lr=lr), progress=False)
    first = tr.evaluate(batch)["loss"]
    tr.fit(batch, epochs=steps, batch_size=len(batch["y"]))
    return first, tr.evaluate(batch)["loss"]


def test_resnet18_from_pytorch_fine_tunes(tmp_path):
    _, path = _resnet_file(tmp_path, fold=False)
    m = gc.import_onnx(path, trainable=True)
    before = {k: v.copy() for k, v in m.state_dict().items()}
    rng = np.random.default_rng(1)
    batch = {"x": rng.standard_normal((8, 3, 32, 32)).astype(np.float32),
             "y": rng.integers(0, 10, 8)}

    @gc.function(x=gc.spec(("N", 3, 32, 32)), y=gc.spec(("N",), "int64"))
    def loss_fn(x, y):
        return {"loss": nn.cross_entropy(m(x), y)}

    first, last = _fine_tune(loss_fn, m, batch, steps=5, lr=1e-3)
    print(f"resnet18 fine-tune loss {first:.4f} -> {last:.4f}")
    assert last < 0.9 * first
    assert sum(not np.array_equal(before[k], v) for k, v in m.state_dict().items()) > 20


def test_bert_encoder_from_pytorch_fine_tunes(tmp_path):
    _, path = _bert_file(tmp_path)
    m = gc.import_onnx(path, trainable=True)
    rng = np.random.default_rng(1)
    ids, mask = _tokens(rng, 16, 8)
    batch = {"ids": ids, "mask": mask, "y": rng.integers(0, 3, 16)}

    @gc.function(ids=gc.spec(("N", "T"), "int64"), mask=gc.spec(("N", "T"), "int64"),
                 y=gc.spec(("N",), "int64"))
    def loss_fn(ids, mask, y):
        return {"loss": nn.cross_entropy(m(ids, mask), y)}

    first, last = _fine_tune(loss_fn, m, batch, steps=10, lr=3e-3)
    print(f"bert fine-tune loss {first:.4f} -> {last:.4f}")
    assert last < 0.7 * first
