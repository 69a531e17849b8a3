"""Small real datasets for examples and tests, as dicts of numpy arrays the Trainer consumes.

* scikit-learn's bundled sets (no download): digits (flat, 8x8 images, upsampled 32x32 images, or
  8 row tokens of 8 pixels), breast cancer, diabetes, iris;
* generated: the adding problem (Hochreiter & Schmidhuber 1997);
* text: a character corpus from Python's own standard-library source files;
* the IDX file format (MNIST's) to read and write, for users who have MNIST on disk.

Every split is a seeded permutation, so the same seed gives the same split everywhere. Each
loader returns `(train, test)`, each a dict {"x": ..., "y": ...}.
"""
from __future__ import annotations

import gzip
import os
import struct
import sysconfig
from typing import Any

import numpy as np

Split = tuple[dict[str, np.ndarray], dict[str, np.ndarray]]


def _sklearn():
    try:
        import sklearn.datasets as skd
    except ImportError as exc:  # pragma: no cover - scikit-learn is a test/examples extra
        raise ImportError("graphc.datasets needs scikit-learn for its bundled datasets: "
                          "pip install scikit-learn") from exc
    return skd


def split(x: np.ndarray, y: np.ndarray, test_size: float = 0.2, seed: int = 0) -> Split:
    """A seeded random train/test split of (x, y)."""
    n = len(x)
    perm = np.random.default_rng(seed).permutation(n)
    n_test = int(round(n * test_size))
    te, tr = perm[:n_test], perm[n_test:]
    return {"x": x[tr], "y": y[tr]}, {"x": x[te], "y": y[te]}


def standardize(train: dict[str, np.ndarray], test: dict[str, np.ndarray], key: str = "x",
                eps: float = 1e-8) -> tuple[np.ndarray, np.ndarray]:
    """Scales train[key] and test[key] in place by the TRAIN mean and std; returns (mean, std)."""
    mu = train[key].mean(axis=0)
    sd = train[key].std(axis=0) + eps
    train[key] = ((train[key] - mu) / sd).astype(train[key].dtype)
    test[key] = ((test[key] - mu) / sd).astype(test[key].dtype)
    return mu, sd


