"""Regenerates graphc's shipped MetaSchedule database (graphc/backends/tvm_tuned/<cpu>/).

For each benchmark workload (bench/bench_tvm.py's MLP and LeNet-5 SGD-momentum training steps,
at their batch sizes, static shapes as TvmStepper compiles them) this lowers the step through
graphc's pre-schedule passes, takes the fused functions with a reduction (matmuls, convolutions:
where the time goes), tunes them with MetaSchedule, times the best tuned schedule against
graphc's own rules on the same function, and keeps the record only where tuning won by
`--min-gain`. Other functions keep graphc's rules.

Tuning needs `xgboost` and `psutil` (and `scipy`), which graphc does not depend on, and it
segfaults with apache-tvm-ffi 0.1.15.post2 (0.1.14.post1 works; compiling and running work
with either). Put them on the path for this script only, for example:

    pip install --target /tmp/tunesite --no-deps apache-tvm-ffi==0.1.14.post1 xgboost psutil scipy
    PYTHONPATH=/tmp/tunesite python bench/tune_tvm.py --trials 32

Settings that work here (../shared/FACTS.md): max_trials_per_task set (without it every trial
goes to one task); a few dozen trials per task. It competes for the cores with whatever else
runs, so it tunes a handful of tasks and its timings are the minimum of several repeats.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import graphc as gc  # noqa: E402
from graphc import optim  # noqa: E402

LR, MOM = 0.01, 0.9


def workloads() -> dict:
    """name -> (training-step graph, batch size): what bench_tvm.py measures."""
    return {"mlp": (gc.training_step(gc.models.mlp((784, 256, 256, 10), seed=0),
                                     optimizer=optim.SGD(LR, momentum=MOM)), 128),
            "lenet5": (gc.training_step(gc.models.lenet5(seed=0),
                                        optimizer=optim.SGD(LR, momentum=MOM)), 64)}


def fused_module(step, batch: int, target):
    """The step's Relax module after graphc's pre-schedule passes (the database's workloads)."""
    import tvm

    from graphc.backends.tvm import lower_to_relax
    from graphc.backends.tvm_schedule import pre_schedule_passes
    mod = lower_to_relax(step, {"N": batch})
    with target:
        return tvm.transform.Sequential(pre_schedule_passes(target))(mod)


def _has_reduction(func) -> bool:
    from tvm import s_tir
    from tvm.s_tir.dlight.analysis import normalize_prim_func
    infos = normalize_prim_func(s_tir.Schedule(func))
    return infos is not None and any(not b.is_injective() for b in infos)


def _time(mod, target, repeats: int) -> float:
    """Seconds per call of `mod`'s main on random arguments (minimum over `repeats`)."""
    import tvm
    from tvm.s_tir import meta_schedule as ms
    from tvm.driver import build
    lib = build(mod, target=target)
    dev = tvm.cpu()
    args = [tvm.runtime.tensor(np.random.default_rng(0).standard_normal(
        [int(d) for d in a.shape]).astype(a.dtype), dev)
        for a in ms.arg_info.ArgInfo.from_prim_func(mod["main"])]
    ev = lib.time_evaluator("main", dev, number=20, repeat=repeats, min_repeat_ms=50)
    return float(min(ev(*args).results))


def _build(mod, target, _params):
    """MetaSchedule's default_build without its `import tvm.s_tir.tensor_intrin`, which took
    77-230 s in each builder process here (past the builder's timeout, so every candidate
    failed to build); x86 without tensorization needs none of those intrinsics."""
    from tvm.driver import build
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock
    return build(RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod), target=target)


