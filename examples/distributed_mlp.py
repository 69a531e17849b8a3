"""Data-parallel training of an MLP with gc.Trainer on torch.distributed (gloo on CPU).

    torchrun --nproc-per-node 2 examples/distributed_mlp.py [--epochs 3] [--optimizer adam]
    graphc train examples/distributed_mlp.py --nproc 2 -- --epochs 3     # the same, via graphc
    python examples/distributed_mlp.py                                    # one process: fused step

Needs `pip install 'graphc[distributed]'` for more than one process. `--batch` is the global
batch: each of the W workers runs batch/W examples per step and the gradients are averaged, so
W workers follow the one-process run on the same global batch to rounding (compare with
`--save params.npz`). Keep the learning rate when changing W (the global batch is unchanged);
if you instead grow the global batch with W, scale the learning rate with it (linear scaling
rule, with warm-up) as a starting point.
"""
from __future__ import annotations

import argparse

import numpy as np

import graphc as gc
from graphc import nn, optim


def build(hidden: int = 32, seed: int = 0, dropout: float = 0.0, batchnorm: bool = False):
    """A 16 -> hidden -> 4 MLP and its mean cross-entropy loss as a gc.function."""
    gc.manual_seed(seed)
    layers = [nn.Linear(16, hidden)] + ([nn.BatchNorm1d(hidden)] if batchnorm else []) + [nn.ReLU()]
    if dropout:
        layers.append(nn.Dropout(dropout))
    model = nn.Sequential(*layers, nn.Linear(hidden, 4))

    @gc.function(x=gc.spec(("N", 16)), y=gc.spec(("N",), "int64"))
    def loss_fn(x, y):
        logits = model(x)
        return {"loss": nn.cross_entropy(logits, y), "logits": logits}
    return model, loss_fn


def data(n: int = 256, seed: int = 0) -> dict:
    """A seeded 4-class problem: labels from a fixed random linear map of Gaussian inputs."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 16)).astype(np.float32)
    y = np.argmax(x @ rng.standard_normal((16, 4)), axis=1).astype(np.int64)
    return {"x": x, "y": y}


OPTIMIZERS = {"sgd": lambda: optim.SGD(lr=0.1), "momentum": lambda: optim.SGD(lr=0.05, momentum=0.9),
              "adam": lambda: optim.Adam(lr=1e-2)}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=32, help="global batch size")
    ap.add_argument("--examples", type=int, default=256)
    ap.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default="sgd")
    ap.add_argument("--backend", default="numpy")
    ap.add_argument("--dropout", type=float, default=0.0)
    ap.add_argument("--batchnorm", action="store_true", help="add batch norm after the first layer")
    ap.add_argument("--sync-batchnorm", action="store_true",
                    help="average batch-norm running statistics across workers")
    ap.add_argument("--checkpoint", default=None, help="save a checkpoint after every epoch")
    ap.add_argument("--resume", default=None, help="continue from this checkpoint")
    ap.add_argument("--check-sync-every", type=int, default=5)
    ap.add_argument("--save", default=None, help="write the final parameters (rank 0) to this .npz")
    args = ap.parse_args(argv)

    model, loss_fn = build(dropout=args.dropout, batchnorm=args.batchnorm)
    trainer = gc.Trainer(loss_fn, model, optimizer=OPTIMIZERS[args.optimizer](),
                         backend=args.backend, progress=False, check_sync_every=args.check_sync_every,
                         sync_batchnorm=args.sync_batchnorm)
    dist = trainer.dist
    rank, world = (dist.rank, dist.world_size) if dist else (0, 1)
    history = trainer.fit(data(args.examples), epochs=args.epochs, batch_size=args.batch,
                          checkpoint=args.checkpoint, resume=args.resume)
    if rank == 0:
        print(f"== {world} worker(s), {trainer.step} steps: loss {history.steps[-1]:.6f} "
              f"{'(averaged over ranks)' if dist else ''}".rstrip(), flush=True)
        if dist is not None:
            s = trainer.stepper
            print(f"   all-reduce: {s.bytes_per_step} bytes per step, last one "
                  f"{s.last_allreduce_s * 1e3:.2f} ms", flush=True)
        if args.save:
            np.savez(args.save, **trainer.state_dict(), step=np.asarray(trainer.step))
    return {"rank": rank, "world": world, "steps": trainer.step}


if __name__ == "__main__":
    main()
