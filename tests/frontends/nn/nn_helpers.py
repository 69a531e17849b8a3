"""Shared helpers for the graphc.nn tests: trace a module on example arrays, run it, compare."""
from __future__ import annotations

import numpy as np

import graphc as gc

try:  # the PyTorch parity tests skip cleanly without torch (as in CI)
    import torch
except ImportError:  # pragma: no cover
    torch = None


def trace(module, *arrays, symbolic_batch: bool = False, out_fn=None, name: str = "m"):
    """A graph with inputs x0.. shaped like `arrays` and outputs out0.. = module(*inputs)."""
    g = gc.Graph(name)
    with g:
        xs = []
        for i, a in enumerate(arrays):
            a = np.asarray(a)
            shape = (("N",) + a.shape[1:]) if symbolic_batch else a.shape
            dt = "int64" if a.dtype.kind in "iu" else ("bool" if a.dtype == bool else a.dtype.name)
            xs.append(g.input(f"x{i}", shape, dt))
        out = module(*xs)
        if out_fn is not None:
            out = out_fn(out)
        leaves = flatten(out)
        for i, t in enumerate(leaves):
            g.output(**{f"out{i}": t})
    return g


def flatten(out):
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in flatten(o)]
    return [] if out is None else [out]


def feeds_for(g, *arrays, step: int = 0):
    feeds = {f"x{i}": np.asarray(a) for i, a in enumerate(arrays)}
    if g.has_value("rng_seed"):
        feeds.update(rng_seed=np.int64(0), rng_step=np.int64(step))
    return feeds


def run(g, *arrays, backend: str = "numpy", step: int = 0):
    """All outputs of g (dict) on `backend`."""
    return gc.compile(g, backend).run(feeds_for(g, *arrays, step=step))


def load_from_torch(gmodule, tmodule):
    """Copies a torch module's state dict into a graphc module (PyTorch names and layouts)."""
    gmodule.load_state_dict({k: v.detach().numpy() for k, v in tmodule.state_dict().items()})
    return gmodule


def rand(rng, *shape, dtype="float64"):
    return rng.standard_normal(shape).astype(dtype)


def to_torch(arrays, requires_grad=True):
    out = []
    for a in arrays:
        t = torch.from_numpy(np.array(a))
        if t.is_floating_point() and requires_grad:
            t.requires_grad_(True)
        out.append(t)
    return out


def torch_outputs(tmodule, arrays, out_fn=None):
    ts = to_torch(arrays)
    out = tmodule(*ts)
    if out_fn is not None:
        out = out_fn(out)
    return ts, flatten(out)


def compare_with_torch(gmod, tmod, arrays, out_fn=None, backends=("numpy", "onnxruntime"),
                       grads: bool = True, rtol: float = 1e-7, atol: float = 1e-9, seed: int = 0):
    """Loads tmod's weights into gmod and checks forward outputs (and gradients) agree.

    Gradients: of sum_i <out_i, c_i> for fixed random c_i, w.r.t. every parameter and every
    float input, via gc.grad on graphc's side and autograd on PyTorch's.
    """
    load_from_torch(gmod, tmod)
    ts, t_out = torch_outputs(tmod, arrays, out_fn)
    g = trace(gmod, *arrays, out_fn=out_fn)
    for be in backends:
        res = run(g, *arrays, backend=be)
        assert len(res) == len(t_out) or any(k.startswith("state:") for k in res)
        for i, t in enumerate(t_out):
            np.testing.assert_allclose(res[f"out{i}"], t.detach().numpy(), rtol=rtol, atol=atol,
                                       err_msg=f"output {i} on {be}")
    if not grads:
        return g
    rng = np.random.default_rng(seed)
    cots = [rng.standard_normal(tuple(t.shape)) for t in t_out]
    total = sum((t * torch.from_numpy(c)).sum() for t, c in zip(t_out, cots))
    total.backward()
    gl = gc.Graph("loss")
    with gl:
        xs = []
        for i, a in enumerate(arrays):
            a = np.asarray(a)
            xs.append(gl.input(f"x{i}", a.shape, "int64" if a.dtype.kind in "iu" else
                               ("bool" if a.dtype == bool else a.dtype.name)))
        out = gmod(*xs)
        if out_fn is not None:
            out = out_fn(out)
        leaves = flatten(out)
        loss = sum(gc.sum(t * gc.constant(c.astype(t.dtype))) for t, c in zip(leaves, cots))
        gl.output(loss=loss)
    pnames = [p.name for p in gl.params if p.role is gc.Role.PARAM]
    xnames = [f"x{i}" for i, a in enumerate(arrays) if np.asarray(a).dtype.kind == "f"]
    gg = gc.grad(gl, wrt=pnames + xnames)
    res = run(gg, *arrays)
    tparams = dict(tmod.named_parameters())
    for n in pnames:
        np.testing.assert_allclose(res[f"d_{n}"], tparams[n].grad.numpy(), rtol=rtol * 10,
                                   atol=atol * 10, err_msg=f"gradient of {n}")
    for n in xnames:
        i = int(n[1:])
        np.testing.assert_allclose(res[f"d_{n}"], ts[i].grad.numpy(), rtol=rtol * 10,
                                   atol=atol * 10, err_msg=f"gradient of input {i}")
    return g
