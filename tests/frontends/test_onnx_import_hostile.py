"""Malformed or hostile ONNX files are refused by gc.import_onnx with a clear OnnxImportError."""
from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import graphc as gc
from graphc.frontends.onnx_import import OnnxImportError, import_onnx

F32, I64 = TensorProto.FLOAT, TensorProto.INT64
N = helper.make_node


def _model(nodes, inits=(), opset=18, x_shape=(2,), outputs=("y",)):
    x = helper.make_tensor_value_info("x", F32, list(x_shape))
    outs = [helper.make_tensor_value_info(o, F32, None) for o in outputs]
    g = helper.make_graph(nodes, "hostile", [x], outs, list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 10
    return m


def _relu():
    return _model([N("Relu", ["x"], ["y"])])


def test_empty_file_is_refused(tmp_path):
    path = tmp_path / "empty.onnx"
    path.write_bytes(b"")
    with pytest.raises(OnnxImportError, match="empty.onnx: the file is empty"):
        import_onnx(path)
    with pytest.raises(OnnxImportError, match="the model is empty"):
        import_onnx(onnx.ModelProto())


def test_garbage_file_is_refused(tmp_path):
    path = tmp_path / "junk.onnx"
    path.write_bytes(b"\xff\xfe not a protobuf at all \x00\x01")
    with pytest.raises(OnnxImportError, match="junk.onnx: not an ONNX model"):
        import_onnx(path)


def test_file_truncated_before_opset_import_is_refused(tmp_path):
    m = _relu()
    data = m.SerializeToString()
    # opset_import is field 8, written after the graph: cut the file where it starts
    cut = data.index(m.opset_import[0].SerializeToString()) - 2
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[:cut])
    assert len(onnx.load(str(path)).graph.node) == 1  # protobuf itself reads the prefix happily
    with pytest.raises(OnnxImportError, match="cut.onnx: the model declares no opset "
                                              r"\(opset_import is missing"):
        import_onnx(path)


@pytest.mark.parametrize("opset", [10000, 0])
def test_unknown_opset_is_refused(opset):
    with pytest.raises(OnnxImportError, match=f"opset {opset} is not a released ONNX opset"):
        import_onnx(_model([N("Relu", ["x"], ["y"])], opset=opset))


def test_node_overwriting_a_graph_input_is_refused():
    m = _model([N("Neg", ["x"], ["x"], name="clobber"), N("Relu", ["x"], ["y"])])
    with pytest.raises(OnnxImportError,
                       match=r"node 0 \(Neg 'clobber'\) writes 'x', which a graph input already"):
        import_onnx(m)


def test_node_overwriting_an_initializer_is_refused():
    w = numpy_helper.from_array(np.ones(2, np.float32), "w")
    m = _model([N("Neg", ["x"], ["w"]), N("Add", ["x", "w"], ["y"])], inits=[w])
    with pytest.raises(OnnxImportError, match=r"node 0 \(Neg\) writes 'w', which an initializer"):
        import_onnx(m)


def test_two_nodes_writing_one_name_are_refused():
    m = _model([N("Relu", ["x"], ["y"]), N("Neg", ["x"], ["y"], name="second")])
    with pytest.raises(OnnxImportError,
                       match=r"node 1 \(Neg 'second'\) writes 'y', which node 0 \(Relu\) already"):
        import_onnx(m)


def test_initializer_data_not_fitting_its_shape_names_the_tensor():
    raw = numpy_helper.from_array(np.zeros(3, np.float32), "w_raw")
    raw.dims[:] = [5]
    m = _model([N("Add", ["x", "w_raw"], ["y"])], inits=[raw], x_shape=(5,))
    with pytest.raises(OnnxImportError, match="w_raw"):
        import_onnx(m)
    typed = TensorProto(name="w_typed", data_type=F32, dims=[2, 3])
    typed.float_data.extend([1.0, 2.0, 3.0])  # 3 values for 6 elements
    m = _model([N("Add", ["x", "w_typed"], ["y"])], inits=[typed], x_shape=(2, 3))
    with pytest.raises(OnnxImportError, match="w_typed"):
        import_onnx(m)


def test_declared_tensor_over_the_size_cap_is_refused():
    big = TensorProto(name="huge", data_type=F32, dims=[2**20, 2**20], raw_data=b"")
    m = _model([N("Add", ["x", "huge"], ["y"])], inits=[big])
    with pytest.raises(OnnxImportError, match=r"tensor 'huge': shape \(1048576, 1048576\) of "
                                              r"float32 is 4.0 TiB, over the import limit"):
        import_onnx(m)


def _external_model(tmp_path):
    w = numpy_helper.from_array(np.arange(4, dtype=np.float32), "w")
    m = _model([N("Add", ["x", "w"], ["y"])], inits=[w], x_shape=(4,))
    path = tmp_path / "model" / "ext.onnx"
    path.parent.mkdir()
    onnx.save(m, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
              location="ext.bin", size_threshold=0)
    return path


