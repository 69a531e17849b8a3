"""Training bundles: a training step any stock ONNX runtime can drive, with its state and manifest.

    gc.export_training(trainer, "bundle/")        # or a step graph from gc.training_step

writes a directory that onnxruntime-web (WASM, WebGPU) or onnxruntime-node trains with, driven by
the small ES module shipped in graphc (`graphc/runtime/js/graphc-train.mjs`, see `driver_path()`):

    bundle/
      manifest.json        what is what: format version, every input with its role, shape (symbolic
                           dims such as "N" kept), dtype and label range; the outputs; the update
                           map (output -> carried input it replaces); the metrics; the learning-rate
                           schedule as data; batch size; data layout; file names and sizes
      step.onnx            the training step (forward, backward, optimizer) as plain ai.onnx
      state.safetensors    parameters and optimizer state: the initial values, or a Trainer's
                           current ones
      inference.onnx       the same network, forward only, its parameters plain inputs (no stored
                           values: the driver feeds the trained ones, or state.safetensors has the
                           initial ones), when the loss graph has a non-scalar output such as
                           "logits" or `inference=` gives a graph

Why safetensors: it is an 8-byte little-endian header length, a JSON header (name -> dtype, shape,
byte offsets) and the raw little-endian data, so JavaScript reads it with `DataView` and a typed
array over one `fetch()` of the file, with no protobuf parser and no Python; one file keeps the
request count at one, and graphc's checkpoints already use the same format. ONNX external data
would tie the state to the step model's file layout, and loose raw files need one request each.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..backends.onnx import export_onnx
from ..ir.errors import GraphcError
from ..ir.graph import Graph
from ..ir.program import TrainingProgram, program_of
from ..ir.roles import Role

#: the manifest's format tag; the driver refuses any other major version
FORMAT = "graphc-training-bundle/1"
MANIFEST, STEP_MODEL, STATE_FILE, INFERENCE_MODEL = ("manifest.json", "step.onnx",
                                                     "state.safetensors", "inference.onnx")
_JS_DIR = Path(__file__).with_name("js")


def driver_path() -> Path:
    """The path of the JavaScript driver (`graphc-train.mjs`) shipped inside graphc."""
    return _JS_DIR / "graphc-train.mjs"


def js_dir() -> Path:
    """The directory of graphc's JavaScript files (the driver and the demo page)."""
    return _JS_DIR


def schedule_to_data(schedule: Any, steps: int | None = None) -> dict[str, Any]:
    """A learning-rate schedule as JSON data the driver evaluates per step.

    The schedules of `graphc.optim.schedules` become `{"type": name, ...their parameters}`
    (`linear_warmup` nests its `after` schedule); the driver implements the same formulas. Any
    other callable is sampled: `{"type": "table", "values": [lr(0), ..., lr(steps - 1)]}`, and
    the driver holds the last value after the table ends.

    Raises:
        GraphcError: a custom callable and no `steps` to sample it over.

    Example: ``schedule_to_data(optim.schedules.cosine(3e-3, 900))``
    """
    from ..optim import schedules as S
    if isinstance(schedule, (int, float)):
        return {"type": "constant", "base_lr": float(schedule)}
    kinds = {S.constant: ("base_lr",), S.step_decay: ("base_lr", "step_size", "gamma"),
             S.exponential: ("base_lr", "gamma"), S.cosine: ("base_lr", "total_steps", "min_lr")}
    for cls, fields in kinds.items():
        if type(schedule) is cls:
            return {"type": cls.__name__, **{f: getattr(schedule, f) for f in fields}}
    if type(schedule) is S.linear_warmup:
        return {"type": "linear_warmup", "warmup_steps": schedule.warmup_steps,
                "start_factor": schedule.start_factor,
                "after": schedule_to_data(schedule.after, steps)}
    if not callable(schedule):
        raise GraphcError(f"export_training: schedule {schedule!r} is neither a number nor a "
                          "callable lr(step)")
    if steps is None:
        raise GraphcError(f"export_training: schedule {schedule!r} is a custom callable; pass "
                          "steps= so it can be sampled into the manifest as a table")
    return {"type": "table", "values": [float(schedule(t)) for t in range(int(steps))]}


def _type_data(v: Any) -> dict[str, Any]:
    shape = [d if isinstance(d, str) else int(d) for d in v.type.shape]
    return {"shape": shape, "dtype": str(v.type.dtype)}


def _range_data(v: Any) -> dict[str, Any]:
    """{"range": [lo, hi]} (half-open) and {"ignore": value} for an integer input with a range."""
    r = getattr(v, "range", None)
    if r is None:
        return {}
    return {"range": [r.lo, r.hi], **({"ignore": r.ignore} if r.ignore is not None else {})}


def _inference_graph(loss_graph: Graph | None, given: Any) -> Graph | None:
    """The forward-only graph: `given` (a Graph or gc.function), else the loss graph pruned to
    its non-scalar outputs that need no label (e.g. "logits"); None when there is none."""
    if given is not None:
        g = getattr(given, "graph", given)
        if not isinstance(g, Graph):
            raise GraphcError(f"export_training: inference= must be a Graph or a gc.function, got "
                              f"{type(given).__name__}")
        return g
    if loss_graph is None:
        return None
    outs = [k for k, v in loss_graph.outputs.items()
            if v.type.rank > 0 and k not in loss_graph.updates]
    # an inference model needs no label: skip outputs computed from the integer labels
    keep = [k for k in outs if all(v.type.dtype.startswith("float")
                                   for v in loss_graph.prune([k]).inputs if v.role is Role.DATA)]
    return loss_graph.prune(keep) if keep else None


