"""Differential property tests: random graphs, forward and gradient, on every backend.

`tests/differential/graph_gen.py` draws random programs (elementwise ops, broadcasting,
reductions with axes and keepdims, matmul, reshape/transpose/expand, where, softmax, concat,
slice, gather, pad, conv2d/conv_transpose2d/max_pool2d/avg_pool2d with random attributes,
symbolic dims bound to 0..3, empty dims); `check.run_program` runs each one's loss and
`gc.grad` graph on numpy (float32), onnxruntime and onnx.reference against the same graph built
in float64 on numpy, the graph the training step's fusion pipelines make of it on numpy and
onnxruntime, and TVM on a few (marked slow).

CI runs a fixed, derandomized budget (`CI_EXAMPLES` graphs, one to two minutes on 2 cores). The long
run draws fresh graphs from a random seed, printed in the summary so the run can be replayed:

    GRAPHC_DIFF_EXAMPLES=2000 .venv/bin/python -m pytest -q tests/differential -p no:randomly
    GRAPHC_DIFF_EXAMPLES=2000 GRAPHC_DIFF_SEED=<seed> ...   # replay that run
    GRAPHC_DIFF_TVM_EXAMPLES=20 ...                        # more graphs on TVM

A failure prints the program as Python (`Program.source()`: paste it to replay the one graph),
hypothesis's falsifying example and its `@reproduce_failure` blob.
"""
from __future__ import annotations

import os
import random
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, seed, settings

import graphc as gc
from differential.check import KNOWN, ONNX_REF_BROKEN, Result, run_program
from differential.graph_gen import GEN_OPS, In, Program, Step, programs
from graphc.ops.shape import INT_MAX

#: graphs per CI run of the main property test (five backend runs each: about 0.1 s on 2 cores)
CI_EXAMPLES = 800
#: graphs per CI run on TVM (each compiles a forward + backward graph: 1 to 3 s)
CI_TVM_EXAMPLES = 6

LONG = int(os.environ.get("GRAPHC_DIFF_EXAMPLES", "0"))
TVM_EXAMPLES = int(os.environ.get("GRAPHC_DIFF_TVM_EXAMPLES", "0")) or CI_TVM_EXAMPLES
RUN_SEED = int(os.environ.get("GRAPHC_DIFF_SEED", "0")) or random.SystemRandom().randrange(2**31)

#: tallies per test name, handed to the summary by conftest.py
DIFF_STATS: dict[str, dict] = {}


def _settings(examples: int):
    return settings(max_examples=examples, deadline=None, database=None, print_blob=True,
                    derandomize=not LONG,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much,
                                           HealthCheck.large_base_example])


def _maybe_seeded(fn):
    """The long run: a random seed, printed in the summary (GRAPHC_DIFF_SEED replays it)."""
    return seed(RUN_SEED)(fn) if LONG else fn


def _tally(test: str) -> dict:
    return DIFF_STATS.setdefault(test, {
        "graphs": 0, "runs": Counter(), "worst": {}, "skipped": [], "known": [], "ops": Counter(),
        "primitives": Counter(), "seconds": 0.0, "mismatches": 0, "steps": 0, "nodes": 0,
        "mode": (f"long run, seed {RUN_SEED} (GRAPHC_DIFF_EXAMPLES={LONG} "
                 f"GRAPHC_DIFF_SEED={RUN_SEED} replays it)") if LONG
        else "CI budget, derandomized"})


def _record(test: str, p: Program, res: Result) -> None:
    t = _tally(test)
    t["graphs"] += 1
    t["steps"] += len(p.steps)
    t["nodes"] += res.nodes
    t["runs"].update(res.runs)
    for k, v in res.worst.items():
        t["worst"][k] = max(t["worst"].get(k, 0.0), v)
    t["skipped"] += [f"{b}: {why}" for b, why in res.skipped.items()]
    t["known"] += [f"{b}: {k.reason}" for b, k in res.known]
    t["ops"].update(p.ops())
    t["primitives"].update(res.primitives)
    t["seconds"] += res.seconds
    t["mismatches"] += len(res.mismatches)


