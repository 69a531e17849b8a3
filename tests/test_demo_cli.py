"""The demo (issue 2's main job) and the `graphc` command."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import onnx
import pytest

import graphc as gc
from graphc import cli, demo, models


def test_lenet_demo_prints_graph_exports_and_agrees(tmp_path, capsys):
    assert demo.lenet_forward(out_dir=tmp_path, batch=3) == 0
    out = capsys.readouterr().out
    assert "graph lenet5(%x: f32[N, 1, 32, 32])" in out and "conv2d(" in out  # the printed graph
    path = tmp_path / "lenet5.onnx"
    assert str(path.resolve()) in out
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    assert "max |onnxruntime - numpy|" in out and "OK: onnxruntime and the numpy reference agree" in out


def test_compare_measures_relative_to_the_largest_reference_value():
    import numpy as np
    a, r = demo.compare(np.array([1.0, 2.0]), np.array([1.0, 4.0]))
    assert (a, r) == (2.0, 0.5)


def test_forward_demo_fails_on_disagreement(tmp_path, capsys, monkeypatch):
    """A backend that disagrees with the reference makes the demo exit non-zero."""
    import numpy as np
    real = gc.compile

    def skewed(graph, backend="numpy", **kw):
        exe = real(graph, backend, **kw)
        if backend != "onnxruntime":
            return exe
        return lambda **feeds: {k: v * np.float32(1.001) for k, v in exe(**feeds).items()}

    monkeypatch.setattr("graphc.runtime.executable.compile", skewed)
    assert demo.forward_demo(models.mlp((6, 4), with_loss=False), out_dir=tmp_path, show_graph=False) == 1
    assert "MISMATCH" in capsys.readouterr().out


def test_cli_demo_subcommands(tmp_path, capsys):
    # `graphc demo mlp` trains the digits MLP (tests/runtime/test_demo_train.py); the forward check is mlp-forward
    assert cli.main(["demo", "mlp-forward", "--quiet", "--batch", "2", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "== mlp" in out and "graph mlp(" not in out and (tmp_path / "mlp.onnx").exists()
    with pytest.raises(SystemExit):
        cli.main(["demo", "nosuch"])


def test_cli_cuda_on_cpu_onnxruntime_is_a_clear_error(tmp_path, capsys):
    import onnxruntime as ort
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    assert cli.main(["demo", "--quiet", "--device", "cuda", "--out", str(tmp_path)]) == 2
    assert "graphc demo: error: device='cuda' needs onnxruntime with the CUDA provider" in capsys.readouterr().err


def test_cli_show_builtin_python_and_text(tmp_path, capsys):
    assert cli.main(["show", "lenet5", "--summary"]) == 0
    out = capsys.readouterr().out
    assert "params 10 tensors, 61,706 values" in out and "conv2d x2" in out

    src = tmp_path / "mymodel.py"
    src.write_text(textwrap.dedent("""
        import graphc as gc

        @gc.function(x=gc.spec(("N", 3)))
        def f(x):
            return gc.tanh(x) * 2
    """))
    assert cli.main(["show", f"{src}:f"]) == 0
    out = capsys.readouterr().out
    assert "graph f(%x: f32[N, 3])" in out and "mymodel.py:6" in out and "tanh x1" in out

    g = models.gru(steps=2, input=3, hidden=4)
    text_file = tmp_path / "gru.graph"
    text_file.write_text(str(g))
    assert cli.main(["show", str(text_file)]) == 0
    assert capsys.readouterr().out.startswith(str(g) + "\n")

    assert cli.main(["show", f"{src}:nope"]) == 2
    assert "has no attribute 'nope'" in capsys.readouterr().err
    assert cli.main(["show", "nosuchmodel"]) == 2
    assert "expected one of mlp, lenet5" in capsys.readouterr().err


def test_cli_show_onnx_file(tmp_path, capsys):
    g = models.mlp((6, 5, 3), with_loss=False)
    path = tmp_path / "small.onnx"
    gc.export_onnx(g, path)
    assert cli.main(["show", str(path)]) == 0
    out = capsys.readouterr().out
    assert "onnx model 'mlp'" in out and "input  x: float32[N, 6]" in out
    assert "fc1.matmul = MatMul(x, fc1.transpose)" in out and "output logits: float32[N, 3]" in out
    assert f"initializers 4 tensors, {6 * 5 + 5 + 5 * 3 + 3} values" in out
    assert cli.main(["show", str(path), "--summary"]) == 0
    out = capsys.readouterr().out
    assert "MatMul x2" in out and "= MatMul(" not in out
    assert cli.main(["show", str(tmp_path / "missing.onnx")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_console_entry_point_runs_the_demo(tmp_path):
    """`python -m graphc.cli demo` in a fresh process (what `graphc demo` runs): the default
    demo trains the digits MLP; `demo lenet` is the forward cross-check."""
    proc = subprocess.run([sys.executable, "-m", "graphc.cli", "demo", "--quiet", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "OK: test accuracy" in proc.stdout
    assert (tmp_path / "digits_mlp.onnx").exists()
    proc = subprocess.run([sys.executable, "-m", "graphc.cli", "demo", "lenet", "--quiet", "--out",
                           str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "OK: onnxruntime and the numpy reference agree" in proc.stdout
