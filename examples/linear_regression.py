"""Linear regression on scikit-learn's diabetes data, trained by gradient descent, checked
against the closed-form least-squares fit (goal: test R^2 within 0.01 of it).

    python examples/linear_regression.py [--epochs 200] [--backend onnxruntime|numpy|tvm]

Prints both test R^2 values and saves the loss curve as a PNG.
"""
from __future__ import annotations

import argparse

import numpy as np

import graphc as gc
from graphc import datasets, nn, optim


def r2(y: np.ndarray, pred: np.ndarray) -> float:
    """The coefficient of determination 1 - SS_res / SS_tot."""
    return float(1 - np.sum((y - pred) ** 2) / np.sum((y - y.mean()) ** 2))


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--backend", default="onnxruntime")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--plot", default="linear_regression_loss.png")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)

    train, test = datasets.diabetes(seed=args.seed)
    # targets scaled to unit variance for training (R^2 does not depend on the scale)
    mu, sd = train["y"].mean(), train["y"].std()
    train_s = {"x": train["x"], "y": ((train["y"] - mu) / sd)[:, None].astype(np.float32)}
    test_s = {"x": test["x"], "y": ((test["y"] - mu) / sd)[:, None].astype(np.float32)}

    gc.manual_seed(args.seed)
    model = nn.Linear(10, 1)

    @gc.function(x=gc.spec(("N", 10)), y=gc.spec(("N", 1)))
    def loss_fn(x, y):
        pred = model(x)
        return {"loss": nn.mse_loss(pred, y), "pred": pred}

    steps = args.epochs * -(-len(train["y"]) // args.batch_size)
    trainer = gc.Trainer(loss_fn, model, optimizer=optim.Adam(args.lr), backend=args.backend,
                         schedule=optim.schedules.cosine(args.lr, steps), seed=args.seed,
                         progress=not args.no_progress)
    history = trainer.fit(train_s, epochs=args.epochs, batch_size=args.batch_size,
                          validation=test_s, seed=args.seed)
    pred = trainer.predict(test_s, output="pred")[:, 0] * sd + mu
    r2_gd = r2(test["y"], pred)

    # the closed-form least-squares fit on the same training data
    a = np.c_[train["x"].astype(np.float64), np.ones(len(train["x"]))]
    coef, *_ = np.linalg.lstsq(a, train["y"].astype(np.float64), rcond=None)
    r2_ls = r2(test["y"], np.c_[test["x"], np.ones(len(test["x"]))] @ coef)
    print(f"linear regression on diabetes: test R^2 {r2_gd:.4f} (gradient descent on "
          f"{args.backend}) vs {r2_ls:.4f} (closed-form least squares); difference "
          f"{abs(r2_gd - r2_ls):.4f}")
    if args.plot:
        history.plot(args.plot, title="Linear regression on diabetes (MSE, standardized target)")
        print(f"loss curve: {args.plot}")
    return {"test_r2": r2_gd, "closed_form_r2": r2_ls, "history": history, "model": model}


if __name__ == "__main__":
    main()