def export_training(program_or_trainer: Any, directory: str | os.PathLike, *,
                    schedule: "Callable[[int], float] | float | None" = None,
                    steps: int | None = None, batch_size: int | None = None,
                    inference: Any = None, seed: int | None = None, opset: int | None = None,
                    state: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
    """Writes a training bundle (step model, state, manifest, inference model) to `directory`.

    Args:
        program_or_trainer: a `gc.Trainer` (its current parameters and optimizer state, step
            count, schedule and seed are exported), or a step Graph from `gc.training_step`
            (its initial values; the schedule defaults to the optimizer's constant lr).
        directory: created if needed; existing bundle files in it are replaced.
        schedule: the learning rate per global step (overrides the Trainer's).
        steps: the number of steps the bundle is meant to run; needed to sample a custom
            schedule, and written to the manifest as a hint.
        batch_size: the batch size the bundle is meant for (the "N" the step was tested with);
            the step model itself accepts any.
        inference: a forward Graph or gc.function to export as `inference.onnx`; by default the
            loss graph pruned to its non-scalar outputs that need no labels ("logits").
        seed: the rng seed fed to the step's `rng_seed` input (default: the Trainer's, else 0).
        opset: the ai.onnx opset of both models (default graphc's).
        state: carried values to write instead of the initial/current ones.

    Returns:
        The manifest (also written as `manifest.json`).

    Raises:
        GraphcError: not a training step or Trainer, a custom schedule without `steps`, state
            that does not match the step's inputs.

    Example: ``gc.export_training(trainer, "out/bundle", batch_size=32)``
    """
    from safetensors.numpy import save_file
    trainer = program_or_trainer if hasattr(program_or_trainer, "step_graph") else None
    if trainer is not None:
        step_graph: Graph = trainer.step_graph
        loss_graph = getattr(trainer, "graph", None)
        values = trainer.stepper.state_dict()
        step_count = int(trainer.stepper.step_count)
        sched = schedule if schedule is not None else trainer.schedule
        seed = int(trainer.seed if seed is None else seed)
    elif isinstance(program_or_trainer, Graph):
        step_graph, loss_graph = program_or_trainer, None
        prog = program_of(step_graph)
        values = {n: np.asarray(a) for n, a in prog.initial.items()}
        step_count = 0
        opt_lr = getattr(prog.optimizer, "lr", None)
        sched = schedule if schedule is not None else opt_lr
        if sched is None:
            raise GraphcError("export_training: the step graph's optimizer has no lr; pass schedule=")
        seed = int(seed or 0)
    else:
        raise GraphcError(f"export_training: expected a gc.Trainer or a step Graph from "
                          f"gc.training_step, got {type(program_or_trainer).__name__}")
    prog: TrainingProgram = program_of(step_graph)
    if state is not None:
        values = {**values, **state}
    inputs = {v.name: v for v in step_graph.inputs}
    for n in prog.carried:
        a = np.asarray(values[n])
        t = inputs[n].type
        if tuple(a.shape) != tuple(t.shape) or a.dtype != np.dtype(t.dtype):
            raise GraphcError(f"export_training: state {n!r} is {a.dtype}{list(a.shape)}, the step "
                              f"expects {t}")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    export_onnx(step_graph, out / STEP_MODEL, opset=opset)
    # safetensors wants C-contiguous little-endian arrays; 0-d arrays keep shape []
    save_file({n: np.ascontiguousarray(values[n]).astype(np.asarray(values[n]).dtype.newbyteorder("<"))
               for n in prog.carried}, str(out / STATE_FILE), metadata={"format": FORMAT})
    inf = _inference_graph(loss_graph, inference)
    inference_data = None
    if inf is not None:
        from ..backends.onnx import to_onnx
        model = to_onnx(inf, opset, params_as_inputs=True)
        # parameters are plain inputs with no initializer: onnxruntime's JavaScript bindings
        # list an initializer-backed input nowhere and ignore a value fed for it
        param_names = {p.name for p in inf.params}
        kept = [t for t in model.graph.initializer if t.name not in param_names]
        del model.graph.initializer[:]
        model.graph.initializer.extend(kept)
        import onnx
        onnx.checker.check_model(model, full_check=True)
        onnx.save(model, str(out / INFERENCE_MODEL))
        inference_data = {
            "file": INFERENCE_MODEL,
            "inputs": [{"name": v.name, "role": v.role.value, **_type_data(v)} for v in inf.inputs],
            "params": [{"name": p.name, **_type_data(p)} for p in inf.params],
            "outputs": [{"name": k, **_type_data(v)} for k, v in inf.outputs.items()]}
    roles = {v.name: v.role.value for v in step_graph.inputs}
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "producer": "graphc",
        "name": step_graph.name,
        "step_model": STEP_MODEL,
        "state_file": STATE_FILE,
        "inputs": [{"name": v.name, "role": roles[v.name], **_type_data(v),
                    **_range_data(v)}
                   for v in step_graph.inputs],
        "outputs": [{"name": k, **_type_data(v)} for k, v in step_graph.outputs.items()],
        "batch": prog.batch, "params": prog.params, "state": prog.state, "step": prog.step,
        "lr": prog.lr, "lr_dtype": prog.lr_dtype, Role.RNG_SEED.value: prog.rng_seed, "seed": seed,
        "metrics": prog.metrics, "updates": dict(prog.updates),
        "step_count": step_count,
        "schedule": schedule_to_data(sched, steps),
        "steps": steps, "batch_size": batch_size,
        "data_layout": {n: {"order": "row-major", "byte_order": "little",
                            "first_dim": "example"} for n in prog.batch},
        "optimizer": repr(prog.optimizer),
        "inference": inference_data,
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1, allow_nan=False))
    return manifest
