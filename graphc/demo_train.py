"""`graphc demo mlp`: train an MLP on the 8x8 digits (shipped with graphc) end to end.

Trains a 64-128-10 ReLU MLP (graphc.nn, traced with @gc.function) with Adam and a cosine
schedule on onnxruntime, showing a progress bar with loss and throughput; prints the test
accuracy; writes the loss/accuracy curve as a PNG; exports the trained model to ONNX and checks
that the exported file, run by plain onnxruntime, gives the same test accuracy.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

#: the accuracy the demo must reach on the held-out 20% (exit code 1 below it)
TARGET_ACCURACY = 0.96


def load_digits_split(seed: int = 0) -> tuple[dict, dict]:
    """The 8x8 digits shipped with graphc (scikit-learn's), pixels scaled to [0, 1], split 80/20."""
    from .runtime.bundle_serve import digits_split
    return digits_split(seed)


def train_digits_mlp(epochs: int = 20, batch_size: int = 32, seed: int = 0, device: str = "cpu",
                     backend: str = "onnxruntime", progress: bool = True):
    """Builds and trains the model; returns (model, loss_fn, trainer, history, train, test)."""
    from .runtime.bundle_serve import digits_trainer
    trainer, train, test = digits_trainer(epochs, batch_size, seed, progress, backend, device)
    history = trainer.fit(train, epochs=epochs, batch_size=batch_size, validation=test, seed=seed)
    return trainer.model, trainer.loss_fn, trainer, history, train, test


def main(batch: int | None = None, seed: int = 0, out_dir: str | os.PathLike | None = None,
         show_graph: bool = True, device: str = "cpu", epochs: int = 20) -> int:
    """Runs the demo; returns 0 when the test accuracy reaches TARGET_ACCURACY.

    `batch` is the training batch size (default 32); `seed` seeds the split, the initial weights,
    the shuffle and dropout.
    """
    batch = 32 if batch is None else batch
    if batch <= 0:
        raise ValueError(f"--batch must be a positive number of examples, got {batch}")
    import graphc as gc
    out = Path(out_dir if out_dir is not None else "out")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    model, loss_fn, trainer, history, train, test = train_digits_mlp(epochs, batch, seed, device)
    dt = time.perf_counter() - t0
    if show_graph:
        spec = trainer.spec
        print(f"== training step: one graph, {len(trainer.step_graph.nodes)} nodes; inputs: batch "
              f"{spec.batch}, {len(spec.params)} params, {len(spec.state)} optimizer-state tensors, "
              f"'{spec.step}', '{spec.lr}'")
    res = trainer.evaluate(test)
    last = history.last()
    print(f"== digits MLP: {len(history)} epochs, {trainer.step} steps in {dt:.1f} s "
          f"({last['examples_per_s']:.0f} examples/s in the last epoch)")
    print(f"   train loss {last['loss']:.4f}, test loss {res['loss']:.4f}, "
          f"test accuracy {res['accuracy']:.4f}")
    png = history.plot(out / "digits_mlp_loss.png", title="digits MLP (graphc, onnxruntime)")
    print(f"== loss curve: {png}")

    # the trained model, forward only, as a standard ONNX file
    @gc.function(x=gc.spec(("N", 64)))
    def predict(x):
        return {"logits": model(x)}
    model.eval()
    onnx_path = out / "digits_mlp.onnx"
    gc.export_onnx(predict.graph, onnx_path)
    model.train()
    import onnxruntime as ort
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    logits = sess.run(None, {"x": test["x"]})[0]
    onnx_acc = float(np.mean(logits.argmax(1) == test["y"]))
    print(f"== exported the trained model: {onnx_path} (plain onnxruntime: test accuracy "
          f"{onnx_acc:.4f})")
    ok = res["accuracy"] >= TARGET_ACCURACY and abs(onnx_acc - res["accuracy"]) < 1e-6
    print(("OK" if ok else "FAILED") + f": test accuracy {res['accuracy']:.4f} "
          f"({'>=' if res['accuracy'] >= TARGET_ACCURACY else '<'} {TARGET_ACCURACY})")
    return 0 if ok else 1
