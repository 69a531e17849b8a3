"""Training bundles (gc.export_training) and their JavaScript driver (graphc-train.mjs).

The Node.js tests use the npm packages `.ci/run` installs into `.ci/node/node_modules` (pinned:
onnxruntime-node and onnxruntime-web 1.30.0; or the folder named by GRAPHC_NODE_MODULES); they
install nothing themselves and skip, saying what is missing, where `node` or the packages are not
there.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import graphc as gc
from graphc import nn, optim
from graphc.ir.errors import GraphcError
from graphc.runtime.bundle import FORMAT, driver_path, export_training, schedule_to_data

ROOT = Path(__file__).resolve().parents[2]
NODE_MODULES = Path(os.environ.get("GRAPHC_NODE_MODULES", ROOT / ".ci" / "node" / "node_modules"))
RUNNER = Path(__file__).with_name("js") / "run_bundle.mjs"
STEPS, BATCH = 50, 32


def _node_or_skip(package: str) -> str:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed (the bundle tests run the JavaScript driver in Node.js)")
    if not (NODE_MODULES / package / "package.json").is_file():
        pytest.skip(f"npm package {package} is not in {NODE_MODULES}; .ci/run installs it "
                    "(npm install --ignore-scripts onnxruntime-node@1.30.0 onnxruntime-web@1.30.0 "
                    "--prefix .ci/node)")
    return node


def _digits_trainer(schedule_steps: int = STEPS) -> tuple[gc.Trainer, dict]:
    from graphc.demo_train import load_digits_split
    train, _ = load_digits_split(0)
    gc.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))

    @gc.function(x=gc.spec(("N", 64)), y=gc.spec(("N",), "int64"))
    def loss_fn(x, y):
        logits = model(x)
        return {"loss": nn.cross_entropy(logits, y), "logits": logits}
    trainer = gc.Trainer(loss_fn, model, optimizer=optim.Adam(3e-3),
                         schedule=optim.schedules.cosine(3e-3, schedule_steps), progress=False)
    return trainer, train


def _batches(train: dict, steps: int) -> dict[str, np.ndarray]:
    out = {}
    n = len(train["y"])
    for i in range(steps):
        s = (i * BATCH) % (n - BATCH)
        out[f"x.{i}"] = np.ascontiguousarray(train["x"][s:s + BATCH])
        out[f"y.{i}"] = np.ascontiguousarray(train["y"][s:s + BATCH])
    return out


@pytest.fixture(scope="module")
def digits_bundle(tmp_path_factory):
    """A digits-MLP bundle of the initial state, its batches, and Python's 50-step run of it."""
    from safetensors.numpy import save_file
    d = tmp_path_factory.mktemp("bundle")
    trainer, train = _digits_trainer()
    manifest = export_training(trainer, d / "bundle", batch_size=BATCH, steps=STEPS)
    batches = _batches(train, STEPS)
    save_file(batches, str(d / "batches.safetensors"))
    # what Trainer.fit does each step: the batch and the schedule's lr for the global step
    metrics = [trainer.stepper.step({"x": batches[f"x.{i}"], "y": batches[f"y.{i}"]},
                                    trainer.schedule(i)) for i in range(STEPS)]
    return {"dir": d, "bundle": d / "bundle", "manifest": manifest, "batches": batches,
            "losses": [float(m["loss"]) for m in metrics],
            "accuracy": [float(m["accuracy"]) for m in metrics],
            "state": trainer.stepper.state_dict(), "trainer": trainer}


def _run_node(node: str, bundle: Path, batches: Path, backend: str, steps: int, out: Path):
    return subprocess.run([node, str(RUNNER), str(driver_path()), str(NODE_MODULES), str(bundle),
                           str(batches), backend, str(steps), str(out)],
                          capture_output=True, text=True, timeout=300)


