"""Forward checks of every primitive in the op table: infer, numpy, onnxruntime, onnx reference."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx.reference import ReferenceEvaluator

import graphc as gc
from graphc.ir.types import eval_dim
from graphc.ops import OPS
from graphc.runtime.executable import bind_feeds
from ops.op_db import OP_DB, OpInfo, Sample, sample_id, single_op_graph


def _cases(symbolic_only: bool = False):
    out = []
    for info in OP_DB:
        for dtype in info.dtypes:
            for k, s in enumerate(info.get_samples(dtype)):
                if symbolic_only and s.symbolic is None:
                    continue
                out.append(pytest.param(info, dtype, s, id=f"{info.name}-{dtype}-{sample_id(s, k)}"))
    return out


CASES = _cases()
SYM_CASES = _cases(symbolic_only=True)


def _skip(info: OpInfo, check: str, dtype: str, sample: Sample) -> None:
    reason = info.skip_reason(check, dtype, sample)
    if reason:
        pytest.skip(reason)


def _ref(info: OpInfo, sample: Sample) -> np.ndarray:
    return np.asarray(info.op.ref(*sample.inputs, **sample.attrs))


def _assert_matches(got, want: np.ndarray, info: OpInfo, check: str, dtype: str) -> None:
    """Same dtype and shape as the reference, values within the row's tolerance (exact for ints)."""
    got = np.asarray(got)
    assert got.dtype == want.dtype, f"{check}: dtype {got.dtype}, reference {want.dtype}"
    assert got.shape == want.shape, f"{check}: shape {got.shape}, reference {want.shape}"
    if want.dtype.kind not in "fciub":  # ml_dtypes' float8 / 4-bit: exact, NaN equal to NaN
        np.testing.assert_array_equal(got.astype(np.float32), want.astype(np.float32),
                                      err_msg=check)
    elif want.dtype.kind in "fc":
        rtol, atol = info.tolerance(check, dtype)
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=check)
    else:
        np.testing.assert_array_equal(got, want, err_msg=check)


# ---- the table itself ---------------------------------------------------------------------------

def test_every_primitive_has_a_row():
    names = [info.name for info in OP_DB]
    missing = sorted(set(OPS) - set(names))
    assert not missing, f"primitives without a row in tests/ops/op_db.py: {missing}"
    unknown = sorted(set(names) - set(OPS))
    assert not unknown, f"rows for primitives that are not registered: {unknown}"
    dups = sorted({n for n in names if names.count(n) > 1})
    assert not dups, f"primitives with more than one row: {dups}"


@pytest.mark.parametrize("info", OP_DB, ids=lambda i: i.name)
def test_row_is_well_formed(info):
    assert info.dtypes and set(info.dtypes) <= set(gc.ir.DTYPES)
    for dtype in info.dtypes:
        samples = info.get_samples(dtype)
        assert samples, f"{info.name}: no samples for {dtype}"
        arity = info.op.arity
        for s in samples:
            assert arity is None or len(s.inputs) == arity
            assert all(isinstance(a, np.ndarray) for a in s.inputs)
            if s.symbolic is not None:
                assert len(s.symbolic) == len(s.inputs)
                assert any(isinstance(d, str) for shp in s.symbolic for d in shp), \
                    "symbolic shapes without a symbol"
        # drawing is deterministic, so a failure reproduces
        again = info.get_samples(dtype)
        for a, b in zip(samples, again):
            for x, y in zip(a.inputs, b.inputs):
                np.testing.assert_array_equal(x, y)
    for key, reason in info.skips.items():
        assert isinstance(reason, str) and len(reason) > 10, f"skip {key!r} needs a reason"


def test_single_op_graph_can_hold_differentiable_inputs_as_params():
    info = next(i for i in OP_DB if i.name == "where")
    s = info.get_samples("float64")[0]
    g, feeds = single_op_graph(info, s, "float64", params=True)
    assert [p.name for p in g.params] == ["x1", "x2"] and list(feeds) == ["x0"]
    np.testing.assert_array_equal(gc.compile(g)(**feeds)["y"], _ref(info, s))


# ---- per sample ---------------------------------------------------------------------------------

@pytest.mark.parametrize("info,dtype,sample", CASES)
def test_infer_matches_ref(info, dtype, sample):
    """The inferred type is the reference output's shape and dtype; the numpy backend agrees."""
    _skip(info, "infer", dtype, sample)
    g, feeds = single_op_graph(info, sample, dtype)
    gc.verify(g)
    want = _ref(info, sample)
    t = g.outputs["y"].type
    assert tuple(t.shape) == want.shape, f"infer gives {t}, ref returns shape {want.shape}"
    assert t.dtype == want.dtype.name, f"infer gives {t}, ref returns dtype {want.dtype}"
    got = gc.compile(g, "numpy")(**feeds)["y"]
    _assert_matches(got, want, info, "numpy", dtype)


@pytest.mark.parametrize("info,dtype,sample", CASES)
def test_onnxruntime_matches_ref(info, dtype, sample):
    _skip(info, "onnxruntime", dtype, sample)
    g, feeds = single_op_graph(info, sample, dtype)
    got = gc.compile(g, "onnxruntime")(**feeds)["y"]
    _assert_matches(got, _ref(info, sample), info, "onnxruntime", dtype)