def load_digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (1797, 8, 8) in 0..16, labels (1797,)): the digits shipped inside graphc.

    The same arrays as `sklearn.datasets.load_digits()` (UCI, CC BY 4.0; see graphc/data/README.md),
    so the demo and the examples need no scikit-learn.
    """
    from importlib.resources import files
    with files("graphc").joinpath("data/digits.npz").open("rb") as f:
        d = np.load(f)
        return d["images"], d["target"]


def digits(form: str = "flat", test_size: float = 0.2, seed: int = 0,
           dtype: str = "float32") -> Split:
    """scikit-learn's 1,797 handwritten digits (8x8, 16 grey levels), pixels scaled to [0, 1].

    Args:
        form: "flat" (N, 64); "image" (N, 1, 8, 8); "image32" (N, 1, 32, 32), each pixel
            repeated 4x4 (LeNet-5's input size); "rows" (N, 8, 8): 8 time steps of 8 pixels.
        test_size: fraction held out for testing.
        seed: the split's seed.
        dtype: of x; y is int64 class labels 0..9.
    """
    images, target = load_digits_arrays()
    x = (images / 16.0).astype(dtype)
    if form == "flat":
        x = x.reshape(len(x), 64)
    elif form == "image":
        x = x[:, None]
    elif form == "image32":
        x = upsample(x[:, None], 4)
    elif form != "rows":
        raise ValueError(f"digits: form must be 'flat', 'image', 'image32' or 'rows', got {form!r}")
    return split(x, target.astype(np.int64), test_size, seed)


def upsample(images: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour upsampling of (..., H, W) images by an integer factor."""
    return np.repeat(np.repeat(images, factor, axis=-2), factor, axis=-1)


def augment_shifts(data: dict[str, np.ndarray], copies: int = 2, max_shift: int = 4,
                   seed: int = 0) -> dict[str, np.ndarray]:
    """`data` plus `copies` copies of its images (..., H, W) shifted by random whole pixels in
    [-max_shift, max_shift] along each axis (zeros shifted in), labels repeated."""
    rng = np.random.default_rng(seed)
    x = data["x"]
    out = [x]
    h, w = x.shape[-2:]
    for _ in range(copies):
        shifted = np.zeros_like(x)
        for i, (dy, dx) in enumerate(rng.integers(-max_shift, max_shift + 1, (len(x), 2))):
            shifted[i, ..., max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
                x[i, ..., max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
        out.append(shifted)
    rest = {k: np.concatenate([v] * (copies + 1)) for k, v in data.items() if k != "x"}
    return {"x": np.concatenate(out), **rest}


def breast_cancer(test_size: float = 0.2, seed: int = 0, dtype: str = "float32") -> Split:
    """Wisconsin breast cancer (569 x 30), standardized by the train split; y float 0/1."""
    d = _sklearn().load_breast_cancer()
    tr, te = split(d.data.astype(dtype), d.target.astype(dtype), test_size, seed)
    standardize(tr, te)
    return tr, te


def diabetes(test_size: float = 0.2, seed: int = 0, dtype: str = "float32") -> Split:
    """Diabetes progression (442 x 10), x standardized by the train split; y float (raw)."""
    d = _sklearn().load_diabetes()
    tr, te = split(d.data.astype(dtype), d.target.astype(dtype), test_size, seed)
    standardize(tr, te)
    return tr, te


def iris(test_size: float = 0.2, seed: int = 0, dtype: str = "float32") -> Split:
    """Fisher's iris (150 x 4), standardized by the train split; y int64 in 0..2."""
    d = _sklearn().load_iris()
    tr, te = split(d.data.astype(dtype), d.target.astype(np.int64), test_size, seed)
    standardize(tr, te)
    return tr, te


def adding_problem(n: int, length: int = 50, seed: int = 0, dtype: str = "float32"
                   ) -> dict[str, np.ndarray]:
    """The adding problem: x (n, length, 2) holds U(0, 1) values and a 0/1 marker channel with
    one marked position in each half; y (n,) is the sum of the two marked values.

    Predicting the mean (1.0) gives a mean squared error of 1/6 ~ 0.167; solving it needs memory
    across the whole sequence.
    """
    rng = np.random.default_rng(seed)
    vals = rng.random((n, length))
    marks = np.zeros((n, length))
    half = length // 2
    i = rng.integers(0, half, n)
    j = rng.integers(half, length, n)
    marks[np.arange(n), i] = 1
    marks[np.arange(n), j] = 1
    x = np.stack([vals, marks], axis=-1).astype(dtype)
    y = (vals[np.arange(n), i] + vals[np.arange(n), j]).astype(dtype)
    return {"x": x, "y": y}


# ---- text ------------------------------------------------------------------------------------------

#: standard-library modules whose source makes the default corpus (stable across Python 3.x)
STDLIB_FILES = ("argparse.py", "collections/__init__.py", "dataclasses.py", "difflib.py",
                "inspect.py", "json/decoder.py", "json/encoder.py", "logging/__init__.py",
                "pathlib.py", "pprint.py", "shutil.py", "string.py", "textwrap.py",
                "threading.py", "typing.py", "unittest/case.py")


def stdlib_text(files: tuple[str, ...] = STDLIB_FILES, max_chars: int | None = None) -> str:
    """The concatenated source of some of Python's standard-library modules (ASCII only)."""
    root = sysconfig.get_paths()["stdlib"]
    parts = []
    for f in files:
        path = os.path.join(root, f)
        if os.path.exists(path):
            with open(path, encoding="utf-8", errors="replace") as fh:
                parts.append(fh.read())
    if not parts:
        raise FileNotFoundError(f"none of the standard-library files {files[:3]}... exist under {root}")
    text = "\n".join(parts).encode("ascii", "replace").decode("ascii").replace("\t", "    ")
    return text[:max_chars] if max_chars else text


class CharVocab:
    """Characters <-> int ids (sorted unique characters of a text)."""

    def __init__(self, text: str):
        self.chars = sorted(set(text))
        self.index = {c: i for i, c in enumerate(self.chars)}

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        return np.array([self.index[c] for c in text], np.int64)

    def decode(self, ids: Any) -> str:
        return "".join(self.chars[int(i)] for i in np.asarray(ids).reshape(-1))


def char_windows(ids: np.ndarray, seq_len: int, stride: int | None = None
                 ) -> dict[str, np.ndarray]:
    """Language-model windows: x (N, seq_len) and y = x shifted by one character."""
    stride = stride or seq_len
    starts = np.arange(0, len(ids) - seq_len - 1, stride)
    idx = starts[:, None] + np.arange(seq_len)[None]
    return {"x": ids[idx], "y": ids[idx + 1]}


def char_corpus(seq_len: int = 64, max_chars: int | None = 400_000, val_fraction: float = 0.1,
                stride: int | None = None) -> tuple[dict, dict, CharVocab]:
    """(train windows, validation windows, vocab) from the standard-library text; the last
    `val_fraction` of the text is the validation part."""
    text = stdlib_text(max_chars=max_chars)
    vocab = CharVocab(text)
    ids = vocab.encode(text)
    cut = int(len(ids) * (1 - val_fraction))
    return (char_windows(ids[:cut], seq_len, stride), char_windows(ids[cut:], seq_len),
            vocab)


# ---- IDX (the MNIST file format) -----------------------------------------------------------------

_IDX_TYPES = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"),
              0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_IDX_CODES = {np.dtype(v).newbyteorder("=").str[1:]: k for k, v in _IDX_TYPES.items()}


def _open(path: str | os.PathLike, mode: str):
    return gzip.open(path, mode) if os.fspath(path).endswith(".gz") else open(path, mode)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Reads an IDX file (optionally gzipped): magic 0 0 <type> <ndim>, big-endian int32 dims,
    then the data, big-endian. Returns a native-endian array."""
    with _open(path, "rb") as f:
        head = f.read(4)
        if len(head) != 4 or head[0] != 0 or head[1] != 0 or head[2] not in _IDX_TYPES:
            raise ValueError(f"{os.fspath(path)}: not an IDX file (magic bytes {head!r})")
        dt, ndim = _IDX_TYPES[head[2]], head[3]
        dims = struct.unpack(f">{ndim}i", f.read(4 * ndim))
        count = int(np.prod(dims, dtype=np.int64))
        data = f.read(count * dt.itemsize)
    if len(data) != count * dt.itemsize:
        raise ValueError(f"{os.fspath(path)}: truncated IDX file: dims {dims} need "
                         f"{count * dt.itemsize} bytes of data, found {len(data)}")
    return np.frombuffer(data, dt).reshape(dims).astype(dt.newbyteorder("="))


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Writes `array` as an IDX file (gzipped if the name ends in .gz)."""
    a = np.asarray(array)
    key = a.dtype.newbyteorder("=").str[1:]
    if key not in _IDX_CODES:
        raise TypeError(f"write_idx: dtype {a.dtype} has no IDX code; use uint8, int8, int16, "
                        "int32, float32 or float64")
    code = _IDX_CODES[key]
    with _open(path, "wb") as f:
        f.write(bytes([0, 0, code, a.ndim]))
        f.write(struct.pack(f">{a.ndim}i", *a.shape))
        f.write(a.astype(_IDX_TYPES[code]).tobytes())


_MNIST = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
          "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def load_mnist(directory: str | os.PathLike, kind: str = "train", flat: bool = False,
               dtype: str = "float32") -> dict[str, np.ndarray]:
    """MNIST-format data from `directory` (the standard file names, plain or .gz).

    Returns {"x": (N, 1, 28, 28) (or (N, 784) if flat) scaled to [0, 1], "y": int64 labels}.
    """
    names = _MNIST.get(kind)
    if names is None:
        raise ValueError(f"load_mnist: kind must be 'train' or 'test', got {kind!r}")
    found = []
    for base in names:
        cands = [os.path.join(directory, base + ext) for ext in ("", ".gz")]
        cands += [os.path.join(directory, base.replace("-idx", ".idx") + ext) for ext in ("", ".gz")]
        path = next((p for p in cands if os.path.exists(p)), None)
        if path is None:
            raise FileNotFoundError(f"load_mnist: no {base}[.gz] in {os.fspath(directory)}")
        found.append(path)
    images, labels = read_idx(found[0]), read_idx(found[1])
    if len(images) != len(labels):
        raise ValueError(f"load_mnist: {len(images)} images but {len(labels)} labels")
    x = images.astype(dtype) / 255.0
    x = x.reshape(len(x), -1) if flat else x[:, None]
    return {"x": x.astype(dtype), "y": labels.astype(np.int64)}
