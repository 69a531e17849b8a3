"""graphc.inspect.draw: DOT text, the built-in SVG layout, the HTML page, and `dot` handling."""
from __future__ import annotations

import os
import re
import stat

import pytest

import graphc as gc
from graphc.inspect import layout_svg, to_dot, to_svg
from graphc.inspect import to_static_html as to_html
from graphc.inspect.draw import STYLE


def test_dot_names_every_value_and_styles_kinds():
    g = gc.grad(gc.models.mlp((8, 4, 2)))
    dot = to_dot(g)
    assert dot.startswith('digraph "mlp_grad" {') and dot.rstrip().endswith("}")
    declared = set(re.findall(r'^  "([^"]+)" \[', dot, re.M))
    for v in g.inputs:
        assert f"in:{v.name}" in declared
    for p in g.params:
        assert f"param:{p.name}" in declared
    for n in g.nodes:
        assert f"node:{n.output.name}" in declared
    for k in g.outputs:
        assert f"out:{k}" in declared
    # every edge joins declared nodes, and there is one edge per node input plus one per output
    edges = re.findall(r'^  "([^"]+)" -> "([^"]+)";', dot, re.M)
    assert all(a in declared and b in declared for a, b in edges)
    assert len(edges) == sum(len(n.inputs) for n in g.nodes) + len(g.outputs)
    back = [n for n in g.nodes if n.origin and n.op.name != "constant"]
    assert back and f'fillcolor="{STYLE["backward"]}"' in dot
    assert "models.py:" in dot  # source lines in the labels


def test_dot_escapes_quotes_in_names():
    g = gc.Graph('we"ird')
    with g:
        g.output(y=gc.exp(g.input("x", (2,))))
    assert 'digraph "we\\"ird"' in to_dot(g)


def _rects(svg: str):
    return [tuple(map(float, m)) for m in re.findall(
        r'<rect x="([\d.-]+)" y="([\d.-]+)" width="([\d.]+)" height="([\d.]+)"', svg)]


@pytest.mark.parametrize("make", [lambda: gc.models.lenet5(),
                                  lambda: gc.grad(gc.models.mlp((8, 4, 2)))])
def test_layout_draws_every_box_without_overlaps(make):
    g = make()
    svg = layout_svg(g)
    rects = _rects(svg)
    assert len(rects) == len(g.inputs) + len(g.params) + len(g.nodes) + len(g.outputs)
    for i, (x0, y0, w0, h0) in enumerate(rects):
        for x1, y1, w1, h1 in rects[i + 1:]:
            overlap = x0 < x1 + w1 and x1 < x0 + w0 and y0 < y1 + h1 and y1 < y0 + h0
            assert not overlap
    assert svg.count("<path ") >= sum(len(n.inputs) for n in g.nodes)


def test_html_is_self_contained(tmp_path):
    g = gc.models.mlp((8, 4, 2))
    path = to_html(g, tmp_path / "mlp.html", bindings={"N": 32})
    page = open(path, encoding="utf-8").read()
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page and "</html>" in page
    # nothing fetched from elsewhere: no external scripts, styles, images or links
    assert not re.search(r'(src|href)\s*=\s*"(https?:)?//', page)
    assert "with N=32" in page            # the statistics
    assert "fc1.matmul" in page and "graph mlp(" in page  # the drawing and the text IR


def test_to_svg_without_dot_says_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no `dot`
    with pytest.raises(gc.GraphcError, match="Graphviz `dot`.*to_html"):
        to_svg(gc.models.mlp((8, 4, 2)))


def test_to_svg_runs_dot_on_the_dot_text(monkeypatch, tmp_path):
    # a stand-in `dot` that wraps what it reads, so the test needs no Graphviz
    fake = tmp_path / "dot"
    fake.write_text('#!/bin/sh\n[ "$1" = "-Tsvg" ] || exit 3\necho "<svg>"; cat; echo "</svg>"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", str(tmp_path) + os.pathsep + os.environ.get("PATH", ""))
    g = gc.models.mlp((8, 4, 2))
    out = tmp_path / "g.svg"
    svg = to_svg(g, out)
    assert svg.startswith("<svg>") and to_dot(g) in svg and out.read_text() == svg


def test_html_script_is_valid_javascript(tmp_path):
    import shutil
    import subprocess
    node = shutil.which("node")
    if node is None:
        pytest.skip("no node binary to check the page's script with")
    page = open(to_html(gc.models.mlp((8, 4, 2)), tmp_path / "p.html"), encoding="utf-8").read()
    script = re.search(r"<script>(.*?)</script>", page, re.S).group(1)
    (tmp_path / "p.js").write_text(script)
    res = subprocess.run([node, "--check", str(tmp_path / "p.js")], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    # every edge names the boxes it joins, which the click handler relies on
    keys = set(re.findall(r'data-key="([^"]+)"', page))
    ends = re.findall(r'data-a="([^"]+)" data-b="([^"]+)"', page)
    assert ends and all(a in keys and b in keys for a, b in ends)
