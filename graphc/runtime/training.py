"""The training-step compiler: a loss graph + an optimizer -> one graph that does a whole step.

`training_step(loss_graph, params, optimizer)` differentiates the loss (gc.grad), then appends the
optimizer's update rule as graph code. The result is an ordinary Graph whose

- inputs are the batch, the parameters, the optimizer state, `step` (int64, updates done so far),
  `lr` (the learning rate, fed each step from a host-side schedule) and, when the model draws
  random numbers, `rng_seed` (the loss graph's `rng_step` is wired to `step`, so dropout masks
  are a pure function of seed and step);
- outputs are the loss, the scalar metrics, then one `new.<name>` per parameter and state tensor.

`graph.meta["training"]` is a TrainingSpec saying which input each output replaces, and the
initial values of parameters and state. Any backend that can run the graph can train with it;
`gc.export_onnx` of it is a standard ONNX model.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from ..frontends.dsl import Tensor
from ..ir.errors import GraphBuildError, GraphcError
from ..ir.graph import Graph, Value
from ..ir.types import TensorType
from ..optim.base import Optimizer, UpdateContext
from ..optim.clip import clip_by_global_norm

NEW = "new."


@dataclass
class TrainingSpec:
    """Which inputs and outputs of a step graph play which role.

    Attributes:
        batch: names of the inputs fed from the data each step.
        params: names of the trained parameters (inputs of the step graph), followed by any
            graphc.nn buffers the forward pass updates (batch-norm running statistics), which
            are carried the same way but get no gradient and no optimizer state.
        state: names of the optimizer-state inputs (`<param>.<slot>`, torch.optim's slot names).
        step: name of the int64 scalar step input (updates already applied).
        lr: name of the learning-rate input.
        rng_seed: name of the int64 seed input, or None if the model draws no random numbers.
        metrics: scalar outputs returned to the host each step; the loss first.
        updates: output name -> the input it replaces on the next step.
        initial: initial values of every parameter and state input.
        optimizer: the optimizer whose rule the graph contains.
    """

    batch: list[str]
    params: list[str]
    state: list[str]
    step: str
    lr: str
    rng_seed: str | None
    metrics: list[str]
    updates: dict[str, str]
    initial: dict[str, np.ndarray] = field(repr=False)
    optimizer: Optimizer | None = None
    lr_dtype: str = "float32"

    @property
    def carried(self) -> list[str]:
        """Inputs carried from step to step: parameters then state."""
        return self.params + self.state

    def output_for(self, name: str) -> str:
        return NEW + name

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (no arrays), e.g. for a stand-alone ONNX training script."""
        return {"batch": self.batch, "params": self.params, "state": self.state, "step": self.step,
                "lr": self.lr, "rng_seed": self.rng_seed, "metrics": self.metrics,
                "updates": self.updates, "lr_dtype": self.lr_dtype,
                "optimizer": repr(self.optimizer)}


def training_spec(graph: Graph) -> TrainingSpec:
    """The TrainingSpec of a step graph; a clear error for any other graph."""
    spec = graph.meta.get("training")
    if not isinstance(spec, TrainingSpec):
        raise GraphcError(f"graph {graph.name!r} is not a training step; build one with "
                          "gc.training_step(loss_graph, params, optimizer)")
    return spec


def _param_names(graph: Graph, params: Any) -> list[str]:
    """Parameter names from None (all float params), names, Values, Tensors or a model."""
    if params is None:  # nn buffers (batch-norm running statistics) are not trained
        return [p.name for p in graph.params
                if p.type.is_float and p.name not in graph.meta.get("buffers", ())]
    if hasattr(params, "named_parameters") and callable(params.named_parameters):
        params = [n for n, _ in params.named_parameters()]
    elif hasattr(params, "state_dict") and callable(params.state_dict):
        params = list(params.state_dict())
    elif isinstance(params, dict):
        params = list(params)
    names = []
    for p in params:
        if isinstance(p, str):
            names.append(p)
        elif isinstance(p, (Value, Tensor)):
            names.append(p.name)
        elif hasattr(p, "name"):
            names.append(str(p.name))
        else:
            raise GraphBuildError(f"training_step: cannot tell which parameter {p!r} is; pass "
                                  "parameter names, graph Values/Tensors, or a model")
    known = {p.name: p for p in graph.params}
    bad = [n for n in names if n not in known]
    if bad:
        raise GraphBuildError(f"training_step: graph {graph.name!r} has no parameter named "
                              f"{', '.join(map(repr, bad))}; its parameters are {', '.join(known)}")
    notfloat = [n for n in names if not known[n].type.is_float]
    if notfloat:
        raise GraphBuildError(f"training_step: parameter(s) {', '.join(notfloat)} are not float and "
                              "cannot be trained")
    return names


def append_update(sg: Graph, optimizer: Optimizer, items: list[tuple[str, Value, Value]],
                  lr: Value, step: Value, clip_grad_norm: float | None = None
                  ) -> tuple[dict[str, str], list[str], dict[str, np.ndarray], Tensor | None]:
    """Appends the optimizer's update for each (name, param input, grad) to `sg`.

    Adds one state input per (parameter, slot) and one output per new parameter / state.
    Returns (updates output -> input, state input names, initial state, grad norm or None).
    """
    updates: dict[str, str] = {}
    state_names: list[str] = []
    init: dict[str, np.ndarray] = {}
    ctx = UpdateContext(Tensor(lr), Tensor(step))
    with sg:
        grads = [Tensor(g) for _, _, g in items]
        total = None
        if clip_grad_norm is not None:
            grads, total = clip_by_global_norm(grads, float(clip_grad_norm))
        for (name, p, _), gt in zip(items, grads):
            state: dict[str, Tensor] = {}
            pdata = p.data if p.data is not None else np.zeros(
                tuple(int(d) for d in p.type.shape), p.type.dtype)
            for slot in optimizer.active_slots():
                sname = f"{name}.{slot}"
                if sg.has_value(sname):
                    raise GraphBuildError(f"training_step: the state input {sname!r} clashes with a "
                                          "value of the same name in the loss graph; rename it")
                state[slot] = Tensor(sg.add_input(sname, p.type))
                state_names.append(sname)
                init[sname] = np.asarray(optimizer.init_state(slot, pdata), p.type.dtype)
            with sg.name_scope(f"opt.{name}"):
                new_p, new_state = optimizer.update(Tensor(p), gt, state, ctx)
            for key, src, t in [(NEW + name, name, new_p)] + [
                    (NEW + f"{name}.{slot}", f"{name}.{slot}", t) for slot, t in new_state.items()]:
                _name_as_output(sg, t, key)
                sg.output(**{key: t})
                updates[key] = src
    return updates, state_names, init, total


def _name_as_output(g: Graph, t: Tensor, key: str) -> None:
    """Names a freshly computed value after its output, so ONNX writes it straight into the
    bound output buffer instead of through an extra Identity copy."""
    v = t.value
    taken = any(o is v and k != key for k, o in g.outputs.items())  # already named for another
    if v.kind == "node" and not v.name.startswith(NEW) and not g.has_value(key) and not taken:
        g.rename(v, key)


def _run_grad(loss_graph: Graph, names: list[str], loss: str) -> Graph:
    try:
        from ..passes.autodiff import grad
    except ImportError as exc:  # pragma: no cover - only before the autodiff pass exists
        raise GraphcError("training_step needs graphc.passes.autodiff (gc.grad)") from exc
    return grad(loss_graph, wrt=names, of=loss)


def training_step(loss_graph: Graph, params: Any = None, optimizer: Optimizer | None = None,
                  loss: str | None = None, metrics: Iterable[str] | None = None,
                  clip_grad_norm: float | None = None, simplify: bool = True,
                  fuse: bool = True) -> Graph:
    """Compiles one training step (forward, backward and update) into one graph.

    Args:
        loss_graph: a graph (or a `gc.function`) with a scalar loss output.
        params: the parameters to train: None (every float parameter), names, Values/Tensors, or
            a model with `named_parameters()` / `state_dict()`. Others stay constants.
        optimizer: a `graphc.optim` optimizer (default `SGD(lr=1e-3)`).
        loss: the loss output's name (default "loss" if present, else the first output).
        metrics: other outputs to return each step (default: every other scalar output).
        clip_grad_norm: clip the gradients to this global L2 norm first (adds a "grad_norm"
            output with the norm before clipping).
        simplify: run the simplification pipeline on the result.
        fuse: run the fusion passes: fuse_losses, fuse_softmax, fuse_layer_norm and fuse_gemm
            on the loss graph before autodiff (compact closed-form gradients), fuse_gemm again on the step graph
            (momentum into the weight gradient's Gemm). Off, the step is the plain chain rule of
            the composites.

    Returns:
        The step graph; `graph.meta["training"]` is its TrainingSpec.
    """
    from ..optim.optimizers import SGD
    if hasattr(loss_graph, "graph") and not isinstance(loss_graph, Graph):
        loss_graph = loss_graph.graph
    optimizer = optimizer if optimizer is not None else SGD()
    if not loss_graph.outputs:
        raise GraphBuildError(f"training_step: graph {loss_graph.name!r} has no outputs")
    loss = loss or ("loss" if "loss" in loss_graph.outputs else next(iter(loss_graph.outputs)))
    if loss not in loss_graph.outputs:
        raise GraphBuildError(f"training_step: graph {loss_graph.name!r} has no output {loss!r}; its "
                              f"outputs are {', '.join(loss_graph.outputs)}")
    lt = loss_graph.outputs[loss].type
    if lt.rank != 0 or not lt.is_float:
        raise GraphBuildError(f"training_step: the loss {loss!r} must be a float scalar, got {lt}")
    if metrics is None:
        metrics = [k for k, v in loss_graph.outputs.items() if k != loss and v.type.rank == 0]
    metrics = [loss] + [m for m in metrics if m != loss]
    names = _param_names(loss_graph, params)
    if not names:
        raise GraphBuildError(f"training_step: graph {loss_graph.name!r} has no parameters to train")

    gg = _run_grad(_fuse_forward(loss_graph) if fuse else loss_graph, names, loss)
    sg = Graph(f"{loss_graph.name}_train_step")
    vmap: dict[Value, Value] = {}
    rng_step = next((v for v in gg.inputs if v.name == "rng_step"), None)
    batch = [v for v in gg.inputs if v.name not in ("rng_step", "rng_seed")]
    for v in batch:
        vmap[v] = sg.add_input(v.name, v.type)
    trained = set(names)
    # buffers the forward pass updates (graphc.nn batch norm: outputs "state:<buffer>") are carried
    # from step to step like parameters, replaced by their new value, and get no gradient
    buffers = [b for k, b in loss_graph.meta.get("state_outputs", {}).items()
               if k in gg.outputs and b not in trained and gg.has_value(b)]
    for p in gg.params:
        vmap[p] = (sg.add_input(p.name, p.type) if p.name in trained or p.name in buffers
                   else sg.add_param(p.name, p.data))
    lr_dtype = gg.value(names[0]).type.dtype
    step = sg.add_input(sg.unique_name("step"), TensorType((), "int64"))
    lr = sg.add_input(sg.unique_name("lr"), TensorType((), lr_dtype))
    seed = None
    for v in gg.inputs:
        if v.name == "rng_seed":
            seed = vmap[v] = sg.add_input("rng_seed", v.type)
    if rng_step is not None:
        vmap[rng_step] = step  # the dropout counter is the step number
    for n in gg.nodes:
        vmap[n.output] = sg.add_node(n.op, [vmap[i] for i in n.inputs], n.attrs, n.output.type,
                                     n.output.name, n.source, n.origin)
    for m in metrics:
        if m not in gg.outputs:
            raise GraphBuildError(f"training_step: graph {loss_graph.name!r} has no output {m!r}")
        sg.outputs[m] = vmap[gg.outputs[m]]
        _name_as_output(sg, Tensor(sg.outputs[m]), m)
    items = []
    for name in names:
        dname = f"d_{name}"
        if dname not in gg.outputs:
            raise GraphcError(f"training_step: gc.grad returned no gradient {dname!r}")
        items.append((name, vmap[gg.value(name)], vmap[gg.outputs[dname]]))
    updates, state_names, init, total = append_update(sg, optimizer, items, lr, step, clip_grad_norm)
    if total is not None:
        sg.outputs = {**{m: sg.outputs[m] for m in metrics}, "grad_norm": total.value,
                      **{k: v for k, v in sg.outputs.items() if k not in metrics}}
        metrics = metrics + ["grad_norm"]
    for b in buffers:
        sg.outputs[NEW + b] = vmap[gg.outputs["state:" + b]]
        updates[NEW + b] = b
    names = names + buffers
    # copies: Trainer.sync later writes trained values into the caller's arrays in place
    init = {**{n: np.array(loss_graph.value(n).data, copy=True) for n in names}, **init}
    if simplify:
        sg = _simplify(sg, fuse)
    sg.meta["training"] = TrainingSpec(
        batch=[v.name for v in batch], params=names, state=state_names, step=step.name, lr=lr.name,
        rng_seed=seed.name if seed is not None else None, metrics=metrics, updates=updates,
        initial=init, optimizer=optimizer, lr_dtype=lr_dtype)
    return sg


def _fuse_forward(g: Graph) -> Graph:
    """The loss graph with fused losses and gemms, so autodiff derives their compact gradients."""
    from ..passes.fuse_gemm import fuse_gemm
    from ..passes.fuse_layer_norm import fuse_layer_norm
    from ..passes.fuse_losses import fuse_losses
    from ..passes.fuse_softmax import fuse_softmax
    return fuse_gemm(fuse_layer_norm(fuse_softmax(fuse_losses(g))))


def _simplify(g: Graph, fuse: bool = False) -> Graph:
    try:
        from ..passes.pipeline import simplify
    except ImportError:  # the simplification pipeline is optional for correctness
        return g
    from ..passes.transpose_products import transpose_products
    # then fold weight-gradient transposes into the products (the speed of every Linear layer)
    out = transpose_products(simplify(g))
    if fuse:  # the optimizer's `momentum * buf + grad` into the weight gradient's Gemm
        from ..passes.fuse_gemm import fuse_gemm
        out = fuse_gemm(out)
    missing = [v.name for v in g.inputs if not out.has_value(v.name)]
    if missing:  # a pass that drops inputs would break the spec; keep the unsimplified graph
        return g
    return out


def optimizer_graph(optimizer: Optimizer, params: dict[str, np.ndarray],
                    clip_grad_norm: float | None = None, name: str = "optimizer_step") -> Graph:
    """A step graph whose gradients are inputs (`grad.<name>`): the update rule alone.

    Useful to test or run an optimizer on gradients computed elsewhere. Its TrainingSpec lists
    the gradients as the batch.
    """
    sg = Graph(name)
    ps = {n: sg.add_input(n, TensorType(np.shape(a), np.asarray(a).dtype)) for n, a in params.items()}
    gs = {n: sg.add_input(f"grad.{n}", ps[n].type) for n in params}
    step = sg.add_input("step", TensorType((), "int64"))
    lr_dtype = next(iter(ps.values())).type.dtype
    lr = sg.add_input("lr", TensorType((), lr_dtype))
    for n, a in params.items():
        ps[n].data = np.asarray(a)  # lets append_update read shapes/values for initial state
    items = [(n, ps[n], gs[n]) for n in params]
    updates, state_names, init, total = append_update(sg, optimizer, items, lr, step, clip_grad_norm)
    for n in params:
        ps[n].data = None
    metrics = []
    if total is not None:
        sg.outputs = {"grad_norm": total.value, **sg.outputs}
        metrics = ["grad_norm"]
    sg.meta["training"] = TrainingSpec(
        batch=[f"grad.{n}" for n in params], params=list(params), state=state_names, step="step",
        lr="lr", rng_seed=None, metrics=metrics, updates=updates,
        initial={**{n: np.asarray(a) for n, a in params.items()}, **init}, optimizer=optimizer,
        lr_dtype=lr_dtype)
    return sg
