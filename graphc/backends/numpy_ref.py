"""The reference interpreter: runs each node's numpy `ref` kernel in order."""
from __future__ import annotations

from typing import Any

import numpy as np

from ..ir.errors import GraphcError
from ..ir.graph import Graph, Node
from ..ir.printer import node_in_context
from ..ir.types import eval_dim
from ..runtime.executable import Executable


def resolve_attrs(node: Node, bindings: dict[str, int]) -> dict[str, Any]:
    """The node's attributes with symbolic dims in its shape attributes replaced by sizes."""
    attrs = dict(node.attrs)
    for k in node.op.shape_attrs:
        if k in attrs:
            try:
                attrs[k] = tuple(eval_dim(d, bindings) for d in attrs[k])
            except KeyError as exc:
                raise GraphcError(f"{node.op.name}: symbol {exc.args[0]} has no size; bind it by "
                                  "feeding an input that uses it") from None
    return attrs


def interpret(graph: Graph, feeds: dict[str, np.ndarray], bindings: dict[str, int]
              ) -> dict[str, np.ndarray]:
    """Evaluates every node; returns arrays by value name (inputs, params and node outputs)."""
    env: dict[str, np.ndarray] = {p.name: p.data for p in graph.params}
    env.update(feeds)
    for node in graph.nodes:
        args = [env[v.name] for v in node.inputs]
        try:
            out = node.op.ref(*args, **resolve_attrs(node, bindings))
        except GraphcError:
            raise
        except Exception as exc:  # noqa: BLE001 - re-raised with the node in context
            where = f"{node.source}: " if node.source else ""
            raise GraphcError(f"{where}{node.op.name} failed in the numpy reference: {exc}\n"
                              f"{node_in_context(graph, node)}") from exc
        out = np.asarray(out)
        if out.dtype != np.dtype(node.output.type.dtype):
            out = out.astype(node.output.type.dtype)
        env[node.output.name] = out
    return env


class NumpyExecutable(Executable):
    """Runs a graph with the numpy reference kernels (slow, exact, always available)."""

    backend = "numpy"

    def _run(self, feeds, bindings):
        env = interpret(self.graph, feeds, bindings)
        return [env[v.name] for v in self.graph.outputs.values()]


# ---- training: a Stepper on the reference interpreter (appended by the training runtime) ------

from ..runtime.stepper import Stepper  # noqa: E402  (runtime.stepper does not import this module)


class NumpyStepper(Stepper):
    """Runs a training-step graph with the reference kernels; parameters stay in a dict of arrays."""

    backend = "numpy"

    def __init__(self, graph: Graph, device: str = "cpu", seed: int = 0):
        super().__init__(graph, device, seed)
        self._carried = {n: np.array(a, copy=True) for n, a in self.spec.initial.items()}

    def _step(self, batch, lr):
        feeds = dict(batch, **self._carried)
        feeds[self.spec.step] = np.asarray(self.step_count, np.int64)
        feeds[self.spec.lr] = lr
        if self.spec.rng_seed:
            feeds[self.spec.rng_seed] = np.asarray(self.seed, np.int64)
        bindings = {}
        for n in self.spec.batch:
            for d, s in zip(self.graph.value(n).type.shape, batch[n].shape):
                if isinstance(d, str) and d.isidentifier():
                    bindings.setdefault(d, int(s))
        env = interpret(self.graph, feeds, bindings)
        outs = self.graph.outputs
        self._carried = {src: env[outs[o].name] for o, src in self.spec.updates.items()}
        return {m: env[outs[m].name] for m in self.spec.metrics}

    def _get(self):
        return {n: np.array(a, copy=True) for n, a in self._carried.items()}

    def _set(self, values):
        self._carried.update({n: np.array(a, copy=True) for n, a in values.items()})
