"""The training-step compiler: a loss graph + an optimizer -> one graph that does a whole step.

`training_step(loss_graph, params, optimizer)` differentiates the loss (gc.grad), then appends the
optimizer's update rule as graph code. The result is an ordinary Graph whose

- inputs are the batch (Role.DATA), the parameters (PARAM), buffers (BUFFER), the optimizer
  state (OPTIMIZER_STATE), `step` (STEP: int64, updates done so far), `lr` (LR: fed each step
  from a host-side schedule) and, when the model draws random numbers, `rng_seed` (RNG_SEED; the
  loss graph's RNG_COUNTER input is wired to `step`, so dropout masks are a pure function of
  seed and step);
- outputs are the loss, the scalar metrics, then one update per carried input (named by
  `graphc.ir.roles.update_output_name`, e.g. `new.fc1.weight`), listed in `graph.updates`.

`graph.spec` is its TrainingProgram: those roles as name lists, the initial values, the
optimizer and the reports of the pipelines that built it. The passes run only through named
pipelines ("fuse-forward", "simplify", "fold-transposes", "fuse-step"), each verified after every
pass and dumped with GRAPHC_DUMP. Any backend that can run the graph can train with it;
`gc.export_onnx` of it is a standard ONNX model.
"""
from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from ..frontends.dsl import Tensor
from ..ir.errors import GraphBuildError, GraphcError
from ..ir.graph import Graph, Value
from ..ir.program import TrainingProgram, TrainingSpec, program_of
from ..ir.roles import LR_NAME, STEP_NAME, Role, gradient_input_name, update_output_name
from ..ir.types import TensorType
from ..optim.base import Optimizer, UpdateContext
from ..optim.clip import clip_by_global_norm
from ..optim.loss_scaling import SCALE, SCALED_LOSS, SKIP_METRIC, LossScaler
from ..passes.autodiff import grad
from ..passes.pipeline import PipelineReport, get_pipeline

__all__ = ["TrainingProgram", "TrainingSpec", "training_spec", "training_step", "optimizer_graph",
           "append_update"]


def training_spec(graph: Graph) -> TrainingProgram:
    """The TrainingProgram of a step graph (`graph.spec`); a clear error for any other graph."""
    return program_of(graph)


def _param_names(graph: Graph, params: Any) -> list[str]:
    """Parameter names from None (all float params), names, Values, Tensors or a model."""
    if params is None:  # nn buffers (batch-norm running statistics) are not trained
        return [p.name for p in graph.params if p.type.is_float and p.role is Role.PARAM]
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
                state[slot] = Tensor(sg.add_input(sname, p.type, Role.OPTIMIZER_STATE))
                state_names.append(sname)
                init[sname] = np.asarray(optimizer.init_state(slot, pdata), p.type.dtype)
            with sg.name_scope(f"opt.{name}"):
                new_p, new_state = optimizer.update(Tensor(p), gt, state, ctx)
            for src, t in [(name, new_p)] + [(f"{name}.{slot}", t) for slot, t in new_state.items()]:
                key = update_output_name(src)
                _name_as_output(sg, t, key)
                sg.set_update(key, t.value, sg.value(src))
                updates[key] = src
    return updates, state_names, init, total


def _name_as_output(g: Graph, t: Tensor, key: str) -> None:
    """Names a freshly computed value after its output, so ONNX writes it straight into the
    bound output buffer instead of through an extra Identity copy."""
    v = t.value
    taken = any(o is v and k != key for k, o in g.outputs.items())  # already named for another
    if v.kind == "node" and not g.has_value(key) and not taken:
        g.rename(v, key)


def _run(pipeline: str, g: Graph, reports: dict[str, PipelineReport], label: str | None = None
         ) -> Graph:
    out, reports[label or pipeline] = get_pipeline(pipeline).run(g)
    return out


#: `precision=` names -> the low-precision dtype of the policy (None: everything float32)
PRECISIONS = {"fp32": None, "float32": None, "bf16": "bfloat16", "bfloat16": "bfloat16",
              "fp16": "float16", "float16": "float16"}


def precision_dtype(precision: str | None) -> str | None:
    """The products' dtype of a `precision=` policy name ("bf16" -> "bfloat16"; "fp32" -> None).

    Raises:
        GraphBuildError: an unknown name. Example: ``precision_dtype("fp16") -> "float16"``.
    """
    if precision is None:
        return None
    if precision not in PRECISIONS:
        raise GraphBuildError(f"training_step: precision={precision!r} is not one of "
                              "'fp32', 'bf16', 'fp16'")
    return PRECISIONS[precision]


