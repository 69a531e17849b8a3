"""LeNet-5 (LeCun et al. 1998, the original 32x32 form) on scikit-learn's digits upsampled x4
(goal: >= 97% test accuracy).

    python examples/lenet5_digits.py [--epochs 15] [--backend onnxruntime|numpy|tvm]

C1: 6 5x5 convolutions (32 -> 28), S2: 2x2 average pooling, C3: 16 5x5 convolutions (-> 10),
S4: pooling (-> 5), C5: 120 5x5 convolutions (-> 1), F6: 84 units, output: 10; tanh throughout.
The training images get two randomly shifted copies (up to one original pixel each way).
Prints the test accuracy and saves the loss curve as a PNG.
"""
from __future__ import annotations

import argparse

import graphc as gc
from graphc import datasets, nn, optim


def build_model(seed: int = 0) -> nn.Module:
    gc.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 6, 5), nn.Tanh(), nn.AvgPool2d(2),        # C1, S2
        nn.Conv2d(6, 16, 5), nn.Tanh(), nn.AvgPool2d(2),       # C3, S4
        nn.Conv2d(16, 120, 5), nn.Tanh(), nn.Flatten(),        # C5
        nn.Linear(120, 84), nn.Tanh(),                         # F6
        nn.Linear(84, 10))


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--backend", default="onnxruntime")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--augment", type=int, default=2,
                   help="add this many randomly shifted copies of the training images")
    p.add_argument("--train-size", type=int, default=None, help="use only this many examples")
    p.add_argument("--plot", default="lenet5_digits_loss.png")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)

    train, test = datasets.digits("image32", seed=args.seed)
    if args.train_size:
        train = {k: v[:args.train_size] for k, v in train.items()}
    if args.augment:  # shifted copies of the training images (the test set is untouched)
        train = datasets.augment_shifts(train, copies=args.augment, max_shift=4, seed=args.seed)
    model = build_model(args.seed)

    @gc.function(x=gc.spec(("N", 1, 32, 32)), y=gc.spec(("N",), "int64"))
    def loss_fn(x, y):
        logits = model(x)
        return {"loss": nn.cross_entropy(logits, y), "logits": logits}

    steps = args.epochs * -(-len(train["y"]) // args.batch_size)
    trainer = gc.Trainer(loss_fn, model, optimizer=optim.Adam(args.lr), backend=args.backend,
                         schedule=optim.schedules.cosine(args.lr, steps), seed=args.seed,
                         progress=not args.no_progress)
    history = trainer.fit(train, epochs=args.epochs, batch_size=args.batch_size, validation=test,
                          seed=args.seed)
    result = trainer.evaluate(test)
    print(f"LeNet-5 on digits (32x32): test accuracy {result['accuracy']:.4f} "
          f"(test loss {result['loss']:.4f}) after {args.epochs} epochs on {args.backend}")
    if args.plot:
        history.plot(args.plot, title="LeNet-5 on digits upsampled to 32x32")
        print(f"loss curve: {args.plot}")
    return {"test_accuracy": result["accuracy"], "history": history, "trainer": trainer,
            "model": model}


if __name__ == "__main__":
    main()