def _check(test: str, p: Program, backends) -> None:
    res = run_program(p, backends)
    _record(test, p, res)
    if res.mismatches:
        raise AssertionError(
            f"{len(res.mismatches)} mismatch(es) against the float64 numpy reference:\n{res}\n\n"
            f"Replay this graph (from tests/, or with tests/ on sys.path):\n{p.source()}")


# ---- the property tests --------------------------------------------------------------------------

@_maybe_seeded
@_settings(LONG or CI_EXAMPLES)
@given(p=programs())
def test_backends_agree_with_float64_numpy(p):
    """numpy (float32), onnxruntime and onnx.reference give the reference's outputs and
    gradients; so do numpy and onnxruntime on the graph the training step's fusion pipelines
    make of it (fused softmax, layer_norm, gemm)."""
    _check("test_backends_agree_with_float64_numpy", p,
           ("numpy", "onnxruntime", "onnx_reference", "numpy:fused", "onnxruntime:fused"))


@pytest.mark.slow
@_maybe_seeded
@_settings(TVM_EXAMPLES)
@given(p=programs(max_steps=4, dtypes=("float32",), static_empty=False))
def test_tvm_agrees_with_float64_numpy(p):
    """TVM (LLVM) gives the reference's outputs and gradients (a few graphs: each compile takes
    seconds)."""
    _check("test_tvm_agrees_with_float64_numpy", p, ("tvm",))


# ---- the generator itself ------------------------------------------------------------------------

def test_every_generator_op_can_be_drawn():
    """Each generator op is reachable: some drawable op builds it (or it is a domain helper)."""
    helpers = {"to_pos"}
    assert {n for n, op in GEN_OPS.items() if op.draw is None} == helpers


@_settings(20)
@given(p=programs())
def test_program_source_replays_the_same_graph(p):
    """A failure's printed source rebuilds the program: same graph text, same feeds."""
    env: dict = {}
    exec(p.source().replace("print(run_program(p))", ""), env)  # noqa: S102 - our own text
    q = env["p"]
    assert str(q.build("float32")[0]) == str(p.build("float32")[0])
    for k, v in p.feeds("float64").items():
        np.testing.assert_array_equal(q.feeds("float64")[k], v)
    # float32 and float64 feeds hold the same numbers
    for k, v in p.feeds("float32").items():
        np.testing.assert_array_equal(v.astype(np.float64) if v.dtype.kind == "f" else v,
                                      p.feeds("float64")[k])


# ---- bugs the differential tests found (each fixed; replayed here) -------------------------------

def _program(inputs, steps, outputs, bindings=None, dtype="float32"):
    return Program(bindings=bindings or {"N": 2, "M": 2}, inputs=inputs, steps=steps,
                   outputs=outputs, seed=1, dtype=dtype)


def _assert_agrees(p: Program):
    res = run_program(p)
    assert not res.mismatches, f"{res}\n{p.source()}"


def test_grad_of_mean_over_an_empty_axis_is_empty_not_zero_division():
    """mean's gradient divided by the reduced count, 0 here: ZeroDivisionError in gc.grad."""
    p = _program([In("x0", (2, 0)), In("w_y0", (2,), "weight")],
                 [Step("mean", ("x0",), {"axes": (1,), "keepdims": False})], ["v0"],
                 dtype="float64")
    _assert_agrees(p)


def test_grad_of_a_batched_matmul_with_an_empty_dim_simplifies():
    """simplify's sum_batched_matmul rule reshaped with -1, which has no value with an empty dim."""
    p = _program([In("x0", (2, "M", 1)), In("x1", (1, 0)), In("x2", (0, 3)),
                  In("w_y0", (2, "M", 3), "weight")],
                 [Step("matmul", ("x0", "x1")), Step("matmul", ("v0", "x2"))], ["v1"],
                 bindings={"N": 0, "M": 3}, dtype="float64")
    _assert_agrees(p)


