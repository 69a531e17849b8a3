"""Logistic regression on scikit-learn's breast-cancer data with gc.Trainer (onnxruntime).

    python examples/logistic_regression.py                 # train, print test accuracy
    python examples/logistic_regression.py --export DIR    # also write what the stand-alone
                                                           # ONNX script needs (see
                                                           # examples/onnx_standalone_train.py)

Standardized features (train statistics), 80/20 split with seed 0; reaches >= 95% test accuracy.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

import graphc as gc
from graphc import optim


def load_data(seed: int = 0) -> tuple[dict, dict]:
    """Breast-cancer data as ({"x", "y"} train, test): float32 standardized features, 0/1 targets."""
    from sklearn.datasets import load_breast_cancer
    d = load_breast_cancer()
    data = {"x": d.data.astype(np.float64), "y": d.target.astype(np.float32)}
    train, test = gc.runtime.train_test_split(data, 0.2, seed=seed)
    train["x"], test["x"] = (a.astype(np.float32) for a in gc.runtime.standardize(train["x"], test["x"]))
    return train, test


def build(features: int = 30, lr: float = 0.05):
    """The loss graph (gc.models.logistic_regression) and its optimizer."""
    return gc.models.logistic_regression(features, seed=0), optim.SGD(lr, momentum=0.9)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--backend", default="onnxruntime", choices=("onnxruntime", "numpy", "tvm"))
    ap.add_argument("--export", metavar="DIR", help="write step.onnx, init.npz, data.npz, spec.json")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    train, test = load_data()
    graph, opt = build(train["x"].shape[1])
    if args.export:
        export(graph, opt, train, test, args.export)
    trainer = gc.Trainer(graph, optimizer=opt, backend=args.backend, progress=not args.quiet)
    trainer.fit(train, epochs=args.epochs, batch_size=args.batch_size, seed=0)
    res = trainer.evaluate(test)
    print(f"logistic regression, breast cancer: test accuracy {res['accuracy']:.4f}, "
          f"test loss {res['loss']:.4f}")
    return res


def export(graph, opt, train: dict, test: dict, out: str) -> None:
    """Writes the training step as ONNX plus its initial values, data and roles, for a script that
    trains with onnxruntime and numpy alone."""
    os.makedirs(out, exist_ok=True)
    step = gc.training_step(graph, optimizer=opt)
    gc.export_onnx(step, os.path.join(out, "step.onnx"))
    spec = step.spec
    np.savez(os.path.join(out, "init.npz"), **spec.initial)
    np.savez(os.path.join(out, "data.npz"), x_train=train["x"], y_train=train["y"], x_test=test["x"],
             y_test=test["y"])
    with open(os.path.join(out, "spec.json"), "w") as f:
        json.dump({**spec.to_dict(), "lr_value": opt.lr}, f, indent=1)
    # the forward graph alone, with the parameters as inputs, to score the trained values
    model = gc.to_onnx(gc.runtime.metrics.prune(graph, ["logits"]), params_as_inputs=True)
    with open(os.path.join(out, "predict.onnx"), "wb") as f:
        f.write(model.SerializeToString())


if __name__ == "__main__":
    main(sys.argv[1:])
