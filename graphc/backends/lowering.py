"""check_lowering(): every node of a graph whose op has no lowering for a backend, all at once."""
from __future__ import annotations

from typing import NamedTuple

from ..ir.errors import GraphcError
from ..ir.graph import Graph

#: backend name -> the op attribute holding its lowering rule
_RULE = {"tvm": "tvm", "onnxruntime": "onnx", "onnx": "onnx", "numpy": "ref"}


class MissingLowering(NamedTuple):
    """One node that a backend cannot lower."""

    op: str
    source: str | None
    value: str

    def __str__(self) -> str:
        return f"{self.op} at {self.source or '?'} (%{self.value})"


def check_lowering(graph: Graph, backend: str = "tvm", raise_on_missing: bool = False
                   ) -> list[MissingLowering]:
    """Lists every node whose primitive has no lowering for `backend`, with its source line.

    Args:
        graph: the graph to check.
        backend: "tvm", "onnxruntime" (or "onnx") or "numpy".
        raise_on_missing: raise a GraphcError naming all of them instead of returning.

    Returns:
        One entry per offending node, in graph order (empty when everything lowers).
    """
    if backend not in _RULE:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(_RULE)}")
    rule = _RULE[backend]
    missing = [MissingLowering(n.op.name, n.source, n.output.name) for n in graph.nodes
               if getattr(n.op, rule, None) is None]
    if missing and raise_on_missing:
        ops = sorted({m.op for m in missing})
        lines = "\n".join(f"  {m}" for m in missing)
        raise GraphcError(f"graph {graph.name!r}: {len(missing)} node(s) have no {backend} lowering "
                          f"(ops: {', '.join(ops)}):\n{lines}")
    return missing
