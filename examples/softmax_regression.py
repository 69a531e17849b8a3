"""Softmax (multinomial logistic) regression on scikit-learn's digits (goal: >= 93% test
accuracy).

    python examples/softmax_regression.py [--epochs 30] [--backend onnxruntime|numpy|tvm]

One nn.Linear(64, 10) and cross-entropy. Prints the test accuracy and saves the loss curve.
"""
from __future__ import annotations

import argparse

import graphc as gc
from graphc import datasets, nn, optim


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--backend", default="onnxruntime")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--plot", default="softmax_regression_loss.png")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)

    train, test = datasets.digits("flat", seed=args.seed)
    gc.manual_seed(args.seed)
    model = nn.Linear(64, 10)

    @gc.function(x=gc.spec(("N", 64)), y=gc.spec(("N",), "int64"))
    def loss_fn(x, y):
        logits = model(x)
        return {"loss": nn.cross_entropy(logits, y), "logits": logits}

    trainer = gc.Trainer(loss_fn, model, optimizer=optim.SGD(args.lr, momentum=0.9,
                                                              weight_decay=args.weight_decay),
                         backend=args.backend, seed=args.seed, progress=not args.no_progress)
    history = trainer.fit(train, epochs=args.epochs, batch_size=args.batch_size, validation=test,
                          seed=args.seed)
    result = trainer.evaluate(test)
    print(f"softmax regression on digits: test accuracy {result['accuracy']:.4f} "
          f"(test loss {result['loss']:.4f}) after {args.epochs} epochs on {args.backend}")
    if args.plot:
        history.plot(args.plot, title="Softmax regression on digits")
        print(f"loss curve: {args.plot}")
    return {"test_accuracy": result["accuracy"], "history": history, "model": model}


if __name__ == "__main__":
    main()
