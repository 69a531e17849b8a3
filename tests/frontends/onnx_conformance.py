"""onnx's own node-test cases run through graphc's importer and numpy backend.

The cases come from onnx's generators (`onnx.backend.test.case.node.collect_testcases`), as
onnx's backend test makes them when its data is not on disk, and are compared the way onnx's
backend runner compares them (same shape, same dtype, `assert_allclose` with the case's rtol
and atol). Used by tests/frontends/test_onnx_conformance.py; run this file for the full table:

    .venv/bin/python tests/frontends/onnx_conformance.py [-v] [name-substring ...]
"""
from __future__ import annotations

import collections
import re
import sys
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class Outcome:
    name: str
    ops: tuple[str, ...]
    status: str          # "pass", "unsupported", "import", "run", "mismatch"
    detail: str = ""


def cases() -> list[Any]:
    """onnx's node test cases (model, inputs, expected outputs), generated in memory."""
    from onnx.backend.test.case.node import collect_testcases
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with np.errstate(all="ignore"):
            return collect_testcases(None)


def _as_array(v: Any) -> Any:
    from onnx import TensorProto, numpy_helper
    if isinstance(v, TensorProto):
        return numpy_helper.to_array(v)
    return np.asarray(v) if isinstance(v, np.generic) else v  # a 0-d value as a numpy scalar


_RUN_TIME = re.compile(r"\(input \d+, '([^']*)'\) is computed at run time")


def _input_ancestors(graph: Any, name: str, inputs: set[str]) -> set[str]:
    """The graph inputs that the value `name` is computed from."""
    producer: dict[str, Any] = {}

    def collect(nodes: Any) -> None:  # subgraphs (If, Loop, Scan) included
        for n in nodes:
            producer.update({o: n for o in n.output})
            for a in n.attribute:
                for sub in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                    collect(sub.node)
    collect(graph.node)
    found, todo, seen = set(), [name], set()
    while todo:
        v = todo.pop()
        if v in seen:
            continue
        seen.add(v)
        if v in inputs:
            found.add(v)
        elif v in producer:
            todo.extend(i for i in producer[v].input if i)
    return found


def run_case(case: Any) -> Outcome:
    """Imports and runs one case on every data set; never raises.

    A shape, axes or pads input that the case feeds at run time is fixed at import
    (`import_onnx(input_values=...)`) when the importer asks for it, and the outcome's detail
    says so ("specialized: name, ...").
    """
    import graphc as gc
    from graphc.frontends.onnx_import import OnnxImportError, import_onnx
    model = case.model
    ops = tuple(sorted({n.op_type for n in model.graph.node}))
    init_names = {t.name for t in model.graph.initializer}
    in_names = [vi.name for vi in model.graph.input if vi.name not in init_names]
    data = [([_as_array(v) for v in ins], [_as_array(v) for v in outs])
            for ins, outs in case.data_sets]
    if any(not isinstance(v, np.ndarray) for ins, outs in data for v in ins + outs):
        return Outcome(case.name, ops, "import", "sequence or optional values")
    known: dict[str, np.ndarray] = {}
    while True:
        try:
            g = import_onnx(model, input_values=known)
            break
        except OnnxImportError as exc:
            msg = str(exc)
            m = _RUN_TIME.search(msg)
            need = _input_ancestors(model.graph, m.group(1), set(in_names)) - set(known) \
                if m else set()
            if need and all(np.array_equal(ins[in_names.index(n)], data[0][0][in_names.index(n)])
                            for ins, _ in data for n in need):
                known.update({n: data[0][0][in_names.index(n)] for n in need})
                continue
            status = "unsupported" if "cannot be imported" in msg else "import"
            return Outcome(case.name, ops, status, msg if status == "unsupported" else msg[:300])
        except Exception as exc:  # noqa: BLE001 - a crash is a finding, recorded like a miss
            return Outcome(case.name, ops, "import", f"{type(exc).__name__}: {exc}"[:300])
    note = f"specialized: {', '.join(known)}" if known else ""
    try:
        exe = gc.compile(g)
    except Exception as exc:  # noqa: BLE001
        return Outcome(case.name, ops, "import", f"compile: {type(exc).__name__}: {exc}"[:300])
    for inputs, expected in data:
        if len(inputs) != len(in_names):
            return Outcome(case.name, ops, "run", f"{len(inputs)} inputs for {len(in_names)}")
        fed = [a for n, a in zip(in_names, inputs) if n not in known]
        feeds = {v.name: np.asarray(a) for v, a in zip(g.inputs, fed)}
        try:
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                got = list(exe.run(feeds).values())
        except Exception as exc:  # noqa: BLE001
            return Outcome(case.name, ops, "run", f"{type(exc).__name__}: {exc}"[:300])
        try:
            assert len(got) == len(expected), f"{len(got)} outputs, expected {len(expected)}"
            for i, (a, b) in enumerate(zip(got, expected)):
                assert a.shape == b.shape, f"output {i}: shape {a.shape}, expected {b.shape}"
                assert a.dtype == b.dtype, f"output {i}: dtype {a.dtype}, expected {b.dtype}"
                # low precision: graphc's reference rounds after every op, onnx's expected values
                # were computed in float32 and rounded once, so allow four units of the last place
                ulp = LOW_PRECISION_ULP.get(str(b.dtype), 0.0)
                np.testing.assert_allclose(a.astype(np.float64) if ulp else a,
                                           b.astype(np.float64) if ulp else b,
                                           rtol=max(case.rtol, 4 * ulp), atol=max(case.atol, ulp * 1e-2))
        except AssertionError as exc:
            return Outcome(case.name, ops, "mismatch", " ".join(str(exc).split())[:300])
    return Outcome(case.name, ops, "pass", note)


#: relative size of one unit in the last place, by dtype name, for the low-precision outputs
LOW_PRECISION_ULP = {"bfloat16": 2.0 ** -8, "float16": 2.0 ** -11}


def run_all(selected: list[Any] | None = None) -> list[Outcome]:
    return [run_case(c) for c in (cases() if selected is None else selected)]


def missing_ops(outcomes: list[Outcome]) -> collections.Counter:
    """Unsupported op types, counted by the cases that need them."""
    count: collections.Counter = collections.Counter()
    for o in outcomes:
        if o.status == "unsupported":
            for op in re.findall(r"^\s+(\S+) x\d+", o.detail, re.M) or ["?"]:
                count[op] += 1
    return count


def report(outcomes: list[Outcome], verbose: bool = False) -> str:
    passed = sum(o.status == "pass" for o in outcomes)
    special = sum(o.status == "pass" and o.detail.startswith("specialized") for o in outcomes)
    lines = [f"onnx node cases matched: {passed} of {len(outcomes)} ({special} of them with a "
             "shape/axes input fixed at import)"]
    by_status = collections.Counter(o.status for o in outcomes)
    lines.append("by outcome: " + ", ".join(f"{k} {v}" for k, v in by_status.most_common()))
    lines.append("unsupported op types (cases needing them): " + ", ".join(
        f"{k} {v}" for k, v in missing_ops(outcomes).most_common()))
    if verbose:
        for o in outcomes:
            if o.status != "pass":
                lines.append(f"  {o.status:11s} {o.name}: {o.detail}")
    return "\n".join(lines)


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("-")]
    selected = [c for c in cases() if not args or any(a in c.name for a in args)]
    print(report(run_all(selected), verbose="-v" in sys.argv))
