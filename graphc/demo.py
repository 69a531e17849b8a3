"""Built-in demos run by `graphc demo [name]`.

The forward demos (lenet, mlp) build a model's forward graph with the DSL, print it, export it to
ONNX, run it on onnxruntime and on the numpy reference with one random batch, and print the
largest absolute and relative difference. They exit 0 only if the two agree within 1e-5 relative.
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

from . import models
from .ir.graph import Graph

#: agreement required between onnxruntime and the numpy reference, relative to max |reference|
RTOL = 1e-5


def _out_dir(out_dir: str | os.PathLike | None) -> Path:
    """./out (created) unless given; a temp dir when the working directory is read-only."""
    path = Path(out_dir if out_dir is not None else "out")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".graphc-write-test"
        probe.write_bytes(b"")
        probe.unlink()
        return path
    except OSError:
        if out_dir is not None:
            raise
        return Path(tempfile.mkdtemp(prefix="graphc-demo-"))


def compare(got: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """(max |got - ref|, that divided by max |ref|): the figures the demo prints and checks."""
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    abs_diff = float(np.max(np.abs(got - ref))) if ref.size else 0.0
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    return abs_diff, (abs_diff / scale if scale > 0 else abs_diff)


def forward_demo(graph: Graph, batch: int | None = 8, seed: int = 0, out_dir: str | os.PathLike | None = None,
                 show_graph: bool = True, device: str = "cpu") -> int:
    """Prints `graph`, exports it to ONNX, runs it on onnxruntime and numpy, compares.

    Args:
        graph: a forward graph with float input "x" (batch dim symbolic) and output "logits".
        batch: size of the random batch.
        seed: seed of the random batch.
        out_dir: where the .onnx file goes (default ./out, or a temp dir if that is read-only).
        show_graph: print the graph's text form.
        device: onnxruntime device, "cpu" or "cuda".

    Returns:
        0 when onnxruntime matches the reference within RTOL (relative to max |reference|), else 1.
    """
    batch = 8 if batch is None else batch
    from .backends.onnx import export_onnx, ort_providers
    from .runtime.executable import compile

    ort_providers(device)  # an unavailable device fails here, before any output
    n_params = sum(int(p.data.size) for p in graph.params)
    print(f"== {graph.name}: {len(graph.inputs)} input(s), {len(graph.params)} parameters "
          f"({n_params:,} values), {len(graph.nodes)} nodes")
    if show_graph:
        print(graph)
    path = _out_dir(out_dir) / f"{graph.name}.onnx"
    model = export_onnx(graph, path)  # passes onnx.checker.check_model(full_check=True)
    ops = sorted({n.op_type for n in model.graph.node})
    print(f"\n== exported ONNX (opset {model.opset_import[0].version}, {len(model.graph.node)} nodes, "
          f"checked with full_check=True): {path.resolve()}")
    print(f"   ONNX ops: {', '.join(ops)}")
    feeds = models.example_feeds(graph, batch, seed)
    shapes = ", ".join(f"{k} {v.shape} {v.dtype}" for k, v in feeds.items())
    print(f"\n== running one random batch ({shapes})")
    t0 = time.perf_counter()
    ref = compile(graph, "numpy")(**feeds)
    t1 = time.perf_counter()
    got = compile(graph, "onnxruntime", device=device)(**feeds)
    t2 = time.perf_counter()
    print(f"   numpy reference {1e3 * (t1 - t0):.1f} ms; onnxruntime/{device} {1e3 * (t2 - t1):.1f} ms "
          "(including session creation)")
    worst = 0.0
    for name in graph.outputs:
        a, r = compare(got[name], ref[name])
        worst = max(worst, r)
        print(f"   {name} {tuple(ref[name].shape)}: max |onnxruntime - numpy| = {a:.3e}, "
              f"relative to max |numpy| = {r:.3e}")
    ok = worst <= RTOL
    print(f"\n{'OK' if ok else 'MISMATCH'}: onnxruntime and the numpy reference agree within "
          f"{worst:.3e} relative ({'<=' if ok else '>'} {RTOL:g})")
    return 0 if ok else 1


def lenet_forward(batch: int | None = 8, seed: int = 0, out_dir: str | os.PathLike | None = None,
                  show_graph: bool = True, device: str = "cpu") -> int:
    """The issue-2 main job: the LeNet-5 forward graph, printed, exported and cross-checked.

    Returns:
        The exit code: 0 when onnxruntime matches the numpy reference within 1e-5 relative.
    """
    return forward_demo(models.lenet5(with_loss=False), batch, seed, out_dir, show_graph, device)


def mlp_forward(batch: int | None = 8, seed: int = 0, out_dir: str | os.PathLike | None = None,
                show_graph: bool = True, device: str = "cpu") -> int:
    """The same job for the 784-256-256-10 MLP."""
    return forward_demo(models.mlp(with_loss=False), batch, seed, out_dir, show_graph, device)


#: `graphc demo <name>` runs DEMOS[name](batch=, seed=, out_dir=, show_graph=, device=); the first
#: entry is the default
DEMOS: dict[str, Callable[..., int]] = {}


def _train_mlp(**kwargs) -> int:
    """`graphc demo mlp`: train the digits MLP (see graphc/demo_train.py); the forward check of
    the 784-256-256-10 MLP stays available as `graphc demo mlp-forward`."""
    from .demo_train import main as train_demo
    return train_demo(**kwargs)


# the training demo is the main job (issue 4); the LeNet-5 forward check is issue 2's
DEMOS.update({"mlp": _train_mlp, "lenet": lenet_forward, "mlp-forward": mlp_forward})


def main(name: str = "mlp", **kwargs) -> int:
    """Runs the demo called `name` and returns its exit code."""
    if name not in DEMOS:
        raise ValueError(f"unknown demo {name!r}; choose one of {', '.join(DEMOS)}")
    return DEMOS[name](**kwargs)
