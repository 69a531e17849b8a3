"""Newton's method from Hessian-vector products vs gradient descent, on logistic regression.

The Hessian is never formed: `gc.hvp` differentiates the gradient graph once more, giving a graph
that computes H v for any v, and conjugate gradient solves H p = -g with it (Newton-CG). Data:
scikit-learn's breast cancer set (569 x 30), standardized, with a small L2 penalty so the problem
is strongly convex.

    python examples/newton_logistic.py [--tol 1e-6] [--l2 1e-2] [--backend numpy|onnxruntime]

Prints the iterations each method needs to bring the gradient norm below `tol`.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import graphc as gc


def load_data(n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Standardized breast-cancer features (float64) and 0/1 targets; the first n rows if given."""
    from sklearn.datasets import load_breast_cancer
    x, y = load_breast_cancer(return_X_y=True)
    x = (x - x.mean(0)) / x.std(0)
    if n is not None:
        x, y = x[:n], y[:n]
    return x.astype(np.float64), y.astype(np.float64)


def build(features: int, l2: float) -> gc.Graph:
    """loss(w, b) = mean BCE(x @ w + b, y) + l2/2 ||w||^2."""
    with gc.Graph("logistic") as g:
        x = g.input("x", ("N", features), "float64")
        y = g.input("y", ("N",), "float64")
        w = g.param("w", init=np.zeros(features))
        b = g.param("b", init=np.zeros(()))
        z = gc.matmul(x, w) + b
        g.output(loss=gc.binary_cross_entropy_with_logits(z, y) + (0.5 * l2) * gc.sum(w * w))
    return g


class Problem:
    """The loss, its gradient and Hessian-vector products as compiled graphs over flat vectors."""

    def __init__(self, x: np.ndarray, y: np.ndarray, l2: float, backend: str):
        self.graph = build(x.shape[1], l2)
        self.feeds = {"x": x, "y": y}
        self.d = x.shape[1]
        self.grad = gc.compile(gc.grad(self.graph, wrt=["w", "b"]), backend)
        h = gc.hvp(self.graph, wrt=["w", "b"])
        self.vec = h.role_targets(gc.Role.TANGENT)
        self.hvp_exe = gc.compile(h, backend)
        self.hvp_calls = 0

    def _params(self, theta):
        return {"w": theta[:self.d], "b": np.asarray(theta[self.d])}

    def loss_and_grad(self, theta):
        out = self.grad(**self.feeds, **self._params(theta))
        return float(out["loss"]), np.concatenate([out["d_w"], np.atleast_1d(out["d_b"])])

    def hvp(self, theta, v):
        self.hvp_calls += 1
        out = self.hvp_exe(**self.feeds, **self._params(theta),
                           **{self.vec["w"]: v[:self.d], self.vec["b"]: np.asarray(v[self.d])})
        return np.concatenate([out["hvp_w"], np.atleast_1d(out["hvp_b"])])


def conjugate_gradient(hv, g, tol=1e-10, max_iter=100):
    """Solves H p = -g with only products H v."""
    p, r = np.zeros_like(g), -g.copy()
    d, rr = r.copy(), r @ r
    for _ in range(max_iter):
        hd = hv(d)
        alpha = rr / (d @ hd)
        p += alpha * d
        r -= alpha * hd
        rr_new = r @ r
        if np.sqrt(rr_new) < tol * np.linalg.norm(g):
            break
        d = r + (rr_new / rr) * d
        rr = rr_new
    return p


def newton(prob: Problem, tol: float, max_iter: int = 50) -> tuple[int, float, np.ndarray]:
    """Newton-CG with a backtracking line search; returns (iterations, loss, theta)."""
    theta = np.zeros(prob.d + 1)
    for it in range(max_iter + 1):
        f, g = prob.loss_and_grad(theta)
        if np.linalg.norm(g) < tol:
            return it, f, theta
        p = conjugate_gradient(lambda v: prob.hvp(theta, v), g)
        step = 1.0
        while prob.loss_and_grad(theta + step * p)[0] > f + 1e-4 * step * (g @ p) and step > 1e-8:
            step *= 0.5
        theta = theta + step * p
    return max_iter, f, theta


def gradient_descent(prob: Problem, tol: float, max_iter: int) -> tuple[int, float, np.ndarray]:
    """Gradient descent with step 1/L, L the Hessian's largest eigenvalue at 0 (power iteration
    on hvp): for logistic loss the curvature is largest there, so the step is safe everywhere."""
    theta = np.zeros(prob.d + 1)
    v = np.random.default_rng(0).normal(size=prob.d + 1)
    for _ in range(50):
        hv = prob.hvp(theta, v)
        lam, v = np.linalg.norm(hv), hv / np.linalg.norm(hv)
    lr = 1.0 / lam
    for it in range(max_iter + 1):
        f, g = prob.loss_and_grad(theta)
        if np.linalg.norm(g) < tol:
            return it, f, theta
        theta = theta - lr * g
    return max_iter, f, theta


def run(tol: float = 1e-6, n: int | None = None, l2: float = 1e-2, gd_max_iter: int = 100_000,
        backend: str = "numpy", verbose: bool = True) -> dict:
    """Runs both methods; returns their iteration counts, final losses and gradient norms."""
    x, y = load_data(n)
    prob = Problem(x, y, l2, backend)
    t0 = time.perf_counter()
    n_it, n_loss, n_theta = newton(prob, tol)
    t1 = time.perf_counter()
    g_it, g_loss, g_theta = gradient_descent(prob, tol, gd_max_iter)
    t2 = time.perf_counter()
    res = {"newton_iterations": n_it, "newton_hvp_calls": prob.hvp_calls, "newton_loss": n_loss,
           "gd_iterations": g_it, "gd_loss": g_loss,
           "newton_grad_norm": float(np.linalg.norm(prob.loss_and_grad(n_theta)[1])),
           "gd_grad_norm": float(np.linalg.norm(prob.loss_and_grad(g_theta)[1])),
           "accuracy": float(np.mean((x @ n_theta[:-1] + n_theta[-1] > 0) == (y > 0.5)))}
    if verbose:
        print(f"logistic regression, {x.shape[0]} x {x.shape[1]} (breast cancer, standardized), "
              f"l2={l2}, stop when ||grad|| < {tol:g}")
        print(f"  Newton-CG (hvp):  {n_it:6d} iterations  ({res['newton_hvp_calls']} Hessian-vector "
              f"products)  loss {n_loss:.10f}  {t1 - t0:.2f}s")
        print(f"  gradient descent: {g_it:6d} iterations{' (cap)' if g_it == gd_max_iter else ''}"
              f"  loss {g_loss:.10f}  {t2 - t1:.2f}s")
        print(f"  training accuracy {res['accuracy']:.4f}")
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tol", type=float, default=1e-6)
    ap.add_argument("--l2", type=float, default=1e-2)
    ap.add_argument("--gd-max-iter", type=int, default=100_000)
    ap.add_argument("--backend", default="onnxruntime", choices=["numpy", "onnxruntime"])
    args = ap.parse_args()
    run(args.tol, None, args.l2, args.gd_max_iter, args.backend)


if __name__ == "__main__":
    main()
