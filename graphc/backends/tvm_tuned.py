"""MetaSchedule tuning records shipped with graphc, applied to functions whose shapes match.

`graphc/backends/tvm_tuned/<cpu>/` holds a MetaSchedule JSON database (`workloads.json`,
`records.json`) written by `bench/tune_tvm.py` for the benchmark workloads (the MLP and LeNet-5
training steps at their benchmark batch sizes, compiled with static shapes). `<cpu>` is the
LLVM `mcpu` of the machine it was tuned on: records apply only to targets with the same `mcpu`
(a schedule tuned for one CPU's vector width and caches is not known to be faster on another).
The script keeps a record only where it measured faster than graphc's own schedule rules, so a
function without a record (any other shape) gets those rules as before.

A function matches a record when it is structurally equal to the tuned one (same fused PrimFunc,
same static shapes): MetaSchedule's `MetaScheduleApplyDatabase` looks each one up and marks the
ones it schedules, which graphc's rules then leave alone. GRAPHC_TVM_TUNED=0 turns it off.
"""
from __future__ import annotations

import functools
import hashlib
import os

import tvm
from tvm import relax
from tvm.target import Target

#: the package folder holding one database per CPU
TUNED_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tvm_tuned")
WORKLOADS, RECORDS = "workloads.json", "records.json"
_ENV = "GRAPHC_TVM_TUNED"


def enabled() -> bool:
    """False when GRAPHC_TVM_TUNED is 0/off/false."""
    return os.environ.get(_ENV, "1").strip().lower() not in ("0", "off", "false", "no")


def cpu_name(target: Target) -> str:
    """The folder name for `target`: its LLVM mcpu ("generic" when unset)."""
    mcpu = str(target.attrs.get("mcpu", "") or "generic")
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in mcpu)


def database_dir(target: Target, root: str = TUNED_DIR) -> str:
    """The database folder for `target` (it may not exist)."""
    return os.path.join(root, cpu_name(target))


@functools.lru_cache(maxsize=8)
def _database(path: str):
    from tvm.s_tir import meta_schedule as ms
    return ms.database.JSONDatabase(path_workload=os.path.join(path, WORKLOADS),
                                    path_tuning_record=os.path.join(path, RECORDS),
                                    allow_missing=False)


def apply_tuned(target: Target) -> list:
    """The passes that apply the shipped records for `target`: [] if there are none (or
    GRAPHC_TVM_TUNED=0)."""
    path = database_dir(target)
    if target.kind.name != "llvm" or not enabled() or not os.path.exists(os.path.join(path, RECORDS)):
        return []
    db = _database(path)

    @tvm.transform.module_pass(opt_level=0, name="graphc.ApplyTuned")
    def _apply(mod, _ctx):
        with db:
            return relax.transform.MetaScheduleApplyDatabase(enable_warning=False)(mod)
    return [_apply]


def fingerprint() -> str:
    """A hash of the shipped databases and the switch (part of the compile cache's key)."""
    h = hashlib.sha256(str(enabled()).encode())
    if os.path.isdir(TUNED_DIR):
        for base, dirs, files in sorted(os.walk(TUNED_DIR)):
            dirs.sort()
            for f in sorted(files):
                if f.endswith(".json"):
                    h.update(os.path.join(os.path.relpath(base, TUNED_DIR), f).encode())
                    with open(os.path.join(base, f), "rb") as fh:
                        h.update(fh.read())
    return h.hexdigest()[:16]
