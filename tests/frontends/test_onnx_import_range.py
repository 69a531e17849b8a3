"""Range up to a symbolic size: position ids (`torch.arange(x.shape[1])` exported with a dynamic
axis) import as a scan, so the graph keeps the symbolic length."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import graphc as gc
from graphc.frontends.onnx_import import OnnxImportError


def _position_ids_model(start: int, delta: int) -> onnx.ModelProto:
    """ids (N, T) -> ids + Range(start, T, delta), T read from ids' shape at run time."""
    i64 = lambda name, v: helper.make_tensor(name, TensorProto.INT64, [], [v])  # noqa: E731
    nodes = [helper.make_node("Shape", ["ids"], ["shape"]),
             helper.make_node("Gather", ["shape", "one"], ["t"], axis=0),
             helper.make_node("Range", ["start", "t", "delta"], ["pos"]),
             helper.make_node("Add", ["ids", "pos"], ["y"])]
    graph = helper.make_graph(
        nodes, "pos", [helper.make_tensor_value_info("ids", TensorProto.INT64, ["N", "T"])],
        [helper.make_tensor_value_info("y", TensorProto.INT64, ["N", "T"])],
        initializer=[i64("one", 1), i64("start", start), i64("delta", delta)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 10
    return model


def test_range_to_a_symbolic_length_counts_at_every_length():
    g = gc.import_onnx(_position_ids_model(0, 1))
    assert tuple(g.inputs[0].type.shape) == ("N", "T")
    for backend in ("numpy", "onnxruntime"):
        exe = gc.compile(g, backend)
        for t in (1, 5, 9):
            ids = np.arange(2 * t, dtype=np.int64).reshape(2, t) * 10
            (y,) = exe(ids=ids).values()
            np.testing.assert_array_equal(y, ids + np.arange(t), err_msg=f"{backend} T={t}")


@pytest.mark.parametrize("start, delta", [(1, 1), (0, 2)])
def test_range_to_a_symbolic_length_from_elsewhere_is_refused_by_name(start, delta):
    with pytest.raises(OnnxImportError, match=r"Range.*symbolic size 'T'.*start at 0 with delta 1"):
        gc.import_onnx(_position_ids_model(start, delta))
