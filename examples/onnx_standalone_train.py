"""Train logistic regression with nothing but onnxruntime and numpy (no graphc import).

First let graphc write the training step and its starting values:

    python examples/logistic_regression.py --export out/logreg
    python examples/onnx_standalone_train.py out/logreg

The step model's inputs are the batch, the parameters, the optimizer state, the step number and
the learning rate; its outputs are the loss, then the new parameters and state ("new.<name>").
Training is: run it, feed the new values back as inputs, repeat. spec.json says which output
replaces which input.
"""
from __future__ import annotations

import json
import os
import sys

import numpy as np
import onnxruntime as ort


def train(folder: str, epochs: int = 30, batch_size: int = 32, seed: int = 0) -> float:
    spec = json.load(open(os.path.join(folder, "spec.json")))
    step = ort.InferenceSession(os.path.join(folder, "step.onnx"), providers=["CPUExecutionProvider"])
    carried = dict(np.load(os.path.join(folder, "init.npz")))
    data = np.load(os.path.join(folder, "data.npz"))
    x, y = data["x_train"], data["y_train"]
    outputs = [o.name for o in step.get_outputs()]
    lr = np.array(spec["lr_value"], spec["lr_dtype"])
    k = 0
    for epoch in range(epochs):
        # the same per-epoch order as graphc's Trainer: a permutation drawn from (seed, epoch)
        order = np.random.default_rng([seed, epoch]).permutation(len(y))
        losses = []
        for start in range(0, len(y), batch_size):
            idx = order[start:start + batch_size]
            feeds = {"x": x[idx], "y": y[idx], **carried, spec["step"]: np.array(k, np.int64),
                     spec["lr"]: lr}
            res = dict(zip(outputs, step.run(None, feeds)))
            carried = {src: res[out] for out, src in spec["updates"].items()}
            losses.append(float(res[spec["metrics"][0]]) * len(idx))
            k += 1
        print(f"epoch {epoch + 1}: loss {sum(losses) / len(y):.4f}")
    quiet = ort.SessionOptions()
    quiet.log_severity_level = 3  # parameters are inputs with defaults here, on purpose
    predict = ort.InferenceSession(os.path.join(folder, "predict.onnx"), quiet,
                                   providers=["CPUExecutionProvider"])
    # the inference model has the initial parameters as initializers; feed the trained ones
    names = {i.name for i in predict.get_inputs() + predict.get_overridable_initializers()}
    feeds = {"x": data["x_test"], **{n: v for n, v in carried.items() if n in names}}
    logits = predict.run(None, feeds)[0]
    acc = float(((logits > 0) == (data["y_test"] > 0.5)).mean())
    print(f"stand-alone onnxruntime training: test accuracy {acc:.4f}")
    return acc


if __name__ == "__main__":
    train(sys.argv[1] if len(sys.argv) > 1 else "out/logreg")
