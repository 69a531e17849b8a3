"""training_step builds the step only through named pipelines: verified, dumped, reported."""
from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc.passes import pipeline as pl


def _loss_graph():
    rng = np.random.default_rng(0)
    with gc.Graph("mlp") as g:
        x = g.input("x", ("N", 5))
        y = g.input("y", ("N",), "int64")
        w1 = g.param("w1", init=rng.standard_normal((5, 8)).astype(np.float32))
        w2 = g.param("w2", init=rng.standard_normal((8, 3)).astype(np.float32))
        g.output(loss=gc.cross_entropy(gc.relu(x @ w1) @ w2, y))
    return g


def test_graphc_dump_writes_every_stage_of_every_pipeline(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHC_DUMP", str(tmp_path))
    step = gc.training_step(_loss_graph(), optimizer=gc.optim.SGD(0.1, momentum=0.9))
    want = {("mlp", "fuse-forward"), ("mlp_grad", "simplify"), ("mlp_train_step", "simplify"),
            ("mlp_train_step", "fold-transposes"), ("mlp_train_step", "fuse-step")}
    got = {(d.parent.name, d.name) for d in tmp_path.glob("*/*") if d.is_dir()}
    assert got == want
    for graph, name in want:
        d = tmp_path / graph / name
        stages = sorted(p.name for p in d.iterdir())
        passes = gc.get_pipeline(name).passes
        assert stages[0] == "00_input.txt" and "report.txt" in stages
        assert all(any(s.endswith(f"_{p}.txt") for s in stages) for p, _ in passes), (name, stages)
    last = sorted((tmp_path / "mlp_train_step" / "fuse-step").glob("0*_*.txt"))[-1]
    assert last.read_text().strip() == str(step)
    assert set(step.spec.reports) == {"fuse-forward", "simplify-gradient", "simplify",
                                      "fold-transposes", "fuse-step"}


def test_report_true_prints_each_pipeline(capsys):
    step = gc.training_step(_loss_graph(), optimizer=gc.optim.Adam(1e-3), report=True)
    out = capsys.readouterr().out
    for name in ("fuse-forward", "simplify", "fold-transposes", "fuse-step"):
        assert f"pipeline {name!r} on graph" in out
    assert "fuse_gemm" in out and "eliminate_dead_code" in out
    assert step.spec.report() in out


def _adds_input(g):
    out, _ = g.clone()
    out.add_input("extra", gc.TensorType((), "float32"))
    return out


def _dangling(g):
    out, _ = g.clone()
    out.outputs = dict(out.outputs)
    first = next(iter(out.outputs))
    out.outputs[first] = gc.Graph("other").add_input("z", out.outputs[first].type)
    return out


@pytest.mark.parametrize("bad, message", [(_adds_input, "added input"),
                                          (_dangling, "invalid")])
def test_a_broken_pass_raises_naming_it(monkeypatch, bad, message):
    pl.register_pass(f"test_broken_{bad.__name__}")(bad)
    try:
        spec = pl.PIPELINES["fuse-step"]
        monkeypatch.setitem(pl.PIPELINES, "fuse-step",
                            pl.PipelineSpec(spec.passes + (f"test_broken_{bad.__name__}",)))
        with pytest.raises(gc.GraphcError, match=f"test_broken_{bad.__name__}.*{message}|"
                                                 f"{message}.*test_broken_{bad.__name__}"):
            gc.training_step(_loss_graph(), optimizer=gc.optim.SGD(0.1))
    finally:
        pl.PASSES.pop(f"test_broken_{bad.__name__}", None)


def test_step_graph_roles_and_program():
    step = gc.training_step(_loss_graph(), optimizer=gc.optim.Adam(1e-3))
    roles = {v.name: v.role for v in step.inputs}
    assert roles == {"x": gc.Role.DATA, "y": gc.Role.DATA, "w1": gc.Role.PARAM, "w2": gc.Role.PARAM,
                     "step": gc.Role.STEP, "lr": gc.Role.LR,
                     "w1.exp_avg": gc.Role.OPTIMIZER_STATE, "w1.exp_avg_sq": gc.Role.OPTIMIZER_STATE,
                     "w2.exp_avg": gc.Role.OPTIMIZER_STATE, "w2.exp_avg_sq": gc.Role.OPTIMIZER_STATE}
    p = step.spec
    assert isinstance(p, gc.TrainingProgram)
    assert p.batch == ["x", "y"] and p.params == ["w1", "w2"] and p.step == "step" and p.lr == "lr"
    assert sorted(p.updates.values()) == sorted(p.carried) and step.updates == p.updates
    assert list(step.outputs)[0] == "loss" and p.metrics == ["loss"]
    # the roles and updates survive printing and parsing
    text = str(step)
    assert "%lr: f32[] @lr" in text and "new.w1=%new.w1 @updates(w1)" in text or "@updates(w1)" in text
    back = gc.parse_graph(text)
    assert {v.name: v.role for v in back.inputs} == roles and back.updates == step.updates
    assert str(back) == text


def test_buffers_are_carried_with_their_role():
    gc.manual_seed(0)
    model = gc.nn.Sequential(gc.nn.Linear(3, 4), gc.nn.BatchNorm1d(4), gc.nn.Linear(4, 2))

    @gc.function(x=gc.spec(("N", 3)), y=gc.spec(("N",), "int64"))
    def loss_fn(x, y):
        return {"loss": gc.nn.cross_entropy(model(x), y)}

    g = loss_fn.graph
    assert [v.name for v in g.with_role(gc.Role.BUFFER)] == ["1.running_mean", "1.running_var",
                                                            "1.num_batches_tracked"]
    step = gc.training_step(g, model, gc.optim.SGD(0.1))
    buffers = [v.name for v in step.with_role(gc.Role.BUFFER)]
    assert buffers == ["1.running_mean", "1.running_var", "1.num_batches_tracked"]
    assert all(b in step.updates.values() for b in buffers)
    assert not any(k.endswith(b) and k.startswith("d_") for b in buffers for k in step.outputs)
