"""Drawings of a graph: Graphviz DOT text, SVG (via `dot`, or a built-in layered layout), HTML.

`to_html` needs nothing installed: it lays the graph out itself (layers by dependency depth,
barycentric ordering to reduce crossings) and writes one self-contained page with an inline
SVG, the statistics and the text IR. Inputs, parameters, constants, forward nodes, backward
nodes (made by autodiff: `node.origin` is set) and outputs each have their own style.
"""
from __future__ import annotations

import html
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Mapping

from ..ir.errors import GraphcError
from ..ir.graph import Graph, Node, Value
from ..ir.printer import format_attr

# fill colours by kind; backward nodes stand out in red, as in most autodiff visualisers
STYLE = {
    "input": "#cfe8ff", "param": "#ffe9b3", "const": "#eeeeee", "node": "#ffffff",
    "backward": "#ffd9d6", "output": "#d7f5d0",
}


def _short_source(src: str | None) -> str:
    return os.path.basename(src) if src else ""


def _node_lines(node: Node) -> list[str]:
    if node.op.traits.constant:
        v = node.attrs.get("value")
        return [format_attr(v) if getattr(v, "size", 2) <= 4 else f"const {node.output.type}"]
    lines = [node.op.name, f"%{node.output.name}: {node.output.type}"]
    if node.source:
        lines.append(_short_source(node.source))
    return lines


def _tooltip(node: Node) -> str:
    parts = [f"%{node.output.name}: {node.output.type} = {node.op.name}("
             + ", ".join([f"%{v.name}" for v in node.inputs]
                         + [f"{k}={format_attr(v)}" for k, v in node.attrs.items()]) + ")"]
    if node.source:
        parts.append(f"source: {node.source}")
    if node.origin:
        parts.append(f"origin: {node.origin}")
    return "\n".join(parts)


def _kind(node: Node) -> str:
    if node.op.traits.constant:
        return "const"
    return "backward" if node.origin is not None else "node"


# ---- DOT --------------------------------------------------------------------------------------

def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(graph: Graph, rankdir: str = "TB") -> str:
    """The graph as Graphviz DOT text.

    Nodes are labelled with op, value name and type, and the user's source line; inputs are
    blue ellipses, parameters yellow boxes, constants small grey boxes, backward nodes red and
    outputs green. Render with ``dot -Tsvg g.dot -o g.svg`` (or `to_svg`).
    """
    out = [f"digraph {_q(graph.name)} {{", f"  rankdir={rankdir};",
           '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10, '
           f'fillcolor="{STYLE["node"]}"];', '  edge [color="#555555", arrowsize=0.6];']
    ids: dict[Value, str] = {}
    for v in graph.inputs:
        ids[v] = f"in:{v.name}"
        out.append(f"  {_q(ids[v])} [label={_q(f'{v.name}' + chr(10) + str(v.type))}, shape=ellipse, "
                   f'fillcolor="{STYLE["input"]}"];')
    for v in graph.params:
        ids[v] = f"param:{v.name}"
        out.append(f"  {_q(ids[v])} [label={_q(f'{v.name}' + chr(10) + str(v.type))}, "
                   f'style=filled, fillcolor="{STYLE["param"]}"];')
    for node in graph.nodes:
        ids[node.output] = f"node:{node.output.name}"
        kind = _kind(node)
        extra = ", fontsize=8, height=0.2, width=0.3, margin=0.04" if kind == "const" else ""
        out.append(f"  {_q(ids[node.output])} [label={_q(chr(10).join(_node_lines(node)))}, "
                   f'fillcolor="{STYLE[kind]}", tooltip={_q(_tooltip(node))}{extra}];')
        for v in node.inputs:
            out.append(f"  {_q(ids[v])} -> {_q(ids[node.output])};")
    for k, v in graph.outputs.items():
        oid = f"out:{k}"
        out.append(f"  {_q(oid)} [label={_q(f'{k}' + chr(10) + str(v.type))}, shape=ellipse, "
                   f'fillcolor="{STYLE["output"]}"];')
        out.append(f"  {_q(ids[v])} -> {_q(oid)};")
    out.append("}")
    return "\n".join(out) + "\n"


