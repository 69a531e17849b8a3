"""onnx's own node-test cases run through graphc's importer and numpy backend.

The cases come from onnx's generators (`onnx.backend.test.case.node.collect_testcases`), as
onnx's backend test makes them when its data is not on disk, and are compared the way onnx's
backend runner compares them (same shape, same dtype, `assert_allclose` with the case's rtol
and atol). Used by tests/frontends/test_onnx_conformance.py; run this file for the full table:

    .venv/bin/python tests/frontends/onnx_conformance.py [-v] [name-substring ...]

The cases graphc does not match yet are listed, one reason each, in onnx_conformance_expected.txt
(the test fails on a failure not listed, and on a listed case that now passes). Regenerate the
list from a run of every case with:

    .venv/bin/python tests/frontends/onnx_conformance.py --update-expected

Each matched case also round-trips (`round_trip`): the imported graph, written by
`gc.export_onnx`, must give the expected outputs on onnxruntime wherever onnxruntime runs the
original case model correctly; `--round-trip` prints that table too.

A case that draws random numbers (Bernoulli, training Dropout, RandomUniformLike, ...) cannot
match onnx's values: graphc draws from its own counter-based generator. Such a case is checked
for its outputs' shapes and dtypes only and counted under the status "random", neither matched
nor failed; tests/frontends/test_onnx_import_random.py tests the distributions by their moments.
"""
from __future__ import annotations

import collections
import re
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Outcome:
    name: str
    ops: tuple[str, ...]
    status: str          # "pass", "random", "unsupported", "import", "run", "mismatch"
    detail: str = ""
    #: for a matched case: the imported graph and the inputs fixed at import (for `round_trip`)
    graph: Any = field(default=None, repr=False)
    known: dict = field(default_factory=dict, repr=False)


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
    random = _draws_random(g)
    try:
        exe = gc.compile(g)
    except Exception as exc:  # noqa: BLE001
        return Outcome(case.name, ops, "import", f"compile: {type(exc).__name__}: {exc}"[:300])
    for inputs, expected in data:
        if len(inputs) != len(in_names):
            return Outcome(case.name, ops, "run", f"{len(inputs)} inputs for {len(in_names)}")
        fed = [a for n, a in zip(in_names, inputs) if n not in known]
        data_ins = [v for v in g.inputs if v.role not in _rng_roles()]
        feeds = {v.name: np.asarray(a) for v, a in zip(data_ins, fed)}
        feeds.update({v.name: np.int64(0) for v in g.inputs if v.role in _rng_roles()})
        try:
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                got = list(exe.run(feeds).values())
        except Exception as exc:  # noqa: BLE001
            return Outcome(case.name, ops, "run", f"{type(exc).__name__}: {exc}"[:300])
        wrong = compare(got, expected, case, values=not random)
        if wrong:
            return Outcome(case.name, ops, "mismatch", wrong)
    if random:
        return Outcome(case.name, ops, "random", RANDOM_NOTE)
    return Outcome(case.name, ops, "pass", note, graph=g, known=known)


#: the detail of a case that draws random numbers (status "random")
RANDOM_NOTE = ("random: shape and dtype checked, values cannot match; moments tested in "
               "test_onnx_import_random.py")


def _rng_roles() -> tuple[Any, ...]:
    from graphc.ir.roles import Role
    return (Role.RNG_SEED, Role.RNG_COUNTER)


def _draws_random(graph: Any) -> bool:
    """Whether `graph` draws from graphc's counter-based generator (a `random_uniform` node):
    its values then differ from onnx's generator by design, only their distribution matches."""
    return any(n.op.name == "random_uniform" for n in graph.nodes)


