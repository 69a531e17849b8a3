"""The peak memory of one run of a graph: a liveness analysis of the scheduled node order.

The model follows what onnxruntime's CPU executor does with graphc's training stepper
(`OrtStepper`: io binding, parameters and optimizer state in two swapped buffer sets):

- **Resident for the whole run**: every graph input (the batch is bound without a copy; the
  parameters, optimizer state, step and learning rate live in bound OrtValues) and every constant
  (an ONNX initializer, held by the session). In a training step (`graph.spec` set) every output
  is resident too: the stepper binds preallocated buffers for the new parameters and state and
  for the metrics, and kernels write straight into them. In any other graph an output is born at
  its producer and kept to the end.
- **Node outputs** are allocated when their node runs and freed after their last reader
  (onnxruntime's allocation plan frees by reference count after each node).
- **Aliases** (``Op.onnx_output_buffer == "alias"``): a reshape (ONNX Reshape, an alias kernel)
  allocates nothing; the buffer it views lives until the last reader of either.
- **In place** (``"inplace"``): a unary activation or cast (onnxruntime's kernels that declare
  ``MayInplace``) writes into its input's buffer when that buffer dies at this node and has the
  output's size.
- **Inside a node** (`Op.onnx_scratch_bytes`, defined beside each op's ONNX lowering): values
  that exist only inside one graphc op's ONNX lowering
  or one onnxruntime kernel, and inputs that die part-way through a lowering. `max_pool2d_grad`
  recomputes MaxPool's int64 argmax indices (8 bytes per pooled element), drops x, then either
  unpools g (windows that tile x) or scatter-adds it into an Expand of zeros the size of x;
  onnxruntime's CPU `Where` kernel holds two temporaries the size of its output (one per
  branch) before merging them. These rules sit beside the lowerings in graphc/ops;
  tests/inspect/test_peak_memory.py checks that they still lower that way.

What it does not model: onnxruntime's reuse of a freed buffer for a later output of the same
shape (it changes where a tensor lands, not how many bytes are live; turning it off,
``enable_mem_reuse=False``, moved LeNet-5's measured peak by 0.1%); its own graph rewrites
(Gemm+Relu fusion, NCHWc reorders for pooling, constant folding), which add or remove
intermediates; execution orders other than the graph's node order (onnxruntime's topological
sort mostly keeps it); kernel scratch buffers (MLAS convolution works in bounded segments; packed
GEMM panels); scratch inside lowerings not in the table; loop bodies (`scan`), counted as their
node's output only; the arena's rounding and caching (`enable_cpu_mem_arena`: with it on,
onnxruntime keeps its high-water mark reserved between steps); the session's own bookkeeping;
and other backends (TVM plans memory statically and differently).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from ..ir.graph import Graph, Value
from ..ir.types import TensorType, dim_symbols, eval_dim
from ..ops.base import static_bytes

@dataclass
class MemoryEstimate:
    """The step's memory from `step_memory`: bytes live at the peak and per node.

    Attributes:
        peak_bytes: resident bytes plus the transient peak: what one run holds at its worst.
        resident_bytes: held for the whole run (inputs, constants, a training step's outputs).
        transient_peak_bytes: the peak of everything else (node outputs, what nodes hold inside).
        peak_node: the output name of the node where the peak is reached (None: no nodes).
        peak_index: that node's index in `graph.nodes` (-1: no nodes).
        live_bytes: bytes live while each node runs, resident included, in node order.
        extra_bytes: what each node holds beyond its inputs and output (`Op.onnx_scratch_bytes`; 0 for most).
    """

    peak_bytes: int
    resident_bytes: int
    transient_peak_bytes: int
    peak_node: str | None
    peak_index: int
    live_bytes: list[int] = field(default_factory=list)
    extra_bytes: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (no per-node lists): peak, resident and transient bytes, the peak node."""
        return {"peak_bytes": self.peak_bytes, "resident_bytes": self.resident_bytes,
                "transient_peak_bytes": self.transient_peak_bytes, "peak_node": self.peak_node,
                "peak_index": self.peak_index}


def _bind(t: TensorType, bindings: Mapping[str, int]) -> TensorType:
    def dim(d):
        if isinstance(d, (int, np.integer)):
            return int(d)
        return eval_dim(d, {**{s: 1 for s in dim_symbols(d)}, **bindings})
    return TensorType(tuple(dim(d) for d in t.shape), t.dtype)


def step_memory(graph: Graph, bindings: Mapping[str, int] | None = None, *,
                inplace: bool = True) -> MemoryEstimate:
    """The peak memory of one run of `graph` in its node order, as onnxruntime's CPU executor
    would hold it (see the module docstring for what is and is not modelled).

    Args:
        graph: the scheduled graph (a training step from `gc.training_step`, or any graph).
        bindings: sizes of symbolic dims, e.g. ``{"N": 128}``; unbound symbols count as 1.
        inplace: let unary activations and casts write into a dying input (onnxruntime does).

    Returns:
        A MemoryEstimate; ``.peak_bytes`` is the step's peak. For example
        ``step_memory(step, {"N": 128}).peak_bytes``.
    """
    binds = {k: int(v) for k, v in (bindings or {}).items()}
    nodes = graph.nodes
    n = len(nodes)
    size: dict[Value, int] = {}

    def nbytes(v: Value) -> int:
        if v not in size:
            size[v] = static_bytes(_bind(v.type, binds))
        return size[v]

    outputs = set(graph.outputs.values())
    resident: set[Value] = set(graph.inputs)
    resident.update(node.output for node in nodes if node.op.traits.constant)
    if graph.spec is not None:
        resident.update(outputs)
    last: dict[Value, int] = {}
    for i, node in enumerate(nodes):
        for v in node.inputs:
            last[v] = i
    for v in outputs:
        last[v] = n  # kept past the last node

    # buffers: a node output gets its own buffer unless it is a view of, or written in place
    # over, another value's; a buffer lives from its birth to the death of its last value
    buf_of: dict[Value, int] = {}
    buf_size: list[int] = []
    buf_birth: list[int] = []
    buf_death: list[int] = []
    extra = [0] * n
    for i, node in enumerate(nodes):
        out = node.output
        src = node.inputs[0] if node.inputs else None
        if out in resident:
            buf = None
        elif node.op.onnx_output_buffer == "alias" and src is not None:
            buf = buf_of.get(src)   # None: a view of an input or a constant, no bytes of its own
        elif (inplace and node.op.onnx_output_buffer == "inplace" and src in buf_of
              and buf_death[buf_of[src]] <= i and nbytes(src) == nbytes(out)):
            buf = buf_of[src]       # the input's buffer (and every view of it) dies here
        else:
            buf = len(buf_size)
            buf_size.append(nbytes(out))
            buf_birth.append(i)
            buf_death.append(i)
        if buf is not None:
            buf_of[out] = buf
            buf_death[buf] = max(buf_death[buf], last.get(out, i))
        dies = [v not in resident and buf_death[buf_of[v]] <= i if v in buf_of else False
                for v in node.inputs]
        extra[i] = node.op.onnx_scratch_bytes([_bind(v.type, binds) for v in node.inputs],
                                              _bind(out.type, binds), dict(node.attrs), dies)

    resident_bytes = sum(nbytes(v) for v in resident)
    delta = [0] * (n + 2)
    for b, s in enumerate(buf_size):
        delta[buf_birth[b]] += s
        delta[min(buf_death[b], n) + 1] -= s
    live, peak, at, per_node = 0, 0, -1, []
    for i in range(n):
        live += delta[i]
        now = live + extra[i]
        per_node.append(resident_bytes + now)
        if now > peak or at < 0:
            peak, at = now, i
    return MemoryEstimate(resident_bytes + peak, resident_bytes, peak,
                          nodes[at].output.name if at >= 0 else None, at, per_node, extra)
