"""A Transformer encoder classifying scikit-learn's digits as 8 row tokens of 8 pixels
(goal: >= 95% test accuracy).

    python examples/transformer_digits.py [--epochs 30] [--backend onnxruntime|numpy|tvm]

Rows are embedded by a linear layer, get sinusoidal position codes, pass through a stack of
nn.TransformerEncoderLayer (multi-head self-attention + feed-forward, post-norm, dropout), are
averaged over the 8 tokens and classified. Prints the test accuracy and saves the loss curve.
"""
from __future__ import annotations

import argparse

import graphc as gc
from graphc import datasets, nn, optim


class RowTransformer(nn.Module):
    def __init__(self, d_model: int = 64, heads: int = 4, ffn: int = 128, layers: int = 2,
                 dropout: float = 0.1, classes: int = 10):
        super().__init__()
        self.embed = nn.Linear(8, d_model)
        self.pos = nn.PositionalEncoding(d_model, max_len=8)
        layer = nn.TransformerEncoderLayer(d_model, heads, ffn, dropout, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers)
        self.head = nn.Linear(d_model, classes)

    def forward(self, x):  # x: (N, 8 rows, 8 pixels)
        h = self.encoder(self.pos(self.embed(x)))
        return self.head(h.mean(axis=1))


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--backend", default="onnxruntime")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--plot", default="transformer_digits_loss.png")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)

    train, test = datasets.digits("rows", seed=args.seed)
    gc.manual_seed(args.seed)
    model = RowTransformer(layers=args.layers)

    @gc.function(x=gc.spec(("N", 8, 8)), y=gc.spec(("N",), "int64"))
    def loss_fn(x, y):
        logits = model(x)
        return {"loss": nn.cross_entropy(logits, y), "logits": logits}

    steps = args.epochs * -(-len(train["y"]) // args.batch_size)
    schedule = optim.schedules.linear_warmup(optim.schedules.cosine(args.lr, steps), 50)
    trainer = gc.Trainer(loss_fn, model, optimizer=optim.AdamW(args.lr, weight_decay=1e-2),
                         backend=args.backend, schedule=schedule, seed=args.seed,
                         progress=not args.no_progress)
    history = trainer.fit(train, epochs=args.epochs, batch_size=args.batch_size, validation=test,
                          seed=args.seed)
    result = trainer.evaluate(test)
    print(f"Transformer encoder on digit rows: test accuracy {result['accuracy']:.4f} "
          f"(test loss {result['loss']:.4f}) after {args.epochs} epochs on {args.backend}")
    if args.plot:
        history.plot(args.plot, title="Transformer encoder on digits (8 row tokens)")
        print(f"loss curve: {args.plot}")
    return {"test_accuracy": result["accuracy"], "history": history, "model": model}


if __name__ == "__main__":
    main()