def training_step(loss_graph: Graph, params: Any = None, optimizer: Optimizer | None = None,
                  loss: str | None = None, metrics: Iterable[str] | None = None,
                  clip_grad_norm: float | None = None, simplify: bool = True,
                  fuse: bool = True, report: bool = False, precision: str = "fp32",
                  loss_scaler: Any = None) -> Graph:
    """Compiles one training step (forward, backward and update) into one graph.

    Args:
        loss_graph: a graph (or a `gc.function`) with a scalar loss output.
        params: the parameters to train: None (those given to the optimizer torch-style,
            `optim.Adam(model.parameters())`, else every float PARAM), names, Values/Tensors, or
            a model with `named_parameters()` / `state_dict()`. Others stay constants.
        optimizer: a `graphc.optim` optimizer (default `SGD(lr=1e-3)`).
        loss: the loss output's name (default "loss" if present, else the first output).
        metrics: other outputs to return each step (default: every other scalar output).
        clip_grad_norm: clip the gradients to this global L2 norm first (adds a "grad_norm"
            output with the norm before clipping).
        simplify: run the "simplify" and "fold-transposes" pipelines on the gradient and step
            graphs.
        fuse: run the "fuse-forward" pipeline (fuse_losses, fuse_softmax, fuse_layer_norm,
            fuse_gemm) on the loss graph before autodiff, for compact closed-form gradients, and
            "fuse-step" on the step graph (momentum into the weight gradient's Gemm). Off, the
            step is the plain chain rule of the composites.
        report: print every pipeline's per-pass report (also kept in `graph.spec.reports`).
        precision: "fp32" (default), "bf16" or "fp16": the mixed-precision policy. The loss
            graph goes through the "autocast-bf16" / "autocast-fp16" pipeline before autodiff
            (products and their gradients in low precision, the rest float32; see
            graphc/passes/autocast.py); parameters and optimizer state stay float32.
        loss_scaler: for "fp16", the dynamic loss scaling settings (`optim.LossScaler`, the
            default; GradScaler's rule as graph code: the state inputs ``amp.loss_scale``,
            ``amp.growth_tracker``, ``amp.skipped`` and the metric ``amp.skip``); False turns it
            off. Ignored for other precisions.

    Returns:
        The step graph; `graph.spec` is its TrainingProgram.

    Raises:
        GraphBuildError: no such loss/metric output, a non-scalar loss, nothing to train.
        GraphcError: a pass broke the graph (the error names the pass).

    Example:
        >>> step = gc.training_step(loss_fn, model, optim.Adam(1e-3)); step.spec.params
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
        metrics = [k for k, v in loss_graph.outputs.items() if k != loss and v.type.rank == 0
                   and k not in loss_graph.updates]
    metrics = [loss] + [m for m in metrics if m != loss]
    names = _param_names(loss_graph, params if params is not None else optimizer.params)
    if not names:
        raise GraphBuildError(f"training_step: graph {loss_graph.name!r} has no parameters to train")

    reports: dict[str, PipelineReport] = {}
    low = precision_dtype(precision)
    fwd = _run("fuse-forward", loss_graph, reports) if fuse else loss_graph
    if low is not None:
        fwd = _run("autocast-bf16" if low == "bfloat16" else "autocast-fp16", fwd, reports)
    scaler = None
    if low == "float16" and loss_scaler is not False:
        scaler = loss_scaler if loss_scaler not in (None, True) else LossScaler()
        fwd = scaler.scale_loss(fwd, loss)
    gg = grad(fwd, wrt=names, of=SCALED_LOSS if scaler else loss, simplify=False)
    if simplify:
        gg = _run("simplify", gg, reports, "simplify-gradient")
    sg = Graph(f"{loss_graph.name}_train_step")
    vmap: dict[Value, Value] = {}
    rng_counter = gg.role_input(Role.RNG_COUNTER)
    batch = [v for v in gg.inputs if v.role is Role.DATA
             and not (scaler is not None and v.name == SCALE)]
    others = [v for v in gg.inputs if v.role not in (Role.DATA, Role.RNG_SEED, Role.RNG_COUNTER)]
    if others:
        raise GraphBuildError(f"training_step: graph {loss_graph.name!r} has input(s) "
                              f"{', '.join(f'{v.name} ({v.role})' for v in others)}, which a training "
                              "step cannot feed")
    for v in batch:
        vmap[v] = sg.add_input(v.name, v.type, range=v.range)  # label ranges are checked per batch
    trained = set(names)
    # buffers the forward pass updates (graphc.nn batch norm) are carried from step to step like
    # parameters, replaced by their new value, and get no gradient
    buffer_out = {b: k for k, b in gg.updates.items() if b not in trained and gg.has_value(b)}
    for p in gg.params:
        role = Role.PARAM if p.name in trained else Role.BUFFER if p.name in buffer_out else None
        vmap[p] = sg.add_input(p.name, p.type, role) if role else sg.add_param(p.name, p.data, p.role)
    lr_dtype = gg.value(names[0]).type.dtype
    step = sg.add_input(sg.unique_name(STEP_NAME), TensorType((), "int64"), Role.STEP)
    lr = sg.add_input(sg.unique_name(LR_NAME), TensorType((), lr_dtype), Role.LR)
    seed = gg.role_input(Role.RNG_SEED)
    if seed is not None:
        vmap[seed] = sg.add_input(seed.name, seed.type, Role.RNG_SEED)
    if rng_counter is not None:
        vmap[rng_counter] = step  # the dropout counter is the step number
    amp_state: dict[str, Value] = {}
    if scaler is not None:
        amp_state = scaler.add_state_inputs(sg)
        vmap[gg.value(SCALE)] = amp_state[SCALE]
    for n in gg.nodes:
        sg.copy_node(n, vmap)
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
    opt_step = step
    if scaler is not None:
        unscaled, ok = scaler.unscale(sg, [g for _, _, g in items], amp_state)
        items = [(n, p, u) for (n, p, _), u in zip(items, unscaled)]
        opt_step = scaler.step_number(sg, step, amp_state)
    _, _, init, total = append_update(sg, optimizer, items, lr, opt_step, clip_grad_norm)
    extra = {}
    if total is not None:
        extra["grad_norm"] = total.value
    if scaler is not None:
        extra[SKIP_METRIC] = scaler.finish(sg, ok, amp_state).value
        init = {**init, **scaler.initial_state()}
    if extra:
        sg.outputs = {**{m: sg.outputs[m] for m in metrics}, **extra,
                      **{k: v for k, v in sg.outputs.items() if k not in metrics}}
        metrics = metrics + list(extra)
    for b, key in buffer_out.items():
        sg.set_update(update_output_name(b), vmap[gg.outputs[key]], sg.value(b))
    carried = names + list(buffer_out)
    # copies: Trainer.sync later writes trained values into the caller's arrays in place
    init = {**{n: np.array(loss_graph.value(n).data, copy=True) for n in carried}, **init}
    if simplify:
        sg = _run("simplify", sg, reports)
        sg = _run("fold-transposes", sg, reports)
        if fuse:
            sg = _run("fuse-step", sg, reports)
    sg.spec = TrainingProgram.of(sg, metrics, init, optimizer, reports)
    if report:
        print(sg.spec.report())
    return sg


def optimizer_graph(optimizer: Optimizer, params: dict[str, np.ndarray],
                    clip_grad_norm: float | None = None, name: str = "optimizer_step") -> Graph:
    """A step graph whose gradients are inputs (Role.GRADIENT, `grad.<name>`): the update alone.

    Useful to test or run an optimizer on gradients computed elsewhere. Its TrainingProgram
    lists the gradients as the batch.
    """
    sg = Graph(name)
    ps = {n: sg.add_input(n, TensorType(np.shape(a), np.asarray(a).dtype), Role.PARAM)
          for n, a in params.items()}
    gs = {n: sg.add_input(gradient_input_name(n), ps[n].type, Role.GRADIENT, n) for n in params}
    step = sg.add_input(STEP_NAME, TensorType((), "int64"), Role.STEP)
    lr_dtype = next(iter(ps.values())).type.dtype
    lr = sg.add_input(LR_NAME, TensorType((), lr_dtype), Role.LR)
    for n, a in params.items():
        ps[n].data = np.asarray(a)  # lets append_update read shapes/values for initial state
    items = [(n, ps[n], gs[n]) for n in params]
    _, _, init, total = append_update(sg, optimizer, items, lr, step, clip_grad_norm)
    for n in params:
        ps[n].data = None
    metrics = []
    if total is not None:
        sg.outputs = {"grad_norm": total.value, **sg.outputs}
        metrics = ["grad_norm"]
    sg.spec = TrainingProgram.of(sg, metrics, {**{n: np.asarray(a) for n, a in params.items()},
                                               **init}, optimizer)
    return sg