def compare(got: list[np.ndarray], expected: list[np.ndarray], case: Any,
            values: bool = True) -> str:
    """"" when `got` matches `expected` as onnx's backend runner compares (shapes and dtypes only
    when not `values`); else what differs."""
    try:
        assert len(got) == len(expected), f"{len(got)} outputs, expected {len(expected)}"
        for i, (a, b) in enumerate(zip(got, expected)):
            assert a.shape == b.shape, f"output {i}: shape {a.shape}, expected {b.shape}"
            assert a.dtype == b.dtype, f"output {i}: dtype {a.dtype}, expected {b.dtype}"
            if not values:
                continue
            # low precision: graphc's reference rounds after every op, onnx's expected values
            # were computed in float32 and rounded once, so allow four units of the last place
            ulp = LOW_PRECISION_ULP.get(str(b.dtype), 0.0)
            np.testing.assert_allclose(a.astype(np.float64) if ulp else a,
                                       b.astype(np.float64) if ulp else b,
                                       rtol=max(case.rtol, 4 * ulp),
                                       atol=max(case.atol, ulp * 1e-2))
    except AssertionError as exc:
        return " ".join(str(exc).split())[:300]
    return ""


#: relative size of one unit in the last place, by dtype name, for the low-precision outputs
LOW_PRECISION_ULP = {"bfloat16": 2.0 ** -8, "float16": 2.0 ** -11}


def run_all(selected: list[Any] | None = None) -> list[Outcome]:
    return [run_case(c) for c in (cases() if selected is None else selected)]


#: the cases graphc does not match yet, `name: reason` a line (see `update_expected`)
EXPECTED_PATH = Path(__file__).with_name("onnx_conformance_expected.txt")
#: the matched cases whose export round trip cannot work, `name: reason` a line
ROUND_TRIP_EXPECTED_PATH = Path(__file__).with_name("onnx_round_trip_expected.txt")

#: cases whose expected values graphc cannot reproduce, each with the reason (hand-written: a
#: mismatch is listed in the expected file only with a reason from here)
KNOWN_MISMATCHES = {
    # the expected output holds float32 rounding noise (1.9e-7) where the exact result, which
    # graphc computes, is 0: over the case's atol of 1e-7
    "test_dft_inverse": "reference rounding noise (1.9e-7 where the exact value is 0)",
    "test_dft_inverse_opset19": "reference rounding noise (1.9e-7 where the exact value is 0)",
}


def reason(o: Outcome) -> str:
    """One short line saying why `o` failed ("unsupported op BitShift", "dtype int8", ...)."""
    if o.status == "unsupported":
        ops = re.findall(r"^\s+(\S+) x\d+", o.detail, re.M) or ["?"]
        return f"unsupported op{'s' if len(ops) > 1 else ''} {', '.join(ops)}"
    if o.status == "mismatch":
        return KNOWN_MISMATCHES.get(o.name, f"WRONG RESULT: {o.detail}"[:120])
    text = o.detail.splitlines()[0] if o.detail else o.status
    text = re.sub(r"^\S+\.onnx: ", "", text)                       # the file name
    m = re.match(r"dtype (\S+) is not supported", text)
    if m:  # numpy holds ONNX strings as dtype object
        return "dtype string" if m.group(1) == "object" else f"dtype {m.group(1)}"
    text = re.sub(r"^node \d+ \(([^)]*)\): ", r"\1: ", text)        # "node 3 (Mod): " -> "Mod: "
    text = re.sub(r"'[^']*' \(input \d+, '[^']*'\)", "an input", text)  # per-case value names
    prefix = "" if o.status == "import" else f"{o.status}: "
    return (prefix + text)[:100].rstrip()


def load_expected(path: Path = EXPECTED_PATH) -> dict[str, str]:
    """An expected-failure list: {case name: reason}."""
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, why = line.partition(":")
            out[name.strip()] = why.strip()
    return out


#: statuses that are no failure: matched, a round trip onnxruntime cannot judge, a random case
#: whose shapes and dtypes match
_NOT_FAILED = ("pass", "skip", "random")


def check_expected(outcomes: list[Any], expected: dict[str, str]) -> tuple[list[str], list[str]]:
    """(failures not in `expected`, each with its error; listed cases that now pass), for
    `Outcome`s or `RoundTrip`s (a round trip's skip is not a failure)."""
    new = [f"{o.name} ({o.status}): {o.detail}" for o in outcomes
           if o.status not in _NOT_FAILED and o.name not in expected]
    fixed = [f"{o.name} (listed as: {expected[o.name]})" for o in outcomes
             if o.status in _NOT_FAILED and o.name in expected]
    return new, fixed


