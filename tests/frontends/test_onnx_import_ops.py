"""The importer's composite handlers agree with onnxruntime (an implementation independent of
onnx's reference, which the node-test conformance suite compares against)."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto

import graphc as gc
from graphc.frontends.onnx_import import import_onnx
from test_onnx_import import N, _check, _f, _i, _model

F32, I64 = TensorProto.FLOAT, TensorProto.INT64
F16, I32, I8 = TensorProto.FLOAT16, TensorProto.INT32, TensorProto.INT8
U8, U32 = TensorProto.UINT8, TensorProto.UINT32
R = np.random.default_rng(1)

CASES = {
    "mod_int_and_fmod": ([N("Mod", ["a", "b"], ["m"]), N("Mod", ["a", "b"], ["f"], fmod=1)],
                         {"a": _i([-7, 7, -7, 7, 5, -4]), "b": _i([3, -3, -3, 3, 2, 3])}, {}, 18,
                         [("m", I64), ("f", I64)]),
    "mod_float_fmod": ([N("Mod", ["a", "b"], ["y"], fmod=1)],
                       {"a": _f(3, 4, lo=-9, hi=9), "b": _f(3, 4, lo=0.5, hi=3)}, {}, 18),
    "floor_ceil_round": ([N("Floor", ["x"], ["a"]), N("Ceil", ["x"], ["b"]),
                          N("Round", ["h"], ["y"])],
                         {"x": _f(3, 5, lo=-4, hi=4),
                          "h": np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 0.49, -3.7], np.float32)},
                         {}, 18, ["a", "b", "y"]),
    "trig": ([N(op, ["x"], [op.lower()]) for op in ("Sin", "Cos", "Tan", "Atan", "Sinh", "Cosh")]
             + [N("Asin", ["u"], ["asin"]), N("Acos", ["u"], ["acos"])],
             {"x": _f(4, 6, lo=-20, hi=20), "u": _f(4, 6, lo=-1, hi=1)}, {}, 18,
             ["sin", "cos", "tan", "atan", "sinh", "cosh", "asin", "acos"]),
    "argmin_last_index_hardmax": ([N("ArgMin", ["x"], ["a"], axis=1, select_last_index=1),
                                   N("Hardmax", ["x"], ["y"], axis=1)],
                                  {"x": np.array([[1, 0, 0, 2], [3, 3, 1, 1]], np.float32)}, {},
                                  18, [("a", I64), "y"]),
    "topk_largest_and_smallest": ([N("TopK", ["x", "k"], ["v", "i"], axis=1),
                                   N("TopK", ["x", "k"], ["s", "j"], axis=0, largest=0)],
                                  {"x": np.array([[3, 1, 3, 0], [2, 2, 5, 1], [0, 4, 1, 1]],
                                                 np.float32)},
                                  {"k": _i([2])}, 18, ["v", ("i", I64), "s", ("j", I64)]),
    "gather_elements_scatter": (
        [N("GatherElements", ["x", "idx"], ["g"], axis=1),
         N("ScatterElements", ["x", "idx", "u"], ["s"], axis=1),
         N("ScatterND", ["x", "nd", "row"], ["y"])],
        {"x": _f(3, 4)}, {"idx": _i([[0, -1], [2, 1], [3, 0]]), "u": _f(3, 2),
                          "nd": _i([[2], [0]]), "row": _f(2, 4)}, 18, ["g", "s", "y"]),
    "nll_weight_ignore_index": (
        [N("NegativeLogLikelihoodLoss", ["x", "t", "w"], ["y"], ignore_index=1)],
        {"x": _f(4, 3, 2)}, {"t": _i([[0, 1], [2, 2], [1, 0], [2, 1]]), "w": _f(3, lo=0.1, hi=1)},
        18),
    "softmax_cross_entropy": ([N("SoftmaxCrossEntropyLoss", ["x", "t"], ["y", "lp"],
                                 reduction="sum")],
                              {"x": _f(5, 4)}, {"t": _i([0, 3, 1, 1, 2])}, 18, ["y", "lp"]),
    "resize_linear_half_pixel": ([N("Resize", ["x", "", "s"], ["y"], mode="linear")],
                                 {"x": _f(1, 2, 4, 5)},
                                 {"s": np.array([1, 1, 1.5, 0.6], np.float32)}, 18),
    "resize_cubic_align_corners_sizes": (
        [N("Resize", ["x", "", "", "sz"], ["y"], mode="cubic",
           coordinate_transformation_mode="align_corners")],
        {"x": _f(1, 1, 4, 4)}, {"sz": _i([1, 1, 7, 3])}, 18),
    "resize_nearest_asymmetric_floor": (
        [N("Resize", ["x", "", "s"], ["y"], mode="nearest", nearest_mode="floor",
           coordinate_transformation_mode="asymmetric")],
        {"x": _f(1, 1, 3, 2)}, {"s": np.array([1, 1, 2, 3], np.float32)}, 18),
    "maxpool3d_dilated_ceil": ([N("MaxPool", ["x"], ["y"], kernel_shape=[2, 2, 2],
                                  dilations=[2, 1, 1], strides=[2, 2, 2], ceil_mode=1)],
                               {"x": _f(1, 2, 6, 5, 5)}, {}, 18),
    "avgpool_asym_pads_ceil": ([N("AveragePool", ["x"], ["y"], kernel_shape=[3, 3],
                                  strides=[2, 2], pads=[0, 1, 1, 0], ceil_mode=1)],
                               {"x": _f(1, 2, 6, 7)}, {}, 18),
    "maxpool_indices": ([N("MaxPool", ["x"], ["y", "i"], kernel_shape=[2, 2], strides=[2, 2])],
                        {"x": _f(2, 3, 4, 4)}, {}, 18, ["y", ("i", I64)]),
    "pad_reflect_edge_wrap": ([N("Pad", ["x", "p"], ["a"], mode="reflect"),
                               N("Pad", ["x", "p"], ["b"], mode="edge"),
                               N("Pad", ["x", "p"], ["y"], mode="wrap")],
                              {"x": _f(3, 4)}, {"p": _i([1, 2, 2, 1])}, 19, ["a", "b", "y"]),
    "depth_space_round_trip": ([N("SpaceToDepth", ["x"], ["d"], blocksize=2),
                                N("DepthToSpace", ["d"], ["y"], blocksize=2, mode="CRD")],
                               {"x": _f(1, 3, 4, 6)}, {}, 18, ["d", "y"]),
    "one_hot_axis": ([N("OneHot", ["i", "depth", "v"], ["y"], axis=1)],
                     {"i": _i([[1, 4], [-1, 0]])},
                     {"depth": _i(5), "v": np.array([-1.0, 2.0], np.float32)}, 18),
    "cumsum_cumprod_int": ([N("CumSum", ["x", "ax"], ["s"], exclusive=1)],
                           {"x": _i([[1, 2, 3], [4, 5, 6]])}, {"ax": _i(1)}, 18, [("s", I64)]),
    "rms_group_norm": ([N("RMSNormalization", ["x", "s"], ["r"], axis=-1),
                        N("GroupNormalization", ["x", "g", "b"], ["y"], num_groups=2)],
                       {"x": _f(2, 4, 3)}, {"s": _f(3), "g": _f(4), "b": _f(4)}, 23, ["r", "y"]),
    "layer_norm_mean_invstd": ([N("LayerNormalization", ["x", "s"], ["y", "m", "i"], axis=1)],
                               {"x": _f(2, 3, 4)}, {"s": _f(3, 4)}, 18, ["y", "m", "i"]),
    "attention_causal_gqa_mask": (
        [N("Attention", ["q", "k", "v", "mask"], ["y"], is_causal=1)],
        {"q": _f(2, 4, 3, 8), "k": _f(2, 2, 5, 8), "v": _f(2, 2, 5, 6)},
        {"mask": _f(3, 5)}, 23),
    "attention_3d_past_kv": (
        [N("Attention", ["q", "k", "v", "", "pk", "pv"], ["y", "ok", "ov"], q_num_heads=2,
           kv_num_heads=2, scale=0.3)],
        {"q": _f(1, 3, 8), "k": _f(1, 3, 8), "v": _f(1, 3, 8), "pk": _f(1, 2, 4, 4),
         "pv": _f(1, 2, 4, 4)}, {}, 23, ["y", "ok", "ov"]),
    "lstm_bidirectional_peepholes": (
        [N("LSTM", ["x", "w", "r", "b", "", "h0", "c0", "p"], ["y", "yh", "yc"], hidden_size=3,
           direction="bidirectional")],
        {"x": _f(4, 2, 5)}, {"w": _f(2, 12, 5), "r": _f(2, 12, 3), "b": _f(2, 24),
                             "h0": _f(2, 2, 3), "c0": _f(2, 2, 3), "p": _f(2, 9)}, 18,
        ["y", "yh", "yc"]),
    "gru_linear_before_reset_reverse": (
        [N("GRU", ["x", "w", "r", "b"], ["y", "yh"], hidden_size=3, direction="reverse",
           linear_before_reset=1)],
        {"x": _f(3, 2, 4)}, {"w": _f(1, 9, 4), "r": _f(1, 9, 3), "b": _f(1, 18)}, 18,
        ["y", "yh"]),
    "dft_complex_onesided": ([N("DFT", ["x", "", "ax"], ["y"], onesided=1)],
                             {"x": _f(2, 6, 1)}, {"ax": _i(1)}, 20),
    # bit operations (graphc's bitwise primitives)
    "bitwise_and_or_xor_not": (
        [N("BitwiseAnd", ["a", "b"], ["x"]), N("BitwiseOr", ["a", "b"], ["o"]),
         N("BitwiseXor", ["a", "b"], ["y"]), N("BitwiseNot", ["a"], ["n"])],
        {"a": R.integers(-128, 128, (3, 4)).astype(np.int8),
         "b": R.integers(-128, 128, (4,)).astype(np.int8)}, {}, 18,
        [("x", I8), ("o", I8), ("y", I8), ("n", I8)]),
    "bitshift_left_right": (
        [N("BitShift", ["a", "b"], ["l"], direction="LEFT"),
         N("BitShift", ["a", "b"], ["r"], direction="RIGHT")],
        {"a": R.integers(0, 2**32, (3, 4), dtype=np.uint32),
         "b": R.integers(0, 32, (3, 4), dtype=np.uint32)}, {}, 18, [("l", U32), ("r", U32)]),
    # quantization (composites)
    "quantize_per_axis_uint8_dequantize": (
        [N("QuantizeLinear", ["x", "s", "z"], ["q"], axis=1),
         N("DequantizeLinear", ["q", "s", "z"], ["y"], axis=1)],
        {"x": _f(2, 3, 4, lo=-3, hi=3)},
        {"s": np.array([0.02, 0.05, 0.01], np.float32), "z": np.array([128, 0, 7], np.uint8)},
        18, [("q", U8), "y"]),
    "quantize_int8_rounds_half_to_even": (
        [N("QuantizeLinear", ["x", "s", "z"], ["y"])],
        {"x": np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 300, -300], np.float32)},
        {"s": np.array(1.0, np.float32), "z": np.array(1, np.int8)}, 18, [("y", I8)]),
    "dequantize_blocked": (
        [N("DequantizeLinear", ["x", "s", "z"], ["y"], axis=1, block_size=2)],
        {"x": R.integers(-128, 128, (2, 4)).astype(np.int8)},
        {"s": _f(2, 2, lo=0.1, hi=1), "z": R.integers(-5, 5, (2, 2)).astype(np.int8)}, 21),
    "dynamic_quantize": ([N("DynamicQuantizeLinear", ["x"], ["y", "s", "z"])],
                         {"x": _f(3, 5, lo=-1, hi=4)}, {}, 18, [("y", U8), "s", ("z", U8)]),
    "matmul_integer": ([N("MatMulInteger", ["a", "b", "za", "zb"], ["y"])],
                       {"a": R.integers(0, 256, (3, 4)).astype(np.uint8),
                        "b": R.integers(0, 256, (4, 2)).astype(np.uint8)},
                       {"za": np.array(12, np.uint8), "zb": np.array(200, np.uint8)}, 18,
                       [("y", I32)]),
    "qlinear_matmul": (
        [N("QLinearMatMul", ["a", "sa", "za", "b", "sb", "zb", "sy", "zy"], ["y"])],
        {"a": R.integers(0, 256, (2, 4)).astype(np.uint8),
         "b": R.integers(0, 256, (4, 3)).astype(np.uint8)},
        {"sa": np.array(0.05, np.float32), "za": np.array(113, np.uint8),
         "sb": np.array(0.004, np.float32), "zb": np.array(114, np.uint8),
         "sy": np.array(0.3, np.float32), "zy": np.array(118, np.uint8)}, 18, [("y", U8)]),
    "qlinear_conv_per_channel": (
        [N("QLinearConv", ["x", "sx", "zx", "w", "sw", "zw", "sy", "zy", "b"], ["y"],
           pads=[1, 1, 1, 1])],
        {"x": R.integers(0, 256, (1, 2, 4, 4)).astype(np.uint8)},
        {"sx": np.array(0.02, np.float32), "zx": np.array(100, np.uint8),
         "w": R.integers(-128, 128, (3, 2, 3, 3)).astype(np.int8),
         "sw": np.array([0.01, 0.02, 0.005], np.float32), "zw": np.zeros(3, np.int8),
         "sy": np.array(0.5, np.float32), "zy": np.array(120, np.uint8),
         "b": np.array([100, -50, 7], np.int32)}, 18, [("y", U8)]),
    "conv_integer": ([N("ConvInteger", ["x", "w", "zx"], ["y"])],
                     {"x": R.integers(0, 256, (1, 1, 4, 4)).astype(np.uint8)},
                     {"w": R.integers(0, 256, (2, 1, 2, 2)).astype(np.uint8),
                      "zx": np.array(50, np.uint8)}, 18, [("y", I32)]),
    "gather_nd_batch_dims": ([N("GatherND", ["x", "i"], ["y"], batch_dims=1)],
                             {"x": _f(2, 3, 4)}, {"i": _i([[[1], [0]], [[2], [2]]])}, 18),
    "maxpool_column_major_indices_and_uint8": (
        [N("MaxPool", ["x"], ["y", "i"], kernel_shape=[2, 2], strides=[1, 2], storage_order=1),
         N("MaxPool", ["u"], ["v"], kernel_shape=[2, 2], pads=[1, 1, 0, 0])],
        {"x": _f(1, 2, 4, 5), "u": R.integers(0, 256, (1, 1, 3, 4)).astype(np.uint8)}, {}, 18,
        ["y", ("i", I64), ("v", U8)]),
    "stft_window_and_mel_weights": (
        [N("STFT", ["x", "step", "w"], ["y"]),
         N("MelWeightMatrix", ["bins", "dft", "rate", "lo", "hi"], ["mel"])],
        {"x": _f(2, 32, 1)},
        {"step": np.array(4, np.int64), "w": _f(8, lo=0, hi=1), "bins": np.array(6, np.int32),
         "dft": np.array(16, np.int32), "rate": np.array(8000, np.int32),
         "lo": np.array(100, np.float32), "hi": np.array(3000, np.float32)}, 17, ["y", "mel"]),
    "mod_float16": ([N("Mod", ["a", "b"], ["y"], fmod=1)],
                    {"a": _f(3, 4, lo=-9, hi=9).astype(np.float16),
                     "b": _f(3, 4, lo=0.5, hi=3).astype(np.float16)}, {}, 18, [("y", F16)]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_composite_agrees_with_onnxruntime(case):
    nodes, feeds, inits, opset, *outs = CASES[case]
    outs = outs[0] if outs else ["y"]
    outs = [o if isinstance(o, tuple) else (o, F32) for o in outs]
    _check(_model(nodes, feeds, outs, inits, opset), feeds, rtol=1e-4, atol=1e-5)


def test_imported_composites_are_differentiable():
    # gradients flow through the composites (rounding steps have zero gradient)
    nodes = [N("Sin", ["x"], ["s"]), N("Resize", ["s", "", "sc"], ["r"], mode="linear"),
             N("ReduceSum", ["r"], ["y"], keepdims=0)]
    m = _model(nodes, {"x": _f(1, 1, 3, 3)}, [("y", F32)],
               {"sc": np.array([1, 1, 2, 2], np.float32)})
    g = import_onnx(m)
    x = _f(1, 1, 3, 3).astype(np.float32)
    grads = gc.compile(gc.grad(g, wrt=[g.inputs[0].name])).run({"x": x})
    gx = [v for k, v in grads.items() if k != "y"][0]
    eps = 1e-3
    num = np.zeros_like(x, np.float64)
    exe = gc.compile(g)
    for i in np.ndindex(x.shape):
        xp, xm = x.astype(np.float64).copy(), x.astype(np.float64).copy()
        xp[i] += eps
        xm[i] -= eps
        num[i] = (exe.run({"x": xp.astype(np.float32)})["y"] -
                  exe.run({"x": xm.astype(np.float32)})["y"]) / (2 * eps)
    np.testing.assert_allclose(gx, num, rtol=2e-2, atol=2e-3)


def test_bitwise_op_on_floats_is_refused_naming_the_node():
    m = _model([N("BitwiseAnd", ["a", "b"], ["y"], name="mask")],
               {"a": _f(3), "b": _f(3)}, [("y", F32)])
    with pytest.raises(gc.OnnxImportError, match="BitwiseAnd 'mask'.*integer dtype, got float32"):
        import_onnx(m)


def test_quantize_with_a_scale_of_the_wrong_length_is_refused():
    m = _model([N("QuantizeLinear", ["x", "s"], ["y"], axis=1)], {"x": _f(2, 3)},
               [("y", U8)], {"s": np.array([0.1, 0.2], np.float32)})
    with pytest.raises(gc.OnnxImportError, match=r"the scale has shape \(2,\); per-axis "
                                                  r"quantization along axis 1 needs \(3,\)"):
        import_onnx(m)


def _agrees_with_onnx_reference(model, feeds, rtol=1e-4, atol=1e-5):
    """onnx's reference evaluator (onnxruntime 1.31 has no kernels for the opset-27 ops)."""
    from onnx.reference import ReferenceEvaluator
    want = ReferenceEvaluator(model).run(None, feeds)
    got = gc.compile(import_onnx(model)).run(feeds)
    for (k, a), b in zip(got.items(), want):
        assert a.shape == b.shape and a.dtype == b.dtype, k
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=k)


