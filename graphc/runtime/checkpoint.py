"""Checkpoints: safetensors plus a small JSON, checksummed, written atomically, with history.

Layout. `save_checkpoint("run/ckpt", tensors, meta)` writes one checkpoint: `run/ckpt.safetensors`
(the tensors, with the metadata JSON embedded in its header, so the two can never disagree) and
`run/ckpt.json` (the same JSON, for people and tools). With `keep=K` (what `Trainer.fit(checkpoint=
...)` does) it writes a *series* entry named after the global step instead,
`run/ckpt.step-00000120.safetensors` plus `run/ckpt.step-00000120.json`, and then deletes all but
the newest K complete entries.

Integrity. The metadata records every tensor's dtype, shape and the sha256 of its raw bytes, and the
header carries the sha256 of the metadata text itself; `load_checkpoint` checks all of them, so a
changed byte anywhere raises CheckpointError naming the file (and the tensor when it is in tensor
data). Each file is written to a temporary `.ckpt....tmp-<pid>` beside it, flushed, fsynced and
renamed over the target: the safetensors first, the JSON second, so in a series the JSON marks an
entry as complete. A kill at any moment therefore leaves every earlier entry intact.

Which checkpoint a base path means. `load_checkpoint("run/ckpt")` tries the series entries from the
highest step down, then the single `run/ckpt.safetensors`, and returns the first intact one; the
newer ones it skipped (truncated, a changed byte, JSON missing or disagreeing) are named in one
CheckpointWarning. A path naming an existing `.safetensors` (or `.json`) file reads that file
alone, with no fallback; so does one series entry named without a suffix (`run/ckpt.step-00000120`).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "graphc-checkpoint/2"
# version 1 had no checksums and stored 0-d arrays as shape (1,); it is still read
_FORMATS = ("graphc-checkpoint/1", FORMAT)
_META_KEY, _META_SHA_KEY = "graphc", "graphc_sha256"
# test-only: seconds to sleep in the middle of every file write, so the fault tests can kill a
# process while a checkpoint is half written (tests/runtime/test_checkpoint_faults.py)
_TEST_SLEEP_ENV = "GRAPHC_TEST_CHECKPOINT_SLEEP"


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable, damaged or does not match the model."""


class CheckpointWarning(UserWarning):
    """A damaged checkpoint was skipped in favour of an older intact one."""


@dataclass
class LoadedCheckpoint:
    """What `load_latest` read.

    Attributes:
        path: the .safetensors file the tensors came from.
        tensors: name -> array, as saved (0-d arrays stay 0-d).
        meta: the metadata dict (with "format" and, from version 2 on, "tensors").
        skipped: (file, reason) for every newer checkpoint that was damaged or incomplete.
    """

    path: Path
    tensors: dict[str, np.ndarray]
    meta: dict[str, Any]
    skipped: list[tuple[Path, str]] = field(default_factory=list)


# ---- paths ----------------------------------------------------------------------------------------
def _base(path: str | os.PathLike) -> Path:
    """The base path without a .safetensors/.json suffix or a series `.step-N` part."""
    p = Path(path)
    if p.suffix in (".safetensors", ".json"):
        p = p.with_suffix("")
    m = re.fullmatch(r"(.*)\.step-\d+", p.name)
    return p.with_name(m.group(1)) if m else p


def _paths(path: str | os.PathLike) -> tuple[Path, Path]:
    p = Path(path)
    base = p.with_suffix("") if p.suffix in (".safetensors", ".json") else p
    return base.with_name(base.name + ".safetensors"), base.with_name(base.name + ".json")


def series_path(path: str | os.PathLike, step: int) -> Path:
    """The .safetensors file of the series entry of `step`: `<base>.step-<step:08d>.safetensors`.

    Example: `series_path("run/ckpt", 120)` is `Path("run/ckpt.step-00000120.safetensors")`.
    """
    base = _base(path)
    return base.with_name(f"{base.name}.step-{int(step):08d}.safetensors")


def _series(base: Path) -> dict[int, tuple[Path, Path]]:
    """step -> (safetensors, json) for every series entry with at least one of its two files."""
    pat = re.compile(re.escape(base.name) + r"\.step-(\d+)\.(safetensors|json)")
    steps: set[int] = set()
    try:
        names = os.listdir(base.parent if str(base.parent) else ".")
    except FileNotFoundError:
        return {}
    for name in names:
        m = pat.fullmatch(name)
        if m:
            steps.add(int(m.group(1)))
    out = {}
    for s in steps:
        st = series_path(base, s)
        out[s] = (st, st.with_suffix(".json"))
    return out