_HEADER = """# {what},
# with the reason: `case: reason` a line. tests/frontends/test_onnx_conformance.py fails on a
# failure missing here and on a listed case that passes. Regenerate after a change (runs every
# case): .venv/bin/python tests/frontends/onnx_conformance.py --update-expected
"""


def _write_list(path: Path, what: str, rows: list[tuple[str, str]]) -> int:
    path.write_text(_HEADER.format(what=what) + "".join(f"{n}: {why}\n" for n, why in sorted(rows)))
    return len(rows)


def update_expected(outcomes: list[Outcome], path: Path = EXPECTED_PATH) -> int:
    """Writes every failed case of `outcomes` with its reason to `path`; returns how many."""
    return _write_list(path, "onnx node cases that graphc's importer + numpy backend does not "
                       "match yet", [(o.name, reason(o)) for o in outcomes
                                     if o.status not in _NOT_FAILED])


def missing_ops(outcomes: list[Outcome]) -> collections.Counter:
    """Unsupported op types, counted by the cases that need them."""
    count: collections.Counter = collections.Counter()
    for o in outcomes:
        if o.status == "unsupported":
            for op in re.findall(r"^\s+(\S+) x\d+", o.detail, re.M) or ["?"]:
                count[op] += 1
    return count


def failure_table(outcomes: list[Outcome]) -> str:
    """The remaining failures grouped by reason (one row per reason), most cases first."""
    by = collections.Counter(reason(o) for o in outcomes if o.status not in _NOT_FAILED)
    width = max((len(str(n)) for n in by.values()), default=1)
    rows = sorted(by.items(), key=lambda kv: (-kv[1], kv[0]))
    return "\n".join(f"  {n:>{width}}  {why}" for why, n in rows)


def report(outcomes: list[Outcome], verbose: bool = False) -> str:
    passed = sum(o.status == "pass" for o in outcomes)
    special = sum(o.status == "pass" and o.detail.startswith("specialized") for o in outcomes)
    lines = [f"onnx node cases matched: {passed} of {len(outcomes)} ({special} of them with a "
             "shape/axes input fixed at import)"]
    random = [o.name for o in outcomes if o.status == "random"]
    lines.append(f"{RANDOM_NOTE}: {len(random)} cases")
    by_status = collections.Counter(o.status for o in outcomes)
    lines.append("by outcome: " + ", ".join(f"{k} {v}" for k, v in by_status.most_common()))
    lines.append("unsupported op types (cases needing them): " + ", ".join(
        f"{k} {v}" for k, v in missing_ops(outcomes).most_common()))
    lines.append(f"remaining failures by reason ({len(outcomes) - passed - len(random)} cases):")
    lines.append(failure_table(outcomes))
    if verbose:
        for o in outcomes:
            if o.status != "pass":
                lines.append(f"  {o.status:11s} {o.name}: {o.detail}")
    return "\n".join(lines)


# -- export round trip: import -> gc.export_onnx -> onnxruntime ---------------------------------

@dataclass
class RoundTrip:
    name: str
    status: str          # "pass", "skip" (onnxruntime cannot run the original), "fail"
    detail: str = ""


def _ort_run(model: Any, feeds_list: list[dict[str, np.ndarray]]) -> list[list[np.ndarray]]:
    import onnxruntime as ort
    ort.set_default_logger_severity(4)  # its refusals are reported here, not logged
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    opts.log_severity_level = 4
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    if not any(_bits_type(a.dtype) for feeds in feeds_list for a in feeds.values()):
        return [sess.run(None, feeds) for feeds in feeds_list]
    return [[_from_ortvalue(v) for v in sess.run_with_ort_values(
        None, {k: _to_ortvalue(a) for k, a in feeds.items()})] for feeds in feeds_list]


#: ml_dtypes' one- and two-byte floats, which onnxruntime's numpy binding does not take: they
#: travel as their bits (int4, float4 and the like are packed two to a byte in onnxruntime)
_BITS_TYPES = {"bfloat16": 16, "float8_e4m3fn": 17, "float8_e4m3fnuz": 18, "float8_e5m2": 19,
               "float8_e5m2fnuz": 20, "float8_e8m0fnu": 24}


