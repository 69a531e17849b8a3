"""On-disk cache of TVM-compiled modules.

An entry's key hashes the canonical graph text (structure, types and attributes; not names,
source lines or parameter values), the compile pipeline (its version and the source of the
lowering rules and schedules), the target and the tvm version. Location: `GRAPHC_CACHE_DIR`, else
`~/.cache/graphc`. `GRAPHC_LOG=cache` prints why each lookup missed. Each entry stores the
module's sha256; an entry whose file does not match is reported, deleted and rebuilt.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from typing import Any

import numpy as np

from ..ir.graph import Graph

_HERE = os.path.dirname(os.path.abspath(__file__))
_SOURCES = [os.path.join(_HERE, f) for f in ("tvm.py", "tvm_schedule.py", "tvm_tuned.py")] + [
    os.path.join(os.path.dirname(_HERE), "ops", f)
    for f in sorted(os.listdir(os.path.join(os.path.dirname(_HERE), "ops"))) if f.endswith(".py")]
_MODULE = "module.so"


def cache_dir(override: str | None = None) -> str:
    """The cache's root folder."""
    root = override or os.environ.get("GRAPHC_CACHE_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "graphc")
    return os.path.join(root, "tvm")


def _explain(msg: str) -> None:
    if "cache" in os.environ.get("GRAPHC_LOG", "").replace(";", ",").split(","):
        print(f"graphc cache: {msg}", file=sys.stderr)


def _attr_text(v: Any) -> str:
    if isinstance(v, np.ndarray):
        return f"array<{v.dtype}{list(v.shape)}:{hashlib.sha256(np.ascontiguousarray(v).tobytes()).hexdigest()[:16]}>"
    if isinstance(v, (tuple, list)):
        return "(" + ",".join(_attr_text(x) for x in v) + ")"
    return repr(v)


def canonical_text(graph: Graph) -> str:
    """The graph's structure as text: what the compiled code depends on, and nothing else."""
    ids: dict[int, str] = {}
    lines = []
    for k, v in enumerate(graph.inputs):
        ids[id(v)] = f"i{k}"
        lines.append(f"i{k}: {v.type}")
    for k, v in enumerate(graph.params):
        ids[id(v)] = f"p{k}"
        lines.append(f"p{k}: {v.type}")
    for k, n in enumerate(graph.nodes):
        ids[id(n.output)] = f"n{k}"
        attrs = ",".join(f"{a}={_attr_text(n.attrs[a])}" for a in sorted(n.attrs))
        args = ",".join(ids[id(i)] for i in n.inputs)
        lines.append(f"n{k}: {n.output.type} = {n.op.name}({args}; {attrs})")
    lines.append("return " + ",".join(ids[id(v)] for v in graph.outputs.values()))
    return "\n".join(lines)


def _sources_hash() -> str:
    h = hashlib.sha256()
    for path in _SOURCES:
        with open(path, "rb") as f:
            h.update(f.read())
    return h.hexdigest()[:16]


def key_parts(graph: Graph, pipeline: str, target: str, tvm_version: str) -> dict[str, str]:
    """The named parts of a cache key (kept apart so a miss can say which part changed)."""
    from .tvm_tuned import fingerprint
    return {"graph": hashlib.sha256(canonical_text(graph).encode()).hexdigest()[:24],
            "pipeline": f"{pipeline}/{_sources_hash()}", "target": target, "tvm": tvm_version,
            "tuned": fingerprint()}


def _key(parts: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


def _index_path(root: str, name: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:80] or "graph"
    return os.path.join(root, "index", safe + ".json")


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def entry_path(graph_name: str, parts: dict[str, str], override: str | None = None) -> str:
    """The folder of the entry for these key parts."""
    return os.path.join(cache_dir(override), _key(parts))


def load(graph_name: str, parts: dict[str, str], override: str | None = None):
    """The cached runtime module for these key parts, or None (a miss, explained on request)."""
    import tvm
    root = cache_dir(override)
    path = os.path.join(root, _key(parts))
    meta_path = os.path.join(path, "meta.json")
    if not os.path.exists(meta_path):
        _explain_miss(root, graph_name, parts)
        return None
    try:
        with open(meta_path) as f:
            meta = json.load(f)
        lib = os.path.join(path, _MODULE)
        if _sha256(lib) != meta["sha256"]:
            raise ValueError("checksum mismatch")
        mod = tvm.runtime.load_module(lib)
    except Exception as exc:  # noqa: BLE001 - any damage means: rebuild
        _explain(f"entry {_key(parts)} for graph {graph_name!r} is corrupt ({exc}); deleting and "
                 "rebuilding it")
        shutil.rmtree(path, ignore_errors=True)
        return None
    _explain(f"hit for graph {graph_name!r} ({_key(parts)})")
    return mod


def _explain_miss(root: str, graph_name: str, parts: dict[str, str]) -> None:
    try:
        with open(_index_path(root, graph_name)) as f:
            last = json.load(f)
    except (OSError, ValueError):
        _explain(f"miss for graph {graph_name!r}: no entry was ever stored under {root} for a graph "
                 "of this name")
        return
    changed = [k for k in parts if last.get(k) != parts[k]]
    why = "; ".join(f"{k} changed ({last.get(k)} -> {parts[k]})" for k in changed)
    if not changed:
        why = "the entry was deleted"
    _explain(f"miss for graph {graph_name!r} (key {_key(parts)}): since the last entry stored for "
             f"this name, {why}")


def store(graph_name: str, parts: dict[str, str], executable, override: str | None = None) -> str:
    """Exports the compiled module into the cache atomically; returns the entry's folder."""
    root = cache_dir(override)
    os.makedirs(os.path.join(root, "index"), exist_ok=True)
    final = os.path.join(root, _key(parts))
    tmp = tempfile.mkdtemp(prefix=".tmp-", dir=root)
    try:
        lib = os.path.join(tmp, _MODULE)
        executable.export_library(lib)
        meta = {"sha256": _sha256(lib), "parts": parts, "graph": graph_name, "created": time.time()}
        with open(os.path.join(tmp, "meta.json"), "w") as f:
            json.dump(meta, f, indent=1)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
    except Exception:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    with open(_index_path(root, graph_name), "w") as f:
        json.dump(parts, f)
    _explain(f"stored graph {graph_name!r} as {_key(parts)}")
    return final
