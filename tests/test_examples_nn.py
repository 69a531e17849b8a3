"""The issue-6 model-zoo examples, run in reduced form: each still has to reach a real figure on
onnxruntime; the MLP, LeNet-5 and LSTM examples give the same first-epoch loss on every backend.

Full runs and their figures: see each script's docstring (and the closing note).
"""
import importlib.util
import math
import os

import numpy as np
import pytest

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


def load(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", os.path.join(EXAMPLES,
                                                                                  f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def run(name, tmp_path, *args):
    png = tmp_path / f"{name}.png"
    out = load(name).main(["--no-progress", "--plot", str(png), *args])
    assert png.exists() and png.stat().st_size > 1000, "the loss curve PNG was not written"
    return out


def test_linear_regression_matches_closed_form(tmp_path):
    out = run("linear_regression", tmp_path, "--epochs", "100")
    assert abs(out["test_r2"] - out["closed_form_r2"]) < 0.01
    assert out["closed_form_r2"] > 0.4


def test_softmax_regression(tmp_path):
    assert run("softmax_regression", tmp_path, "--epochs", "10")["test_accuracy"] >= 0.93


def test_svm_digits(tmp_path):
    assert run("svm_digits", tmp_path, "--epochs", "10")["test_accuracy"] >= 0.93


def test_mlp_bn_dropout(tmp_path):
    out = run("mlp_bn_dropout", tmp_path, "--epochs", "12")
    assert out["test_accuracy"] >= 0.97
    bn = out["model"][1]
    assert np.abs(bn.running_mean.data).max() > 0.01  # running statistics were fed back


@pytest.mark.slow
def test_lenet5_digits(tmp_path):
    out = run("lenet5_digits", tmp_path, "--epochs", "5")
    assert out["test_accuracy"] >= 0.97


@pytest.mark.slow
def test_rnn_digits_lstm_and_gru(tmp_path):
    out = run("rnn_digits", tmp_path, "--cells", "lstm,gru", "--epochs", "20", "--lr", "1e-2")
    assert out["lstm"]["test_accuracy"] >= 0.95 and out["gru"]["test_accuracy"] >= 0.95


@pytest.mark.slow
def test_adding_problem_gru_solves_it_and_rnn_fails(tmp_path):
    out = run("adding_problem", tmp_path, "--cells", "gru,rnn", "--epochs", "4",
              "--train-size", "5000")
    assert out["gru"]["test_mse"] < 0.01
    assert out["rnn"]["test_mse"] > 0.05  # the vanilla RNN's failure at length 50, shown


@pytest.mark.slow
def test_adding_problem_lstm_solves_it(tmp_path):
    out = run("adding_problem", tmp_path, "--cells", "lstm", "--epochs", "5")
    assert out["lstm"]["test_mse"] < 0.01


@pytest.mark.slow
def test_transformer_digits(tmp_path):
    out = run("transformer_digits", tmp_path, "--epochs", "10", "--layers", "1", "--lr", "5e-3")
    assert out["test_accuracy"] >= 0.95


@pytest.mark.slow
def test_char_lm_beats_the_unigram_entropy_and_samples(tmp_path):
    from graphc import datasets
    out = run("char_lm", tmp_path, "--epochs", "5", "--lr", "4e-3", "--max-chars", "150000",
              "--d-model", "64", "--layers", "2", "--sample-chars", "40")
    text = datasets.stdlib_text(max_chars=150000)
    _, counts = np.unique(list(text), return_counts=True)
    p = counts / counts.sum()
    unigram_bits = float(-(p * np.log2(p)).sum())
    bpc = out["history"]["val_bits_per_char"]
    assert bpc[-1] < bpc[0] and bpc[-1] < 3.0 and bpc[-1] < unigram_bits - 1.0, (bpc, unigram_bits)
    assert len(out["sample"]) == 40


def _tvm_steps():
    try:
        from graphc.backends import tvm as tvm_backend
    except ImportError:
        return False
    return hasattr(tvm_backend, "TvmStepper")


CROSS = {"mlp_bn_dropout": ["--train-size", "256"],
         "lenet5_digits": ["--train-size", "128", "--augment", "0"],
         "rnn_digits": ["--train-size", "256", "--cells", "lstm"]}
_FIRST_LOSS: dict = {}


def first_epoch_loss(name, backend):
    if (name, backend) not in _FIRST_LOSS:
        out = load(name).main(["--no-progress", "--plot", "", "--epochs", "1", "--backend",
                               backend, *CROSS[name]])
        hist = out["lstm"]["history"] if name == "rnn_digits" else out["history"]
        _FIRST_LOSS[name, backend] = hist["loss"][0]
    return _FIRST_LOSS[name, backend]


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CROSS))
@pytest.mark.parametrize("backend", ["onnxruntime", "tvm"])
def test_same_first_epoch_loss_on_every_backend(name, backend):
    """The same model, data order and dropout masks give the same first-epoch loss (1e-4)."""
    if backend == "tvm" and not _tvm_steps():
        pytest.skip("this graphc has no TVM stepper")
    ref = first_epoch_loss(name, "numpy")
    got = first_epoch_loss(name, backend)
    assert math.isfinite(ref) and abs(got - ref) < 1e-4, (name, backend, got, ref)