def list_checkpoints(path: str | os.PathLike) -> list[Path]:
    """The .safetensors files `load_checkpoint(path)` would try, in the order it tries them.

    Series entries come from the highest step down, then the single `<base>.safetensors`; entries
    whose safetensors file is gone (a stale JSON) are left out.

    Example: `list_checkpoints("run/ckpt")[0]` is the newest checkpoint, intact or not.
    """
    base = _base(path)
    out = [st for _, (st, _) in sorted(_series(base).items(), reverse=True) if st.exists()]
    single = base.with_name(base.name + ".safetensors")
    if single.exists():
        out.append(single)
    return out


def checkpoint_exists(path: str | os.PathLike) -> bool:
    """True when `path` names a checkpoint file or a base path with any checkpoint (intact or not)."""
    p = Path(path)
    return (p.suffix in (".safetensors", ".json") and p.is_file()) or bool(list_checkpoints(p))


# ---- writing --------------------------------------------------------------------------------------
def atomic_write(path: Path, data: bytes) -> None:
    """Writes `data` to `path` via a temporary file, fsync and rename (all or nothing).

    The temporary file is `.<name>.tmp-<pid>` beside `path`; it is removed when the write fails
    with an exception, and by `remove_leftovers` when the process was killed.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            pause = float(os.environ.get(_TEST_SLEEP_ENV) or 0)
            if pause > 0:
                half = len(data) // 2
                f.write(data[:half])
                f.flush()
                time.sleep(pause)
                f.write(data[half:])
            else:
                f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise
    try:  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:  # some filesystems cannot fsync a directory
        pass


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        return _jsonable(x.item())
    if isinstance(x, float) and not np.isfinite(x):
        return repr(x)
    return x


def _digest(a: np.ndarray) -> str:
    # the raw C-order bytes; reshape(-1) gives 0-d arrays a buffer hashlib accepts
    return hashlib.sha256(np.ascontiguousarray(a).reshape(-1).view(np.uint8)).hexdigest()


def save_checkpoint(path: str | os.PathLike, tensors: dict[str, np.ndarray], meta: dict[str, Any],
                    *, keep: int | None = None) -> str:
    """Writes tensors and metadata atomically, with a sha256 per tensor.

    Args:
        path: the base path ("run/ckpt"; a ".safetensors" or ".json" suffix is dropped).
        tensors: name -> array; shapes are kept exactly, 0-d arrays included.
        meta: JSON-able metadata (numpy scalars, NaN and Inf are converted). The keys "format"
            and "tensors" are written by this function. With `keep`, it must hold the int "step".
        keep: None writes the single checkpoint `<base>.safetensors` + `<base>.json`. An int K
            writes the series entry `<base>.step-<step:08d>.safetensors` + `.json`, then deletes
            every other entry except the newest K-1 complete ones below this step (entries above
            it come from a run this one replaced, and incomplete ones can never be read), and
            the leftovers of interrupted writes (`remove_leftovers`).

    Returns:
        The path of the .safetensors file written.

    Raises:
        ValueError: `keep` is below 1, or `meta` has no "step" when `keep` is given.
        OSError: the filesystem failed; every checkpoint written before is then intact.

    Example:
        `save_checkpoint("run/ckpt", {"w": w}, {"step": 120}, keep=2)` writes
        `run/ckpt.step-00000120.safetensors` and `run/ckpt.step-00000120.json`.
    """
    from safetensors.numpy import save
    if keep is not None:
        if int(keep) < 1:
            raise ValueError(f"save_checkpoint: keep must be at least 1 (the checkpoint being "
                             f"written), got {keep}")
        if "step" not in meta:
            raise ValueError("save_checkpoint: a series checkpoint (keep=...) needs meta['step']")
        st_path = series_path(path, int(meta["step"]))
        js_path = st_path.with_suffix(".json")
    else:
        st_path, js_path = _paths(path)
    # np.asarray, not np.ascontiguousarray: the latter turns 0-d arrays into shape (1,)
    arrays = {k: np.asarray(v, order="C") for k, v in tensors.items()}
    record = {k: {"dtype": str(a.dtype), "shape": list(a.shape), "sha256": _digest(a)}
              for k, a in arrays.items()}
    meta = _jsonable({**meta, "format": FORMAT, "tensors": record})
    text = json.dumps(meta, indent=1, sort_keys=False)
    header = {_META_KEY: text, _META_SHA_KEY: hashlib.sha256(text.encode()).hexdigest()}
    atomic_write(st_path, save(arrays, metadata=header))
    atomic_write(js_path, text.encode())
    if keep is not None:
        _prune(_base(path), int(meta["step"]), int(keep))
    return str(st_path)


def _unlink(p: Path) -> None:
    try:
        p.unlink()
    except FileNotFoundError:
        pass


def _prune(base: Path, step: int, keep: int) -> None:
    kept = 1
    for s, (st, js) in sorted(_series(base).items(), reverse=True):
        if s == step:
            continue
        if s < step and st.exists() and js.exists() and kept < keep:
            kept += 1
            continue
        # the data first: a delete cut short leaves a stale JSON, never a readable old entry
        _unlink(st)
        _unlink(js)
    remove_leftovers(base)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    if os.name == "nt":  # os.kill(pid, 0) would terminate the process there
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists but belongs to someone else
        return True
    return True


def remove_leftovers(path: str | os.PathLike) -> list[Path]:
    """Deletes what interrupted writes of the checkpoints at `path` left behind.

    That is the temporary files (`.<base>....tmp-<pid>`) of processes that no longer run, and
    series JSON files whose safetensors file is gone. Damaged or incomplete checkpoints are not
    touched here: loading skips them with a warning and the next save replaces or deletes them.

    Returns:
        The files deleted.

    Example: `remove_leftovers("run/ckpt")` after a kill -9 in the middle of a checkpoint write.
    """
    base = _base(path)
    folder = base.parent if str(base.parent) else Path(".")
    pat = re.compile(r"\." + re.escape(base.name)
                     + r"(\.step-\d+)?\.(safetensors|json)\.tmp-(\d+)")
    removed = []
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return removed
    for name in names:
        m = pat.fullmatch(name)
        if m and not _pid_alive(int(m.group(3))):
            _unlink(folder / name)
            removed.append(folder / name)
    for st, js in _series(base).values():
        if js.exists() and not st.exists():
            _unlink(js)
            removed.append(js)
    return removed


# ---- reading --------------------------------------------------------------------------------------
def _read(st_path: Path, require_json: bool) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Reads and verifies one .safetensors file; CheckpointError says what is wrong with it."""
    from safetensors import safe_open
    if not st_path.exists():
        raise CheckpointError(f"no checkpoint at {st_path}")
    try:
        with safe_open(str(st_path), framework="numpy") as f:
            header = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # noqa: BLE001 - any parse failure is a bad checkpoint
        raise CheckpointError(f"{st_path} is not a readable safetensors checkpoint (truncated or "
                              f"damaged): {exc}") from exc
    if _META_KEY not in header:
        raise CheckpointError(f"{st_path} has no graphc metadata; was it written by save_checkpoint?")
    text = header[_META_KEY]
    if _META_SHA_KEY in header and hashlib.sha256(text.encode()).hexdigest() != header[_META_SHA_KEY]:
        raise CheckpointError(f"{st_path}: its metadata does not match its checksum; the file is "
                              "damaged")
    try:
        meta = json.loads(text)
    except ValueError as exc:
        raise CheckpointError(f"{st_path}: its metadata is not valid JSON ({exc})") from exc
    fmt = meta.get("format")
    if fmt not in _FORMATS:
        raise CheckpointError(f"{st_path}: unknown checkpoint format {fmt!r} (this graphc reads "
                              f"{', '.join(_FORMATS)})")
    if fmt == FORMAT:
        if _META_SHA_KEY not in header:
            raise CheckpointError(f"{st_path}: the metadata checksum is missing; the file is damaged")
        _verify(st_path, tensors, meta.get("tensors") or {})
    if require_json:
        js_path = st_path.with_suffix(".json")
        if not js_path.exists():
            raise CheckpointError(f"{js_path} is missing, so the write of {st_path.name} did not "
                                  "complete")
        try:
            side = json.loads(js_path.read_text())
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"{js_path} is unreadable ({exc})") from exc
        if side != meta:
            raise CheckpointError(f"{js_path} disagrees with the metadata in {st_path.name}")
    return tensors, meta


