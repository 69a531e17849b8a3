"""parse_graph reads print(graph) back: print -> parse -> print is the identity."""
from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc import models
from graphc.frontends.parser import ParseError, parse_attr, parse_graph, split_top


def constants_of(g: gc.Graph) -> dict[str, np.ndarray]:
    """Values of constants the printer elides (more than 4 elements), by value name."""
    return {n.output.name: n.attrs["value"] for n in g.nodes
            if n.op.name == "constant" and n.attrs["value"].size > 4}


@pytest.mark.parametrize("name", list(models.MODELS))
@pytest.mark.parametrize("with_loss", [False, True])
def test_models_round_trip_text_and_values(name, with_loss):
    small = {"mlp": dict(sizes=(6, 5, 3)), "lstm": dict(steps=3, input=4, hidden=5),
             "gru": dict(steps=3, input=4, hidden=5)}.get(name, {})
    g = models.MODELS[name](with_loss=with_loss, **small)
    text = str(g)
    g2 = parse_graph(text, params={**g.param_data(), **constants_of(g)})
    gc.verify(g2)
    assert str(g2) == text
    assert [v.name for v in g2.inputs] == [v.name for v in g.inputs]
    assert list(g2.outputs) == list(g.outputs)
    assert [n.source for n in g2.nodes] == [n.source for n in g.nodes]
    feeds = models.example_feeds(g, 3)
    a, b = gc.compile(g)(**feeds), gc.compile(g2)(**feeds)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_params_default_to_zeros():
    g = models.mlp((4, 3), seed=1, with_loss=False)
    g2 = parse_graph(str(g))
    assert [p.name for p in g2.params] == ["fc1.weight", "fc1.bias"]
    for p, q in zip(g.params, g2.params):
        assert q.type == p.type and not q.data.any()
    out = gc.compile(g2)(x=np.ones((2, 4), np.float32))["logits"]
    np.testing.assert_array_equal(out, np.zeros((2, 3), np.float32))


def test_elided_constants_are_listed_and_zero_unless_given():
    g = models.mlp((4, 10), with_loss=True)  # one_hot compares labels with arange(10)
    g2 = parse_graph(str(g), params=g.param_data(), elided="zeros")  # display only
    assert g2.meta["elided"] == list(constants_of(g))
    assert str(g2) == str(g)


def test_small_constants_scalars_and_attrs_are_exact():
    with gc.Graph("consts") as g:
        x = g.input("x", ("N", 2, 3), "float64")
        k = g.input("k", ("N",), "int64")
        y = x * (1 / 3) + gc.constant(np.array([[0.1, -2.5e-7], [np.pi, 1e300]]))[0:1, :, None]
        y = gc.where(y > 0.5, y, gc.constant(np.array([True, False, True]))[None, None, :].astype("float64"))
        z = gc.pad(gc.transpose(y, (0, 2, 1)), ((0, 0), (1, 0), (0, 2)), constant_values=-1.5)
        m = gc.max(z, axis=(1, 2), keepdims=True).reshape(-1)
        g.output(z, m=m, kk=gc.cast(k, "int32") + 7, s=gc.sum(x))
    text = str(g)
    g2 = parse_graph(text)
    assert str(g2) == text
    for n1, n2 in zip(g.nodes, g2.nodes):
        assert n1.attrs.keys() == n2.attrs.keys()
        for key, v in n1.attrs.items():
            w = n2.attrs[key]
            if isinstance(v, np.ndarray):
                assert w.dtype == v.dtype and w.shape == v.shape
                np.testing.assert_array_equal(w, v)
            else:
                assert w == v and type(w) is type(v)
    feeds = {"x": np.random.default_rng(0).standard_normal((2, 2, 3)), "k": np.array([1, 2])}
    a, b = gc.compile(g)(**feeds), gc.compile(g2)(**feeds)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


def test_sources_and_origins_survive():
    g = models.mlp((4, 3), with_loss=False)
    g.nodes[0].origin = "grad of matmul @ model.py:14"
    g.nodes[1].origin, g.nodes[1].source = "fused", None
    g.nodes[2].origin, g.nodes[2].source = "grad of exp @ m.py:3", "m.py:3"  # printed once
    g2 = parse_graph(str(g))
    assert (g2.nodes[0].origin, g2.nodes[0].source) == ("grad of matmul @ model.py:14", g.nodes[0].source)
    assert (g2.nodes[1].origin, g2.nodes[1].source) == ("fused", None)
    assert (g2.nodes[2].origin, g2.nodes[2].source) == ("grad of exp @ m.py:3", "m.py:3")
    assert str(g2) == str(g)


