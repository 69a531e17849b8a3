"""compile(): a Graph -> an Executable that checks feeds and runs on a backend."""
from __future__ import annotations

from typing import Any

import numpy as np

from ..ir.errors import FeedError
from ..ir.graph import Graph
from ..ir.types import parse_dim

BACKENDS = ("numpy", "onnxruntime", "tvm")


def bind_feeds(graph: Graph, feeds: dict[str, Any], allow_params: bool = True
               ) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Checks feeds against the graph's inputs; returns (arrays by name, symbol -> size).

    Raises FeedError for unknown names, missing inputs, wrong rank/size/dtype, or a symbol bound
    to two different sizes.
    """
    known = {v.name: v for v in graph.inputs}
    params = {v.name: v for v in graph.params}
    unknown = [k for k in feeds if k not in known and not (allow_params and k in params)]
    if unknown:
        raise FeedError(f"graph {graph.name!r} has no input named {', '.join(map(repr, unknown))}; "
                        f"its inputs are {', '.join(known) or '(none)'}")
    missing = [k for k in known if k not in feeds]
    if missing:
        raise FeedError(f"graph {graph.name!r}: missing feed for input {', '.join(map(repr, missing))}")
    out: dict[str, np.ndarray] = {}
    bindings: dict[str, int] = {}
    where: dict[str, str] = {}
    for name, arr in feeds.items():
        v = known.get(name) or params[name]
        a = np.asarray(arr)
        want = np.dtype(v.type.dtype)
        if a.dtype != want:
            same_kind = (a.dtype.kind == want.kind or (a.dtype.kind in "iu" and want.kind in "iu"))
            if not same_kind:
                raise FeedError(f"feed {name!r} has dtype {a.dtype}, expected {want} "
                                f"(declared {v.type})")
            a = a.astype(want)
        if a.ndim != v.type.rank:
            raise FeedError(f"feed {name!r} has shape {a.shape}, expected {v.type} (rank {v.type.rank})")
        for axis, (d, n) in enumerate(zip(v.type.shape, a.shape)):
            if isinstance(d, int):
                if d != n:
                    raise FeedError(f"feed {name!r} has shape {a.shape}, expected {v.type}: "
                                    f"dim {axis} is {n}, expected {d}")
                continue
            coef, syms = parse_dim(d)
            if coef == 1 and len(syms) == 1 and sum(syms.values()) == 1:
                s = next(iter(syms))
                if s in bindings and bindings[s] != n:
                    raise FeedError(f"feed {name!r} has shape {a.shape}: dim {axis} ({s}) is {n}, but "
                                    f"{where[s]} set {s} = {bindings[s]}")
                bindings.setdefault(s, n)
                where.setdefault(s, f"feed {name!r}")
        out[name] = a
    return out, bindings


class Executable:
    """A compiled graph. Call it with numpy arrays by input name; get {output name: array}.

    Parameters are bound from their initial values unless fed by name.
    """

    backend = ""

    def __init__(self, graph: Graph, device: str = "cpu"):
        self.graph = graph
        self.device = device
        self.input_names = [v.name for v in graph.inputs]
        self.output_names = list(graph.outputs)

    def __call__(self, **feeds: Any) -> dict[str, np.ndarray]:
        return self.run(feeds)

    def run(self, feeds: dict[str, Any]) -> dict[str, np.ndarray]:
        arrays, bindings = bind_feeds(self.graph, feeds)
        outs = self._run(arrays, bindings)
        return dict(zip(self.output_names, outs))

    def _run(self, feeds: dict[str, np.ndarray], bindings: dict[str, int]) -> list[np.ndarray]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.graph.name!r} on {self.backend}/{self.device}>"


def compile(graph: Graph, backend: str = "numpy", device: str = "cpu", **options: Any) -> Executable:
    """Compiles `graph` for a backend.

    Args:
        graph: the graph to run (it is verified first).
        backend: "numpy" (the reference interpreter), "onnxruntime" or "tvm".
        device: "cpu" or "cuda". Asking for "cuda" where the backend has no CUDA support raises.
        **options: backend options (e.g. `target` for tvm, `opset` for onnxruntime).

    Returns:
        An Executable: `exe(**feeds) -> {output name: numpy array}`.
    """
    from ..ir.verify import verify
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {device!r}; choose 'cpu' or 'cuda'")
    verify(graph)
    if backend == "numpy":
        if device != "cpu":
            raise ValueError("the numpy backend runs on the CPU only; use backend='onnxruntime' or 'tvm' "
                             "for device='cuda'")
        from ..backends.numpy_ref import NumpyExecutable
        return NumpyExecutable(graph, **options)
    if backend == "onnxruntime":
        from ..backends.onnx import OnnxExecutable
        return OnnxExecutable(graph, device=device, **options)
    from ..backends.tvm import TvmExecutable  # type: ignore[import-not-found]
    return TvmExecutable(graph, device=device, **options)