def _verify(st_path: Path, tensors: dict[str, np.ndarray], record: dict[str, Any]) -> None:
    missing = sorted(set(record) - set(tensors))
    extra = sorted(set(tensors) - set(record))
    if missing or extra:
        raise CheckpointError(f"{st_path}: the tensors differ from its manifest (missing "
                              f"{missing}, unlisted {extra}); the file is damaged")
    for name, a in tensors.items():
        r = record[name]
        if str(a.dtype) != r.get("dtype") or list(a.shape) != r.get("shape"):
            raise CheckpointError(f"{st_path}: tensor {name!r} reads as {a.dtype}{list(a.shape)} "
                                  f"but was written as {r.get('dtype')}{r.get('shape')}; the file "
                                  "is damaged")
        got = _digest(a)
        if got != r.get("sha256"):
            raise CheckpointError(f"{st_path}: tensor {name!r} does not match its checksum (sha256 "
                                  f"written {str(r.get('sha256'))[:16]}..., read {got[:16]}...); "
                                  "the file is damaged")


def load_latest(path: str | os.PathLike, warn: bool = True) -> LoadedCheckpoint:
    """Reads the newest intact checkpoint at `path` (see the module docstring for the order).

    Args:
        path: a base path ("run/ckpt"), or an existing .safetensors/.json file to read alone.
        warn: issue one CheckpointWarning naming every newer checkpoint that was skipped.

    Returns:
        A LoadedCheckpoint: the file read, its tensors and metadata, and what was skipped.

    Raises:
        CheckpointError: there is no checkpoint, or none is intact (naming each file and why).

    Example: `load_latest("run/ckpt").path` is e.g. `run/ckpt.step-00000120.safetensors`.
    """
    p = Path(path)
    one = None
    if p.suffix in (".safetensors", ".json") and p.is_file():
        one = p.with_suffix(".safetensors")
    elif re.fullmatch(r".*\.step-\d+", p.name):  # one series entry named without its suffix
        one = p.with_name(p.name + ".safetensors")
    if one is not None:
        tensors, meta = _read(one, require_json=False)
        return LoadedCheckpoint(one, tensors, meta)
    base = _base(p)
    candidates = list_checkpoints(base)
    if not candidates:
        raise CheckpointError(f"no checkpoint at {base.with_name(base.name + '.safetensors')} "
                              f"(nor {base.name}.step-*.safetensors in {base.parent})")
    single = base.with_name(base.name + ".safetensors")
    skipped: list[tuple[Path, str]] = []
    for st in candidates:
        try:
            tensors, meta = _read(st, require_json=st != single)
        except CheckpointError as exc:
            skipped.append((st, str(exc)))
            continue
        if skipped and warn:
            bad = "; ".join(f"{f}: {why}" for f, why in skipped)
            warnings.warn(f"skipped {len(skipped)} damaged or incomplete checkpoint(s) and loaded "
                          f"the older {st} instead: {bad}", CheckpointWarning, stacklevel=3)
        return LoadedCheckpoint(st, tensors, meta, skipped)
    raise CheckpointError(f"no intact checkpoint at {base}: "
                          + "; ".join(f"{f}: {why}" for f, why in skipped))