def _bits_type(dtype: np.dtype) -> int:
    return _BITS_TYPES.get(dtype.name, 0)


def _to_ortvalue(a: np.ndarray) -> Any:
    import onnxruntime as ort
    a = np.ascontiguousarray(a)
    if not _bits_type(a.dtype):
        return ort.OrtValue.ortvalue_from_numpy(a)
    return ort.OrtValue.ortvalue_from_numpy_with_onnx_type(a.view(f"uint{8 * a.itemsize}"),
                                                           _bits_type(a.dtype))


def _from_ortvalue(v: Any) -> np.ndarray:
    import ml_dtypes
    import onnxruntime as ort
    name = next((k for k, t in _BITS_TYPES.items() if t == v.element_type()), None)
    if name is None:
        return np.array(v.numpy(), copy=True)
    dtype = np.dtype(getattr(ml_dtypes, name))
    host = np.empty(tuple(v.shape()), f"uint{8 * dtype.itemsize}")
    ort.OrtValue.ortvalue_from_numpy_with_onnx_type(host, _BITS_TYPES[name]).update_inplace(v)
    return host.view(dtype)


_NUMPY_DTYPES = {"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
                 "float16", "float32", "float64", "complex64", "complex128"}


def _ort_refusal(exc: Exception, arrays: list[np.ndarray]) -> str:
    """onnxruntime's refusal in one line, grouped by cause."""
    msg = " ".join(str(exc).split())
    msg = re.sub(r"\[ONNXRuntimeError\] : \d+ : \w+ : ", "", msg)
    exotic = sorted({str(a.dtype) for a in arrays} - _NUMPY_DTYPES)
    if exotic and ("Numpy_type" in msg or "Numpy type" in msg):
        return f"onnxruntime's Python API takes no {', '.join(exotic)} array"
    m = re.search(r"(?:Could not find an implementation|Failed to find kernel) for (\S+)", msg)
    if m:
        return f"onnxruntime has no kernel for {m.group(1)} on these dtypes"
    m = re.search(r" was false\. (.*?)(?: If you need support.*)?$", msg)
    if m:  # an onnxruntime precondition: its own explanation
        msg = m.group(1)
    return f"{type(exc).__name__}: {msg}"[:160]


def export_opset(model: Any) -> int:
    """The case's ai.onnx opset, brought into the range gc.export_onnx writes."""
    from graphc.backends.onnx import SUPPORTED_OPSETS
    version = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
                   SUPPORTED_OPSETS[-1])
    return min(max(version, SUPPORTED_OPSETS[0]), SUPPORTED_OPSETS[-1])


def round_trip(case: Any, outcome: Outcome) -> RoundTrip:
    """Exports a matched case's imported graph and runs it on onnxruntime; never raises.

    "skip" when onnxruntime refuses the original case model or gives other values than expected
    itself (the detail says which); "fail" when graphc's export is refused, needs a kernel
    onnxruntime lacks (graphc's op table lists it), or gives other values.
    """
    import graphc as gc
    from graphc.backends.onnx import missing_cpu_kernels
    assert outcome.status == "pass" and outcome.graph is not None, outcome.name
    g, known = outcome.graph, outcome.known
    init_names = {t.name for t in case.model.graph.initializer}
    in_names = [vi.name for vi in case.model.graph.input if vi.name not in init_names]
    data = [([_as_array(v) for v in ins], [_as_array(v) for v in outs])
            for ins, outs in case.data_sets]
    arrays = [a for ins, outs in data for a in ins + outs]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            runs = _ort_run(case.model, [dict(zip(in_names, ins)) for ins, _ in data])
    except Exception as exc:  # noqa: BLE001 - onnxruntime's refusal is the skip's reason
        return RoundTrip(case.name, "skip", "original refused: " + _ort_refusal(exc, arrays))
    for got, (_, expected) in zip(runs, data):
        wrong = compare([np.asarray(a) for a in got], expected, case)
        if wrong:
            return RoundTrip(case.name, "skip", f"onnxruntime's own result differs: {wrong[:120]}")
    gaps = sorted({f"{n.op.name} on {n.output.type.dtype}" for n in missing_cpu_kernels(g)})
    if gaps:  # the exported form needs a kernel onnxruntime lacks (graphc's op table says which)
        return RoundTrip(case.name, "fail",
                         f"onnxruntime's CPU build has no kernel for {', '.join(gaps)}")
    try:
        model = gc.export_onnx(g, opset=export_opset(case.model))
    except Exception as exc:  # noqa: BLE001
        return RoundTrip(case.name, "fail", f"export: {type(exc).__name__}: {exc}"[:300])
    feeds_list = []
    for ins, _ in data:
        fed = [a for n, a in zip(in_names, ins) if n not in known]
        feeds_list.append({v.name: np.asarray(a) for v, a in zip(g.inputs, fed)})
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            runs = _ort_run(model, feeds_list)
    except Exception as exc:  # noqa: BLE001
        return RoundTrip(case.name, "fail", "exported model refused: " + _ort_refusal(exc, arrays))
    for got, (_, expected) in zip(runs, data):
        wrong = compare([np.asarray(a) for a in got], expected, case)
        if wrong:
            return RoundTrip(case.name, "fail", f"differs: {wrong}")
    return RoundTrip(case.name, "pass")