def to_svg(graph: Graph, path: str | os.PathLike | None = None, rankdir: str = "TB") -> str:
    """Renders `to_dot(graph)` with the Graphviz `dot` program; returns the SVG text.

    Raises:
        GraphcError: when `dot` is not on PATH (use `layout_svg` or `to_html`, which need
            nothing installed) or fails.
    """
    exe = shutil.which("dot")
    if exe is None:
        raise GraphcError("to_svg needs the Graphviz `dot` program, which is not on PATH; install "
                          "Graphviz (e.g. `apt install graphviz`), or use "
                          "graphc.inspect.layout_svg(graph) or graphc.inspect.to_html(graph, path), "
                          "which lay the graph out themselves")
    res = subprocess.run([exe, "-Tsvg"], input=to_dot(graph, rankdir), capture_output=True,
                         text=True, timeout=300)
    if res.returncode != 0:
        raise GraphcError(f"dot failed (exit {res.returncode}): {res.stderr.strip()}")
    if path is not None:
        with open(path, "w", encoding="utf-8") as f:
            f.write(res.stdout)
    return res.stdout


# ---- built-in layered layout --------------------------------------------------------------------

_CHAR_W, _LINE_H, _PAD, _VGAP, _HGAP = 6.6, 13, 8, 36, 16


@dataclass
class _Box:
    key: str
    lines: list[str]
    kind: str
    tooltip: str
    layer: int = 0
    x: float = 0.0
    w: float = 0.0
    h: float = 0.0
    dummy: bool = False
    preds: list["_Box"] = field(default_factory=list)
    succs: list["_Box"] = field(default_factory=list)


def _build_boxes(graph: Graph) -> tuple[list[_Box], list[tuple[_Box, _Box]]]:
    box: dict[Value, _Box] = {}
    boxes: list[_Box] = []
    edges: list[tuple[_Box, _Box]] = []

    def add(b: _Box) -> _Box:
        boxes.append(b)
        return b
    for v in graph.inputs:
        box[v] = add(_Box(f"in:{v.name}", [v.name, str(v.type)], "input", f"input %{v.name}: {v.type}"))
    for v in graph.params:
        box[v] = add(_Box(f"param:{v.name}", [v.name, str(v.type)], "param", f"param %{v.name}: {v.type}"))
    for node in graph.nodes:
        b = add(_Box(f"node:{node.output.name}", _node_lines(node), _kind(node), _tooltip(node)))
        box[node.output] = b
        for v in node.inputs:
            edges.append((box[v], b))
    for k, v in graph.outputs.items():
        b = add(_Box(f"out:{k}", [k, str(v.type)], "output", f"output {k} = %{v.name}: {v.type}"))
        edges.append((box[v], b))
    for a, b in edges:
        a.succs.append(b)
        b.preds.append(a)
    return boxes, edges


def _assign_layers(boxes: list[_Box]) -> None:
    # longest path from the sources, in build order (which is topological)
    for b in boxes:
        b.layer = max((p.layer + 1 for p in b.preds), default=0)
    # then every box moves down to just above its first consumer: inputs, parameters, constants
    # and what only they feed (a weight's transpose) sit next to their use instead of at the top,
    # where a backward graph would draw their edges across the whole picture
    for b in reversed(boxes):
        if b.succs:
            b.layer = max(b.layer, min(s.layer for s in b.succs) - 1)


def _split_long_edges(boxes: list[_Box], edges: list[tuple[_Box, _Box]], limit: int
                      ) -> list[list[_Box]]:
    """Chains of boxes for each edge; edges spanning layers get invisible dummy boxes."""
    chains, made = [], 0
    for a, b in edges:
        chain = [a]
        if b.layer - a.layer > 1 and made < limit:
            for layer in range(a.layer + 1, b.layer):
                d = _Box(f"dummy{made}", [], "dummy", "", layer=layer, dummy=True, w=2, h=2)
                made += 1
                boxes.append(d)
                chain.append(d)
        chain.append(b)
        chains.append(chain)
    for b in boxes:
        b.preds, b.succs = [], []
    for chain in chains:
        for a, b in zip(chain, chain[1:]):
            a.succs.append(b)
            b.preds.append(a)
    return chains