def load_checkpoint(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Reads (tensors, metadata) of the newest intact checkpoint at `path`, checksums verified.

    Args:
        path: a base path ("run/ckpt": the newest intact series entry, else `run/ckpt.safetensors`)
            or an existing .safetensors/.json file, read alone.

    Returns:
        (tensors, meta): name -> array, and the metadata dict.

    Raises:
        CheckpointError: nothing there, or no intact checkpoint; names the file and, for changed
            tensor data, the tensor.

    Example: `tensors, meta = load_checkpoint("run/ckpt"); meta["step"]`.
    """
    r = load_latest(path)
    return r.tensors, r.meta


def check_compatible(tensors: dict[str, np.ndarray], expected: dict[str, tuple[tuple[int, ...], str]],
                     where: str) -> None:
    """Raises CheckpointError naming every missing, unexpected or mis-shaped tensor."""
    missing = [n for n in expected if n not in tensors]
    unexpected = [n for n in tensors if n not in expected]
    wrong = [f"{n} (checkpoint {tensors[n].dtype}{list(tensors[n].shape)}, model "
             f"{expected[n][1]}{list(expected[n][0])})"
             for n in expected if n in tensors and (tuple(tensors[n].shape) != tuple(expected[n][0])
                                                    or tensors[n].dtype != np.dtype(expected[n][1]))]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing from the checkpoint: {', '.join(missing)}")
        if unexpected:
            parts.append(f"not in the model: {', '.join(unexpected)}")
        if wrong:
            parts.append(f"shape/dtype differ: {', '.join(wrong)}")
        raise CheckpointError(f"checkpoint {where} does not match this model; " + "; ".join(parts))
