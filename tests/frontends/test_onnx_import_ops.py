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
