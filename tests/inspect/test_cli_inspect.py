"""`graphc show` with --stats, --dot, --html, --grad and --bind."""
from __future__ import annotations

import graphc as gc
from graphc import cli


def test_show_stats_with_bindings(capsys):
    assert cli.main(["show", "mlp", "--summary", "--stats", "--bind", "N=128"]) == 0
    out = capsys.readouterr().out
    assert "graph 'mlp' with N=128" in out and "FLOPs" in out and "fc1.weight" in out
    assert "graph mlp(" not in out  # --summary leaves the graph text out


def test_show_writes_dot_and_html(tmp_path, capsys):
    dot, page = tmp_path / "g.dot", tmp_path / "g.html"
    assert cli.main(["show", "logistic_regression", "--dot", str(dot), "--html", str(page)]) == 0
    out = capsys.readouterr().out
    assert f"wrote {dot}" in out and f"wrote {page}" in out
    assert dot.read_text().startswith("digraph") and "<svg" in page.read_text()
    assert 'id="graphc-data"' in page.read_text()       # the interactive viewer


def test_show_grad_of_an_onnx_file(tmp_path, capsys):
    path = tmp_path / "lenet5.onnx"
    gc.export_onnx(gc.models.lenet5(), path)
    assert cli.main(["show", str(path), "--grad", "--stats", "--nodes", "--summary",
                     "--bind", "N=4"]) == 0
    out = capsys.readouterr().out
    assert "graph 'lenet5_grad' with N=4" in out and "backward" in out
    assert "lenet5.onnx:" in out  # node sources point into the ONNX file


def test_bad_binding_is_a_clear_error(capsys):
    assert cli.main(["show", "mlp", "--stats", "--bind", "N128"]) == 2
    assert "expected SYMBOL=SIZE" in capsys.readouterr().err
