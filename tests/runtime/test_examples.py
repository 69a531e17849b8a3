"""The examples/ scripts reach their stated accuracies; the stand-alone ONNX script needs no graphc."""
import importlib.util
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load(name):
    path = os.path.join(ROOT, "examples", f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"example_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_logistic_regression_breast_cancer_and_standalone_onnx(tmp_path, capsys):
    pytest.importorskip("sklearn")
    res = load("logistic_regression").main(["--quiet", "--export", str(tmp_path)])
    assert res["accuracy"] >= 0.95
    # the stand-alone script, in a fresh interpreter where importing graphc is impossible
    script = os.path.join(ROOT, "examples", "onnx_standalone_train.py")
    code = ("import sys, runpy; sys.modules['graphc'] = None; sys.argv = ['x', sys.argv[1]]; "
            "runpy.run_path(%r, run_name='__main__')" % script)
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    acc = float(out.stdout.strip().splitlines()[-1].split()[-1])
    # printed to 4 digits; one test example is 1/114 = 0.0088, so this means the same count
    assert acc >= 0.95 and acc == pytest.approx(res["accuracy"], abs=1e-3)


def test_digits_mlp(tmp_path):
    pytest.importorskip("sklearn")
    res = load("digits_mlp").main(["--quiet", "--epochs", "15", "--plot", str(tmp_path / "c.png")])
    assert res["accuracy"] >= 0.96
    assert (tmp_path / "c.png").stat().st_size > 5000


def test_xor_reaches_100_percent():
    assert load("xor_mlp").main([])["accuracy"] == 1.0


def test_finetune_imported_onnx_cnn(tmp_path):
    res = load("finetune_onnx").main(["--quiet", "--out", str(tmp_path)])
    assert res["accuracy"] >= 0.95 and res["onnxruntime_accuracy"] == pytest.approx(res["accuracy"])
    assert (tmp_path / "finetuned.onnx").exists()
