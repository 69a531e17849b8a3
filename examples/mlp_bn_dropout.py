"""MLP with batch norm and dropout on scikit-learn's digits (goal: >= 97% test accuracy).

    python examples/mlp_bn_dropout.py [--epochs 40] [--backend onnxruntime|numpy|tvm]

Built from graphc.nn layers; batch norm uses batch statistics while training and its running
statistics (fed back by the Trainer from the graph's "state:" outputs) at test time; dropout is
off at test time. Prints the test accuracy and saves the loss curve as a PNG.
"""
from __future__ import annotations

import argparse

import graphc as gc
from graphc import datasets, nn, optim


def build_model(seed: int = 0) -> nn.Module:
    gc.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(64, 256), nn.BatchNorm1d(256), nn.ReLU(), nn.Dropout(0.2),
        nn.Linear(256, 128), nn.BatchNorm1d(128), nn.ReLU(), nn.Dropout(0.2),
        nn.Linear(128, 10))


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--backend", default="onnxruntime")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-size", type=int, default=None, help="use only this many examples")
    p.add_argument("--plot", default="mlp_bn_dropout_loss.png")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)

    train, test = datasets.digits("flat", seed=args.seed)
    if args.train_size:
        train = {k: v[:args.train_size] for k, v in train.items()}
    model = build_model(args.seed)

    @gc.function(x=gc.spec(("N", 64)), y=gc.spec(("N",), "int64"))
    def loss_fn(x, y):
        logits = model(x)
        return {"loss": nn.cross_entropy(logits, y), "logits": logits}

    trainer = gc.Trainer(loss_fn, model, optimizer=optim.Adam(args.lr), backend=args.backend,
                         seed=args.seed, progress=not args.no_progress)
    history = trainer.fit(train, epochs=args.epochs, batch_size=args.batch_size, validation=test,
                          seed=args.seed)
    result = trainer.evaluate(test)
    print(f"MLP + batch norm + dropout on digits: test accuracy {result['accuracy']:.4f} "
          f"(test loss {result['loss']:.4f}) after {args.epochs} epochs on {args.backend}")
    if args.plot:
        history.plot(args.plot, title="MLP (batch norm, dropout) on digits")
        print(f"loss curve: {args.plot}")
    return {"test_accuracy": result["accuracy"], "history": history, "trainer": trainer,
            "model": model}


if __name__ == "__main__":
    main()
