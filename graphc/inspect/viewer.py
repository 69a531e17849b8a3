"""An interactive HTML viewer for large graphs: one self-contained page, no network at view time.

The page groups nodes into collapsible boxes: the forward pass, the backward pass and the
optimizer update at the top, each split by module scope (`conv2`; a backward node sits under the
scope of the forward op it comes from, an optimizer node under its parameter's scope), and any
group of more than `CHUNK` items split again into consecutive chunks. It opens with only the first
levels expanded and fitted to the window; it pans (drag), zooms (wheel, buttons), has a minimap, a
labelled search over name / op / source line, and a side panel with a node's type, attributes,
source line, provenance (autodiff origin) and cost (FLOPs, bytes, saved for backward).

Layout scales because it is done per group: Python orders the items of every group once (layers
by longest path, barycentric ordering, cycles between groups broken by program order), so the
order never depends on what is expanded; the browser only places boxes of known sizes, which is
linear in the visible items. Expanding a group places its items; nothing else is laid out again.
"""
from __future__ import annotations

import collections
import html
import json
import os
from typing import Any, Mapping

from ..ir.errors import GraphcError
from ..ir.graph import Graph, Value
from ..ir.printer import format_attr
from ..ir.roles import Role

#: a group with more items than this is split into chunks of consecutive items
CHUNK = 80

PART_TITLE = {"forward": "forward", "backward": "backward", "optimizer": "optimizer"}


def _attr_text(v: Any, limit: int = 120) -> str:
    t = format_attr(v)
    return t if len(t) <= limit else t[:limit] + "..."


def graph_data(graph: Graph, bindings: Mapping[str, int] | None = None) -> dict[str, Any]:
    """The viewer's data for `graph`: nodes, edges, groups (with their items laid out in layers).

    Returns a JSON-able dict: ``nodes`` (one per input, parameter and node: name, op, kind,
    type, source, origin, attrs, FLOPs, bytes, bytes live in the step and whether the step's
    memory peaks there, scope), ``edges`` (pairs of node indices), ``groups`` (id, title,
    parent, items in layers) and ``stats`` (totals).
    """
    from .stats import summary
    try:
        s = summary(graph, bindings)
        stats_by_name = {n.name: n for n in s.nodes}
        totals = {k: v for k, v in s.to_dict().items()
                  if k not in ("nodes", "params", "op_histogram", "scopes")}
    except GraphcError as exc:  # a broken cost rule should not cost the user the drawing
        s, stats_by_name, totals = None, {}, {"error": str(exc)}
    from .stats import _param_of, scope_of

    nodes: list[dict[str, Any]] = []
    index: dict[Value, int] = {}
    pnames = {v.name for v in graph.params} | {v.name for v in graph.inputs if v.role is Role.PARAM}
    outputs = {id(v): k for k, v in graph.outputs.items()}

    def add(v: Value, rec: dict[str, Any], path: list[str]) -> None:
        index[v] = len(nodes)
        rec.update(name=v.name, type=str(v.type), path=path)
        if id(v) in outputs:
            rec["output"] = outputs[id(v)]
        nodes.append(rec)

    for v in list(graph.inputs) + list(graph.params):
        role = v.role.value if v.role is not None else "input"
        if v.role is Role.OPTIMIZER_STATE:
            owner = _param_of(v.name, pnames)
            path, kind = ["optimizer", scope_of(owner or v.name)], "state"
        elif v.role is Role.PARAM or v.kind == "param":
            path, kind = ["forward", scope_of(v.name)], "param"
        else:
            path, kind = [], "input"
        add(v, {"op": role, "kind": kind, "bytes": 0}, path)
    for node in graph.nodes:
        st = stats_by_name.get(node.output.name)
        part = st.part if st else ("backward" if node.origin else "forward")
        scope = st.scope if st else scope_of(node.output.name)
        kind = "const" if node.op.traits.constant else part
        rec: dict[str, Any] = {"op": node.op.name, "kind": kind, "part": part, "scope": scope}
        if node.source:
            rec["source"] = node.source
        if node.origin:
            rec["origin"] = node.origin
        if node.attrs:
            rec["attrs"] = {k: _attr_text(a) for k, a in node.attrs.items()}
        if st:
            rec.update(flops=st.flops, bytes=st.bytes, shape=list(st.shape), live=st.live_bytes)
            if s is not None and s.step_peak_node == node.output.name:
                rec["peak"] = True   # where the step's memory peaks (graphc.inspect.memory)
            if st.saved:
                rec["saved"] = True
        add(node.output, rec, [part] + ([scope] if scope != "(top)" else []))
    edges = [[index[v], index[n.output]] for n in graph.nodes for v in n.inputs if v in index]
    groups = _groups(nodes, edges)
    return {"name": graph.name, "nodes": nodes, "edges": edges, "groups": groups,
            "stats": totals, "report": s.report(top=10) if s else totals.get("error", "")}


