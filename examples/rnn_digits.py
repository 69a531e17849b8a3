"""RNN, LSTM and GRU reading scikit-learn's digits row by row: 8 time steps of 8 pixels
(goal: LSTM and GRU >= 95% test accuracy).

    python examples/rnn_digits.py [--cells rnn,lstm,gru] [--epochs 30] [--backend onnxruntime]

Each model is a recurrent layer (batch_first) whose last hidden state feeds a linear classifier.
Prints each test accuracy and saves one PNG with the three loss curves.
"""
from __future__ import annotations

import argparse

import graphc as gc
from graphc import datasets, nn, optim

CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


class RowClassifier(nn.Module):
    """A recurrent layer over the rows, then a linear layer on the last hidden state."""

    def __init__(self, cell: str, hidden: int = 64, classes: int = 10):
        super().__init__()
        self.rnn = CELLS[cell](8, hidden, batch_first=True)
        self.fc = nn.Linear(hidden, classes)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.fc(out[:, -1])


def train_one(cell: str, train, test, args) -> dict:
    gc.manual_seed(args.seed)
    model = RowClassifier(cell, args.hidden)

    @gc.function(x=gc.spec(("N", 8, 8)), y=gc.spec(("N",), "int64"))
    def loss_fn(x, y):
        logits = model(x)
        return {"loss": nn.cross_entropy(logits, y), "logits": logits}

    steps = args.epochs * -(-len(train["y"]) // args.batch_size)
    trainer = gc.Trainer(loss_fn, model, optimizer=optim.Adam(args.lr), backend=args.backend,
                         schedule=optim.schedules.cosine(args.lr, steps), seed=args.seed,
                         clip_grad_norm=5.0, progress=not args.no_progress)
    history = trainer.fit(train, epochs=args.epochs, batch_size=args.batch_size, validation=test,
                          seed=args.seed)
    result = trainer.evaluate(test)
    print(f"{cell.upper():>4} on digit rows: test accuracy {result['accuracy']:.4f} "
          f"(test loss {result['loss']:.4f}) after {args.epochs} epochs on {args.backend}")
    return {"test_accuracy": result["accuracy"], "history": history, "model": model}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cells", default="rnn,lstm,gru")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--backend", default="onnxruntime")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-size", type=int, default=None, help="use only this many examples")
    p.add_argument("--plot", default="rnn_digits_loss.png")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)

    train, test = datasets.digits("rows", seed=args.seed)
    if args.train_size:
        train = {k: v[:args.train_size] for k, v in train.items()}
    results = {c: train_one(c, train, test, args) for c in args.cells.split(",")}
    if args.plot:
        _plot({c: r["history"] for c, r in results.items()}, args.plot)
        print(f"loss curves: {args.plot}")
    return results


def _plot(histories: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    for c, h in histories.items():
        a.plot(h["epoch"], h["loss"], label=f"{c} train")
        a.plot(h["epoch"], h["val_loss"], "--", label=f"{c} test")
        b.plot(h["epoch"], h["val_accuracy"], label=c)
    a.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    b.set(xlabel="epoch", ylabel="test accuracy", title="accuracy")
    a.legend()
    b.legend()
    fig.suptitle("Digits read row by row (8 steps x 8 pixels)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
