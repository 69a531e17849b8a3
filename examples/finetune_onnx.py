"""Fine-tune an imported ONNX CNN on the digits, then export it again (goal: >= 95% accuracy).

    python examples/finetune_onnx.py [--epochs 8] [--out DIR]

The CNN is exported from PyTorch in this script when torch is installed (torch.onnx, TorchScript
exporter, a dynamic batch dim); without torch, graphc builds and exports the same network
itself, so the example always has an ONNX file to start from. `gc.import_onnx(path,
trainable=True)` gives a graphc.nn Module whose parameters carry readable names; a new linear
head is added and the whole model is trained with gc.Trainer, then exported to ONNX and checked
on plain onnxruntime.
"""
from __future__ import annotations

import argparse
import os
import tempfile

import numpy as np

import graphc as gc
from graphc import datasets, nn, optim


def export_backbone(path: str) -> str:
    """Writes a small CNN (8x8 digit images -> 32 features) to `path`; returns who exported it."""
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(),
                                  torch.nn.MaxPool2d(2), torch.nn.Flatten(),
                                  torch.nn.Linear(8 * 4 * 4, 32), torch.nn.ReLU())
        torch.onnx.export(net, (torch.zeros(2, 1, 8, 8),), path, dynamo=False, input_names=["x"],
                          output_names=["features"], dynamic_axes={"x": {0: "N"}})
        return "PyTorch"
    gc.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                        nn.Linear(8 * 4 * 4, 32), nn.ReLU())

    @gc.function(x=gc.spec(("N", 1, 8, 8)))
    def features(x):
        return net(x)

    gc.export_onnx(features.graph, path)
    return "graphc"


class Classifier(nn.Module):
    """The imported backbone and a new linear head: state-dict names backbone.*, head.*."""

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, x):
        return self.head(self.backbone(x))


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--out", default=None, help="directory for the ONNX files (default: a temp dir)")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    out = args.out or tempfile.mkdtemp(prefix="graphc_finetune_")
    os.makedirs(out, exist_ok=True)
    src = os.path.join(out, "backbone.onnx")
    who = export_backbone(src)

    backbone = gc.import_onnx(src, trainable=True)
    gc.manual_seed(1)
    model = Classifier(backbone, nn.Linear(32, 10))

    @gc.function(x=gc.spec(("N", 1, 8, 8)), y=gc.spec(("N",), "int64"))
    def loss_fn(x, y):
        logits = model(x)
        return {"loss": nn.cross_entropy(logits, y), "logits": logits}

    train, test = datasets.digits("image")
    trainer = gc.Trainer(loss_fn, model, optimizer=optim.Adam(model.parameters(), lr=3e-3),
                         progress=not args.quiet)
    trainer.fit(train, epochs=args.epochs, batch_size=32)
    acc = trainer.evaluate(test)["accuracy"]

    @gc.function(x=gc.spec(("N", 1, 8, 8)))
    def classify(x):
        return model(x)

    tuned = os.path.join(out, "finetuned.onnx")
    gc.export_onnx(classify.graph, tuned)
    import onnxruntime as ort
    sess = ort.InferenceSession(tuned, providers=["CPUExecutionProvider"])
    logits = sess.run(None, {sess.get_inputs()[0].name: test["x"]})[0]
    ort_acc = float(np.mean(logits.argmax(-1) == test["y"]))
    if not args.quiet:
        print(f"backbone exported by {who}; parameters: {', '.join(backbone.state_dict())}")
        print(f"test accuracy {acc:.4f}; re-exported {tuned}: onnxruntime accuracy {ort_acc:.4f}")
    return {"accuracy": acc, "onnxruntime_accuracy": ort_acc, "exported_by": who}


if __name__ == "__main__":
    main()