def round_trip_all(selected: list[Any], outcomes: list[Outcome]) -> list[RoundTrip]:
    """`round_trip` for every matched case of `outcomes` (parallel to `selected`)."""
    return [round_trip(c, o) for c, o in zip(selected, outcomes) if o.status == "pass"]


def round_trip_reason(t: RoundTrip) -> str:
    """One short line saying why round trip `t` failed."""
    if t.detail.startswith("differs"):
        return f"WRONG RESULT: {t.detail}"[:120]
    text = re.sub(r"GraphcError: \S+\.onnx:\d+: ", "", t.detail.splitlines()[0])
    text = re.sub(r"^export: lowering (\S+) to ONNX failed: ", r"export refused (\1): ", text)
    text = re.sub(r": pass opset=\d+ or later$", "", text)
    return text[:120].rstrip()


def update_round_trip_expected(trips: list[RoundTrip],
                               path: Path = ROUND_TRIP_EXPECTED_PATH) -> int:
    """Writes every failed round trip with its reason to `path`; returns how many."""
    return _write_list(path, "matched onnx node cases whose export round trip (gc.export_onnx -> "
                       "onnxruntime) fails", [(t.name, round_trip_reason(t)) for t in trips
                                             if t.status == "fail"])


def round_trip_report(trips: list[RoundTrip], verbose: bool = False) -> str:
    by = collections.Counter(t.status for t in trips)
    lines = [f"export round trip of {len(trips)} matched cases: agree {by['pass']}, "
             f"fail {by['fail']}, skipped {by['skip']} (onnxruntime cannot run the original "
             "case correctly)"]
    fails = collections.Counter(round_trip_reason(t) for t in trips if t.status == "fail")
    lines += [f"  fail {n:4d}  {w}" for w, n in fails.most_common()]
    skips = collections.Counter(t.detail[:110] for t in trips if t.status == "skip")
    lines += [f"  skip {n:4d}  {w}" for w, n in skips.most_common()]
    if verbose:
        lines += [f"  {t.status} {t.name}: {t.detail}" for t in trips if t.status != "pass"]
    return "\n".join(lines)


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("-")]
    update = "--update-expected" in sys.argv
    if update and args:
        sys.exit("--update-expected runs every case: give no name filter")
    selected = [c for c in cases() if not args or any(a in c.name for a in args)]
    outcomes = run_all(selected)
    print(report(outcomes, verbose="-v" in sys.argv))
    if "--round-trip" in sys.argv or update:
        trips = round_trip_all(selected, outcomes)
        print(round_trip_report(trips, verbose="-v" in sys.argv))
    if update:
        print(f"wrote {update_expected(outcomes)} expected failures to {EXPECTED_PATH.name} and "
              f"{update_round_trip_expected(trips)} to {ROUND_TRIP_EXPECTED_PATH.name}")
