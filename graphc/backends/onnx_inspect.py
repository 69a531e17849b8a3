"""A readable listing and summary of an ONNX file (for `graphc show model.onnx`)."""
from __future__ import annotations

import collections
import os
from typing import Any


def _type_text(vi: Any) -> str:
    import onnx
    t = vi.type.tensor_type
    dims = [d.dim_param if d.HasField("dim_param") else (str(d.dim_value) if d.HasField("dim_value")
                                                          else "?") for d in t.shape.dim]
    return f"{onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name}[{', '.join(dims)}]"


def _attr_text(a: Any) -> str:
    import onnx
    v = onnx.helper.get_attribute_value(a)
    if isinstance(v, bytes):
        v = v.decode(errors="replace")
    if isinstance(v, onnx.TensorProto):
        v = f"<tensor {list(v.dims)}>"
    elif isinstance(v, list) and v and isinstance(v[0], bytes):
        v = [x.decode(errors="replace") for x in v]
    return f"{a.name}={v}"


def describe_onnx(path: str | os.PathLike, nodes: bool = True) -> str:
    """The model's inputs, initializers, nodes (one per line) and outputs, then a summary.

    Args:
        path: an .onnx file.
        nodes: list every node; False gives the summary alone.
    """
    import numpy as np
    import onnx
    model = onnx.load(os.fspath(path))
    g = model.graph
    opsets = ", ".join(f"{o.domain or 'ai.onnx'} {o.version}" for o in model.opset_import)
    init_names = {t.name for t in g.initializer}
    lines = [f"onnx model {g.name!r} (producer {model.producer_name or '?'}, IR version "
             f"{model.ir_version}, opset {opsets})"]
    for vi in g.input:
        if vi.name not in init_names:
            lines.append(f"  input  {vi.name}: {_type_text(vi)}")
    if nodes:
        for n in g.node:
            attrs = "".join(f", {_attr_text(a)}" for a in n.attribute)
            dom = f"{n.domain}." if n.domain not in ("", "ai.onnx") else ""
            lines.append(f"  {', '.join(n.output)} = {dom}{n.op_type}({', '.join(n.input)}{attrs})")
    sizes = [int(np.prod(t.dims, dtype=np.int64)) for t in g.initializer]
    lines.append(f"  initializers {len(sizes)} tensors, {sum(sizes):,} values")
    for vi in g.output:
        lines.append(f"  output {vi.name}: {_type_text(vi)}")
    ops = collections.Counter((f"{n.domain}." if n.domain not in ("", "ai.onnx") else "") + n.op_type
                              for n in g.node)
    lines.append(f"  nodes  {len(g.node)}: " + ", ".join(f"{k} x{c}" for k, c in ops.most_common()))
    return "\n".join(lines)
