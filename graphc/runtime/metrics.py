"""Metrics as graph outputs: accuracy, user functions of the graph's values, and graph pruning."""
from __future__ import annotations

from typing import Callable, Iterable, Mapping

from ..frontends import dsl
from ..frontends.dsl import Tensor
from ..ir.errors import GraphBuildError
from ..ir.graph import Graph, Value

MetricFn = Callable[[Mapping[str, Tensor]], Tensor]


def accuracy(logits: Tensor, labels: Tensor) -> Tensor:
    """mean(argmax(logits) == labels) for int labels; mean((logits > 0) == (labels > 0.5)) for 0/1 targets."""
    dt = logits.dtype
    if labels.dtype in ("int32", "int64") and logits.ndim == labels.ndim + 1:
        hit = dsl.equal(dsl.argmax(logits, -1), dsl.cast(labels, "int64"))
        return dsl.mean(dsl.cast(hit, dt))
    if labels.dtype in ("float32", "float64"):
        if tuple(logits.shape) != tuple(labels.shape):
            logits = dsl.reshape(logits, labels.shape)
        pred = dsl.cast(logits > 0.0, dt)
        target = dsl.cast(labels > 0.5, dt)
        return dsl.mean(dsl.cast(dsl.equal(pred, target), dt))
    raise GraphBuildError(f"accuracy: cannot compare logits {logits.type} with labels {labels.type}")


def with_metrics(graph: Graph, metrics: "Iterable[str] | Mapping[str, MetricFn] | None" = None,
                 logits: str = "logits", labels: str = "y") -> Graph:
    """A copy of `graph` with extra scalar outputs.

    Adds "accuracy" when the graph has a `logits` output and a `labels` input (unless it already
    has one), plus one output per entry of `metrics` that is a function of the graph's values
    by name (inputs and outputs). Names in `metrics` must be existing outputs.
    """
    fns = dict(metrics) if isinstance(metrics, Mapping) else {}
    names = [m for m in (metrics or []) if isinstance(m, str) and m not in fns]
    missing = [m for m in names if m not in graph.outputs]
    if missing:
        raise GraphBuildError(f"graph {graph.name!r} has no output(s) {', '.join(missing)} to use as "
                              f"metrics; its outputs are {', '.join(graph.outputs)}")
    add_acc = ("accuracy" not in graph.outputs and logits in graph.outputs
               and graph.has_value(labels) and graph.value(labels).kind == "input")
    if not add_acc and not fns:
        return graph
    g, _ = graph.clone()
    with g:
        if add_acc:
            try:
                g.output(accuracy=accuracy(Tensor(g.outputs[logits]), Tensor(g.value(labels))))
            except GraphBuildError:
                pass  # logits/labels that accuracy does not understand: no accuracy metric
        env = {v.name: Tensor(v) for v in g.inputs}
        env.update({k: Tensor(v) for k, v in g.outputs.items()})
        for name, fn in fns.items():
            out = fn(env)
            if not isinstance(out, Tensor) or out.ndim != 0:
                raise GraphBuildError(f"metric {name!r} must return a scalar Tensor, got {out!r}")
            g.output(**{name: out})
    return g


def prune(graph: Graph, outputs: Iterable[str]) -> Graph:
    """A copy of `graph` computing only `outputs`, with only the inputs they need."""
    return graph.prune(list(outputs))