# ---- the exporter ---------------------------------------------------------------------------------
def test_bundle_holds_step_state_manifest_and_inference_model(digits_bundle):
    from safetensors.numpy import load_file
    b, m = digits_bundle["bundle"], digits_bundle["manifest"]
    assert sorted(p.name for p in b.iterdir()) == ["inference.onnx", "manifest.json",
                                                   "state.safetensors", "step.onnx"]
    assert json.loads((b / "manifest.json").read_text()) == m
    assert m["format"] == FORMAT and m["batch"] == ["x", "y"] and m["metrics"][0] == "loss"
    roles = {i["name"]: i["role"] for i in m["inputs"]}
    assert roles["x"] == "data" and roles["0.weight"] == "param" and roles["step"] == "step"
    assert roles["0.weight.exp_avg"] == "optimizer_state" and roles["lr"] == "lr"
    x = next(i for i in m["inputs"] if i["name"] == "x")
    y = next(i for i in m["inputs"] if i["name"] == "y")
    assert x["shape"] == ["N", 64] and x["dtype"] == "float32"
    assert y["dtype"] == "int64" and y["range"] == [0, 10]
    assert m["updates"]["new.0.weight"] == "0.weight"
    assert m["schedule"] == {"type": "cosine", "base_lr": 3e-3, "total_steps": STEPS, "min_lr": 0.0}
    assert m["batch_size"] == BATCH and m["step_count"] == 0
    state = load_file(str(b / "state.safetensors"))
    initial = digits_bundle["trainer"].spec.initial
    assert sorted(state) == sorted(m["params"] + m["state"])
    for n, a in initial.items():
        np.testing.assert_array_equal(state[n], a)
    assert m["inference"]["outputs"][0]["name"] == "logits"
    assert [i["name"] for i in m["inference"]["inputs"]] == ["x"]


def test_bundle_step_model_runs_on_python_onnxruntime_like_the_trainer(digits_bundle):
    import onnxruntime as ort
    from safetensors.numpy import load_file
    b, batches = digits_bundle["bundle"], digits_bundle["batches"]
    sess = ort.InferenceSession(str(b / "step.onnx"), providers=["CPUExecutionProvider"])
    m = digits_bundle["manifest"]
    state = load_file(str(b / "state.safetensors"))
    names = [o.name for o in sess.get_outputs()]
    sched = digits_bundle["trainer"].schedule
    for i in range(3):
        out = dict(zip(names, sess.run(None, {
            "x": batches[f"x.{i}"], "y": batches[f"y.{i}"], **state,
            "step": np.asarray(i, np.int64), "lr": np.asarray(sched(i), np.float32)})))
        state = {src: out[o] for o, src in m["updates"].items()}
        assert abs(float(out["loss"]) - digits_bundle["losses"][i]) <= 1e-6 * digits_bundle["losses"][i]


def test_bundle_from_a_trained_trainer_has_its_current_state(tmp_path):
    from safetensors.numpy import load_file
    trainer, train = _digits_trainer()
    trainer.fit(train, epochs=1, batch_size=64)
    m = export_training(trainer, tmp_path)
    assert m["step_count"] == trainer.step > 0
    state = load_file(str(tmp_path / "state.safetensors"))
    for n, a in trainer.stepper.state_dict().items():
        np.testing.assert_array_equal(state[n], a)


def test_bundle_of_a_bare_step_graph_uses_the_optimizer_lr(tmp_path):
    trainer, _ = _digits_trainer()
    m = export_training(trainer.step_graph, tmp_path)
    assert m["schedule"] == {"type": "constant", "base_lr": 3e-3}
    assert m["inference"] is None and not (tmp_path / "inference.onnx").exists()


def test_schedules_become_data_and_custom_ones_a_sampled_table():
    S = optim.schedules
    warm = schedule_to_data(S.linear_warmup(S.step_decay(0.1, 10, 0.5), 5, 0.1))
    assert warm == {"type": "linear_warmup", "warmup_steps": 5, "start_factor": 0.1,
                    "after": {"type": "step_decay", "base_lr": 0.1, "step_size": 10, "gamma": 0.5}}
    assert schedule_to_data(0.5) == {"type": "constant", "base_lr": 0.5}
    assert schedule_to_data(lambda t: 1.0 / (t + 1), steps=3) == {"type": "table",
                                                                  "values": [1.0, 0.5, 1 / 3]}
    with pytest.raises(GraphcError, match="steps="):
        schedule_to_data(lambda t: 0.1)


def test_export_training_rejects_a_loss_graph(tmp_path):
    trainer, _ = _digits_trainer()
    with pytest.raises(GraphcError, match="not a training step"):
        export_training(trainer.user_graph, tmp_path)


# ---- the JavaScript driver in Node.js ---------------------------------------------------------------
@pytest.mark.parametrize("backend,package,tol", [("node", "onnxruntime-node", 0.0),
                                                 ("web", "onnxruntime-web", 1e-5)])