def _groups(nodes: list[dict[str, Any]], edges: list[list[int]]) -> list[dict[str, Any]]:
    """The group tree; each group's items (node indices as ints, groups as "g<k>") in layers."""
    groups: list[dict[str, Any]] = [{"id": "g0", "title": "", "parent": None, "items": []}]
    by_path: dict[tuple[str, ...], int] = {(): 0}

    def group(path: tuple[str, ...]) -> int:
        if path not in by_path:
            parent = group(path[:-1])
            by_path[path] = len(groups)
            groups.append({"id": f"g{len(groups)}", "title": path[-1], "parent": parent,
                           "items": []})
            groups[parent]["items"].append(f"g{by_path[path]}")
        return by_path[path]
    owner = []
    for i, n in enumerate(nodes):
        g = group(tuple(n.pop("path")))
        groups[g]["items"].append(i)
        owner.append(g)
    # chunk groups with too many items (an unrolled loop, a flat graph) into consecutive runs
    for gi in range(len(groups)):
        items = groups[gi]["items"]
        if len(items) <= CHUNK:
            continue
        chunks = [items[k:k + CHUNK] for k in range(0, len(items), CHUNK)]
        groups[gi]["items"] = []
        for c, chunk in enumerate(chunks):
            ci = len(groups)
            groups.append({"id": f"g{ci}", "title": f"part {c + 1} of {len(chunks)}",
                           "parent": gi, "items": chunk})
            groups[gi]["items"].append(f"g{ci}")
            for it in chunk:
                if isinstance(it, int):
                    owner[it] = ci
                else:
                    groups[int(it[1:])]["parent"] = ci
    # the chain of groups from the root to each node
    def chain(g: int) -> list[int]:
        out = []
        while g is not None:
            out.append(g)
            g = groups[g]["parent"]
        return out[::-1]
    chains = [chain(g) for g in owner]
    item_edges: dict[int, set[tuple[Any, Any]]] = collections.defaultdict(set)
    for u, v in edges:
        cu, cv = chains[u], chains[v]
        k = 0
        while k < len(cu) and k < len(cv) and cu[k] == cv[k]:
            k += 1
        lca = cu[k - 1]
        a = f"g{cu[k]}" if k < len(cu) else u
        b = f"g{cv[k]}" if k < len(cv) else v
        if a != b:
            item_edges[lca].add((a, b))
    # program order of each item (its earliest node; an input counts where it is first read),
    # to break cycles between groups
    rank = list(range(len(nodes)))
    for u, v in sorted(edges, key=lambda e: e[1], reverse=True):
        if "kind" in nodes[u] and nodes[u]["kind"] in ("input", "param", "state"):
            rank[u] = min(v, rank[u] if rank[u] != u else v) - 0.5
    first: dict[Any, float] = {}
    for i in range(len(nodes)):
        first[i] = rank[i]
        for g in chains[i][1:]:
            first[f"g{g}"] = min(first.get(f"g{g}", rank[i]), rank[i])
    for gi, g in enumerate(groups):
        g["layers"] = _layer(g["items"], item_edges.get(gi, set()), first)
        g["size"] = sum(1 for ch in chains if gi in ch)
        del g["items"]
    return groups


def _layer(items: list[Any], edges: set[tuple[Any, Any]], first: dict[Any, int]) -> list[list[Any]]:
    """Items in layers: longest path over the edges that go forward in program order, then a
    few barycentric sweeps to reduce crossings."""
    items = sorted(items, key=lambda it: first.get(it, 0))
    pos = {it: k for k, it in enumerate(items)}
    preds: dict[Any, list[Any]] = collections.defaultdict(list)
    succs: dict[Any, list[Any]] = collections.defaultdict(list)
    for a, b in edges:
        if a in pos and b in pos and pos[a] < pos[b]:
            preds[b].append(a)
            succs[a].append(b)
    layer: dict[Any, int] = {}
    for it in items:
        layer[it] = 1 + max((layer[p] for p in preds[it]), default=-1)
    rows: list[list[Any]] = [[] for _ in range(1 + max(layer.values(), default=-1))]
    for it in items:
        rows[layer[it]].append(it)
    for sweep in range(4):
        rng = range(1, len(rows)) if sweep % 2 == 0 else range(len(rows) - 2, -1, -1)
        nbrs = preds if sweep % 2 == 0 else succs
        for r in rng:
            where = {it: k for k, it in enumerate(rows[r - 1 if sweep % 2 == 0 else r + 1])}

            def bary(it, k):
                ps = [where[p] for p in nbrs[it] if p in where]
                return sum(ps) / len(ps) if ps else k
            rows[r] = [it for _, it in sorted(((bary(it, k), k), it) for k, it in
                                              enumerate(rows[r]))]
    return rows