def test_output_that_is_an_input_and_symbolic_products():
    with gc.Graph("io") as g:
        x = g.input("x", ("B", "T", 4))
        g.output(x, flat=x.reshape(-1, 4))
    g2 = parse_graph(str(g))
    assert str(g2) == str(g)
    assert g2.outputs["flat"].shape == ("B*T", 4)
    assert g2.outputs["x"] is g2.inputs[0]


def test_marked_context_lines_are_accepted():
    g = models.mlp((4, 3), with_loss=False)
    marked = gc.ir.format_graph(g, mark=g.nodes[1])
    assert "> %" in marked
    assert str(parse_graph(marked)) == str(g)


def test_helpers():
    assert split_top("(1, 2), [3, 4], x") == ["(1, 2)", "[3, 4]", "x"]
    assert parse_attr("(3,)") == (3,)
    assert parse_attr("((0, 0), (1, 2))") == ((0, 0), (1, 2))
    assert parse_attr("(N, 8*N, 4)") == ("N", "8*N", 4)
    assert parse_attr("None") is None and parse_attr("True") is True and parse_attr("float32") == "float32"
    assert parse_attr("-1e-05") == -1e-05 and parse_attr("inf") == float("inf")
    np.testing.assert_array_equal(parse_attr("[ True, False]"), [True, False])


@pytest.mark.parametrize("text, error", [
    ("", "empty text"),
    ("grph g() {\n}", "line 1: expected 'graph NAME"),
    ("graph g(%x: f32[3]) {\n  return %x\n", "missing the closing"),
    ("graph g(%x: f32[3]) {\n  %y: f32[3] = nosuchop(%x)\n  return %y\n}", "line 2: unknown primitive 'nosuchop'"),
    ("graph g(%x: f32[3]) {\n  %y: f32[3] = exp(%z)\n  return %y\n}", "line 2: value %z is used before"),
    ("graph g(%x: f32[3]) {\n  %y: f32[4] = exp(%x)\n  return %y\n}", "line 2: %y is declared f32[4] but exp infers f32[3]"),
    ("graph g(%x: f32[3]) {\n  %x: f32[3] = exp(%x)\n  return %x\n}", "line 2: %x is defined twice"),
    ("graph g(%x: f32[3]) {\n  param %w: f32[N]\n  return %x\n}", "needs a static shape"),
    ("graph g(%x: f32[3]) {\n  %y: f32[3] = exp(%x)\n  nonsense\n}", "line 3: expected '%name: type"),
    ("graph g(%x: q32[3]) {\n  return %x\n}", "line 1: unknown dtype"),
    ("graph g(%x: f32[2, 3]) {\n  %y: f32[2, 5] = matmul(%x, %x)\n  return %y\n}", "matmul: (2, 3) @ (2, 3)"),
])
def test_bad_text_names_the_line(text, error):
    with pytest.raises(ParseError) as info:
        parse_graph(text)
    assert error in str(info.value)


def test_given_values_are_checked():
    text = str(models.mlp((4, 3), with_loss=False))
    with pytest.raises(ParseError, match="fc1.weight.*shape \\(2, 2\\)"):
        parse_graph(text, params={"fc1.weight": np.zeros((2, 2), np.float32)})
    with pytest.raises(ParseError, match="values given for nope"):
        parse_graph(text, params={"nope": np.zeros(1)})


@pytest.mark.parametrize("name", ["lenet5", "transformer_encoder"])
def test_gradient_graphs_round_trip(name):
    """Backward graphs (origins such as 'grad of mean @ file:line', more primitives) read back."""
    g = gc.grad(models.MODELS[name]())
    text = str(g)
    assert "grad of" in text
    g2 = parse_graph(text, params={**g.param_data(), **constants_of(g)})
    assert str(g2) == text
    assert [n.origin for n in g2.nodes] == [n.origin for n in g.nodes]
    feeds = models.example_feeds(g, 2)
    a, b = gc.compile(g)(**feeds), gc.compile(g2)(**feeds)
    assert list(a) == list(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
