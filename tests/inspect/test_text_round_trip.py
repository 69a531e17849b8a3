"""The text form never lies: an elided constant is given back exactly or parsing fails naming it."""
import numpy as np
import pytest

import graphc as gc
from graphc import models


def _round_trip(g):
    return gc.parse_graph(str(g), params={**g.param_data(), **gc.elided_constants(g)})


@pytest.mark.parametrize("build", [lambda: models.lenet5(seed=0),
                                   lambda: models.lstm(steps=3, input=4, hidden=5, seed=0)],
                         ids=["lenet5", "lstm"])
def test_loss_is_bit_identical_after_a_round_trip_with_the_constants(build):
    g = build()
    assert gc.elided_constants(g), "the model should have a constant the printer elides"
    g2 = _round_trip(g)
    assert str(g2) == str(g) and "elided" not in g2.meta
    feeds = models.example_feeds(g, 4)
    a, b = gc.compile(g)(**feeds)["loss"], gc.compile(g2)(**feeds)["loss"]
    assert a != 0 and np.asarray(a).tobytes() == np.asarray(b).tobytes()


def test_elided_constants_without_values_raise_naming_each_one():
    g = models.lenet5(seed=0)
    names = list(gc.elided_constants(g))
    with pytest.raises(gc.ParseError) as err:
        gc.parse_graph(str(g), params=g.param_data())
    msg = str(err.value)
    assert all(f"%{n} = constant" in msg for n in names) and "elided='zeros'" in msg


def test_elided_zeros_is_an_explicit_opt_in_that_records_the_names():
    g = models.lenet5(seed=0)
    g2 = gc.parse_graph(str(g), params=g.param_data(), elided="zeros")
    assert g2.meta["elided"] == list(gc.elided_constants(g))
    with pytest.raises(ValueError, match="elided must be"):
        gc.parse_graph(str(g), elided="ignore")


def test_a_constant_given_with_the_wrong_shape_is_an_error():
    g = models.lenet5(seed=0)
    name, value = next(iter(gc.elided_constants(g).items()))
    with pytest.raises(gc.ParseError, match=name):
        gc.parse_graph(str(g), params={name: np.zeros(value.size + 1, value.dtype)})
