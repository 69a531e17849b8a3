"""torch.optim's optimizers as graph code: same class names, arguments, defaults and formulas.

Each `update` is the per-parameter body of the matching torch.optim `_single_tensor_*` function,
with `t` the 1-based step. Branches that torch takes on the first step (lazily created state) are
`where(step == 0, ...)` in the graph only where the result differs from starting at zeros.
"""
from __future__ import annotations

import numpy as np

from ..frontends import dsl
from ..frontends.dsl import Tensor
from .base import Optimizer, UpdateContext, c


def _lerp(start: Tensor, end: Tensor, weight: float) -> Tensor:
    """torch.lerp's formula: start + w * (end - start) for w < 0.5, else end - (1-w) * (end - start)."""
    if weight < 0.5:
        return start + (end - start) * weight
    return end - (end - start) * (1.0 - weight)


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ValueError(msg)


class SGD(Optimizer):
    """Stochastic gradient descent: `g += wd*p; b = mu*b + (1-dampening)*g; p -= lr*(g + mu*b if nesterov else b)`."""

    slots = ("momentum_buffer",)

    def __init__(self, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False, maximize: bool = False):
        _check(lr >= 0, f"Invalid learning rate: {lr}")
        _check(momentum >= 0, f"Invalid momentum value: {momentum}")
        _check(weight_decay >= 0, f"Invalid weight_decay value: {weight_decay}")
        _check(not nesterov or (momentum > 0 and dampening == 0),
               "Nesterov momentum requires a momentum and zero dampening")
        self.lr, self.momentum, self.dampening = lr, momentum, dampening
        self.weight_decay, self.nesterov, self.maximize = weight_decay, nesterov, maximize

    def active_slots(self):
        return self.slots if self.momentum else ()

    def update(self, p, g, state, ctx: UpdateContext):
        if self.maximize:
            g = -g
        if self.weight_decay:
            g = g + p * self.weight_decay
        new_state = {}
        if self.momentum:
            buf = state["momentum_buffer"]
            b = buf * self.momentum + g * (1.0 - self.dampening) if self.dampening else \
                buf * self.momentum + g
            if self.dampening:
                # torch starts the buffer at the undampened gradient on the first step
                b = dsl.where(ctx.first(), g, b)
            new_state["momentum_buffer"] = b
            g = g + b * self.momentum if self.nesterov else b
        return p - ctx.lr_as(p.dtype) * g, new_state


class Adagrad(Optimizer):
    """Adagrad: `clr = lr / (1 + (t-1)*lr_decay); s += g^2; p -= clr * g / (sqrt(s) + eps)`."""

    slots = ("sum",)

    def __init__(self, lr: float = 1e-2, lr_decay: float = 0.0, weight_decay: float = 0.0,
                 initial_accumulator_value: float = 0.0, eps: float = 1e-10, maximize: bool = False):
        _check(lr >= 0, f"Invalid learning rate: {lr}")
        _check(lr_decay >= 0, f"Invalid lr_decay value: {lr_decay}")
        _check(weight_decay >= 0, f"Invalid weight_decay value: {weight_decay}")
        _check(initial_accumulator_value >= 0,
               f"Invalid initial_accumulator_value value: {initial_accumulator_value}")
        _check(eps >= 0, f"Invalid epsilon value: {eps}")
        self.lr, self.lr_decay, self.weight_decay = lr, lr_decay, weight_decay
        self.initial_accumulator_value, self.eps, self.maximize = initial_accumulator_value, eps, maximize

    def init_state(self, slot, param):
        return np.full_like(param, self.initial_accumulator_value)

    def update(self, p, g, state, ctx):
        if self.maximize:
            g = -g
        if self.weight_decay:
            g = g + p * self.weight_decay
        lr = ctx.lr_as(p.dtype)
        if self.lr_decay:
            lr = lr / ((ctx.t(p.dtype) - 1.0) * self.lr_decay + 1.0)
        s = state["sum"] + g * g
        return p - lr * (g / (dsl.sqrt(s) + self.eps)), {"sum": s}


class RMSprop(Optimizer):
    """RMSprop: `v = a*v + (1-a)*g^2; d = sqrt(v - gbar^2 if centered else v) + eps; p -= lr*g/d` (or via momentum)."""

    slots = ("square_avg", "momentum_buffer", "grad_avg")

    def __init__(self, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False,
                 maximize: bool = False):
        _check(lr >= 0, f"Invalid learning rate: {lr}")
        _check(eps >= 0, f"Invalid epsilon value: {eps}")
        _check(momentum >= 0, f"Invalid momentum value: {momentum}")
        _check(weight_decay >= 0, f"Invalid weight_decay value: {weight_decay}")
        _check(alpha >= 0, f"Invalid alpha value: {alpha}")
        self.lr, self.alpha, self.eps, self.weight_decay = lr, alpha, eps, weight_decay
        self.momentum, self.centered, self.maximize = momentum, centered, maximize

    def active_slots(self):
        return ("square_avg",) + (("momentum_buffer",) if self.momentum else ()) + \
            (("grad_avg",) if self.centered else ())

    def update(self, p, g, state, ctx):
        if self.maximize:
            g = -g
        if self.weight_decay:
            g = g + p * self.weight_decay
        new = {"square_avg": state["square_avg"] * self.alpha + g * g * (1.0 - self.alpha)}
        if self.centered:
            new["grad_avg"] = _lerp(state["grad_avg"], g, 1.0 - self.alpha)
            avg = dsl.sqrt(new["square_avg"] - new["grad_avg"] * new["grad_avg"]) + self.eps
        else:
            avg = dsl.sqrt(new["square_avg"]) + self.eps
        lr = ctx.lr_as(p.dtype)
        if self.momentum:
            new["momentum_buffer"] = state["momentum_buffer"] * self.momentum + g / avg
            return p - lr * new["momentum_buffer"], new
        return p - lr * (g / avg), new