def _order_layers(boxes: list[_Box], sweeps: int = 6) -> list[list[_Box]]:
    n_layers = max((b.layer for b in boxes), default=0) + 1
    layers: list[list[_Box]] = [[] for _ in range(n_layers)]
    for b in boxes:
        layers[b.layer].append(b)
    pos = {id(b): i for layer in layers for i, b in enumerate(layer)}

    def bary(b: _Box, nbrs: list[_Box]) -> float:
        return sum(pos[id(n)] for n in nbrs) / len(nbrs) if nbrs else pos[id(b)]
    for sweep in range(sweeps):
        down = sweep % 2 == 0
        rng = range(1, n_layers) if down else range(n_layers - 2, -1, -1)
        for i in rng:
            layer = layers[i]
            layer.sort(key=lambda b: bary(b, b.preds if down else b.succs))
            for k, b in enumerate(layer):
                pos[id(b)] = k
    return layers


def _place(layers: list[list[_Box]]) -> tuple[float, float]:
    for layer in layers:
        for b in layer:
            if not b.dummy:
                b.w = max(len(t) for t in b.lines) * _CHAR_W + 2 * _PAD
                b.h = len(b.lines) * _LINE_H + _PAD
    # x: start packed, then pull each box toward its neighbours' mean and re-pack, a few rounds
    for layer in layers:
        x = 0.0
        for b in layer:
            b.x = x + b.w / 2
            x += b.w + _HGAP
    for rnd in range(8):
        seq = layers if rnd % 2 == 0 else layers[::-1]
        for layer in seq:
            for b in layer:
                nbrs = b.preds + b.succs
                if nbrs:
                    b.x = sum(n.x for n in nbrs) / len(nbrs)
            _pack(layer)
    left = min((b.x - b.w / 2 for layer in layers for b in layer), default=0.0)
    for layer in layers:
        for b in layer:
            b.x -= left - 10
    width = max((b.x + b.w / 2 for layer in layers for b in layer), default=0.0) + 10
    return width, 0.0


def _pack(layer: list[_Box]) -> None:
    """Removes overlaps keeping the order: push right, then pull back left around the mean."""
    if not layer:
        return
    want = [b.x for b in layer]
    for i in range(1, len(layer)):
        a, b = layer[i - 1], layer[i]
        lo = a.x + (a.w + b.w) / 2 + _HGAP
        if b.x < lo:
            b.x = lo
    shift = (sum(want) - sum(b.x for b in layer)) / len(layer)
    for b in layer:
        b.x += shift


def layout_svg(graph: Graph, max_dummies: int = 20000) -> str:
    """The graph drawn as SVG text by graphc's own layered layout (no Graphviz needed)."""
    boxes, edges = _build_boxes(graph)
    _assign_layers(boxes)
    chains = _split_long_edges(boxes, edges, max_dummies)
    layers = _order_layers(boxes)
    width, _ = _place(layers)
    y, tops = 10.0, []
    for layer in layers:
        h = max((b.h for b in layer), default=0)
        tops.append((y, h))
        y += h + _VGAP
    height = y
    ycen = {}
    for (top, h), layer in zip(tops, layers):
        for b in layer:
            ycen[id(b)] = top + h / 2
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="graphc" width="{width:.0f}" '
           f'height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" font-family="monospace" '
           'font-size="11">',
           '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
           'markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" '
           'fill="#666"/></marker></defs>', '<g class="edges" fill="none" stroke="#888" '
           'stroke-width="1">']
    for chain in chains:
        pts = []
        for i, b in enumerate(chain):
            cy = ycen[id(b)]
            if i == 0:
                pts.append((b.x, cy + b.h / 2))
            elif i == len(chain) - 1:
                pts.append((b.x, cy - b.h / 2))
            else:
                pts.append((b.x, cy))
        d = f"M {pts[0][0]:.1f} {pts[0][1]:.1f}"
        for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
            my = (y0 + y1) / 2
            d += f" C {x0:.1f} {my:.1f} {x1:.1f} {my:.1f} {x1:.1f} {y1:.1f}"
        out.append(f'<path d="{d}" data-a="{html.escape(chain[0].key)}" '
                   f'data-b="{html.escape(chain[-1].key)}" marker-end="url(#arrow)"/>')
    out.append("</g><g class=\"nodes\">")
    for layer in layers:
        for b in layer:
            if b.dummy:
                continue
            x0, y0 = b.x - b.w / 2, ycen[id(b)] - b.h / 2
            rx = b.h / 2 if b.kind in ("input", "output") else 4
            out.append(f'<g class="n {b.kind}" data-key="{html.escape(b.key)}">'
                       f"<title>{html.escape(b.tooltip)}</title>"
                       f'<rect x="{x0:.1f}" y="{y0:.1f}" width="{b.w:.1f}" height="{b.h:.1f}" '
                       f'rx="{rx:.1f}" fill="{STYLE[b.kind]}" stroke="#444"/>')
            for i, t in enumerate(b.lines):
                weight = ' font-weight="bold"' if i == 0 and b.kind not in ("const",) else ""
                out.append(f'<text x="{b.x:.1f}" y="{y0 + _PAD / 2 + (i + 0.8) * _LINE_H:.1f}" '
                           f'text-anchor="middle"{weight}>{html.escape(t)}</text>')
            out.append("</g>")
    out.append("</g></svg>")
    return "\n".join(out)


