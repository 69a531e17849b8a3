"""Property tests of the input validator: over random label arrays, dtypes, batch sizes and data
shapes it never lets a bad batch through and never rejects a good one (executables, steppers and
the Trainer all go through graphc/ir/feeds.py). Hypothesis prints the failing example to replay."""
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import graphc as gc
from graphc import nn, optim

CLASSES, FEATURES = 5, 4

lin = nn.Linear(FEATURES, CLASSES)


@gc.function(x=gc.spec(("N", FEATURES)), y=gc.spec(("N",), "int64"))
def loss_fn(x, y):
    return nn.cross_entropy(lin(x), y)


GRAPH = loss_fn.graph
STEPPER = gc.make_stepper(gc.training_step(GRAPH, optimizer=optim.SGD(0.01)), "numpy")
EXE = gc.compile(GRAPH, "numpy")

X_DTYPES = ["float32", "float64", "float16", "int64"]
Y_DTYPES = ["int64", "int32", "int8", "uint8", "uint64", "bool", "float32"]


FAULTS = ["none", "none", "label", "label", "length", "features", "rank", "x_dtype", "y_dtype",
          "missing", "extra"]


@st.composite
def feeds(draw):
    """A batch that is right, or wrong in exactly one way (so no fault hides behind another)."""
    fault = draw(st.sampled_from(FAULTS))
    n = draw(st.integers(1 if fault == "label" else 0, 24))
    ny = draw(st.integers(0, 24).filter(lambda m: m != n)) if fault == "length" else n
    features = draw(st.sampled_from([1, 3, 5])) if fault == "features" else FEATURES
    # dtypes of the right kind are cast (float64 -> float32, uint8 -> int64); others are errors
    x_dtype = draw(st.sampled_from(["int64", "int32"] if fault == "x_dtype" else
                                   ["float32", "float32", "float64", "float16"]))
    y_dtype = draw(st.sampled_from(["float32", "float64"] if fault == "y_dtype" else
                                   ["int64", "int64", "int32", "int8", "uint8", "uint64", "bool"]))
    labels = np.array(draw(st.lists(st.integers(0, CLASSES - 1), min_size=ny, max_size=ny)), np.int64)
    if y_dtype == "bool":
        labels = labels % 2
    if fault == "label":  # one value at or beyond an edge of [0, CLASSES), at one or more places
        bad = draw(st.sampled_from([-1, CLASSES, -2, CLASSES + 1, CLASSES + 100]))
        where = draw(st.lists(st.integers(0, ny - 1), min_size=1, max_size=3))
        labels[where] = bad
        y_dtype = draw(st.sampled_from(["int64", "int32", "int8"] if bad < 0 else ["int64", "uint8", "uint64"]))
    x = np.zeros((n,) if fault == "rank" else (n, features), x_dtype)
    y = labels.astype(y_dtype)
    batch = {"x": x, "y": y}
    if fault == "missing":
        del batch[draw(st.sampled_from(["x", "y"]))]
    if fault == "extra":
        batch[draw(st.sampled_from(["z", "lr", "fc.weight"]))] = x
    return batch


def is_good(batch) -> bool:
    """The oracle, written independently of graphc: what a correct validator accepts."""
    if set(batch) != {"x", "y"}:
        return False
    x, y = batch["x"], batch["y"]
    if x.dtype.kind != "f" or x.ndim != 2 or x.shape[1] != FEATURES:
        return False
    if y.dtype.kind not in "iub" or y.ndim != 1 or len(y) != x.shape[0]:
        return False
    return all(0 <= int(v) < CLASSES for v in y.tolist())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(feeds())
def test_stepper_check_accepts_exactly_the_good_batches(batch):
    good = is_good(batch)
    try:
        out = STEPPER.check_batch(batch)
    except gc.FeedError:
        assert not good, "a good batch was rejected"
        return
    assert good, f"a bad batch got through: {({k: (v.dtype, v.shape) for k, v in batch.items()})}"
    assert out["x"].dtype == np.float32 and out["y"].dtype == np.int64
    np.testing.assert_array_equal(out["y"], batch["y"].astype(np.int64))
    np.testing.assert_array_equal(out["x"], batch["x"].astype(np.float32))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(feeds())
def test_executable_runs_exactly_the_good_batches(batch):
    good = is_good(batch)
    try:
        out = EXE.run(batch)
    except gc.FeedError:
        assert not good, "a good batch was rejected"
        return
    assert good, "a bad batch got through"
    assert len(batch["y"]) == 0 or math.isfinite(float(out["output"]))


TRAINER = gc.Trainer(loss_fn, optimizer=optim.SGD(0.01), backend="numpy", progress=False)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(0, 30),
       batch_size=st.one_of(st.integers(-2, 40), st.sampled_from([None, 2.0, "8", True])),
       bad_at=st.one_of(st.none(), st.integers(0, 29)),
       bad_label=st.sampled_from([-1, CLASSES, CLASSES + 7]),
       as_tuple=st.booleans())
def test_trainer_trains_on_good_data_and_rejects_bad_data_before_a_step(n, batch_size, bad_at, bad_label,
                                                                         as_tuple):
    rng = np.random.default_rng(n)
    x = rng.normal(size=(n, FEATURES)).astype(np.float32)
    y = rng.integers(0, CLASSES, n)
    bad = bad_at is not None and bad_at < n
    if bad:
        y[bad_at] = bad_label
    data = (x, y) if as_tuple else {"x": x, "y": y}
    step0, epoch0 = TRAINER.step, TRAINER.epoch
    bs_ok = isinstance(batch_size, int) and not isinstance(batch_size, bool) and batch_size > 0
    try:
        TRAINER.fit(data, epochs=epoch0 + 1, batch_size=batch_size, shuffle=True)
    except (TypeError, ValueError) as exc:  # FeedError is a ValueError
        assert not bs_ok or n == 0 or bad, f"good data rejected: {exc}"
        if bs_ok and n and bad:
            assert isinstance(exc, gc.FeedError) and f"label {bad_label} at index {bad_at}" in str(exc)
        assert TRAINER.step == step0 and TRAINER.epoch == epoch0, "a step ran on rejected data"
        return
    assert bs_ok and n > 0 and not bad, "bad data or a bad batch size got through"
    assert TRAINER.step - step0 == -(-n // batch_size)
    assert math.isfinite(TRAINER.history.steps[-1])


def test_the_property_oracle_is_not_vacuous():
    """The generator produces both outcomes, so the properties above test something."""
    from hypothesis import find
    good = find(feeds(), lambda b: is_good(b) and len(b["y"]) > 0)
    bad = find(feeds(), lambda b: not is_good(b) and set(b) == {"x", "y"} and b["x"].shape[0] > 0)
    assert is_good(good) and not is_good(bad)