# onnx.reference evaluates Mul before Where, so safe_mul's 0 * inf warns there (harmlessly)
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("info,dtype,sample", CASES)
def test_onnx_reference_matches_ref(info, dtype, sample):
    """onnx's own ReferenceEvaluator runs the exported single-op model like `ref`."""
    _skip(info, "onnx_reference", dtype, sample)
    g, feeds = single_op_graph(info, sample, dtype)
    (got,) = ReferenceEvaluator(gc.to_onnx(g)).run(None, feeds)
    _assert_matches(got, _ref(info, sample), info, "onnx_reference", dtype)


@pytest.mark.parametrize("info,dtype,sample", CASES)
def test_exported_model_passes_full_check(info, dtype, sample, tmp_path):
    _skip(info, "onnx_checker", dtype, sample)
    g, _ = single_op_graph(info, sample, dtype)
    path = tmp_path / "op.onnx"
    gc.export_onnx(g, path)
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert {n.domain for n in model.graph.node} <= {"", "ai.onnx"}, "non-standard op domain"
    assert [i.name for i in model.graph.input] == [v.name for v in g.inputs]
    assert [o.name for o in model.graph.output] == ["y"]


@pytest.mark.parametrize("info,dtype,sample", SYM_CASES)
def test_symbolic_dims(info, dtype, sample):
    """Inputs declared with symbolic dims: the inferred type, once bound, is the ref's shape, the
    exported model keeps named dims, and numpy and onnxruntime run it."""
    _skip(info, "symbolic", dtype, sample)
    g, feeds = single_op_graph(info, sample, dtype, symbolic=True)
    gc.verify(g)
    want = _ref(info, sample)
    _, bindings = bind_feeds(g, feeds)
    t = g.outputs["y"].type
    assert tuple(eval_dim(d, bindings) for d in t.shape) == want.shape, (t, bindings, want.shape)
    assert t.dtype == want.dtype.name
    model = gc.to_onnx(g)
    for vi, v in zip(model.graph.input, g.inputs):
        dims = vi.type.tensor_type.shape.dim
        assert [d.dim_param or d.dim_value for d in dims] == list(v.type.shape)
    _assert_matches(gc.compile(g, "numpy")(**feeds)["y"], want, info, "numpy", dtype)
    if not info.skip_reason("onnxruntime", dtype, sample):
        got = gc.compile(g, "onnxruntime")(**feeds)["y"]
        _assert_matches(got, want, info, "onnxruntime", dtype)


# ---- infer rejects bad input, naming the op and the shapes --------------------------------------

BAD = [
    ("matmul", [((3, 4), "float32"), ((5, 6), "float32")], {}, "inner dimensions 4 and 5"),
    ("matmul", [((3, 4), "float32"), ((4, 5), "float64")], {}, "dtypes"),
    ("add", [((3, 4), "float32"), ((5,), "float32")], {}, "(3, 4) and (5)"),
    ("add", [(("N", 4), "float32"), (("M", 4), "float32")], {}, "cannot broadcast"),
    ("log", [((3,), "int64")], {}, "float32 or float64"),
    ("where", [((3,), "float32"), ((3,), "float32"), ((3,), "float32")], {}, "must be bool"),
    ("reshape", [((3, 4), "float32")], {"shape": (5, 2)}, "cannot reshape"),
    ("transpose", [((3, 4), "float32")], {"axes": (0, 0)}, "not a permutation"),
    ("expand", [((3, 2), "float32")], {"shape": (3, 4)}, "cannot expand"),
    ("concat", [((2, 3), "float32"), ((2, 4), "float32")], {"axis": 0}, "do not match"),
    ("gather", [((5, 3), "float32"), ((2,), "float32")], {"axis": 0}, "indices must be int"),
    ("conv2d", [((1, 3, 8, 8), "float32"), ((4, 2, 3, 3), "float32")],
     {"stride": (1, 1), "padding": (0, 0), "dilation": (1, 1), "groups": 1}, "channels"),
    ("max_pool2d", [((1, 1, 2, 2), "float32")],
     {"kernel_size": (3, 3), "stride": (1, 1), "padding": (0, 0)}, "too small"),
    ("sum", [((3, 4), "float32")], {"axes": (2,)}, "out of range"),
    ("random_uniform", [((), "int32"), ((), "int64")], {"shape": (3,)}, "int64 scalar"),
    ("pad", [((3, 4), "float32")], {"pads": ((1, 1),)}, "pairs"),
    ("slice", [((3, 4), "float32")], {"starts": (0,), "ends": (2,), "axes": (0,), "steps": (0,)},
     "step cannot be zero"),
]


@pytest.mark.parametrize("op,types,attrs,text", BAD, ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD)])
def test_infer_rejects_bad_input(op, types, attrs, text):
    with gc.Graph("bad") as g:
        xs = [g.input(f"x{i}", shape, dt) for i, (shape, dt) in enumerate(types)]
        with pytest.raises(gc.GraphBuildError) as info:
            gc.apply(op, xs, attrs)
    msg = str(info.value)
    assert f"{op}:" in msg and text in msg, msg
    assert "test_ops_forward.py:" in msg, f"no user file:line in {msg!r}"


