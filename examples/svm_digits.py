"""A linear multiclass SVM (the Weston-Watkins hinge loss) on scikit-learn's digits (goal: >= 93%
test accuracy).

    python examples/svm_digits.py [--epochs 30] [--backend onnxruntime|numpy|tvm]

loss = mean_i sum_{j != y_i} max(0, 1 + s_ij - s_i,y_i) + weight decay (the L2 penalty of the
SVM objective), scores s = x W^T + b. Prints the test accuracy and saves the loss curve.
"""
from __future__ import annotations

import argparse

import graphc as gc
from graphc import datasets, nn, optim


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--weight-decay", type=float, default=1e-3)
    p.add_argument("--backend", default="onnxruntime")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--plot", default="svm_digits_loss.png")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)

    train, test = datasets.digits("flat", seed=args.seed)
    gc.manual_seed(args.seed)
    model = nn.Linear(64, 10)

    @gc.function(x=gc.spec(("N", 64)), y=gc.spec(("N",), "int64"))
    def loss_fn(x, y):
        scores = model(x)
        return {"loss": nn.multiclass_hinge_loss(scores, y, margin=1.0), "logits": scores}

    trainer = gc.Trainer(loss_fn, model, optimizer=optim.SGD(args.lr, momentum=0.9,
                                                              weight_decay=args.weight_decay),
                         backend=args.backend, seed=args.seed, progress=not args.no_progress)
    history = trainer.fit(train, epochs=args.epochs, batch_size=args.batch_size, validation=test,
                          seed=args.seed)
    result = trainer.evaluate(test)
    print(f"linear SVM (multiclass hinge) on digits: test accuracy {result['accuracy']:.4f} "
          f"(test hinge loss {result['loss']:.4f}) after {args.epochs} epochs on {args.backend}")
    if args.plot:
        history.plot(args.plot, title="Linear multiclass SVM on digits")
        print(f"loss curve: {args.plot}")
    return {"test_accuracy": result["accuracy"], "history": history, "model": model}


if __name__ == "__main__":
    main()
