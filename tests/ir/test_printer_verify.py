"""The text form of graphs and verify(): wrong types, use before def, values from other graphs."""
from __future__ import annotations

import re

import numpy as np
import pytest

import graphc as gc
from graphc.ir import VerifyError
from graphc.ir.printer import node_in_context
from graphc.ops import get_op

HERE = "test_printer_verify.py"


def _mlp():
    with gc.Graph("mlp") as g:
        x = g.input("x", ("N", 4))
        w = g.param("w", (4, 3), init=gc.init.xavier_uniform())
        b = g.param("b", (3,))
        h = gc.relu(x @ w + b)
        g.output(loss=h.sum(), h=h)
    return g


def _line_of(text: str) -> int:
    """The line number in this file whose source contains `text`."""
    with open(__file__) as f:
        for i, line in enumerate(f, 1):
            if text in line and "_line_of" not in line:
                return i
    raise AssertionError(text)


def test_print_shows_inputs_params_nodes_types_outputs_and_source_lines():
    g = _mlp()
    text = str(g)
    lines = text.splitlines()
    assert lines[0] == "graph mlp(%x: f32[N, 4]) {"
    assert "  param %w: f32[4, 3]" in lines and "  param %b: f32[3]" in lines
    assert lines[-2] == "  return loss=%sum, h=%relu" and lines[-1] == "}"
    body = [ln for ln in lines if " = " in ln]
    assert [re.match(r"\s*%(\S+): ", ln).group(1) for ln in body] == ["matmul", "add", "relu", "sum"]
    assert "%matmul: f32[N, 3] = matmul(%x, %w)" in body[0]
    assert "sum(%relu, axes=None, keepdims=False)" in body[3]
    line = _line_of("h = gc.relu(x @ w + b)")
    for ln in body[:3]:
        assert ln.rstrip().endswith(f"{HERE}:{line}"), ln
    assert body[3].rstrip().endswith(f"{HERE}:{_line_of('g.output(loss=h.sum(), h=h)')}")
    assert repr(g) == "<Graph 'mlp': 1 inputs, 2 params, 4 nodes, 2 outputs>"


def test_print_shows_constants_and_origin():
    with gc.Graph("c") as g:
        x = g.input("x", (2,))
        with g.origin("grad of relu @ model.py:3"):
            y = x * 2.0
        g.output(y=y)
    text = str(g)
    assert "%constant: f32[] = constant(value=2.0)" in text
    assert "grad of relu @ model.py:3" in text


def test_verify_accepts_well_formed_graphs():
    g = _mlp()
    gc.verify(g)
    assert g.verify() is g


def _marked(msg: str) -> list[str]:
    return [ln for ln in msg.splitlines() if ln.startswith("> ")]


def test_verify_catches_a_wrong_type_and_shows_the_node_in_context():
    g = _mlp()
    relu = next(n for n in g.nodes if n.op.name == "relu")
    relu.output.type = gc.TensorType(("N", 4))
    with pytest.raises(VerifyError) as info:
        gc.verify(g)
    msg = str(info.value)
    assert "relu: output is typed f32[N, 4] but inference gives f32[N, 3]" in msg
    assert msg.startswith(f"tests/ir/{HERE}:") or f"{HERE}:" in msg.splitlines()[0]
    marked = _marked(msg)
    assert len(marked) == 1 and "= relu(%add)" in marked[0]
    assert "= add(%matmul, %b)" in msg  # its neighbours are shown too
    with pytest.raises(VerifyError):
        gc.compile(g, "numpy")  # compile verifies first


def test_verify_catches_a_wrong_dtype():
    g = _mlp()
    s = next(n for n in g.nodes if n.op.name == "sum")
    s.output.type = s.output.type.with_dtype("float64")
    with pytest.raises(VerifyError, match="sum: output is typed f64\\[\\] but inference gives f32\\[\\]"):
        gc.verify(g)


def test_verify_catches_use_before_def():
    g = _mlp()
    g.nodes[0], g.nodes[1] = g.nodes[1], g.nodes[0]  # add now reads matmul before it exists
    with pytest.raises(VerifyError) as info:
        gc.verify(g)
    msg = str(info.value)
    assert "add: input %matmul is used before it is defined" in msg
    assert "= add(%matmul, %b)" in _marked(msg)[0]


def test_verify_catches_a_value_from_another_graph():
    g1, g2 = _mlp(), _mlp()
    relu = next(n for n in g1.nodes if n.op.name == "relu")
    relu.inputs[0] = next(n for n in g2.nodes if n.op.name == "add").output
    with pytest.raises(VerifyError) as info:
        gc.verify(g1)
    msg = str(info.value)
    assert "relu: input %add belongs to another graph ('mlp')" in msg
    assert "= relu(%add)" in _marked(msg)[0]


def test_verify_catches_a_node_added_without_the_dsl_from_another_graph():
    with gc.Graph("a") as ga:
        xa = ga.input("x", (3,))
    with gc.Graph("b") as gb:
        gb.input("x", (3,))
    op = get_op("exp")
    out = gb.add_node(op, [xa.value], {}, xa.type)
    gb.output(y=out)
    with pytest.raises(VerifyError, match="exp: input %x belongs to another graph \\('a'\\)"):
        gb.verify()


def test_verify_catches_a_dangling_output_and_an_inconsistent_producer():
    g = _mlp()
    other = _mlp()
    g.outputs["extra"] = other.outputs["h"]
    with pytest.raises(VerifyError, match="output 'extra' \\(%relu\\) is not defined in the graph"):
        gc.verify(g)
    g = _mlp()
    g.nodes[1].output.producer = g.nodes[0]
    with pytest.raises(VerifyError, match="has another producer"):
        gc.verify(g)


def test_verify_catches_duplicate_names():
    g = _mlp()
    g.nodes[2].output.name = "matmul"
    with pytest.raises(VerifyError, match="duplicate value name %matmul"):
        gc.verify(g)


def test_node_in_context_elides_far_nodes():
    with gc.Graph("long") as g:
        y = g.input("x", (2,))
        for _ in range(12):
            y = gc.exp(y)
        g.output(y=y)
    node = g.nodes[6]
    text = node_in_context(g, node, radius=2)
    lines = text.splitlines()
    assert lines[0] == "  ..." and lines[-1] == "  ..."
    assert len(lines) == 2 + 5
    assert lines[3].startswith("> %exp_5")


def test_clone_is_deep_and_verifies():
    g = _mlp()
    c, vmap = g.clone("copy")
    gc.verify(c)
    assert c.name == "copy" and str(c).splitlines()[1:] == str(g).splitlines()[1:]
    assert all(vmap[v].graph is c for v in g.values())
    feeds = {"x": np.ones((2, 4), np.float32)}
    a, b = gc.compile(g)(**feeds), gc.compile(c)(**feeds)
    np.testing.assert_array_equal(a["h"], b["h"])