def _graphc_schedule(mod, target):
    """`mod` (one PrimFunc) scheduled by graphc's rules, as the compile pipeline does."""
    from tvm.s_tir import dlight as dl

    from graphc.backends.tvm_schedule import Fallback, Injective, Safe, TiledReduction
    with target:
        return dl.ApplyDefaultSchedule(TiledReduction(), Injective(), Safe(dl.cpu.Reduction()),
                                       Fallback())(mod)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workloads", default="mlp,lenet5")
    p.add_argument("--trials", type=int, default=32, help="trials per task")
    p.add_argument("--tasks", type=int, default=6, help="reduction tasks per workload (largest)")
    p.add_argument("--min-gain", type=float, default=1.15,
                   help="keep a record only if graphc's schedule is this much slower")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--population", type=int, default=128, help="evolutionary search population")
    p.add_argument("--out", default=None, help="database root (default: the package's)")
    p.add_argument("--reuse", default=None,
                   help="a work folder of an earlier run: compare and keep its results, no tuning")
    a = p.parse_args(argv)
    import tvm
    from tvm.s_tir import meta_schedule as ms

    from graphc.backends.tvm import make_target
    from graphc.backends.tvm_tuned import RECORDS, TUNED_DIR, WORKLOADS, database_dir
    target = make_target()
    out = database_dir(target, a.out or TUNED_DIR)
    print(f"target {target}; database {out}", flush=True)
    tasks = []
    for name in a.workloads.split(","):
        step, batch = workloads()[name]
        mod = fused_module(step, batch, target)
        ext = [t for t in ms.relax_integration.extract_tasks(mod, target)
               if _has_reduction(t.dispatched[0]["main"])]
        ext.sort(key=lambda t: -t.weight * _flops(t.dispatched[0]))
        print(f"{name}: {len(ext)} reduction tasks; tuning {min(a.tasks, len(ext))}", flush=True)
        tasks += ext[:a.tasks]
    work = a.reuse or tempfile.mkdtemp(prefix="graphc-tune-")
    t0 = time.time()
    if a.reuse:  # the measurements of an earlier run: only compare and keep
        db = ms.database.JSONDatabase(
            path_workload=os.path.join(work, "database_workload.json"),
            path_tuning_record=os.path.join(work, "database_tuning_record.json"))
    else:
        # a smaller search than the defaults (population 512, 4 genetic rounds): on 2 busy
        # cores the evolutionary search itself, not the measuring, took most of the time
        strategy = ms.search_strategy.EvolutionarySearch(
            population_size=a.population, init_min_unmeasured=16, genetic_num_iters=2)
        ctxs, weights = ms.relax_integration.extracted_tasks_to_tune_contexts(
            tasks, work, strategy=strategy)
        db = ms.tune_tasks(tasks=ctxs, task_weights=weights, work_dir=work,
                           max_trials_global=a.trials * len(tasks), max_trials_per_task=a.trials,
                           num_trials_per_iter=min(a.trials, 16),
                           builder=ms.builder.LocalBuilder(f_build=_build, timeout_sec=120),
                           runner=ms.runner.LocalRunner(evaluator_config=ms.runner.EvaluatorConfig(
                               number=5, repeat=3, min_repeat_ms=50)))
    print(f"tuned {len(tasks)} tasks in {time.time() - t0:.0f} s", flush=True)
    tmp_out = tempfile.mkdtemp(prefix="graphc-tuned-")
    keep = ms.database.JSONDatabase(path_workload=os.path.join(tmp_out, WORKLOADS),
                                    path_tuning_record=os.path.join(tmp_out, RECORDS))
    kept = 0
    from tvm.s_tir.meta_schedule.tune_context import _normalize_mod
    records = db.get_all_tuning_records()
    import tvm_ffi
    for t in tasks:
        mod = _normalize_mod(t.dispatched[0])  # as the database and ApplyDatabase key it
        sch = ms.tir_integration.compile_tir(db, mod, target)
        if sch is None:
            print(f"  {t.task_name}: no valid tuned schedule", flush=True)
            continue
        # the database's own record, looked up before anything schedules `mod`
        best = db.query_tuning_record(mod, target, "main") or min(
            (r for r in records if r.run_secs and tvm_ffi.structural_equal(r.workload.mod, mod)),
            key=lambda r: sum(float(x) for x in r.run_secs), default=None)
        # dlight's ApplyDefaultSchedule replaces the functions of the module it is given in
        # place: it gets a fresh copy (it had turned `mod` into graphc's schedule, which then
        # matched no record)
        ours = _time(_graphc_schedule(_normalize_mod(t.dispatched[0]), target), target,
                     a.repeats)
        tuned = _time(sch.mod, target, a.repeats)
        win = ours / tuned
        print(f"  {t.task_name}: graphc {ours * 1e6:.1f} us, tuned {tuned * 1e6:.1f} us "
              f"({win:.2f}x) -> {'keep' if win >= a.min_gain else 'drop'}", flush=True)
        if win >= a.min_gain and best is not None:
            keep.commit_tuning_record(ms.database.TuningRecord(
                best.trace, keep.commit_workload(best.workload.mod), best.run_secs, target,
                best.args_info))
            kept += 1
    shutil.rmtree(out, ignore_errors=True)
    if kept:
        os.makedirs(out, exist_ok=True)
        for f in (WORKLOADS, RECORDS):
            shutil.copy(os.path.join(tmp_out, f), os.path.join(out, f))
    if not a.reuse:
        shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(tmp_out, ignore_errors=True)
    print(f"kept {kept} of {len(tasks)} records in {out}" if kept else
          f"no tuned schedule beat graphc's rules: {out} removed", flush=True)
    del tvm


def _flops(mod) -> float:
    from tvm.s_tir.analysis import estimate_tir_flops
    try:
        return float(estimate_tir_flops(mod))
    except Exception:  # noqa: BLE001 - unknown: rank last
        return 0.0


if __name__ == "__main__":
    main()