# ---- the skips are real: the named kernel is still missing --------------------------------------

ORT_SKIPS = [pytest.param(info, key.split("/")[1], id=f"{info.name}-{key.split('/')[1]}")
             for info in OP_DB for key, reason in info.skips.items()
             if key.startswith("onnxruntime/") and "has no" in reason]


@pytest.mark.parametrize("info,dtype", ORT_SKIPS)
def test_onnxruntime_skip_is_still_needed(info, dtype):
    """A skip claims onnxruntime lacks a kernel; when a new onnxruntime adds it, this fails so the
    skip gets removed and the check runs."""
    import onnxruntime as ort
    s = info.get_samples(dtype)[0]
    g, feeds = single_op_graph(info, s, dtype)
    # straight to onnxruntime: gc.compile refuses the node itself (op.onnxruntime_cpu_missing)
    with pytest.raises(Exception, match="NOT_IMPLEMENTED|Could not find an implementation"):
        ort.InferenceSession(gc.to_onnx(g).SerializeToString(),
                             providers=["CPUExecutionProvider"]).run(None, feeds)


# ---- ref kernels against independent definitions ------------------------------------------------

def _conv2d_loops(x, w, stride, padding, dilation, groups):
    """Direct nested-loop convolution: the textbook definition, independent of conv2d.ref."""
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2))
    oh = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (wd + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    y = np.zeros((n, o, oh, ow))
    og = o // groups
    for b in range(n):
        for oc in range(o):
            g = oc // og
            for i in range(oh):
                for j in range(ow):
                    acc = 0.0
                    for ci in range(cg):
                        for p in range(kh):
                            for q in range(kw):
                                acc += (xp[b, g * cg + ci, i * stride[0] + p * dilation[0],
                                           j * stride[1] + q * dilation[1]] * w[oc, ci, p, q])
                    y[b, oc, i, j] = acc
    return y


CONV_CONFIGS = [((1, 1), (0, 0), (1, 1), 1), ((2, 1), (1, 2), (2, 1), 1), ((1, 2), (1, 0), (1, 1), 2)]


@pytest.mark.parametrize("stride,padding,dilation,groups", CONV_CONFIGS)
def test_conv2d_ref_matches_direct_loops(stride, padding, dilation, groups, rng):
    x = rng.standard_normal((2, 4, 7, 6))
    w = rng.standard_normal((6, 4 // groups, 3, 2))
    got = OPS["conv2d"].ref(x, w, stride=stride, padding=padding, dilation=dilation, groups=groups)
    np.testing.assert_allclose(got, _conv2d_loops(x, w, stride, padding, dilation, groups),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("stride,padding,dilation,groups", CONV_CONFIGS)
def test_conv_transpose2d_ref_is_the_adjoint_of_conv2d(stride, padding, dilation, groups, rng):
    """<conv2d(y, w), x> == <y, conv_transpose2d(x, w)> for every y, x: the definition."""
    w = rng.standard_normal((6, 4 // groups, 3, 2))
    y = rng.standard_normal((2, 4, 7, 6))
    cy = OPS["conv2d"].ref(y, w, stride=stride, padding=padding, dilation=dilation, groups=groups)
    x = rng.standard_normal(cy.shape)
    # output_padding restores the rows/cols that conv2d's floor division dropped
    op = tuple((y.shape[2 + i] + 2 * padding[i] - dilation[i] * (w.shape[2 + i] - 1) - 1) % stride[i]
               for i in range(2))
    ct = OPS["conv_transpose2d"].ref(x, w, stride=stride, padding=padding, output_padding=op,
                                     dilation=dilation, groups=groups)
    assert ct.shape == y.shape
    np.testing.assert_allclose(np.sum(cy * x), np.sum(y * ct), rtol=1e-10)


def test_pool_refs_match_direct_loops(rng):
    x = rng.standard_normal((1, 2, 5, 4))
    k, s, p = (3, 2), (2, 1), (1, 1)
    mx = OPS["max_pool2d"].ref(x, kernel_size=k, stride=s, padding=p)
    av_in = OPS["avg_pool2d"].ref(x, kernel_size=k, stride=s, padding=p, count_include_pad=True)
    av_ex = OPS["avg_pool2d"].ref(x, kernel_size=k, stride=s, padding=p, count_include_pad=False)
    for c in range(2):
        for i in range(mx.shape[2]):
            for j in range(mx.shape[3]):
                rows = range(i * s[0] - p[0], i * s[0] - p[0] + k[0])
                cols = range(j * s[1] - p[1], j * s[1] - p[1] + k[1])
                vals = [x[0, c, r, q] for r in rows for q in cols if 0 <= r < 5 and 0 <= q < 4]
                assert mx[0, c, i, j] == max(vals)
                np.testing.assert_allclose(av_in[0, c, i, j], sum(vals) / (k[0] * k[1]))
                np.testing.assert_allclose(av_ex[0, c, i, j], sum(vals) / len(vals))