class Rprop(Optimizer):
    """Rprop: `s = sign(g*prev) -> (etaplus, etaminus, 1); step = clip(step*s); p -= sign(g)*step; g = 0 where s<0`."""

    slots = ("prev", "step_size")

    def __init__(self, lr: float = 1e-2, etas: tuple[float, float] = (0.5, 1.2),
                 step_sizes: tuple[float, float] = (1e-6, 50.0), maximize: bool = False):
        _check(lr >= 0, f"Invalid learning rate: {lr}")
        _check(0.0 < etas[0] < 1.0 < etas[1], f"Invalid eta values: {etas[0]}, {etas[1]}")
        self.lr, self.etas, self.step_sizes, self.maximize = lr, tuple(etas), tuple(step_sizes), maximize

    def update(self, p, g, state, ctx):
        if self.maximize:
            g = -g
        etaminus, etaplus = self.etas
        lo, hi = self.step_sizes
        prod = g * state["prev"]
        factor = dsl.where(prod > 0.0, c(etaplus, p), dsl.where(prod < 0.0, c(etaminus, p), c(1.0, p)))
        # torch fills step_size with the group's lr when the state is created (the first step)
        size0 = dsl.where(ctx.first(), dsl.broadcast_to(ctx.lr_as(p.dtype), p.shape), state["step_size"])
        size = dsl.minimum(dsl.maximum(size0 * factor, lo), hi)
        g = dsl.where(prod < 0.0, 0.0, g)
        return p - dsl.sign(g) * size, {"prev": g, "step_size": size}


class Adam(Optimizer):
    """Adam: `m = lerp(m, g, 1-b1); v = b2*v + (1-b2)*g^2; p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)`."""

    slots = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    decoupled = False

    def __init__(self, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, amsgrad: bool = False, maximize: bool = False):
        _check(lr >= 0, f"Invalid learning rate: {lr}")
        _check(eps >= 0, f"Invalid epsilon value: {eps}")
        _check(0.0 <= betas[0] < 1.0, f"Invalid beta parameter at index 0: {betas[0]}")
        _check(0.0 <= betas[1] < 1.0, f"Invalid beta parameter at index 1: {betas[1]}")
        _check(weight_decay >= 0, f"Invalid weight_decay value: {weight_decay}")
        self.lr, self.betas, self.eps = lr, tuple(betas), eps
        self.weight_decay, self.amsgrad, self.maximize = weight_decay, amsgrad, maximize

    def active_slots(self):
        return self.slots if self.amsgrad else self.slots[:2]

    def update(self, p, g, state, ctx):
        if self.maximize:
            g = -g
        b1, b2 = self.betas
        lr = ctx.lr_as(p.dtype)
        if self.weight_decay:
            if self.decoupled:
                p = p * (1.0 - lr * self.weight_decay)
            else:
                g = g + p * self.weight_decay
        m = _lerp(state["exp_avg"], g, 1.0 - b1)
        v = state["exp_avg_sq"] * b2 + g * g * (1.0 - b2)
        dt = p.dtype
        bc = ctx.scalar(f"adam_bc{b1},{b2}", dt, lambda: (
            1.0 - dsl.power(dsl.constant(np.asarray(b1, dt), graph=p.graph), ctx.t(dt)),
            dsl.sqrt(1.0 - dsl.power(dsl.constant(np.asarray(b2, dt), graph=p.graph), ctx.t(dt)))))
        step_size = ctx.scalar(f"adam_ss{b1},{b2}", dt, lambda: lr / bc[0])
        new = {"exp_avg": m, "exp_avg_sq": v}
        if self.amsgrad:
            new["max_exp_avg_sq"] = dsl.maximum(state["max_exp_avg_sq"], v)
            v = new["max_exp_avg_sq"]
        denom = dsl.sqrt(v) / bc[1] + self.eps
        return p - step_size * (m / denom), new


class AdamW(Adam):
    """AdamW: `p *= 1 - lr*wd` (decoupled weight decay), then the Adam update."""

    decoupled = True

    def __init__(self, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False, maximize: bool = False):
        super().__init__(lr, betas, eps, weight_decay, amsgrad, maximize)


OPTIMIZERS = {cls.__name__: cls for cls in (SGD, Adagrad, RMSprop, Rprop, Adam, AdamW)}