_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>graphc: {name}</title>
<style>
body {{ font-family: sans-serif; margin: 1em; }}
pre {{ background: #f7f7f7; padding: .6em; overflow-x: auto; font-size: 12px; }}
#view {{ overflow: auto; border: 1px solid #ccc; max-height: 85vh; }}
.legend span {{ display: inline-block; padding: 2px 8px; margin-right: 6px; border: 1px solid #444;
  border-radius: 3px; font-size: 12px; }}
g.n:hover rect {{ stroke: #d00; stroke-width: 2; }}
g.n {{ cursor: pointer; }}
g.n.hit rect {{ stroke: #d00; stroke-width: 3; }}
g.n.near rect {{ stroke: #06c; stroke-width: 2.5; }}
path.near {{ stroke: #06c; stroke-width: 2.5; }}
</style></head><body>
<h2>graph {name}</h2>
<p class="legend">{legend}
 &nbsp; zoom <button onclick="zoom(1.25)">+</button><button onclick="zoom(0.8)">&minus;</button>
 &nbsp; find <input id="find" size="24" placeholder="value name or op" oninput="find(this.value)">
 <span id="found"></span>
 &nbsp; hover a node for its full text; click it to mark its inputs and users</p>
<div id="view">{svg}</div>
<details open><summary>statistics</summary><pre>{stats}</pre></details>
<details><summary>text IR</summary><pre>{ir}</pre></details>
<script>
var s = 1, svg = document.querySelector("#view svg"), w = svg.getAttribute("width"),
    h = svg.getAttribute("height");
function zoom(f) {{ s *= f; svg.setAttribute("width", w * s); svg.setAttribute("height", h * s); }}
var nodes = Array.from(svg.querySelectorAll("g.n")), paths = Array.from(svg.querySelectorAll("path"));
function find(q) {{
  q = q.trim().toLowerCase(); var hits = [];
  nodes.forEach(function (g) {{
    var on = q && g.textContent.toLowerCase().indexOf(q) >= 0;
    g.classList.toggle("hit", !!on); if (on) hits.push(g);
  }});
  document.getElementById("found").textContent = q ? hits.length + " found" : "";
  if (hits.length) hits[0].scrollIntoView({{block: "center", inline: "center"}});
}}
nodes.forEach(function (g) {{
  g.addEventListener("click", function () {{
    var key = g.dataset.key, near = {{}};
    paths.forEach(function (p) {{
      var on = p.dataset.a === key || p.dataset.b === key;
      p.classList.toggle("near", on);
      if (on) {{ near[p.dataset.a] = 1; near[p.dataset.b] = 1; }}
    }});
    nodes.forEach(function (n) {{ n.classList.toggle("near", !!near[n.dataset.key]); }});
  }});
}});
</script>
</body></html>
"""


def to_html(graph: Graph, path: str | os.PathLike, bindings: Mapping[str, int] | None = None
            ) -> str:
    """Writes a self-contained HTML page drawing `graph` (no network, no external scripts).

    Args:
        graph: the graph.
        path: the .html file to write.
        bindings: sizes of symbolic dims for the statistics, e.g. ``{"N": 128}``.

    Returns:
        The path written, as a string.
    """
    from .stats import summary
    try:
        stats = summary(graph, bindings).report()
    except GraphcError as exc:  # a broken cost rule should not cost the user the drawing
        stats = f"statistics unavailable: {exc}"
    legend = "".join(f'<span style="background:{STYLE[k]}">{k}</span>'
                     for k in ("input", "param", "const", "node", "backward", "output"))
    page = _PAGE.format(name=html.escape(graph.name), legend=legend, svg=layout_svg(graph),
                        stats=html.escape(stats), ir=html.escape(str(graph)))
    with open(path, "w", encoding="utf-8") as f:
        f.write(page)
    return os.fspath(path)
