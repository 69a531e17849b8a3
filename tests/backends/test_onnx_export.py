"""ONNX export: names in the model (outputs never clash with internal values)."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

import graphc as gc
from graphc.ir.errors import GraphcError


def _clashes(graph):
    """Output names that are also the name of another (internal) value of `graph`."""
    names = {n.output.name: n.output for n in graph.nodes}
    return [k for k, v in graph.outputs.items() if k in names and names[k] is not v]


def _assert_unique_definitions(model):
    defined = [i.name for i in model.graph.input] + [i.name for i in model.graph.initializer]
    defined += [o for n in model.graph.node for o in n.output]
    dups = sorted({n for n in defined if defined.count(n) > 1 and n not in
                   {i.name for i in model.graph.input} & {i.name for i in model.graph.initializer}})
    assert not dups, f"names defined twice: {dups}"


def test_output_named_like_an_internal_value_runs_on_onnxruntime():
    """The symptom: g.output(exp=tanh(exp(x))) gave onnxruntime 'Duplicate definition of name (exp)'."""
    with gc.Graph("clash") as g:
        x = g.input("x", (3,))
        g.output(exp=gc.tanh(gc.exp(x)))
    assert _clashes(g) == ["exp"]
    model = gc.export_onnx(g)
    _assert_unique_definitions(model)
    assert [o.name for o in model.graph.output] == ["exp"]
    xv = np.array([-1.0, 0.0, 0.5], np.float32)
    out = gc.compile(g, "onnxruntime")(x=xv)
    np.testing.assert_allclose(out["exp"], np.tanh(np.exp(xv)), rtol=1e-6)


def test_outputs_swapping_names_with_values():
    """Two outputs each named after the other's value, and one value under two output names."""
    with gc.Graph("swap") as g:
        x = g.input("x", (2,))
        a = gc.exp(x)
        b = gc.tanh(x)
        g.output(**{a.value.name: b, b.value.name: a, "twice": a})
    assert sorted(_clashes(g)) == ["exp", "tanh"]
    xv = np.array([0.3, -2.0], np.float32)
    want = gc.compile(g, "numpy")(x=xv)
    got = gc.compile(g, "onnxruntime")(x=xv)
    assert list(got) == ["exp", "tanh", "twice"]
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-6)


def test_vjp_of_grad_graph_runs_on_onnxruntime():
    """A vjp-of-grad graph whose output d_x is another value than the internal %d_x (the issue's
    case: every such graph failed with a duplicate definition on onnxruntime)."""
    with gc.Graph("f") as g:
        x = g.input("x", (3,))
        g.output(loss=gc.sum(gc.softmax(x, 0) * x))
    vg = gc.vjp(gc.grad(g, wrt=["x"]), wrt=["x"])
    if not _clashes(vg):  # make sure the clash is there, whatever names autodiff picks
        if vg.outputs["d_x"].name == "d_x":
            vg.rename(vg.outputs["d_x"], "grad_x")
        inner = next(n.output for n in vg.nodes if n.output not in vg.outputs.values())
        vg.rename(inner, "d_x")
    assert "d_x" in _clashes(vg)
    gc.verify(vg)
    rng = np.random.default_rng(0)
    feeds = {v.name: rng.standard_normal(v.type.shape).astype(np.float32) for v in vg.inputs}
    want = gc.compile(vg, "numpy")(**feeds)
    _assert_unique_definitions(gc.export_onnx(vg))
    got = gc.compile(vg, "onnxruntime")(**feeds)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-6, err_msg=k)


def test_output_named_like_an_input_of_another_value_is_refused():
    with gc.Graph("in_clash") as g:
        x = g.input("x", (3,))
        g.output(x=gc.exp(x))
    with pytest.raises(GraphcError, match="output 'x' is %exp, but an input has that name"):
        gc.to_onnx(g)


def test_exported_names_stay_readable():
    """Values keep their graph names where nothing clashes."""
    with gc.Graph("plain") as g:
        x = g.input("x", (3,))
        g.output(y=gc.tanh(gc.exp(x)))
    model = gc.to_onnx(g)
    onnx.checker.check_model(model, full_check=True)
    assert [list(n.output) for n in model.graph.node] == [["exp"], ["tanh"], ["y"]]
