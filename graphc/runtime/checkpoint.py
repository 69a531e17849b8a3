"""Checkpoints: tensors in safetensors plus a small JSON, both written atomically.

`save_checkpoint("run/ckpt", tensors, meta)` writes `run/ckpt.safetensors` (the tensors, with the
JSON also embedded in its header metadata, so the pair can never disagree) and `run/ckpt.json` (the
same JSON, for people and tools). Each file is written to a temporary name, flushed, fsynced and
renamed over the old one, so a crash mid-write leaves the last good checkpoint intact.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "graphc-checkpoint/1"


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable or does not match the model."""


def _paths(path: str | os.PathLike) -> tuple[Path, Path]:
    p = Path(path)
    base = p.with_suffix("") if p.suffix in (".safetensors", ".json") else p
    return base.with_name(base.name + ".safetensors"), base.with_name(base.name + ".json")


def checkpoint_exists(path: str | os.PathLike) -> bool:
    return _paths(path)[0].exists()


def atomic_write(path: Path, data: bytes) -> None:
    """Writes `data` to `path` via a temporary file, fsync and rename (all or nothing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
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
        return x.item()
    if isinstance(x, float) and not np.isfinite(x):
        return repr(x)
    return x


def save_checkpoint(path: str | os.PathLike, tensors: dict[str, np.ndarray], meta: dict[str, Any]
                    ) -> str:
    """Writes tensors and metadata atomically; returns the .safetensors path."""
    from safetensors.numpy import save
    st_path, js_path = _paths(path)
    meta = _jsonable({"format": FORMAT, **meta})
    text = json.dumps(meta, indent=1, sort_keys=False)
    arrays = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    atomic_write(st_path, save(arrays, metadata={"graphc": text}))
    atomic_write(js_path, text.encode())
    return str(st_path)


def load_checkpoint(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Reads (tensors, metadata) written by `save_checkpoint`."""
    from safetensors import safe_open
    st_path, _ = _paths(path)
    if not st_path.exists():
        raise CheckpointError(f"no checkpoint at {st_path}")
    try:
        with safe_open(str(st_path), framework="numpy") as f:
            header = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # noqa: BLE001 - any parse failure is a bad checkpoint
        raise CheckpointError(f"{st_path} is not a readable safetensors checkpoint: {exc}") from exc
    if "graphc" not in header:
        raise CheckpointError(f"{st_path} has no graphc metadata; was it written by save_checkpoint?")
    meta = json.loads(header["graphc"])
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{st_path}: unknown checkpoint format {meta.get('format')!r}")
    return tensors, meta


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
