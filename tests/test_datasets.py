"""graphc.datasets: splits, the digit forms, the adding problem, the char corpus, IDX files."""
import gzip

import numpy as np
import pytest

from graphc import datasets as D


def test_digits_forms_are_views_of_the_same_split():
    flat_tr, flat_te = D.digits("flat")
    img_tr, _ = D.digits("image")
    big_tr, big_te = D.digits("image32")
    rows_tr, _ = D.digits("rows")
    assert flat_tr["x"].shape == (1438, 64) and flat_te["x"].shape == (359, 64)
    assert big_tr["x"].shape == (1438, 1, 32, 32) and big_te["x"].dtype == np.float32
    assert rows_tr["x"].shape == (1438, 8, 8)
    np.testing.assert_array_equal(flat_tr["y"], big_tr["y"])
    np.testing.assert_array_equal(flat_tr["x"], rows_tr["x"].reshape(-1, 64))
    np.testing.assert_array_equal(img_tr["x"][:, 0], big_tr["x"][:, 0, ::4, ::4])
    assert 0.0 <= flat_tr["x"].min() and flat_tr["x"].max() == 1.0
    assert set(np.unique(flat_tr["y"])) == set(range(10))
    other, _ = D.digits("flat", seed=1)
    assert not np.array_equal(other["y"], flat_tr["y"])
    with pytest.raises(ValueError, match="form must be"):
        D.digits("square")


def test_tabular_sets_are_standardized_by_the_train_split():
    tr, te = D.breast_cancer()
    assert tr["x"].shape == (455, 30) and te["x"].shape == (114, 30)
    np.testing.assert_allclose(tr["x"].mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(tr["x"].std(0), 1, atol=1e-4)
    assert set(np.unique(tr["y"])) == {0.0, 1.0}
    dtr, _ = D.diabetes()
    assert dtr["x"].shape == (354, 10) and dtr["y"].dtype == np.float32
    itr, ite = D.iris()
    assert len(itr["x"]) + len(ite["x"]) == 150 and itr["y"].dtype == np.int64


def test_adding_problem():
    d = D.adding_problem(500, length=50, seed=3)
    x, y = d["x"], d["y"]
    assert x.shape == (500, 50, 2) and y.shape == (500,)
    marks = x[:, :, 1]
    assert np.all(marks.sum(1) == 2)
    assert np.all(marks[:, :25].sum(1) == 1) and np.all(marks[:, 25:].sum(1) == 1)
    np.testing.assert_allclose(y, (x[:, :, 0] * marks).sum(1), rtol=1e-6)
    assert abs(np.mean((y - 1.0) ** 2) - 1 / 6) < 0.03  # the trivial baseline's error
    np.testing.assert_array_equal(D.adding_problem(5, seed=3)["x"][:, :, 1].sum(1), 2)


def test_char_corpus_from_the_standard_library():
    text = D.stdlib_text(max_chars=5000)
    assert len(text) == 5000 and "def " in text
    train, val, vocab = D.char_corpus(seq_len=32, max_chars=20000)
    assert train["x"].shape[1] == 32 and train["x"].dtype == np.int64
    np.testing.assert_array_equal(train["x"][:, 1:], train["y"][:, :-1])
    assert vocab.decode(vocab.encode("def f(x):")) == "def f(x):"
    assert train["x"].max() < len(vocab) and len(val["x"]) > 0


@pytest.mark.parametrize("dtype", ["uint8", "int8", "int16", "int32", "float32", "float64"])
@pytest.mark.parametrize("gz", [False, True])
def test_idx_round_trip(tmp_path, dtype, gz):
    a = (np.random.default_rng(0).standard_normal((3, 4, 5)) * 50).astype(dtype)
    path = tmp_path / ("a.idx" + (".gz" if gz else ""))
    D.write_idx(path, a)
    b = D.read_idx(path)
    assert b.dtype == np.dtype(dtype) and b.shape == (3, 4, 5)
    np.testing.assert_array_equal(a, b)


def test_idx_header_is_the_mnist_format(tmp_path):
    a = np.arange(6, dtype=np.uint8).reshape(2, 3)
    D.write_idx(tmp_path / "x", a)
    raw = (tmp_path / "x").read_bytes()
    assert raw[:4] == bytes([0, 0, 0x08, 2])
    assert raw[4:12] == (2).to_bytes(4, "big") + (3).to_bytes(4, "big")
    assert raw[12:] == bytes(range(6))


def test_idx_errors(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="not an IDX file"):
        D.read_idx(tmp_path / "bad")
    D.write_idx(tmp_path / "t", np.zeros((4, 4), np.uint8))
    (tmp_path / "t").write_bytes((tmp_path / "t").read_bytes()[:-3])
    with pytest.raises(ValueError, match="truncated"):
        D.read_idx(tmp_path / "t")
    with pytest.raises(TypeError, match="no IDX code"):
        D.write_idx(tmp_path / "u", np.zeros(2, np.int64))


def test_load_mnist_from_small_idx_files(tmp_path):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (7, 28, 28)).astype(np.uint8)
    labels = rng.integers(0, 10, 7).astype(np.uint8)
    D.write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", imgs)
    with gzip.open(tmp_path / "t10k-labels-idx1-ubyte.gz", "wb") as f:
        f.write(bytes([0, 0, 8, 1]) + (7).to_bytes(4, "big") + labels.tobytes())
    d = D.load_mnist(tmp_path, "test")
    assert d["x"].shape == (7, 1, 28, 28) and d["x"].dtype == np.float32
    np.testing.assert_allclose(d["x"][:, 0] * 255, imgs, atol=1e-4)
    np.testing.assert_array_equal(d["y"], labels)
    assert D.load_mnist(tmp_path, "test", flat=True)["x"].shape == (7, 784)
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        D.load_mnist(tmp_path, "train")


def test_augment_shifts_moves_whole_images():
    x = np.zeros((3, 1, 6, 6), np.float32)
    x[:, 0, 2, 3] = 1.0
    d = D.augment_shifts({"x": x, "y": np.arange(3)}, copies=2, max_shift=2, seed=0)
    assert d["x"].shape == (9, 1, 6, 6)
    np.testing.assert_array_equal(d["y"], np.tile(np.arange(3), 3))
    np.testing.assert_array_equal(d["x"][:3], x)
    for img in d["x"][3:]:
        (r,), (c,) = np.nonzero(img[0].sum(1))[0:1], np.nonzero(img[0].sum(0))[0:1]
        assert abs(r - 2) <= 2 and abs(c - 3) <= 2 and img.sum() == 1.0