def to_html(graph: Graph, path: str | os.PathLike, bindings: Mapping[str, int] | None = None
            ) -> str:
    """Writes a self-contained interactive HTML viewer of `graph` (no network at view time).

    Args:
        graph: the graph (forward, gradient or training step; thousands of nodes are fine).
        path: the .html file to write.
        bindings: sizes of symbolic dims for the costs, e.g. ``{"N": 128}``.

    Returns:
        The path written, as a string.

    Example: ``gc.inspect.to_html(step, "step.html", {"N": 128})``
    """
    data = graph_data(graph, bindings)
    blob = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    with open(os.path.join(os.path.dirname(__file__), "viewer.js"), encoding="utf-8") as f:
        script = f.read()
    page = (_PAGE.replace("{{NAME}}", html.escape(graph.name))
            .replace("{{DATA}}", blob).replace("{{SCRIPT}}", script))
    with open(path, "w", encoding="utf-8") as f:
        f.write(page)
    return os.fspath(path)


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>graphc: {{NAME}}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
html, body { margin: 0; height: 100%; font: 13px system-ui, sans-serif; overflow: hidden; }
#bar { position: absolute; left: 0; right: 340px; top: 0; height: 40px; display: flex;
  align-items: center; gap: 6px; padding: 0 8px; background: #f4f4f6; border-bottom: 1px solid #ccc; }
#bar h1 { font-size: 14px; margin: 0 10px 0 0; white-space: nowrap; }
#bar label { font-weight: 600; }
#search { width: 260px; }
#results { position: absolute; top: 40px; left: 8px; z-index: 5; background: #fff; max-height: 50vh;
  overflow: auto; border: 1px solid #999; display: none; min-width: 380px; }
#results div { padding: 3px 8px; cursor: pointer; white-space: nowrap; }
#results div:hover, #results div.cur { background: #def; }
#canvas { position: absolute; left: 0; right: 340px; top: 41px; bottom: 0; background: #fff; }
#canvas svg { width: 100%; height: 100%; cursor: grab; display: block; }
#side { position: absolute; right: 0; top: 0; bottom: 0; width: 340px; overflow: auto;
  border-left: 1px solid #ccc; background: #fafafa; padding: 8px 10px; box-sizing: border-box; }
#side h2 { font-size: 14px; margin: 4px 0; word-break: break-all; }
#side table { border-collapse: collapse; width: 100%; }
#side td { vertical-align: top; padding: 2px 4px; border-bottom: 1px solid #eee; word-break: break-all; }
#side td:first-child { color: #555; white-space: nowrap; width: 90px; }
#side a { color: #06c; cursor: pointer; }
#side pre { font-size: 11px; white-space: pre; overflow: auto; background: #fff; border: 1px solid #ddd; }
#minimap { position: absolute; right: 350px; bottom: 10px; width: 220px; height: 160px;
  border: 1px solid #888; background: rgba(255,255,255,.92); z-index: 4; cursor: crosshair; }
.legend span { display: inline-block; padding: 1px 6px; margin-right: 3px; border: 1px solid #666;
  border-radius: 3px; font-size: 11px; }
rect.n { stroke: #555; stroke-width: 1; rx: 4; }
rect.n.sel { stroke: #e00; stroke-width: 3; }
rect.n.hit { stroke: #f80; stroke-width: 3; }
rect.grp { fill: #f7f7fa; stroke: #889; stroke-dasharray: 4 2; }
rect.grp.closed { fill: #eef0f8; stroke-dasharray: none; cursor: pointer; }
rect.grp.sel { stroke: #e00; stroke-width: 3; }
text { pointer-events: none; font-size: 11px; }
text.gt { font-weight: 600; }
path.e { fill: none; stroke: #778; stroke-width: 1; }
path.e.near { stroke: #e00; stroke-width: 2; }
g.tog { cursor: pointer; }
</style></head><body>
<div id="bar"><h1>{{NAME}}</h1>
<label for="search">Search nodes</label>
<input id="search" type="search" placeholder="name, op or source line (e.g. model.py:14)"
  aria-label="Search nodes by name, op or source line" autocomplete="off">
<button id="fit" title="fit the graph to the window">Fit</button>
<button id="zin" title="zoom in">+</button><button id="zout" title="zoom out">&minus;</button>
<button id="expand" title="expand every group">Expand all</button>
<button id="collapse" title="collapse every group">Collapse all</button>
<span class="legend" id="legend"></span>
</div>
<div id="results" role="listbox"></div>
<div id="canvas"><svg id="svg"><g id="scene"></g></svg></div>
<canvas id="minimap" width="220" height="160" title="minimap: click to move there"></canvas>
<div id="side"><h2>graph {{NAME}}</h2><p>Click a node or a group for its details; click a
group's title bar to expand or collapse it. Drag to pan, wheel to zoom.</p>
<details><summary>cost report</summary><pre id="report"></pre></details></div>
<script type="application/json" id="graphc-data">{{DATA}}</script>
<script>
{{SCRIPT}}
</script>
</body></html>
"""