def test_node_trains_the_bundle_like_the_trainer(digits_bundle, tmp_path, backend, package, tol):
    """50 steps of the digits MLP (Adam, cosine schedule) in Node.js: onnxruntime-node gives the
    Trainer's losses exactly (same kernels), onnxruntime-web's WASM within 1e-5 relative."""
    from safetensors.numpy import load_file
    node = _node_or_skip(package)
    out = tmp_path / "state.safetensors"
    r = _run_node(node, digits_bundle["bundle"], digits_bundle["dir"] / "batches.safetensors",
                  backend, STEPS, out)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    js = np.array([m["loss"] for m in res["metrics"]])
    py = np.array(digits_bundle["losses"])
    assert len(js) == STEPS and res["stepCount"] == STEPS
    rel = np.abs(js - py) / np.abs(py)
    assert rel.max() <= tol, f"{backend}: largest relative loss difference {rel.max():.3g} at step {rel.argmax()}"
    assert py[-1] < py[0] * 0.75  # it trained
    # the state the driver saved (safetensors written in JavaScript) is the Trainer's
    state = load_file(str(out))
    for n, a in digits_bundle["state"].items():
        np.testing.assert_allclose(state[n], a, rtol=1e-4, atol=1e-6, err_msg=n)
    # predict() runs the inference model with the trained weights
    x = digits_bundle["batches"]["x.0"]
    s = digits_bundle["state"]
    logits = np.maximum(x @ s["0.weight"].T + s["0.bias"], 0) @ s["2.weight"].T + s["2.bias"]
    got = np.array(res["predicted"]["data"], np.float32).reshape(res["predicted"]["dims"])
    np.testing.assert_allclose(got, logits, rtol=1e-4, atol=1e-4)
    # a bad batch is a BundleError naming the tensor
    assert res["badBatch"]["name"] == "BundleError"
    assert "batch input 'x'" in res["badBatch"]["message"] and "[N, 64]" in res["badBatch"]["message"]


def _broken_bundle(src: Path, dst: Path, edit) -> Path:
    shutil.copytree(src, dst)
    m = json.loads((dst / "manifest.json").read_text())
    edit(m)
    (dst / "manifest.json").write_text(json.dumps(m))
    return dst


@pytest.mark.parametrize("edit,message", [
    (lambda m: m.update(format="graphc-training-bundle/9"), "bundle format version 9"),
    (lambda m: next(i for i in m["inputs"] if i["name"] == "0.bias").update(shape=[64]),
     "tensor '0.bias' is float32[128], the manifest says float32[64]"),
    (lambda m: next(i for i in m["inputs"] if i["name"] == "0.weight.exp_avg").update(role="param"),
     "input '0.weight.exp_avg' has role 'param', expected optimizer_state"),
    (lambda m: m["updates"].pop("new.2.bias"), "carried input '2.bias' has no output"),
    (lambda m: m["inputs"].append({"name": "extra", "role": "data", "shape": [1],
                                   "dtype": "float32"}), "input 'extra' is not an input of the model"),
], ids=["version", "shape", "role", "update", "input"])
def test_driver_rejects_a_mismatched_bundle_naming_the_tensor(digits_bundle, tmp_path, edit, message):
    node = _node_or_skip("onnxruntime-node")
    bad = _broken_bundle(digits_bundle["bundle"], tmp_path / "bad", edit)
    r = _run_node(node, bad, digits_bundle["dir"] / "batches.safetensors", "node", 1,
                  tmp_path / "s.safetensors")
    assert r.returncode != 0
    assert "BundleError" in r.stderr and message in r.stderr, r.stderr[-2000:]


