"""Peer implementations of the two benchmark training steps: numpy by hand, PyTorch eager, JAX jit,
and a hand-built ONNX step (Gemm with transA/transB, io binding, ping-pong buffers).

Each `make_*` returns a zero-argument `step()` closure doing one full training step (forward,
backward, update) on fixed data, or None when the peer is not installed. Used by
bench_training.py only; timings are never asserted.
"""
from __future__ import annotations

import numpy as np

LR, MOM = 0.01, 0.9


def mlp_params(sizes, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    ps = []
    for i, o in zip(sizes[:-1], sizes[1:]):
        b = 1 / np.sqrt(i)
        ps += [rng.uniform(-b, b, (o, i)).astype(dtype), rng.uniform(-b, b, (o,)).astype(dtype)]
    return ps


# ---- numpy by hand ------------------------------------------------------------------------------

def numpy_mlp(x, y, params):
    ps = [p.copy() for p in params]
    bufs = [np.zeros_like(p) for p in ps]
    n = len(y)
    onehot = np.eye(ps[-1].shape[0], dtype=x.dtype)[y]

    def step():
        w1, b1, w2, b2, w3, b3 = ps
        h1 = np.maximum(x @ w1.T + b1, 0)
        h2 = np.maximum(h1 @ w2.T + b2, 0)
        z = h2 @ w3.T + b3
        z = z - z.max(1, keepdims=True)
        e = np.exp(z)
        s = e.sum(1, keepdims=True)
        loss = float((np.log(s)[:, 0] - (z * onehot).sum(1)).mean())
        dz = (e / s - onehot) / n
        dh2 = (dz @ w3) * (h2 > 0)
        dh1 = (dh2 @ w2) * (h1 > 0)
        grads = [dh1.T @ x, dh1.sum(0), dh2.T @ h1, dh2.sum(0), dz.T @ h2, dz.sum(0)]
        for p, b, g in zip(ps, bufs, grads):
            b *= MOM
            b += g
            p -= LR * b
        return loss
    return step


def numpy_logreg(x, y, w, b, lr=0.1):
    w, b = w.copy(), b.copy()
    n = len(y)

    def step():
        z = x @ w + b
        loss = float((np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))).mean())
        d = (1 / (1 + np.exp(-z)) - y) / n
        w[...] -= lr * (x.T @ d)
        b[...] -= lr * d.sum()
        return loss
    return step


# ---- PyTorch eager --------------------------------------------------------------------------------

def torch_mlp(x, y, params):
    try:
        import torch
    except ImportError:
        return None
    torch.manual_seed(0)
    if THREADS:
        torch.set_num_threads(THREADS)
    sizes = [params[0].shape[1]] + [params[i].shape[0] for i in range(0, len(params), 2)]
    layers = []
    for k, (i, o) in enumerate(zip(sizes[:-1], sizes[1:])):
        lin = torch.nn.Linear(i, o)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(params[2 * k]))
            lin.bias.copy_(torch.from_numpy(params[2 * k + 1]))
        layers += [lin, torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers[:-1])
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOM)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    lossf = torch.nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=True)
        loss = lossf(model(xt), yt)
        loss.backward()
        opt.step()
        return float(loss.detach())
    return step


def torch_logreg(x, y, w, b, lr=0.1):
    try:
        import torch
    except ImportError:
        return None
    if THREADS:
        torch.set_num_threads(THREADS)
    wt = torch.nn.Parameter(torch.from_numpy(w.copy()))
    bt = torch.nn.Parameter(torch.from_numpy(b.copy()))
    opt = torch.optim.SGD([wt, bt], lr=lr)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(xt @ wt + bt, yt)
        loss.backward()
        opt.step()
        return float(loss.detach())
    return step


# ---- JAX jit ------------------------------------------------------------------------------------------

def jax_mlp(x, y, params):
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None

    def loss_fn(ps, x, y):
        h = x
        for k in range(0, len(ps) - 2, 2):
            h = jax.nn.relu(h @ ps[k].T + ps[k + 1])
        z = h @ ps[-2].T + ps[-1]
        return jnp.mean(jax.nn.logsumexp(z, 1) - jnp.take_along_axis(z, y[:, None], 1)[:, 0])

    @jax.jit
    def update(ps, bufs, x, y):
        loss, gs = jax.value_and_grad(loss_fn)(ps, x, y)
        bufs = [MOM * b + g for b, g in zip(bufs, gs)]
        return [p - LR * b for p, b in zip(ps, bufs)], bufs, loss

    state = {"ps": [jnp.asarray(p) for p in params], "bufs": [jnp.zeros_like(p) for p in params]}
    xj, yj = jnp.asarray(x), jnp.asarray(y)

    def step():
        state["ps"], state["bufs"], loss = update(state["ps"], state["bufs"], xj, yj)
        return float(loss)
    return step


def jax_logreg(x, y, w, b, lr=0.1):
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None

    def loss_fn(p, x, y):
        z = x @ p[0] + p[1]
        return jnp.mean(jnp.maximum(z, 0) - z * y + jnp.log1p(jnp.exp(-jnp.abs(z))))

    @jax.jit
    def update(p, x, y):
        loss, g = jax.value_and_grad(loss_fn)(p, x, y)
        return [a - lr * d for a, d in zip(p, g)], loss

    state = {"p": [jnp.asarray(w), jnp.asarray(b)]}
    xj, yj = jnp.asarray(x), jnp.asarray(y)

    def step():
        state["p"], loss = update(state["p"], xj, yj)
        return float(loss)
    return step