def test_reshape_to_two_symbolic_dims_bound_to_zero_on_onnx():
    """A Reshape whose symbolic target sizes are 0 at run time copied the input's dims instead
    (ONNX reads 0 as "copy" unless allowzero): onnxruntime raised, onnx.reference too."""
    p = _program([In("x0", ("M", "M"), "pos"), In("w_y0", (1, "N", "M", "M"), "weight")],
                 [Step("expand", ("x0",), {"shape": (1, "N", "M", "M")})], ["v0"],
                 bindings={"N": 0, "M": 0})
    _assert_agrees(p)


def test_slice_with_a_positive_step_to_minus_int_max_is_empty():
    """slice's ref and gradient read end=-INT_MAX as "to the end" for a positive step too: the
    ref returned x[3:] where infer (and ONNX) give an empty slice, and gc.grad raised."""
    p = _program([In("x0", (2, 4, 3)), In("w_y0", (2, 0, 3), "weight")],
                 [Step("slice", ("x0",), {"starts": (3,), "ends": (-INT_MAX,), "axes": (1,),
                                          "steps": (1,)})], ["v0"])
    _assert_agrees(p)


def test_pools_over_zero_channels_run_and_differentiate():
    """avg_pool2d's gradient made a depthwise conv_transpose2d of 0 groups (ZeroDivisionError in
    gc.grad); MaxPool over 0 channels failed in onnxruntime's layout pass ("invalid channel
    count"), and max_pool2d_grad's Reshape to Shape(x) read the 0 as "copy this dim"."""
    pool = {"kernel_size": (3, 3), "stride": (2, 3), "padding": (1, 0)}
    p = _program([In("x0", ("N", 0, 5, 6)), In("x1", (2, 0, 5, 6)),
                  In("w_y0", ("N", 0, 3, 2), "weight"), In("w_y1", (2, 0, 3, 2), "weight")],
                 [Step("max_pool2d", ("x0",), pool),
                  Step("avg_pool2d", ("x1",), dict(pool, count_include_pad=False))],
                 ["v0", "v1"], bindings={"N": 2, "M": 1})
    _assert_agrees(p)


def test_expand_of_size_one_to_a_static_zero_is_empty_on_onnxruntime():
    """onnxruntime's graph optimizations turned Expand((1, 3, 4, 4) -> (0, 3, 4, 4)) into its
    input: shape (1, 3, 4, 4), one silently wrong output; graphc now expands a scalar there."""
    p = _program([In("x0", (4, 4), "pos"), In("w_y0", (0, 3, 4, 4), "weight")],
                 [Step("expand", ("x0",), {"shape": (1, 3, 4, 4)}), Step("tanh", ("v0",)),
                  Step("expand", ("v1",), {"shape": (0, 3, 4, 4)})], ["v2"], dtype="float64")
    _assert_agrees(p)


def test_transposed_matrix_times_vector_on_onnxruntime():
    """onnxruntime 1.32's MatmulTransposeFusion computes MatMul(Transpose(x), v) as x @ v when v
    is 1-D: relu(x.T) @ v's gradient graph gave a wrong forward output, silently. graphc now
    multiplies by v as a column."""
    p = _program([In("x0", (3, 3)), In("x1", (3,)), In("w_y0", (3,), "weight")],
                 [Step("transpose", ("x0",), {"axes": (1, 0)}), Step("relu", ("v0",)),
                  Step("matmul", ("v1", "x1"))], ["v2"])
    _assert_agrees(p)