def test_external_data_is_read_from_the_models_directory_not_the_cwd(tmp_path, monkeypatch):
    path = _external_model(tmp_path)
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    # a decoy with the same name in the working directory must never be read
    (elsewhere / "ext.bin").write_bytes(np.full(4, 99, np.float32).tobytes())
    monkeypatch.chdir(elsewhere)
    x = np.ones(4, np.float32)
    want = x + np.arange(4, dtype=np.float32)
    np.testing.assert_array_equal(gc.compile(import_onnx(path))(x=x)["y"], want)
    proto = onnx.load(str(path), load_external_data=False)
    with pytest.raises(OnnxImportError, match=r"tensor 'w' keeps its data in external file "
                                              r"'ext.bin'.*base_dir"):
        import_onnx(proto)
    g = import_onnx(proto, base_dir=path.parent)
    np.testing.assert_array_equal(gc.compile(g)(x=x)["y"], want)


def test_external_data_outside_the_models_directory_is_refused(tmp_path):
    path = _external_model(tmp_path)
    (tmp_path / "secret.bin").write_bytes(np.zeros(4, np.float32).tobytes())
    proto = onnx.load(str(path), load_external_data=False)
    for e in proto.graph.initializer[0].external_data:
        if e.key == "location":
            e.value = "../secret.bin"
    with pytest.raises(OnnxImportError, match="(tensor name: w|'w').*outside"):
        import_onnx(proto, base_dir=path.parent)
    if hasattr(os, "symlink"):
        (path.parent / "link.bin").symlink_to(tmp_path / "secret.bin")
        for e in proto.graph.initializer[0].external_data:
            if e.key == "location":
                e.value = "link.bin"
        with pytest.raises(OnnxImportError, match="'w'.*external data"):
            import_onnx(proto, base_dir=path.parent)


def test_constant_folding_at_import_has_a_size_cap():
    shape = numpy_helper.from_array(np.array([2**33], np.int64), "shape")
    m = _model([N("ConstantOfShape", ["shape"], ["c"], name="zeros"), N("Add", ["x", "c"], ["y"])],
               inits=[shape], x_shape=(1,))
    with pytest.raises(OnnxImportError, match=r"node 0 \(ConstantOfShape 'zeros'\): "
                                              r"ConstantOfShape: shape \(8589934592,\) of float32 "
                                              r"is 32.0 GiB, over the import limit of 256.0 MiB"):
        import_onnx(m)


def test_fold_cap_is_configurable_and_covers_every_folded_op():
    # Expand and Range fold through the DSL and numpy: both are capped too
    shape = numpy_helper.from_array(np.array([1000, 1000], np.int64), "shape")
    one = numpy_helper.from_array(np.ones(1, np.float32), "one")
    m = _model([N("Constant", [], ["one"], value=one), N("Expand", ["one", "shape"], ["c"]),
                N("ReduceSum", ["c"], ["s"], keepdims=0), N("Add", ["x", "s"], ["y"])],
               inits=[shape], x_shape=(1,))
    with pytest.raises(OnnxImportError, match=r"node 1 \(Expand\): folding at import.*3.8 MiB"):
        import_onnx(m, max_fold_bytes=2**20)
    got = gc.compile(import_onnx(m))(x=np.zeros(1, np.float32))["y"]
    np.testing.assert_allclose(got, [1e6])
    lims = [numpy_helper.from_array(np.array(v, np.int64), k)
            for k, v in (("a", 0), ("b", 2**40), ("d", 1))]
    m = _model([N("Range", ["a", "b", "d"], ["r"])], inits=lims, outputs=("r",))
    with pytest.raises(OnnxImportError, match=r"Range: shape \(1099511627776,\) of int64"):
        import_onnx(m)


def test_checker_message_is_kept():
    m = _model([N("Relu", ["x"], ["y"], bogus_attribute=3)])
    m.graph.node[0].attribute[0].type = onnx.AttributeProto.UNDEFINED
    with pytest.raises(OnnxImportError, match="onnx.checker rejects the model"):
        import_onnx(m)


def test_not_a_model_is_refused():
    with pytest.raises(OnnxImportError, match="takes a path or an onnx.ModelProto, got bytes"):
        import_onnx(b"\x08\x07")


def test_index_tables_built_at_import_are_capped():
    # a huge declared input makes composites that precompute index tables refuse, not allocate
    lens = numpy_helper.from_array(np.full(2**16, 3, np.int64), "lens")
    m = _model([N("ReverseSequence", ["x", "lens"], ["y"], batch_axis=1, time_axis=0)],
               inits=[lens], x_shape=(2**16, 2**16))
    with pytest.raises(OnnxImportError, match=r"ReverseSequence\): index table: .* over the "
                                              r"import limit"):
        import_onnx(m)
