"""Batching: seeded replayable shuffles, partial last batches, iterables of dicts."""
import numpy as np
import pytest

from graphc.runtime import data as D


def test_batches_cover_everything_with_a_partial_last():
    d = {"x": np.arange(10)[:, None] * 1.0, "y": np.arange(10)}
    bs = list(D.batches(d, 4, shuffle=True, seed=3, epoch=1))
    assert [len(b["y"]) for b in bs] == [4, 4, 2]
    ys = np.concatenate([b["y"] for b in bs])
    assert sorted(ys) == list(range(10)) and list(ys) != list(range(10))
    for b in bs:
        assert np.array_equal(b["x"][:, 0], b["y"])
    assert [len(b["y"]) for b in D.batches(d, 4, drop_last=True)] == [4, 4]
    assert D.num_batches(d, 4) == 3 and D.num_batches(d, 4, drop_last=True) == 2


def test_order_depends_only_on_seed_and_epoch():
    a = D.epoch_order(100, 5, 7, True)
    assert np.array_equal(a, D.epoch_order(100, 5, 7, True))
    assert not np.array_equal(a, D.epoch_order(100, 6, 7, True))
    assert np.array_equal(D.epoch_order(5, 0, 0, False), np.arange(5))


def test_iterable_of_dicts_and_key_filter():
    it = [{"x": np.ones(2), "junk": 1}, {"x": np.zeros(3), "junk": 2}]
    out = list(D.batches(it, names=["x"]))
    assert [list(b) for b in out] == [["x"], ["x"]] and len(out[1]["x"]) == 3


def test_length_mismatch_is_named():
    with pytest.raises(ValueError, match="x=3, y=4"):
        D.num_examples({"x": np.zeros(3), "y": np.zeros(4)})


def test_split_and_standardize():
    d = {"x": np.arange(20.0)[:, None], "y": np.arange(20)}
    tr, te = D.train_test_split(d, 0.25, seed=0)
    assert len(tr["y"]) == 15 and len(te["y"]) == 5
    assert sorted(np.concatenate([tr["y"], te["y"]])) == list(range(20))
    a, b = D.standardize(tr["x"], te["x"])
    assert abs(a.mean()) < 1e-12 and abs(a.std() - 1) < 1e-9 and b.shape == te["x"].shape