# ---- a hand-built ONNX step (the bar graphc must clear) ---------------------------------------------

THREADS: int | None = None  # set by bench_training.py --single-thread


def onnx_mlp(x, y, params):
    """MLP step written by hand as one ONNX graph: Gemm with transA/transB, fused softmax-CE grad."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto as T
    from onnx import helper as h
    n, c = len(y), params[-1].shape[0]
    nodes, inits = [], []

    def const(name, v):
        inits.append(onnx.numpy_helper.from_array(np.asarray(v), name))
        return name

    def nd(op, ins, out, **kw):
        nodes.append(h.make_node(op, ins, [out], **kw))
        return out
    pn = [f"p{i}" for i in range(6)]
    bn = [f"m{i}" for i in range(6)]
    h1 = nd("Relu", [nd("Gemm", ["x", "p0", "p1"], "a1", transB=1)], "h1")
    h2 = nd("Relu", [nd("Gemm", [h1, "p2", "p3"], "a2", transB=1)], "h2")
    z = nd("Gemm", [h2, "p4", "p5"], "z", transB=1)
    sm = nd("Softmax", [z], "sm", axis=1)
    lsm = nd("LogSoftmax", [z], "lsm", axis=1)
    nd("Neg", [nd("ReduceMean", [nd("ReduceSum", [nd("Mul", [lsm, "y1h"], "yl"),
                                                         const("ax1", np.array([1], np.int64))],
                                           "rs", keepdims=0)], "rm", keepdims=0)], "loss")
    dz = nd("Div", [nd("Sub", [sm, "y1h"], "d0"), const("nf", np.float32(n))], "dz")
    ax0 = const("ax0", np.array([0], np.int64))
    g4 = nd("Gemm", [dz, h2], "g4", transA=1)
    g5 = nd("ReduceSum", [dz, ax0], "g5", keepdims=0)
    zero = const("zero", np.float32(0))
    dh2 = nd("Where", [nd("Greater", [h2, zero], "mask2"), nd("Gemm", [dz, "p4"], "dh2a"), zero], "dh2")
    g2 = nd("Gemm", [dh2, h1], "g2", transA=1)
    g3 = nd("ReduceSum", [dh2, ax0], "g3", keepdims=0)
    dh1 = nd("Where", [nd("Greater", [h1, zero], "mask1"), nd("Gemm", [dh2, "p2"], "dh1a"), zero], "dh1")
    g0 = nd("Gemm", [dh1, "x"], "g0", transA=1)
    g1 = nd("ReduceSum", [dh1, ax0], "g1", keepdims=0)
    mom, lr = const("mom", np.float32(MOM)), const("lr", np.float32(LR))
    outs = ["loss"]
    for i, g in enumerate([g0, g1, g2, g3, g4, g5]):
        b = nd("Add", [nd("Mul", [bn[i], mom], f"mb{i}"), g], f"nm{i}")
        nd("Sub", [pn[i], nd("Mul", [b, lr], f"lb{i}")], f"np{i}")
        outs += [f"nm{i}", f"np{i}"]
    f32 = lambda nm, s: h.make_tensor_value_info(nm, T.FLOAT, list(s))  # noqa: E731
    ins = [f32("x", x.shape), f32("y1h", (n, c))] + [f32(pn[i], p.shape) for i, p in enumerate(params)] \
        + [f32(bn[i], p.shape) for i, p in enumerate(params)]
    out_vi = [f32("loss", ())] + sum([[f32(f"nm{i}", p.shape), f32(f"np{i}", p.shape)]
                                      for i, p in enumerate(params)], [])
    model = h.make_model(h.make_graph(nodes, "hand_mlp", ins, out_vi, inits),
                         opset_imports=[h.make_opsetid("", 18)])
    model.ir_version = 10
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if THREADS:
        opts.intra_op_num_threads = THREADS
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    ov = ort.OrtValue
    bufs = [{**{pn[i]: ov.ortvalue_from_numpy(p.copy()) for i, p in enumerate(params)},
             **{bn[i]: ov.ortvalue_from_numpy(np.zeros_like(p)) for i, p in enumerate(params)}}
            for _ in range(2)]
    y1h = np.eye(c, dtype=np.float32)[y]
    loss_ov = ov.ortvalue_from_shape_and_type((), np.float32, "cpu", 0)
    binds = []
    for src, dst in ((bufs[0], bufs[1]), (bufs[1], bufs[0])):
        b = sess.io_binding()
        b.bind_cpu_input("x", x)
        b.bind_cpu_input("y1h", y1h)
        for i in range(6):
            b.bind_ortvalue_input(pn[i], src[pn[i]])
            b.bind_ortvalue_input(bn[i], src[bn[i]])
            b.bind_ortvalue_output(f"np{i}", dst[pn[i]])
            b.bind_ortvalue_output(f"nm{i}", dst[bn[i]])
        b.bind_ortvalue_output("loss", loss_ov)
        binds.append(b)
    state = {"k": 0}

    def step():
        sess.run_with_iobinding(binds[state["k"]])
        state["k"] ^= 1
        return float(loss_ov.numpy())
    step.session = sess  # for profiling
    return step
