"""A character-level Transformer language model trained on Python's own standard-library source
(goal: validation bits per character below 3.0 within a few CPU minutes), then sampled.

    python examples/char_lm.py [--epochs 4] [--seq-len 64] [--backend onnxruntime]

Text: the source of some standard-library modules (graphc.datasets.stdlib_text), the last 10%
held out for validation. Model: character embedding + sinusoidal positions + causal (masked)
Transformer encoder layers + a linear read-out to the vocabulary. Reports validation bits per
character after every epoch, saves the loss curve, and prints text sampled from the model.
"""
from __future__ import annotations

import argparse
import math

import numpy as np

import graphc as gc
from graphc import datasets, nn, optim


class CharTransformer(nn.Module):
    def __init__(self, vocab: int, seq_len: int, d_model: int = 128, heads: int = 4,
                 ffn: int = 256, layers: int = 2, dropout: float = 0.0):
        super().__init__()
        self.seq_len = seq_len
        self.embed = nn.Embedding(vocab, d_model)
        self.pos = nn.PositionalEncoding(d_model, max_len=seq_len)
        layer = nn.TransformerEncoderLayer(d_model, heads, ffn, dropout, batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers)
        self.norm = nn.LayerNorm(d_model)
        self.out = nn.Linear(d_model, vocab)

    def forward(self, ids):  # ids: (N, L) -> logits (N, L, vocab)
        length = ids.shape[1]
        causal = np.triu(np.ones((length, length), bool), 1)  # True: may not attend (future)
        h = self.pos(self.embed(ids))
        return self.out(self.norm(self.encoder(h, mask=causal)))


def sample(model: CharTransformer, vocab: datasets.CharVocab, prompt: str, n: int,
           temperature: float = 0.8, seed: int = 0, backend: str = "onnxruntime") -> str:
    """Continues `prompt` by n characters, sampling from the eval-mode model."""
    length = model.seq_len
    model.eval()

    @gc.function(ids=gc.spec((1, length), "int64"))
    def next_logits(ids):
        return {"logits": model(ids)[:, -1]}

    exe = gc.compile(next_logits.graph, backend)
    rng = np.random.default_rng(seed)
    ids = list(vocab.encode(prompt.rjust(length)[-length:]))
    out = []
    for _ in range(n):
        logits = exe(ids=np.array([ids[-length:]], np.int64))["logits"][0].astype(np.float64)
        p = np.exp((logits - logits.max()) / temperature)
        nxt = int(rng.choice(len(p), p=p / p.sum()))
        ids.append(nxt)
        out.append(vocab.chars[nxt])
    model.train()
    return "".join(out)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--max-chars", type=int, default=400_000)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--backend", default="onnxruntime")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sample-chars", type=int, default=300)
    p.add_argument("--plot", default="char_lm_loss.png")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)

    train, val, vocab = datasets.char_corpus(args.seq_len, args.max_chars)
    print(f"corpus: {len(train['x']) * args.seq_len:,} training characters, vocabulary "
          f"{len(vocab)}, {len(val['x'])} validation windows")
    gc.manual_seed(args.seed)
    model = CharTransformer(len(vocab), args.seq_len, args.d_model, layers=args.layers)

    @gc.function(x=gc.spec(("N", args.seq_len), "int64"), y=gc.spec(("N", args.seq_len), "int64"))
    def loss_fn(x, y):
        logits = model(x)
        loss = nn.cross_entropy(logits, y)
        return {"loss": loss, "bits_per_char": loss * (1 / math.log(2))}

    steps = args.epochs * -(-len(train["y"]) // args.batch_size)
    schedule = optim.schedules.linear_warmup(optim.schedules.cosine(args.lr, steps), 100)
    trainer = gc.Trainer(loss_fn, model, optimizer=optim.AdamW(args.lr, weight_decay=1e-2),
                         backend=args.backend, schedule=schedule, clip_grad_norm=1.0,
                         seed=args.seed, progress=not args.no_progress)

    def report(tr, row):
        print(f"epoch {row['epoch']}: train {row['bits_per_char']:.3f} bits/char, validation "
              f"{row['val_bits_per_char']:.3f} bits/char ({row['time']:.0f} s)")

    history = trainer.fit(train, epochs=args.epochs, batch_size=args.batch_size, validation=val,
                          seed=args.seed, callbacks=[report])
    bpc = history["val_bits_per_char"][-1]
    print(f"char Transformer LM: validation {bpc:.3f} bits per character after {args.epochs} "
          f"epochs on {args.backend}")
    text = ""
    if args.sample_chars:
        prompt = vocab.decode(val["x"][0])
        text = sample(model, vocab, prompt, args.sample_chars, seed=args.seed,
                      backend=args.backend if args.backend != "tvm" else "onnxruntime")
        print("---- sample (prompt from the validation text, then the model's continuation) ----")
        print(prompt + "<<|>>" + text)
    if args.plot:
        history.plot(args.plot, title="Character Transformer LM on stdlib source")
        print(f"loss curve: {args.plot}")
    return {"val_bits_per_char": bpc, "history": history, "sample": text, "model": model}


if __name__ == "__main__":
    main()
