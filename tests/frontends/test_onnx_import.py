"""gc.import_onnx: ONNX models -> graphc graphs, checked against onnxruntime and round trips."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import graphc as gc
from graphc import models
from graphc.frontends.onnx_import import OnnxImportError, import_onnx
from ops.op_db import OP_DB, single_op_graph

F32, I64 = TensorProto.FLOAT, TensorProto.INT64


def _model(nodes, inputs, outputs, inits=None, opset=18, dims=None):
    """A model of `nodes`; inputs {name: array}, outputs [(name, elem type)], inits {name: array}.

    `dims` optionally gives symbolic shapes for inputs, e.g. {"x": ("N", 3)}.
    """
    dims = dims or {}
    ins = [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(a.dtype),
                                         list(dims.get(k, a.shape))) for k, a in inputs.items()]
    outs = [helper.make_tensor_value_info(k, t, None) for k, t in outputs]
    init = [numpy_helper.from_array(np.asarray(a), k) for k, a in (inits or {}).items()]
    g = helper.make_graph(nodes, "case", ins, outs, init)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 10
    return m


def _check(model, feeds, rtol=1e-5, atol=1e-6):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    want = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))
    g = import_onnx(model)
    g.verify()
    got = gc.compile(g).run(feeds)
    assert list(got) == list(want)
    for k in want:
        assert got[k].shape == want[k].shape, k
        assert got[k].dtype == want[k].dtype, k
        np.testing.assert_allclose(got[k], want[k], rtol=rtol, atol=atol, err_msg=k)
    return g


R = np.random.default_rng(0)


def _f(*shape, lo=-2.0, hi=2.0):
    return R.uniform(lo, hi, shape).astype(np.float32)


def _i(values):
    return np.asarray(values, np.int64)


N = helper.make_node
CASES = {
    "gemm_trans_alpha_beta": (
        [N("Gemm", ["a", "b", "c"], ["y"], transA=1, transB=1, alpha=0.5, beta=2.0)],
        {"a": _f(4, 3)}, {"b": _f(5, 4), "c": _f(5)}, 18),
    "conv_asym_pads_stride_dilation_groups": (
        [N("Conv", ["x", "w", "b"], ["y"], pads=[1, 0, 2, 1], strides=[2, 1], dilations=[1, 2],
           group=2)], {"x": _f(2, 4, 7, 8)}, {"w": _f(6, 2, 3, 3), "b": _f(6)}, 18),
    "conv_same_upper": (
        [N("Conv", ["x", "w"], ["y"], auto_pad="SAME_UPPER", strides=[2, 2])],
        {"x": _f(1, 2, 7, 6)}, {"w": _f(3, 2, 4, 3)}, 18),
    "conv1d": ([N("Conv", ["x", "w"], ["y"], pads=[1, 2], strides=[2])],
               {"x": _f(2, 3, 9)}, {"w": _f(4, 3, 3)}, 18),
    "conv_transpose": (
        [N("ConvTranspose", ["x", "w", "b"], ["y"], strides=[2, 2], pads=[1, 1, 1, 1],
           output_padding=[1, 0])], {"x": _f(1, 3, 4, 5)}, {"w": _f(3, 2, 3, 3), "b": _f(2)}, 18),
    "maxpool_ceil_pads": (
        [N("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 0, 0, 1],
           ceil_mode=1)], {"x": _f(2, 3, 8, 7)}, {}, 18),
    # a window that would start wholly in the end padding is dropped (was kept: (1,1,2,2))
    "maxpool_ceil_drops_window_in_end_padding": (
        [N("MaxPool", ["x"], ["y"], kernel_shape=[1, 1], strides=[2, 2], ceil_mode=1)],
        {"x": _f(1, 1, 2, 2)}, {}, 18),
    "maxpool_ceil_pads_last_window_starts_in_padding": (
        [N("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], strides=[3, 3], pads=[1, 1, 1, 1],
           ceil_mode=1)], {"x": _f(1, 2, 6, 7)}, {}, 18),
    "maxpool1d": ([N("MaxPool", ["x"], ["y"], kernel_shape=[2], strides=[2])],
                  {"x": _f(2, 3, 8)}, {}, 18),
    "avgpool_exclude_pad": (
        [N("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])],
        {"x": _f(1, 2, 7, 7)}, {}, 18),
    "avgpool_include_pad": (
        [N("AveragePool", ["x"], ["y"], kernel_shape=[2, 2], pads=[1, 1, 1, 1],
           count_include_pad=1)], {"x": _f(1, 2, 5, 5)}, {}, 18),
    "global_pools": ([N("GlobalAveragePool", ["x"], ["a"]), N("GlobalMaxPool", ["x"], ["m"]),
                      N("Add", ["a", "m"], ["y"])], {"x": _f(2, 3, 4, 5)}, {}, 18),
    "flatten": ([N("Flatten", ["x"], ["a"], axis=2), N("Flatten", ["x"], ["y"], axis=-1)],
                {"x": _f(2, 3, 4, 5)}, {}, 13, ["a", "y"]),
    "softmax_opset11_flattens": ([N("Softmax", ["x"], ["y"], axis=1)], {"x": _f(2, 3, 4)}, {}, 11),
    "softmax_opset13_axis": ([N("Softmax", ["x"], ["a"], axis=1), N("LogSoftmax", ["x"], ["y"])],
                             {"x": _f(2, 3, 4)}, {}, 13, ["a", "y"]),
    "squeeze_unsqueeze_attrs": ([N("Unsqueeze", ["x"], ["a"], axes=[0, 3]),
                                 N("Squeeze", ["a"], ["y"], axes=[0])], {"x": _f(2, 1, 3)}, {}, 11),
    "squeeze_unsqueeze_inputs": ([N("Unsqueeze", ["x", "ax"], ["a"]), N("Squeeze", ["a"], ["y"])],
                                 {"x": _f(2, 3)}, {"ax": _i([-1, 1])}, 13),
    "pad_value_axes": ([N("Pad", ["x", "p", "v", "ax"], ["y"])], {"x": _f(2, 3, 4)},
                       {"p": _i([1, 0, 2, 3]), "v": np.float32(-1.5), "ax": _i([0, 2])}, 18),
    "slice_negative_step": ([N("Slice", ["x", "s", "e", "ax", "st"], ["y"])], {"x": _f(5, 6)},
                            {"s": _i([-1, 1]), "e": _i([-6, 9223372036854775807]),
                             "ax": _i([0, 1]), "st": _i([-2, 2])}, 18),
    "split_sizes": ([N("Split", ["x", "sp"], ["a", "b", "y"], axis=1)], {"x": _f(2, 7)},
                    {"sp": _i([2, 4, 1])}, 13, ["a", "b", "y"]),
    "split_num_outputs": ([N("Split", ["x"], ["a", "y"], axis=0, num_outputs=2)],
                          {"x": _f(5, 2)}, {}, 18, ["a", "y"]),
    "clip_inputs": ([N("Clip", ["x", "lo", "hi"], ["y"])], {"x": _f(3, 4)},
                    {"lo": np.float32(-0.5), "hi": np.float32(1.0)}, 13),
    "clip_attrs": ([N("Clip", ["x"], ["y"], min=-0.25, max=0.5)], {"x": _f(3, 4)}, {}, 6),
    "where_compare": ([N("Less", ["x", "z"], ["c"]), N("Greater", ["x", "z"], ["d"]),
                       N("Equal", ["c", "d"], ["e"]), N("Where", ["e", "z", "x"], ["y"])],
                      {"x": _f(3, 4), "z": _f(3, 4)}, {}, 18),
    "cast_and_int_div": ([N("Cast", ["x"], ["i"], to=I64), N("Div", ["i", "two"], ["q"]),
                          N("Cast", ["q"], ["y"], to=F32)], {"x": _f(3, 4, lo=-9, hi=9)},
                         {"two": _i(2)}, 18),
    "constant_node": ([N("Constant", [], ["c"], value=numpy_helper.from_array(_f(4), "c")),
                       N("Constant", [], ["k"], value_float=3.0), N("Mul", ["x", "c"], ["m"]),
                       N("Add", ["m", "k"], ["y"])], {"x": _f(2, 4)}, {}, 18),
    "reductions": ([N("ReduceSum", ["x", "a1"], ["s"], keepdims=0),
                    N("ReduceMax", ["x", "a2"], ["m"]),
                    N("ReduceMin", ["x"], ["n"], keepdims=0),
                    N("ReduceMean", ["x", "a1"], ["y"])], {"x": _f(2, 3, 4)},
                   {"a1": _i([1]), "a2": _i([0, -1])}, 18, ["s", "m", "n", "y"]),
    "reduce_axes_attr_opset13": ([N("ReduceMean", ["x"], ["y"], axes=[2], keepdims=0)],
                                 {"x": _f(2, 3, 4)}, {}, 13),
    "expand_both_ways": ([N("Expand", ["x", "s"], ["y"])], {"x": _f(3, 1)},
                         {"s": _i([2, 1, 4])}, 18),
    "tile": ([N("Tile", ["x", "r"], ["y"])], {"x": _f(2, 3)}, {"r": _i([2, 3])}, 18),
    "batch_norm": ([N("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], epsilon=1e-3)],
                   {"x": _f(2, 3, 4, 4)}, {"s": _f(3), "b": _f(3), "m": _f(3),
                                           "v": _f(3, lo=0.5, hi=2)}, 15),
    "layer_norm": ([N("LayerNormalization", ["x", "s", "b"], ["y"], axis=-2)],
                   {"x": _f(2, 3, 4)}, {"s": _f(3, 4), "b": _f(3, 4)}, 17),
    "unary_chain": ([N("Abs", ["x"], ["a"]), N("Sqrt", ["a"], ["b"]), N("Log", ["b"], ["c"]),
                     N("Exp", ["c"], ["d"]), N("Tanh", ["d"], ["e"]), N("Sigmoid", ["e"], ["f"]),
                     N("Neg", ["f"], ["g"]), N("Relu", ["g"], ["h"]), N("Erf", ["x"], ["i"]),
                     N("Sign", ["x"], ["j"]), N("Reciprocal", ["x"], ["k"]),
                     N("LeakyRelu", ["x"], ["l"], alpha=0.2), N("Elu", ["x"], ["m"]),
                     N("Softplus", ["x"], ["n"]), N("HardSigmoid", ["x"], ["o"]),
                     N("Identity", ["o"], ["p"]), N("Sum", ["h", "i", "j", "k", "l"], ["s1"]),
                     N("Mean", ["m", "n", "p"], ["s2"]), N("Max", ["s1", "s2", "x"], ["s3"]),
                     N("Min", ["s3", "s2"], ["y"])], {"x": _f(3, 4, lo=0.3, hi=2.0)}, {}, 18),
    "pow_int_exponent": ([N("Pow", ["x", "e"], ["y"])], {"x": _f(3, 4, lo=0.5)}, {"e": _i(3)}, 18),
    "gelu": ([N("Gelu", ["x"], ["y"], approximate="tanh")], {"x": _f(3, 4)}, {}, 20),
    "batched_matmul_transpose": ([N("Transpose", ["w"], ["t"], perm=[1, 0]),
                                  N("MatMul", ["x", "t"], ["m"]), N("Transpose", ["m"], ["y"])],
                                 {"x": _f(2, 3, 4)}, {"w": _f(5, 4)}, 18),
    "gather_negative": ([N("Gather", ["x", "i"], ["y"], axis=1)], {"x": _f(3, 5)},
                        {"i": _i([[0, -1], [2, -3]])}, 18),
    "argmax": ([N("ArgMax", ["x"], ["y"], axis=1)], {"x": _f(3, 5)}, {}, 18, [("y", I64)]),
    "logical": ([N("Greater", ["x", "z"], ["a"]), N("Less", ["x", "h"], ["b"]),
                 N("And", ["a", "b"], ["c"]), N("Or", ["a", "b"], ["d"]), N("Not", ["c"], ["e"]),
                 N("Equal", ["d", "e"], ["f"]), N("Cast", ["f"], ["y"], to=F32)],
                {"x": _f(3, 4)}, {"z": np.float32(0.0), "h": np.float32(1.0)}, 18),
    "range_const": ([N("Range", ["s", "l", "d"], ["r"]), N("Cast", ["r"], ["c"], to=F32),
                     N("Add", ["x", "c"], ["y"])], {"x": _f(2, 4)},
                    {"s": _i(1), "l": _i(9), "d": _i(2)}, 18),
    "dropout_inference": ([N("Dropout", ["x"], ["y"])], {"x": _f(3, 4)}, {}, 13),
    "size_static": ([N("Size", ["x"], ["n"]), N("Cast", ["n"], ["f"], to=F32),
                     N("Mul", ["x", "f"], ["y"])], {"x": _f(3, 4)}, {}, 18),
    "more_activations": ([N("PRelu", ["x", "slope"], ["a"]), N("Selu", ["x"], ["b"]),
                          N("HardSwish", ["x"], ["h"]), N("Mish", ["x"], ["m"]),
                          N("Sum", ["a", "b", "h", "m"], ["y"])], {"x": _f(2, 3, 4)},
                         {"slope": _f(3, 1)}, 18),
    "instance_norm": ([N("InstanceNormalization", ["x", "s", "b"], ["y"], epsilon=1e-4)],
                      {"x": _f(2, 3, 4, 5)}, {"s": _f(3), "b": _f(3)}, 18),
    "reduce_l1_l2_logsumexp": ([N("ReduceL1", ["x", "a"], ["l1"]),
                                N("ReduceL2", ["x", "a"], ["l2"]),
                                N("ReduceLogSumExp", ["x", "a"], ["y"], keepdims=0)],
                               {"x": _f(2, 3, 4)}, {"a": _i([1])}, 18, ["l1", "l2", "y"]),
    "trilu": ([N("Trilu", ["x", "k"], ["u"]), N("Trilu", ["x"], ["y"], upper=0)],
              {"x": _f(2, 4, 5)}, {"k": _i(1)}, 18, ["u", "y"]),
    "cumsum": ([N("CumSum", ["x", "ax"], ["a"]), N("CumSum", ["x", "ax"], ["y"], exclusive=1,
                                                    reverse=1)],
               {"x": _f(2, 5, 3)}, {"ax": _i(1)}, 18, ["a", "y"]),
}


EINSUM = [("bij,bjk->bik", (2, 3, 4), (2, 4, 5)),
          ("ij,kj->ik", (3, 4), (5, 4)),
          ("...ij,...jk->...ik", (2, 1, 3, 4), (1, 5, 4, 2)),   # broadcast batch dims
          ("bhqd,bhkd->bhqk", (2, 3, 4, 5), (2, 3, 6, 5)),      # attention scores
          ("i,i->", (4,), (4,)), ("i,j->ji", (3,), (4,)),
          ("ij,jk", (3, 4), (4, 2)),                            # implicit output
          ("abc,cd->db", (2, 3, 4), (4, 5)),                    # a's own axis summed first
          ("ij->ji", (3, 4), None), ("ij->", (3, 4), None), ("bij->bj", (2, 3, 4), None),
          ("...i->...", (2, 3, 4), None)]
for k, (eq, sa, sb) in enumerate(EINSUM):
    ins = {"a": _f(*sa)} if sb is None else {"a": _f(*sa), "b": _f(*sb)}
    CASES[f"einsum{k}_{eq}"] = ([N("Einsum", list(ins), ["y"], equation=eq)], ins, {}, 18)


@pytest.mark.parametrize("case", list(CASES))
def test_op_agrees_with_onnxruntime(case):
    nodes, feeds, inits, opset, *outs = CASES[case]
    outs = outs[0] if outs else ["y"]
    outs = [o if isinstance(o, tuple) else (o, F32) for o in outs]
    _check(_model(nodes, feeds, outs, inits, opset), feeds)


def test_dynamic_batch_shape_arithmetic_is_followed():
    # the pattern exporters write for x.reshape(x.shape[0], -1) and zeros of a run-time shape
    nodes = [N("Shape", ["x"], ["s"]), N("Gather", ["s", "zero"], ["n"]),
             N("Unsqueeze", ["n", "ax0"], ["n1"]), N("Concat", ["n1", "m1"], ["shape"], axis=0),
             N("Reshape", ["x", "shape"], ["r"]), N("Shape", ["r"], ["rs"]),
             N("ConstantOfShape", ["rs"], ["ones"],
               value=numpy_helper.from_array(np.ones(1, np.float32))),
             N("Add", ["r", "ones"], ["y"]), N("Shape", ["x"], ["s2"], start=1),
             N("ReduceProd", ["s2"], ["p"], keepdims=1), N("Mul", ["n1", "p"], ["np_"]),
             N("Reshape", ["y", "np_"], ["flat"])]
    feeds = {"x": _f(3, 2, 5)}
    m = _model(nodes, feeds, [("y", F32), ("flat", F32)],
               {"zero": _i(0), "ax0": _i([0]), "m1": _i([-1])}, dims={"x": ("N", 2, 5)})
    g = _check(m, feeds)
    assert g.inputs[0].type == gc.TensorType(("N", 2, 5))
    assert g.outputs["y"].type.shape == ("N", 10) and g.outputs["flat"].type.shape == ("10*N",)
    _check(m, {"x": _f(7, 2, 5)})  # the same graph serves another batch size


@pytest.mark.parametrize("name", list(models.MODELS))
def test_reference_models_round_trip(name):
    g = models.MODELS[name]()
    g2 = import_onnx(gc.export_onnx(g))
    g2.verify()
    assert [(v.name, v.type) for v in g2.inputs] == [(v.name, v.type) for v in g.inputs]
    assert [p.name for p in g2.params] == [p.name for p in g.params]
    for p, q in zip(g.params, g2.params):
        np.testing.assert_array_equal(p.data, q.data)
    assert {k: v.type for k, v in g2.outputs.items()} == {k: v.type for k, v in g.outputs.items()}
    feeds = models.example_feeds(g, batch=3)
    want, got = gc.compile(g).run(feeds), gc.compile(g2).run(feeds)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-6, atol=1e-7, err_msg=k)


def test_imported_graph_is_differentiable_like_the_original(tmp_path):
    g = models.lenet5()
    path = tmp_path / "lenet5.onnx"
    gc.export_onnx(g, path)
    g2 = gc.import_onnx(path)
    assert all(n.source.startswith("lenet5.onnx:") for n in g2.nodes)
    feeds = models.example_feeds(g, batch=2)
    want, got = gc.compile(gc.grad(g)).run(feeds), gc.compile(gc.grad(g2)).run(feeds)
    assert list(got) == list(want)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-6, err_msg=k)


def _op_rows():
    return [pytest.param(info, id=info.name) for info in OP_DB]


# lowerings that use ONNX ops with no graphc primitive to map back to
NOT_IMPORTABLE: dict[str, str] = {}


@pytest.mark.parametrize("info", _op_rows())
def test_every_primitive_lowering_imports_back(info):
    dtype = info.dtypes[0]
    if info.skip_reason("onnx_checker", dtype):  # no ONNX lowering at the default opset
        pytest.skip(info.skip_reason("onnx_checker", dtype))
    for sample in info.get_samples(dtype)[:2]:
        g, feeds = single_op_graph(info, sample, dtype)
        model = gc.export_onnx(g)
        if info.name in NOT_IMPORTABLE:
            with pytest.raises(OnnxImportError, match=NOT_IMPORTABLE[info.name]):
                import_onnx(model)
            return
        try:
            g2 = import_onnx(model)
        except OnnxImportError as exc:
            if "cannot be imported" in str(exc):  # a new primitive lowered to ops with no handler
                pytest.skip(f"{info.name}: {exc}".splitlines()[0] + " " + str(exc).splitlines()[1])
            raise
        want, got = gc.compile(g).run(feeds), gc.compile(g2).run(feeds)
        np.testing.assert_allclose(got["y"], want["y"], rtol=1e-6, atol=1e-7)
        assert got["y"].dtype == want["y"].dtype


def test_unsupported_ops_are_listed_in_one_error():
    nodes = [N("StringNormalizer", ["x"], ["a"]), N("RegexFullMatch", ["a"], ["b"]),
             N("StringNormalizer", ["b"], ["c"]), N("NonZero", ["c"], ["y"])]
    m = _model(nodes, {"x": _i([[1, 2]])}, [("y", I64)], opset=20)
    with pytest.raises(OnnxImportError) as info:
        import_onnx(m)
    msg = str(info.value)
    assert "3 ONNX op type(s) cannot be imported" in msg
    assert "StringNormalizer x2 (first at node 0)" in msg and "RegexFullMatch x1" in msg
    assert "NonZero x1" in msg


def test_run_time_shape_inputs_name_the_node():
    m = _model([N("Reshape", ["x", "s"], ["y"], name="reshape_it")],
               {"x": _f(2, 3), "s": _i([3, 2])}, [("y", F32)])
    with pytest.raises(OnnxImportError,
                       match=r"node 0 \(Reshape 'reshape_it'\).*computed at run time") as info:
        import_onnx(m)
    assert ">    0  y = Reshape(x, s)" in str(info.value)  # the ONNX node, shown in context


def test_unsupported_dtype_and_attributes_are_clear():
    m = _model([N("Identity", ["x"], ["y"])], {"x": np.zeros((2,), np.complex64)},
               [("y", TensorProto.COMPLEX64)])
    with pytest.raises(OnnxImportError, match="dtype complex64 is not supported"):
        import_onnx(m)
    m = _model([N("Gelu", ["x"], ["y"], approximate="sigmoid")], {"x": _f(3)}, [("y", F32)],
               opset=20)
    with pytest.raises(OnnxImportError, match="approximate='sigmoid' is not supported"):
        import_onnx(m)


def test_which_initializers_become_params():
    nodes = [N("Reshape", ["x", "shape"], ["r"]), N("MatMul", ["r", "w"], ["m"]),
             N("Add", ["m", "pre/const"], ["a"]),
             N("Reshape", ["a", "shape4"], ["a4"]),
             N("BatchNormalization", ["a4", "s", "b", "mean", "var"], ["y"])]
    inits = {"shape": _i([2, 3]), "w": _f(3, 4), "pre/const": _f(4), "s": _f(4), "b": _f(4),
             "mean": _f(4), "var": _f(4, lo=0.5, hi=1.0), "shape4": _i([2, 4, 1, 1])}
    m = _model(nodes, {"x": _f(6)}, [("y", F32)], inits)
    default = import_onnx(m)
    # floats used as data are params; shapes, exporter constants ("/") and BN statistics are not
    assert [p.name for p in default.params] == ["w", "s", "b"]
    assert [p.name for p in import_onnx(m, params=["w"]).params] == ["w"]
    chosen = import_onnx(m, params=lambda name, a: a.ndim == 2)
    assert [p.name for p in chosen.params] == ["w"]
    with pytest.raises(OnnxImportError, match="not initializers"):
        import_onnx(m, params=["nope"])
    _check(m, {"x": _f(6)})


def test_dim_params_become_symbols_and_unnamed_dims_get_one():
    x = helper.make_tensor_value_info("x", F32, ["batch size", None, 3])
    y = helper.make_tensor_value_info("y", F32, None)
    g = helper.make_graph([N("Relu", ["x"], ["y"])], "dims", [x], [y])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    got = import_onnx(m)
    assert got.inputs[0].type.shape == ("batch_size", "x_1", 3)


@pytest.mark.slow
def test_pytorch_export_imports():
    torch = pytest.importorskip("torch")
    import io
    import warnings
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4),
                              torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(),
                              torch.nn.Linear(4 * 4 * 4, 5), torch.nn.LayerNorm(5),
                              torch.nn.GELU(), torch.nn.Softmax(-1)).eval()
    x = torch.randn(3, 1, 8, 8)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(net, (x,), buf, input_names=["x"], output_names=["p"],
                              dynamic_axes={"x": {0: "batch"}}, opset_version=17, dynamo=False)
        except Exception as exc:  # noqa: BLE001 - an exporter missing here is not our failure
            pytest.skip(f"torch.onnx.export unavailable: {exc}")
    g = import_onnx(onnx.load_from_string(buf.getvalue()))
    assert g.inputs[0].type.shape[0] == "batch"
    with torch.no_grad():
        want = net(x).numpy()
    got = gc.compile(g).run({"x": x.numpy()})["p"]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_training_step_graph_round_trips():
    from graphc import optim
    g = models.mlp((8, 6, 3))
    step = gc.training_step(g, None, optim.Adam(1e-2))
    spec = step.spec
    g2 = import_onnx(gc.export_onnx(step))
    assert [v.name for v in g2.inputs] == [v.name for v in step.inputs]
    feeds = dict(models.example_feeds(g, batch=4), **spec.initial)
    feeds[spec.step] = np.asarray(3, np.int64)
    feeds[spec.lr] = np.asarray(1e-2, spec.lr_dtype)
    want, got = gc.compile(step).run(feeds), gc.compile(g2).run(feeds)
    assert list(got) == list(want)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-6, atol=1e-7, err_msg=k)


def test_symbolic_sizes_used_as_data_are_read_at_run_time():
    # x * float(x.shape[0]), and the mean over a dynamic batch as graphc's exporter writes it
    nodes = [N("Shape", ["x"], ["s"]), N("Cast", ["s"], ["f"], to=F32), N("Mul", ["x", "f"], ["m"]),
             N("Gather", ["s", "ax"], ["n"]), N("ReduceProd", ["n"], ["p"], keepdims=0),
             N("Cast", ["p"], ["pf"], to=F32), N("ReduceSum", ["m"], ["t"], keepdims=0),
             N("Div", ["t", "pf"], ["y"])]
    inits = {"ax": _i([0])}
    m = _model(nodes, {"x": _f(2, 2)}, [("y", F32)], inits, dims={"x": ("N", 2)})
    g = _check(m, {"x": _f(3, 2)})
    assert g.inputs[0].type.shape == ("N", 2)
    _check(m, {"x": _f(5, 2)})
    _check(_model(nodes, {"x": _f(2, 2)}, [("y", F32)], inits), {"x": _f(2, 2)})  # static: fine
