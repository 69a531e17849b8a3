"""The pass pipeline: order, verify after each pass, reports, GRAPHC_DUMP, and what passes keep."""
import numpy as np
import pytest

import graphc as gc
from graphc.ir.errors import GraphcError, VerifyError
from graphc.ir.types import TensorType
from graphc.passes import DEFAULT_PIPELINE, PASSES, Pipeline, get_pass, register_pass, run_passes
from graphc.passes.pipeline import simplify
from graphc.passes.rewrite import copy_node, new_frame, set_outputs


def _graph():
    """A small graph with something for every default pass to do."""
    with gc.Graph("pipe") as g:
        x = g.input("x", ("N", 3))
        w = g.param("w", init=np.arange(12, dtype=np.float32).reshape(3, 4) / 10)
        with g.origin("grad of matmul @ model.py:7"):
            a = (x * 1.0) @ w                        # x * 1 -> x
        b = x @ w                                    # the same matmul again: CSE
        two = gc.constant(np.float32(2.0)) * 3.0    # folds to 6
        _dead = gc.exp(a)                            # nobody uses it: DCE
        g.output(loss=gc.sum(a + b) * two, h=a)
    return g


def _run(g, feeds):
    return gc.compile(g, "numpy")(**feeds)


def test_default_pipeline_order_and_report():
    g = _graph()
    out, report = run_passes(g, DEFAULT_PIPELINE)
    assert [r.name for r in report.records] == list(DEFAULT_PIPELINE)
    assert report.nodes_in == len(g.nodes) and report.nodes_out == len(out.nodes)
    assert report.records[0].nodes_before == len(g.nodes)
    for prev, nxt in zip(report.records, report.records[1:]):
        assert prev.nodes_after == nxt.nodes_before
    assert all(r.seconds >= 0 for r in report.records)
    text = str(report)
    for name in DEFAULT_PIPELINE:
        assert name in text
    assert f"{report.nodes_in} -> {report.nodes_out} nodes" in text
    assert len(out.nodes) < len(g.nodes)


def test_simplify_keeps_outputs_params_and_values(rng):
    g = _graph()
    before_text = str(g)
    out = simplify(g)
    assert str(g) == before_text, "the input graph must not change"
    assert list(out.outputs) == list(g.outputs)
    assert [p.name for p in out.params] == [p.name for p in g.params]
    assert all(p2.data is p1.data for p1, p2 in zip(g.params, out.params))
    assert [v.name for v in out.inputs] == [v.name for v in g.inputs]
    feeds = {"x": rng.standard_normal((5, 3)).astype(np.float32)}
    want, got = _run(g, feeds), _run(out, feeds)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])
    ops = [n.op.name for n in out.nodes]
    assert ops.count("matmul") == 1 and "exp" not in ops and "mul" in ops
    assert sum(1 for n in out.nodes if n.op.name == "constant") == 1


def test_provenance_survives():
    g = _graph()
    out = simplify(g)
    mm = next(n for n in out.nodes if n.op.name == "matmul")
    assert mm.origin == "grad of matmul @ model.py:7"
    assert "test_pipeline.py:" in mm.source
    folded = next(n for n in out.nodes if n.op.name == "constant")
    assert "test_pipeline.py" in folded.source
    assert "grad of matmul @ model.py:7" in str(out)


def test_fixed_point_reached():
    g = _graph()
    out, report = run_passes(g, DEFAULT_PIPELINE, max_rounds=5)
    assert report.rounds >= 2  # the last round is the one that changed nothing
    last = [r for r in report.records if r.round == report.rounds]
    assert all(r.nodes_before == r.nodes_after for r in last)
    again, rep2 = run_passes(out, DEFAULT_PIPELINE, max_rounds=5)
    assert str(again) == str(out) and rep2.rounds == 1


def _break_types(g):
    """A pass with a bug: it gives the last node a wrong output type."""
    new, vmap = new_frame(g)
    for n in g.nodes:
        vmap[n.output] = copy_node(new, n, [vmap[i] for i in n.inputs])
    new.nodes[-1].output.type = TensorType((7, 7), "float32")
    return set_outputs(new, g, vmap)


def test_verify_runs_after_each_pass():
    g = _graph()
    with pytest.raises(VerifyError) as exc:
        Pipeline(["eliminate_dead_code", _break_types, "fold_constants"]).run(g)
    msg = str(exc.value)
    assert "after pass '_break_types'" in msg and "inference gives" in msg
    # with verification off the broken graph goes through (which is why tests keep it on)
    Pipeline([_break_types], verify=False).run(g)


def test_pass_that_renames_outputs_is_rejected():
    def rename(g):
        new, vmap = new_frame(g)
        for n in g.nodes:
            vmap[n.output] = copy_node(new, n, [vmap[i] for i in n.inputs])
        new.outputs = {"other_" + k: vmap[v] for k, v in g.outputs.items()}
        return new
    with pytest.raises(GraphcError, match="changed the output names"):
        Pipeline([rename]).run(_graph())


