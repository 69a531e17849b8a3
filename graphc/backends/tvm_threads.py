"""How many threads TVM's runtime pool uses.

TVM sizes its pool, unless TVM_NUM_THREADS says otherwise, at half the logical CPUs on x86
(assuming two hyperthreads per core), so on a 2-core machine without SMT it ran every kernel
on one thread while onnxruntime used both (the MLP training step: 152 steps/s with one thread,
348 with two, same process layout). graphc sets TVM_NUM_THREADS, where the user has not, to
the physical cores this process may run on, before the pool is first used.
"""
from __future__ import annotations

import os

_ENV = "TVM_NUM_THREADS"


def physical_cores() -> int:
    """Physical cores among the CPUs this process may run on (hyperthread siblings count once)."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return max((os.cpu_count() or 2) // 2, 1)
    cores = set()
    for c in cpus:
        try:
            with open(f"/sys/devices/system/cpu/cpu{c}/topology/thread_siblings_list") as f:
                cores.add(f.read().strip())
        except OSError:
            cores.add(str(c))
    return max(len(cores), 1)


def configure_threads() -> None:
    """Sets TVM_NUM_THREADS to `physical_cores()` unless it is set (call before TVM runs code:
    the pool reads it when it starts)."""
    if not os.environ.get(_ENV, "").strip():
        os.environ[_ENV] = str(physical_cores())
