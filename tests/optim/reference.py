"""Plain-numpy versions of torch.optim's update formulas, written independently of graphc.

Each class keeps its state in a dict and has `step(params, grads, lr)` updating params in place;
`t` is the 1-based step count as in torch.optim.
"""
from __future__ import annotations

import numpy as np


class RefOptimizer:
    def __init__(self, **kw):
        self.kw = kw
        self.state: dict[str, dict[str, np.ndarray]] = {}
        self.t = 0

    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray], lr: float) -> None:
        self.t += 1
        for n in params:
            params[n] = self.one(n, params[n], grads[n].copy(), lr, self.state.setdefault(n, {}))

    def one(self, name, p, g, lr, st):  # pragma: no cover - overridden
        raise NotImplementedError


class SGD(RefOptimizer):
    def one(self, name, p, g, lr, st):
        mom, damp = self.kw.get("momentum", 0.0), self.kw.get("dampening", 0.0)
        wd, nest = self.kw.get("weight_decay", 0.0), self.kw.get("nesterov", False)
        if wd:
            g = g + wd * p
        if mom:
            if "buf" not in st:
                st["buf"] = g.copy()
            else:
                st["buf"] = mom * st["buf"] + (1 - damp) * g
            g = g + mom * st["buf"] if nest else st["buf"]
        return p - lr * g


class Adagrad(RefOptimizer):
    def one(self, name, p, g, lr, st):
        wd, lr_decay = self.kw.get("weight_decay", 0.0), self.kw.get("lr_decay", 0.0)
        eps = self.kw.get("eps", 1e-10)
        st.setdefault("sum", np.full_like(p, self.kw.get("initial_accumulator_value", 0.0)))
        if wd:
            g = g + wd * p
        clr = lr / (1 + (self.t - 1) * lr_decay)
        st["sum"] = st["sum"] + g * g
        return p - clr * g / (np.sqrt(st["sum"]) + eps)


class RMSprop(RefOptimizer):
    def one(self, name, p, g, lr, st):
        alpha, eps = self.kw.get("alpha", 0.99), self.kw.get("eps", 1e-8)
        wd, mom, centered = self.kw.get("weight_decay", 0.0), self.kw.get("momentum", 0.0), \
            self.kw.get("centered", False)
        if wd:
            g = g + wd * p
        st["sq"] = alpha * st.get("sq", np.zeros_like(p)) + (1 - alpha) * g * g
        if centered:
            st["ga"] = alpha * st.get("ga", np.zeros_like(p)) + (1 - alpha) * g
            avg = np.sqrt(st["sq"] - st["ga"] ** 2) + eps
        else:
            avg = np.sqrt(st["sq"]) + eps
        if mom:
            st["buf"] = mom * st.get("buf", np.zeros_like(p)) + g / avg
            return p - lr * st["buf"]
        return p - lr * g / avg


class Rprop(RefOptimizer):
    def one(self, name, p, g, lr, st):
        etaminus, etaplus = self.kw.get("etas", (0.5, 1.2))
        lo, hi = self.kw.get("step_sizes", (1e-6, 50.0))
        prev = st.get("prev", np.zeros_like(p))
        size = st.get("size", np.full_like(p, lr))
        s = np.sign(g * prev)
        factor = np.where(s > 0, etaplus, np.where(s < 0, etaminus, 1.0))
        size = np.clip(size * factor, lo, hi)
        g = np.where(s < 0, 0.0, g)
        st["prev"], st["size"] = g, size
        return p - np.sign(g) * size


class Adam(RefOptimizer):
    decoupled = False

    def one(self, name, p, g, lr, st):
        b1, b2 = self.kw.get("betas", (0.9, 0.999))
        eps, wd, ams = self.kw.get("eps", 1e-8), self.kw.get("weight_decay", self.default_wd), \
            self.kw.get("amsgrad", False)
        if wd:
            if self.decoupled:
                p = p * (1 - lr * wd)
            else:
                g = g + wd * p
        st["m"] = b1 * st.get("m", np.zeros_like(p)) + (1 - b1) * g
        st["v"] = b2 * st.get("v", np.zeros_like(p)) + (1 - b2) * g * g
        v = st["v"]
        if ams:
            st["vmax"] = np.maximum(st.get("vmax", np.zeros_like(p)), v)
            v = st["vmax"]
        mhat_scale = lr / (1 - b1 ** self.t)
        denom = np.sqrt(v) / np.sqrt(1 - b2 ** self.t) + eps
        return p - mhat_scale * st["m"] / denom

    default_wd = 0.0


class AdamW(Adam):
    decoupled = True
    default_wd = 1e-2


REFS = {c.__name__: c for c in (SGD, Adagrad, RMSprop, Rprop, Adam, AdamW)}

# (optimizer name, kwargs): every formula branch at least once
CASES = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.5, weight_decay=0.01)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.001)),
    ("Adagrad", dict(lr=0.1)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.01, weight_decay=0.01, initial_accumulator_value=0.1)),
    ("RMSprop", dict(lr=0.01)),
    ("RMSprop", dict(lr=0.01, momentum=0.9, centered=True, weight_decay=0.01)),
    ("Rprop", dict(lr=0.01)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, weight_decay=0.01, amsgrad=True)),
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.01, betas=(0.8, 0.99), amsgrad=True)),
]
