"""Optimizers take torch.optim's form, `Adam(model.parameters(), lr=...)`, as well as graphc's."""
from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc import nn, optim


def _problem():
    gc.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 2))
    frozen = nn.Linear(2, 2)

    @gc.function(x=gc.spec(("N", 3)), y=gc.spec(("N",), "int64"))
    def loss_fn(x, y):
        return {"loss": nn.cross_entropy(frozen(model(x)), y)}

    rng = np.random.default_rng(0)
    data = {"x": rng.standard_normal((64, 3)).astype(np.float32), "y": rng.integers(0, 2, 64)}
    return model, frozen, loss_fn, data


@pytest.mark.parametrize("cls", [optim.SGD, optim.Adam, optim.AdamW, optim.RMSprop, optim.Adagrad,
                                 optim.Rprop])
def test_params_first_like_torch_optim(cls):
    model, _, _, _ = _problem()
    o = cls(model.parameters(), lr=0.05)
    assert o.lr == 0.05 and len(o.params) == 4
    assert "params" not in repr(o)  # checkpoints record the options, not the tensors
    assert cls(0.05).params is None and cls(lr=0.05).lr == 0.05


def test_only_the_optimizers_parameters_train():
    model, frozen, loss_fn, data = _problem()
    before = {k: v.copy() for k, v in frozen.state_dict().items()}
    tr = gc.Trainer(loss_fn, optimizer=optim.Adam(model.parameters(), lr=1e-2), progress=False)
    assert tr.spec.params == ["0.weight", "0.bias", "2.weight", "2.bias"]  # not frozen's
    tr.fit(data, epochs=2, batch_size=16)
    assert all(np.array_equal(before[k], v) for k, v in frozen.state_dict().items())


def test_bad_first_argument_says_what_it_expects():
    with pytest.raises(TypeError, match="learning rate .* or the parameters"):
        optim.SGD("0.1")
    with pytest.raises(TypeError, match="parameter groups"):
        optim.SGD([{"params": []}], lr=0.1)
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.Adam([], lr=0.1)