def test_fused_layer_norm_over_an_empty_axis_runs_on_onnxruntime():
    """The fusion pipeline made a LayerNormalization over an axis of size 0, which onnxruntime
    refuses ("Size of X.shape[axis:] must be at least 1"); x is empty, and so is the result."""
    p = _program([In("x0", (3, 0)), In("w_y0", (3, 0), "weight")],
                 [Step("layer_norm", ("x0",), {"k": 1})], ["v0"])
    res = run_program(p, ("numpy:fused", "onnxruntime:fused"))
    assert not res.mismatches and "layer_norm" in res.primitives, res


# ---- the upstream bugs the harness steps around must still be there ----------------------------

def _onnx_ref_vs_ort(node, x):
    import onnxruntime as ort
    from onnx import TensorProto, helper
    from onnx.reference import ReferenceEvaluator
    outs = [helper.make_tensor_value_info(o, TensorProto.FLOAT if o == "y" else TensorProto.INT64,
                                          None) for o in node.output]
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                      x.shape)], outs)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    m.ir_version = 10
    try:
        ref = ReferenceEvaluator(m).run(None, {"x": x})
    except Exception:  # noqa: BLE001 - raising is one of the ways it is broken
        return False
    got = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"x": x})
    return all(np.array_equal(a, b) for a, b in zip(ref, got))


def test_onnx_reference_max_pool_with_unit_stride_is_still_wrong():
    """If this fails, onnx.reference's MaxPool was fixed: drop its entry in ONNX_REF_BROKEN."""
    from onnx import helper
    x = np.random.default_rng(0).uniform(-2, 2, (2, 2, 5, 6)).astype(np.float32)
    indices = helper.make_node("MaxPool", ["x"], ["y", "i"], kernel_shape=[2, 2], strides=[1, 1])
    padded = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], strides=[1, 1],
                              pads=[0, 1, 0, 1])
    assert not _onnx_ref_vs_ort(indices, x) and not _onnx_ref_vs_ort(padded, x), \
        "onnx.reference's MaxPool now agrees with onnxruntime"
    assert any("MaxPool" in why for _, why in ONNX_REF_BROKEN)


