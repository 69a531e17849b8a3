"""The HTML viewer: self-contained, carries every node's data, renders in headless Chromium."""
import json
import re
import shutil
import subprocess
import time

import pytest

import graphc as gc
from graphc import optim

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium binary (Debian: apt-get install chromium) to render in")


@pytest.fixture(scope="module")
def lenet_step():
    return gc.training_step(gc.models.lenet5(seed=0), None, optim.Adam(1e-3))


@pytest.fixture(scope="module")
def lenet_page(lenet_step, tmp_path_factory):
    path = tmp_path_factory.mktemp("viewer") / "lenet_step.html"
    gc.inspect.to_html(lenet_step, path, {"N": 128})
    return path


def _data(page: str) -> dict:
    blob = re.search(r'<script type="application/json" id="graphc-data">(.*?)</script>', page,
                     re.S).group(1)
    return json.loads(blob)


def test_page_is_self_contained(lenet_page):
    page = lenet_page.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "http://" not in page and "https://" not in page     # nothing to fetch, no URL at all
    assert not re.search(r"<(script|link|img|iframe)[^>]*(src|href)=", page)
    assert '<label for="search">' in page                          # the search box has a label


def test_page_carries_every_node_with_source_provenance_and_cost(lenet_step, lenet_page):
    data = _data(lenet_page.read_text(encoding="utf-8"))
    by_name = {n["name"]: n for n in data["nodes"]}
    expected = [v.name for v in lenet_step.inputs + lenet_step.params] + \
        [n.output.name for n in lenet_step.nodes]
    assert sorted(by_name) == sorted(expected)
    for node in lenet_step.nodes:
        rec = by_name[node.output.name]
        assert rec["op"] == node.op.name and rec.get("source") == node.source
        assert rec.get("origin") == node.origin and "flops" in rec
    kinds = {n["kind"] for n in data["nodes"]}
    assert {"forward", "backward", "optimizer", "param", "state", "input"} <= kinds
    # conv2's input gradient sits with conv2 (the forward op it comes from), not with pool1
    assert by_name["d_pool1.max_pool2d"]["scope"] == "conv2"
    # every node is in exactly one group's layers
    placed = [it for g in data["groups"] for row in g["layers"] for it in row if isinstance(it, int)]
    assert sorted(placed) == list(range(len(data["nodes"])))


def test_script_is_valid_javascript(lenet_page, tmp_path):
    node = shutil.which("node")
    if node is None:
        pytest.skip("no node binary to check the page's script with")
    page = lenet_page.read_text(encoding="utf-8")
    script = re.search(r"<script>(.*?)</script>", page, re.S).group(1)
    (tmp_path / "viewer.js").write_text(script)
    res = subprocess.run([node, "--check", str(tmp_path / "viewer.js")], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def _chromium(url: str, *args: str) -> str:
    res = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                          "--window-size=1400,900", *args, url],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout


def _non_white_share(png) -> float:
    from PIL import Image
    img = Image.open(png).convert("L")
    hist = img.histogram()
    return 1 - sum(hist[245:]) / (img.width * img.height)


@needs_chromium
def test_lenet_step_renders_nodes_in_the_first_screen(lenet_page, tmp_path):
    dom = _chromium(lenet_page.as_uri(), "--dump-dom")
    assert re.search(r'data-rendered="\d+"', dom), "the viewer's script did not finish"
    assert dom.count('class="leaf"') >= 5 and dom.count('class="tog"') >= 5
    shot = tmp_path / "lenet_step.png"
    _chromium(lenet_page.as_uri(), f"--screenshot={shot}")
    assert _non_white_share(shot) > 0.02


@needs_chromium
def test_search_by_source_line_finds_and_reveals_the_node(lenet_step, lenet_page):
    node = next(n for n in lenet_step.nodes if n.op.name == "conv_transpose2d")
    line = node.source.rsplit("/", 1)[-1]            # e.g. models.py:128
    dom = _chromium(lenet_page.as_uri() + "#search=" + line, "--dump-dom")
    results = re.search(r'<div id="results"[^>]*>(.*?)</div>\s*<div id="canvas"', dom, re.S).group(1)
    assert node.output.name in results and line in results
    # the first match is revealed (its groups opened, drawn) and shown in the side panel
    first = next(n for n in lenet_step.nodes if n.source and line in n.source)
    assert f"<h2>%{first.output.name}</h2>" in dom
    k = re.search(r'<g class="leaf" data-k="(n\d+)"><rect class="n sel', dom)
    assert k, "the revealed node is not drawn selected"


@pytest.mark.slow
@needs_chromium
@pytest.mark.parametrize("model", ["lstm_unrolled", "deep_mlp"])
def test_a_5000_node_step_opens_fast_with_nodes_visible(tmp_path, model):
    g = (gc.models.lstm(steps=120, unroll=True) if model == "lstm_unrolled"
         else gc.models.mlp((4,) * 420 + (3,), seed=0))
    step = gc.training_step(g, None, optim.SGD(0.1))
    entries = len(step.nodes) + len(step.inputs)
    assert entries >= 5000
    path = gc.inspect.to_html(step, tmp_path / "big.html", {"N": 8})
    t0 = time.perf_counter()
    dom = _chromium(f"file://{path}", "--dump-dom")
    wall = time.perf_counter() - t0
    ms = int(re.search(r'data-rendered="(\d+)"', dom).group(1))
    assert ms < 3000, f"first render took {ms} ms"    # the script's own clock, data parse included
    assert wall < 30                                   # the whole browser start and load
    assert dom.count('class="leaf"') >= 1 and dom.count('class="tog"') >= 10
    shot = tmp_path / "big.png"
    _chromium(f"file://{path}", f"--screenshot={shot}")
    assert _non_white_share(shot) > 0.02
