"""The backend protocol: a backend registered from outside graphc trains through gc.Trainer."""
from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc import nn, optim
from graphc.ops.interpret import interpret


class ToyExecutable(gc.Executable):
    """Runs graphs with the ops' reference kernels, counting its runs (a third party's backend)."""

    backend = "toy"
    runs = 0

    def _run(self, feeds, bindings):
        type(self).runs += 1
        env = interpret(self.graph, feeds, bindings)
        return [env[v.name] for v in self.graph.outputs.values()]


class ToyBackend(gc.Backend):
    name = "toy"
    devices = ("cpu",)
    lowering_rule = "ref"

    def compile(self, graph, device="cpu", **options):
        return ToyExecutable(graph, device)


@pytest.fixture
def toy():
    gc.register_backend(ToyBackend())
    ToyExecutable.runs = 0
    yield
    gc.unregister_backend("toy")


def _mlp_problem(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((256, 4)).astype(np.float32)
    y = (x[:, 0] * x[:, 1] > 0).astype(np.int64) + 2 * (x[:, 2] > 0.5)
    gc.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 4))

    @gc.function(x=gc.spec(("N", 4)), y=gc.spec(("N",), "int64"))
    def loss_fn(x, y):
        logits = model(x)
        return {"loss": nn.cross_entropy(logits, y), "logits": logits}

    return model, loss_fn, {"x": x, "y": y}


def test_trainer_trains_the_mlp_on_a_backend_registered_outside_graphc(toy):
    model, loss_fn, data = _mlp_problem()
    before = {k: v.copy() for k, v in model.state_dict().items()}
    trainer = gc.Trainer(loss_fn, model, optimizer=optim.Adam(0.02), backend="toy", progress=False)
    assert trainer.stepper.backend == "toy"
    first = trainer.evaluate(data)["loss"]
    trainer.fit(data, epochs=15, batch_size=64)
    last = trainer.evaluate(data)
    assert ToyExecutable.runs >= 15 * 4  # every step ran on the toy backend, and evaluation too
    assert last["loss"] < 0.6 * first and last["accuracy"] > 0.8, (first, last)
    assert any(not np.array_equal(before[k], v) for k, v in model.state_dict().items())


def test_toy_backend_matches_numpy_step_for_step(toy):
    losses = {}
    for backend in ("toy", "numpy"):
        model, loss_fn, data = _mlp_problem(seed=1)
        tr = gc.Trainer(loss_fn, model, optimizer=optim.SGD(0.1, momentum=0.9), backend=backend,
                        progress=False)
        tr.fit(data, epochs=2, batch_size=64, shuffle=False)
        losses[backend] = tr.history.steps
    np.testing.assert_allclose(losses["toy"], losses["numpy"], rtol=1e-6)


def test_compile_and_check_lowering_ask_the_registry(toy):
    with gc.Graph("g") as g:
        x = g.input("x", ("N", 3))
        g.output(y=gc.exp(x) * 2.0)
    exe = gc.compile(g, backend="toy")
    np.testing.assert_allclose(exe(x=np.ones((2, 3), np.float32))["y"], 2 * np.e, rtol=1e-6)
    assert gc.check_lowering(g, backend="toy") == []
    assert "toy" in gc.available_backends()
    with pytest.raises(ValueError, match="runs on the CPU only"):
        gc.compile(g, backend="toy", device="cuda")


def test_unknown_backend_lists_the_registered_ones():
    with gc.Graph("g") as g:
        g.output(y=g.input("x", (2,)) + 1.0)
    with pytest.raises(ValueError, match="unknown backend 'nope'.*numpy.*onnxruntime.*tvm"):
        gc.compile(g, backend="nope")
    with pytest.raises(ValueError, match="unknown backend"):
        gc.check_lowering(g, backend="nope")


def test_registering_a_taken_name_needs_replace(toy):
    class Other(gc.Backend):
        name = "toy"

        def compile(self, graph, device="cpu", **options):
            raise AssertionError("not used")

    with pytest.raises(ValueError, match="already registered"):
        gc.register_backend(Other())
    with pytest.raises(ValueError, match="has no name"):
        gc.register_backend(type("Nameless", (gc.Backend,), {})())


def test_builtin_backends_implement_the_protocol():
    for name in ("numpy", "onnxruntime", "tvm"):
        b = gc.get_backend(name)
        assert isinstance(b, gc.Backend) and b.name == name
        assert "cpu" in b.available_devices()
    assert gc.get_backend("onnx") is gc.get_backend("onnxruntime")