def test_onnx_reference_grouped_conv_transpose_is_still_wrong():
    """If this fails, onnx.reference's grouped ConvTranspose was fixed: drop its entry in
    ONNX_REF_BROKEN."""
    import onnxruntime as ort
    from onnx.reference import ReferenceEvaluator
    with gc.Graph("ct") as g:
        x = g.input("x", (1, 4, 3, 3), "float32")
        w = g.input("w", (4, 1, 2, 2), "float32")
        g.output(y=gc.conv_transpose2d(x, w, groups=2))
    rng = np.random.default_rng(0)
    feeds = {"x": rng.standard_normal((1, 4, 3, 3)).astype(np.float32),
             "w": rng.standard_normal((4, 1, 2, 2)).astype(np.float32)}
    model = gc.to_onnx(g)
    want = ort.InferenceSession(model.SerializeToString(),
                                providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    np.testing.assert_allclose(want, gc.compile(g)(**feeds)["y"], rtol=1e-5, atol=1e-5)
    try:
        got = ReferenceEvaluator(model).run(None, feeds)[0]
        fixed = got.shape == want.shape and np.allclose(got, want, rtol=1e-5, atol=1e-5)
    except Exception:  # noqa: BLE001 - raising is one of the ways it is broken
        fixed = False
    assert not fixed, "onnx.reference's grouped ConvTranspose now agrees with onnxruntime"


@pytest.mark.parametrize("x_shape,w_shape", [((0, 3, 6, 7), (3, 2, 1, 1)),   # empty batch
                                             ((3, 1, 3, 3), (1, 0, 3, 3))])  # no out channels
def test_onnx_reference_conv_transpose_on_empty_tensors_still_raises(x_shape, w_shape):
    """If this fails, onnx.reference's ConvTranspose handles empty tensors: drop that entry in
    ONNX_REF_BROKEN."""
    from onnx.reference import ReferenceEvaluator
    with gc.Graph("ct") as g:
        g.output(y=gc.conv_transpose2d(g.input("x", x_shape, "float32"),
                                       g.input("w", w_shape, "float32")))
    feeds = {"x": np.ones(x_shape, np.float32), "w": np.ones(w_shape, np.float32)}
    assert gc.compile(g, "onnxruntime")(**feeds)["y"].shape == gc.compile(g)(**feeds)["y"].shape
    with pytest.raises(Exception):  # noqa: B017 - any error: it is onnx's bug, not ours
        ReferenceEvaluator(gc.to_onnx(g)).run(None, feeds)


def test_every_known_mismatch_is_pinned():
    """A mismatch the property tests excuse (check.KNOWN) names the test that pins it here."""
    for k in KNOWN:
        pinned = [w for w in k.reason.split() if w.startswith("test_")]
        assert pinned and all(w.strip(".,;") in globals() for w in pinned), k.reason


@pytest.mark.slow
def test_tvm_compiles_graphs_with_static_empty_tensors():
    """TVM compiled no graph holding a tensor with a static size-0 dim: graphc's schedules
    vectorized its zero-extent loops (tirx.VectorizeLoop), and RewriteDataflowReshape took a
    transpose of an empty tensor for a reshape. Such functions are now left unscheduled and
    statically empty results are computed as zeros (tvm_schedule.empty_to_zeros)."""
    for shape, fn, want in [((0, 3), gc.exp, (0, 3)),
                            ((0, 1, 3, 3), lambda x: gc.transpose(x, (1, 0, 2, 3)), (1, 0, 3, 3)),
                            ((0, 4), lambda x: gc.sum(x * 2.0, axis=0), (4,))]:
        with gc.Graph("empty") as g:
            g.output(y=fn(g.input("x", shape, "float32")))
        got = gc.compile(g, "tvm")(x=np.ones(shape, np.float32))["y"]
        assert got.shape == want
        np.testing.assert_array_equal(got, np.zeros(want, np.float32))


@pytest.mark.slow
def test_conv_over_zero_channels_is_zero_on_every_backend():
    """TVM's conv2d and conv2d_transpose left their output unwritten (NaN, 1e28) when the sum
    over input channels is empty; graphc now lowers them to zeros."""
    p = _program([In("x0", (2, 0, 5, 5)), In("x1", (3, 0, 3, 3)), In("x2", (2, 0, 4, 4)),
                  In("x3", (0, 3, 2, 2)), In("w_y0", (2, 3, 3, 3), "weight"),
                  In("w_y1", (2, 3, 5, 5), "weight")],
                 [Step("conv2d", ("x0", "x1"), {"stride": (1, 1), "padding": (0, 0),
                                                 "dilation": (1, 1), "groups": 1}),
                  Step("conv_transpose2d", ("x2", "x3"), {
                      "stride": (1, 1), "padding": (0, 0), "output_padding": (0, 0),
                      "dilation": (1, 1), "groups": 1})], ["v0", "v1"])
    res = run_program(p, ("numpy", "onnxruntime", "onnx_reference"))
    assert not res.mismatches, res
    # on TVM with a symbolic batch
    with gc.Graph("zero_channels") as g:
        x = g.input("x", ("N", 0, 5, 5), "float32")
        w = g.input("w", (8, 0, 3, 3), "float32")
        t = g.input("t", ("N", 0, 4, 4), "float32")
        v = g.input("v", (0, 3, 2, 2), "float32")
        g.output(y=gc.conv2d(x, w), z=gc.conv_transpose2d(t, v))
    feeds = {"x": np.ones((2, 0, 5, 5), np.float32), "w": np.ones((8, 0, 3, 3), np.float32),
             "t": np.ones((2, 0, 4, 4), np.float32), "v": np.ones((0, 3, 2, 2), np.float32)}
    out = gc.compile(g, "tvm")(**feeds)
    np.testing.assert_array_equal(out["y"], np.zeros((2, 8, 3, 3), np.float32))
    np.testing.assert_array_equal(out["z"], np.zeros((2, 3, 5, 5), np.float32))