def test_registry():
    assert all(callable(get_pass(n)) for n in DEFAULT_PIPELINE)
    assert set(DEFAULT_PIPELINE) <= set(PASSES)
    with pytest.raises(KeyError, match="no pass named 'fold_constant'.*fold_constants"):
        get_pass("fold_constant")
    with pytest.raises(TypeError, match="registered name or a Graph -> Graph function"):
        Pipeline([42])

    @register_pass("test_identity_pass")
    def ident(g):
        return g

    assert get_pass("test_identity_pass") is ident
    out, report = run_passes(_graph(), ["test_identity_pass"])
    assert report.records[0].name == "test_identity_pass"
    with pytest.raises(ValueError, match="already registered"):
        register_pass("test_identity_pass")(lambda g: g)


def test_graphc_dump_writes_each_stage(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHC_DUMP", str(tmp_path))
    g = _graph()
    out, report = run_passes(g, DEFAULT_PIPELINE, max_rounds=1)
    d = tmp_path / "pipe"
    names = sorted(p.name for p in d.iterdir())
    assert names == ["00_input.txt", "01_fold_constants.txt", "02_simplify_algebra.txt",
                     "03_eliminate_common_subexpressions.txt", "04_eliminate_dead_code.txt",
                     "report.txt"]
    assert (d / "00_input.txt").read_text().strip() == str(g)
    assert (d / "04_eliminate_dead_code.txt").read_text().strip() == str(out)
    assert "exp(" in (d / "03_eliminate_common_subexpressions.txt").read_text()
    assert "eliminate_dead_code" in (d / "report.txt").read_text()
    assert report.dump_dir == str(d) and str(d) in str(report)


def test_no_dump_without_env(tmp_path, monkeypatch):
    monkeypatch.delenv("GRAPHC_DUMP", raising=False)
    monkeypatch.chdir(tmp_path)
    _, report = run_passes(_graph(), DEFAULT_PIPELINE)
    assert report.dump_dir is None and list(tmp_path.iterdir()) == []


def test_explicit_dump_argument(tmp_path, monkeypatch):
    monkeypatch.delenv("GRAPHC_DUMP", raising=False)
    simplify(_graph(), dump=tmp_path, max_rounds=2)
    files = sorted(p.name for p in (tmp_path / "pipe").iterdir())
    assert files[0] == "00_input.txt" and "05_fold_constants.txt" in files


def test_gc_simplify_is_exported():
    assert gc.simplify is simplify
    assert isinstance(gc.Pipeline(), Pipeline)


# ---- gradient graphs: what gc.grad hands to the pipeline ----------------------------------------------

SMALL_MODELS = {
    "mlp": lambda: gc.models.mlp(sizes=(12, 8, 8, 4), dtype="float64"),
    "lenet5": lambda: gc.models.lenet5(dtype="float64"),
    "lstm": lambda: gc.models.lstm(steps=3, input=4, hidden=5, classes=3, dtype="float64"),
    "gru": lambda: gc.models.gru(steps=3, input=4, hidden=5, classes=3, dtype="float64"),
    "transformer": lambda: gc.models.transformer_encoder(seq=4, d_model=8, heads=2, ffn=8, classes=3,
                                                         dtype="float64"),
}


@pytest.mark.parametrize("name", list(SMALL_MODELS))
def test_pipeline_on_gradient_graphs(name):
    g = SMALL_MODELS[name]()
    raw = gc.grad(g, simplify=False)
    opt, report = simplify(raw, return_report=True, max_rounds=4)
    assert report.nodes_out < report.nodes_in
    assert all(r.nodes_before == r.nodes_after for r in report.records if r.round == report.rounds)
    assert list(opt.outputs) == list(raw.outputs)
    feeds = gc.models.example_feeds(g, batch=2, seed=1)
    want, got = _run(raw, feeds), _run(opt, feeds)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-12, atol=1e-14, err_msg=k)
    # every surviving backward node still says which forward op it came from
    assert all(n.origin for n in opt.nodes if n.output.name.startswith("d_"))


@pytest.mark.parametrize("name", ["mlp", "lenet5"])
def test_gradient_graph_is_at_most_3x_forward(name):
    g = SMALL_MODELS[name]()
    assert len(gc.grad(g).nodes) <= 3 * len(g.nodes)


def test_simplified_graphs_run_on_onnxruntime():
    # outputs that became an input, a shared value or a folded literal still export by name
    with gc.Graph("export") as g:
        x = g.input("x", ("N", 3))
        g.output(a=x * 1.0, b=gc.exp(x), c=gc.exp(x), d=gc.constant(np.float32(2.0)) * 3.0)
    s = simplify(g)
    assert len(s.nodes) == 2
    feeds = {"x": np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3)}
    want, got = _run(g, feeds), gc.compile(s, "onnxruntime")(**feeds)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-6)
    dg = gc.grad(SMALL_MODELS["mlp"]())
    feeds = gc.models.example_feeds(dg, batch=3, seed=2)
    want, got = _run(dg, feeds), gc.compile(dg, "onnxruntime")(**feeds)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-9, atol=1e-12, err_msg=k)