def test_linear_attention_gated_delta_gqa_with_past_state():
    feeds = {"q": _f(2, 3, 4 * 4), "k": _f(2, 3, 2 * 4), "v": _f(2, 3, 2 * 5),
             "s": _f(2, 2, 4, 5), "g": _f(2, 3, 2 * 4, lo=-1, hi=0), "b": _f(2, 3, 2, lo=0, hi=1)}
    m = _model([N("LinearAttention", ["q", "k", "v", "s", "g", "b"], ["y", "st"],
                  q_num_heads=4, kv_num_heads=2, update_rule="gated_delta", scale=0.7)],
               feeds, [("y", F32), ("st", F32)], opset=27)
    _agrees_with_onnx_reference(m, feeds)


def test_causal_conv_with_state_silu_bias_past_state():
    feeds = {"x": _f(2, 3, 5), "w": _f(3, 1, 3), "b": _f(3), "p": _f(2, 3, 2)}
    m = _model([N("CausalConvWithState", ["x", "w", "b", "p"], ["y", "st"], activation="silu")],
               feeds, [("y", F32), ("st", F32)], opset=27)
    _agrees_with_onnx_reference(m, feeds)


def test_flex_attention_gqa_with_a_score_mod_subgraph():
    from onnx import helper
    body = helper.make_graph(
        [N("Tanh", ["s"], ["t"]), N("Mul", ["t", "c"], ["o"])], "soft_cap",
        [helper.make_tensor_value_info("s", F32, None)],
        [helper.make_tensor_value_info("o", F32, None)],
        [helper.make_tensor("c", F32, [], [5.0])])
    feeds = {"q": _f(1, 4, 3, 8), "k": _f(1, 2, 5, 8), "v": _f(1, 2, 5, 6)}
    node = N("FlexAttention", ["q", "k", "v"], ["y"], domain="ai.onnx.preview", score_mod=body)
    m = _model([node], feeds, [("y", F32)], opset=26)
    m.opset_import.append(helper.make_opsetid("ai.onnx.preview", 1))
    _agrees_with_onnx_reference(m, feeds)


@pytest.mark.parametrize("step", [0, 3])
def test_preview_training_optimizers_match_onnx_reference(step):
    from onnx import helper
    feeds = {"r": np.array(0.1, np.float32), "t": np.array(step, np.int64), "x1": _f(3),
             "x2": _f(2, 2), "g1": _f(3), "g2": _f(2, 2), "v1": _f(3), "v2": _f(2, 2),
             "h1": _f(3, lo=0.1, hi=1)}
    dom = "ai.onnx.preview.training"
    nodes = [N("Momentum", ["r", "t", "x1", "x2", "g1", "g2", "v1", "v2"],
               ["mx1", "mx2", "mv1", "mv2"], domain=dom, alpha=0.9, beta=0.5, mode="nesterov",
               norm_coefficient=0.01),
             N("Adagrad", ["r", "t", "x1", "g1", "h1"], ["ax", "ah"], domain=dom,
               decay_factor=0.1, epsilon=1e-6, norm_coefficient=0.02)]
    outs = [(o, F32) for o in ("mx1", "mx2", "mv1", "mv2", "ax", "ah")]
    m = _model(nodes, feeds, outs, opset=18)
    m.opset_import.append(helper.make_opsetid(dom, 1))
    _agrees_with_onnx_reference(m, feeds)