def test_driver_schedules_match_python(tmp_path):
    """learningRate() in JavaScript gives graphc.optim.schedules' values (as float32)."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed (the bundle tests run the JavaScript driver in Node.js)")
    S = optim.schedules
    scheds = [S.constant(0.1), S.step_decay(0.1, 7, 0.5), S.exponential(0.1, 0.97),
              S.cosine(3e-3, 40, 1e-4), S.linear_warmup(S.cosine(0.01, 30), 10, 0.1)]
    data = [schedule_to_data(s) for s in scheds]
    script = (f"import {{ learningRate }} from {json.dumps(driver_path().as_uri())};\n"
              f"const data = {json.dumps(data)};\n"
              "console.log(JSON.stringify(data.map((s) => Array.from({length: 50}, (_, t) => learningRate(s, t)))));\n")
    (tmp_path / "lr.mjs").write_text(script)
    r = subprocess.run([node, str(tmp_path / "lr.mjs")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    for s, got in zip(scheds, json.loads(r.stdout)):
        want = np.array([s(t) for t in range(50)], np.float32)
        np.testing.assert_array_equal(np.array(got, np.float32), want, err_msg=repr(s))


# ---- the command line -------------------------------------------------------------------------------
MODEL_FILE = '''
import graphc as gc
from graphc import nn

gc.manual_seed(1)
model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))


@gc.function(x=gc.spec(("N", 4)), y=gc.spec(("N",), "int64"))
def loss_fn(x, y):
    logits = model(x)
    return {"loss": nn.cross_entropy(logits, y), "logits": logits}
'''


def test_cli_export_train_writes_a_bundle_from_a_loss_function(tmp_path, capsys):
    from graphc.cli import main
    (tmp_path / "model.py").write_text(MODEL_FILE)
    rc = main(["export-train", f"{tmp_path / 'model.py'}:loss_fn", "--out", str(tmp_path / "b"),
               "--lr", "0.01", "--batch-size", "16"])
    assert rc == 0, capsys.readouterr().err
    m = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert m["batch"] == ["x", "y"] and m["batch_size"] == 16
    assert m["schedule"] == {"type": "constant", "base_lr": 0.01}
    assert (tmp_path / "b" / "inference.onnx").is_file()
    assert "graphc bundle serve" in capsys.readouterr().out


def test_cli_export_train_digits_and_bad_targets(tmp_path, capsys):
    from graphc.cli import main
    assert main(["export-train", "digits", "--out", str(tmp_path / "d"), "--epochs", "2"]) == 0
    m = json.loads((tmp_path / "d" / "manifest.json").read_text())
    assert m["schedule"]["type"] == "cosine" and m["schedule"]["total_steps"] == 2 * 45
    assert main(["export-train", "nope.py:f", "--out", str(tmp_path / "e")]) == 2
    assert "nope.py: no such Python file" in capsys.readouterr().err


def test_cli_bundle_serve_needs_a_bundle_and_onnxruntime_web(tmp_path, capsys):
    from graphc.cli import main
    assert main(["bundle", "serve", str(tmp_path)]) == 2
    assert "no manifest.json" in capsys.readouterr().err
    export_training(_digits_trainer()[0].step_graph, tmp_path)
    assert main(["bundle", "serve", str(tmp_path), "--ort", str(tmp_path)]) == 2
    assert "onnxruntime-web's dist folder" in capsys.readouterr().err


def test_node_feeds_the_rng_seed_so_dropout_masks_match_python(tmp_path):
    """A model with dropout: the bundle's rng_seed (the Trainer's seed) and step give the same
    masks in Node.js as in Python, so the losses agree exactly."""
    from safetensors.numpy import save_file
    node = _node_or_skip("onnxruntime-node")
    from graphc.demo_train import load_digits_split
    train, _ = load_digits_split(0)
    gc.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 10))

    @gc.function(x=gc.spec(("N", 64)), y=gc.spec(("N",), "int64"))
    def loss_fn(x, y):
        return nn.cross_entropy(model(x), y)
    trainer = gc.Trainer(loss_fn, model, optimizer=optim.SGD(0.1, momentum=0.9), seed=7,
                         progress=False)
    m = export_training(trainer, tmp_path / "b")
    assert m["rng_seed"] and m["seed"] == 7
    steps = 10
    batches = _batches(train, steps)
    save_file(batches, str(tmp_path / "batches.safetensors"))
    py = [float(trainer.stepper.step({"x": batches[f"x.{i}"], "y": batches[f"y.{i}"]},
                                     trainer.schedule(i))[m["metrics"][0]]) for i in range(steps)]
    r = _run_node(node, tmp_path / "b", tmp_path / "batches.safetensors", "node", steps,
                  tmp_path / "s.safetensors")
    assert r.returncode == 0, r.stderr[-3000:]
    js = [mm[m["metrics"][0]] for mm in json.loads(r.stdout.strip().splitlines()[-1])["metrics"]]
    assert js == py
