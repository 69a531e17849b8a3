"""Pass pipelines: named `Graph -> Graph` passes run in an explicit order.

A pipeline verifies the graph after every pass (naming the pass that broke it), records each
pass's time and node counts in a printable `PipelineReport`, and, when the environment variable
``GRAPHC_DUMP`` names a directory (or `dump=` does), writes every stage as text::

    $GRAPHC_DUMP/<graph name>/00_input.txt, 01_fold_constants.txt, 02_simplify_algebra.txt, ...

Named pipelines (`register_pipeline`, `get_pipeline`) are how graphc itself composes passes:
`gc.grad` runs "simplify" on every gradient graph, and `gc.training_step` builds a step through
"fuse-forward", "simplify", "fold-transposes" and "fuse-step". A named pipeline dumps into
``$GRAPHC_DUMP/<graph name>/<pipeline name>/``. Passes never call each other.

Loop bodies: a pipeline made with ``bodies=True`` (all of graphc's named ones but autocast) runs
itself, after its passes, on every loop body (scan's ``body`` attribute), nested ones included,
so CSE, DCE, folding, algebra and the fusions work inside loops; a pass never recurses itself.
"""
from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence, Union

from ..ir.errors import GraphcError, VerifyError
from ..ir.graph import Graph
from ..ir.verify import verify as verify_graph
from .loop_bodies import bodies, has_bodies, map_bodies

PassFn = Callable[[Graph], Graph]

#: every registered pass, by name
PASSES: dict[str, PassFn] = {}

#: the default simplification pipeline, in order
DEFAULT_PIPELINE: tuple[str, ...] = ("fold_constants", "simplify_algebra",
                                     "eliminate_common_subexpressions", "eliminate_dead_code")


def register_pass(name: str) -> Callable[[PassFn], PassFn]:
    """Decorator: registers a `Graph -> Graph` function as the pass called `name`."""
    def wrap(fn: PassFn) -> PassFn:
        if name in PASSES and PASSES[name] is not fn:
            raise ValueError(f"a pass named {name!r} is already registered")
        PASSES[name] = fn
        fn.pass_name = name  # type: ignore[attr-defined]
        return fn
    return wrap


def get_pass(name: str) -> PassFn:
    """The registered pass called `name`; KeyError listing the known passes otherwise."""
    _load_builtin_passes()
    try:
        return PASSES[name]
    except KeyError:
        raise KeyError(f"no pass named {name!r}; registered passes: {', '.join(sorted(PASSES))}") from None


def _load_builtin_passes() -> None:
    # imported lazily: the pass modules import the DSL, which must not import us at load time
    from . import eliminate_common_subexpressions, eliminate_dead_code, fold_constants  # noqa: F401
    from . import simplify_algebra, transpose_products  # noqa: F401
    from . import fuse_gemm, fuse_layer_norm, fuse_losses, fuse_softmax  # noqa: F401
    from . import autocast  # noqa: F401
    from . import mask_by_multiply, pool_before_relu  # noqa: F401
    from . import hoist_loop_products, merge_scans, prune_scan_outputs  # noqa: F401


PassSpec = Union[str, PassFn]


@dataclass
class PassRecord:
    """What one pass did: its name, wall time and node counts before and after."""

    name: str
    seconds: float
    nodes_before: int
    nodes_after: int
    round: int = 1


@dataclass
class PipelineReport:
    """Per-pass timings and node counts of one pipeline run; `print(report)` shows a table."""

    graph: str
    records: list[PassRecord] = field(default_factory=list)
    nodes_in: int = 0
    nodes_out: int = 0
    rounds: int = 0
    dump_dir: str | None = None
    pipeline: str | None = None

    @property
    def seconds(self) -> float:
        """Total time spent in the passes."""
        return sum(r.seconds for r in self.records)

    def __str__(self) -> str:
        label = f"pipeline {self.pipeline!r}" if self.pipeline else "pipeline"
        lines = [f"{label} on graph {self.graph!r}: {self.nodes_in} -> {self.nodes_out} nodes "
                 f"in {self.seconds * 1e3:.1f} ms ({self.rounds} round{'s' if self.rounds != 1 else ''})",
                 f"  {'#':>3}  {'pass':<34} {'round':>5} {'before':>7} {'after':>7} {'ms':>9}"]
        for i, r in enumerate(self.records, 1):
            lines.append(f"  {i:>3}  {r.name:<34} {r.round:>5} {r.nodes_before:>7} {r.nodes_after:>7} "
                         f"{r.seconds * 1e3:>9.2f}")
        if self.dump_dir:
            lines.append(f"  stages written to {self.dump_dir}")
        return "\n".join(lines)


def _signature(g: Graph) -> tuple:
    """A cheap structural fingerprint, used to detect that a round changed nothing."""
    return (len(g.nodes), tuple(n.op.name for n in g.nodes),
            tuple((k, v.name) for k, v in g.outputs.items()))


class Pipeline:
    """An explicit, ordered list of passes.

    After each pass it verifies the graph and checks that the pass kept the graph's interface
    (inputs with their types and roles, output names, state updates); a pass that breaks either
    raises a GraphcError naming it. Nothing falls back silently.

    Args:
        passes: pass names (see `PASSES`) or `Graph -> Graph` functions, run in this order.
        verify: run `verify()` after every pass (keep it on in tests).
        dump: directory to write each stage's text into; defaults to `$GRAPHC_DUMP` if set.
        max_rounds: repeat the whole list until a round changes nothing, at most this many times.
        name: the pipeline's name (named pipelines dump into a folder of their own).
        bodies: then run this pipeline on every loop body too (passes/loop_bodies.py); a body it
            does not change keeps its identity.

    Example:

        p = Pipeline(["fold_constants", "eliminate_dead_code"])
        g2 = p(g)
        print(p.last_report)
    """

    def __init__(self, passes: Sequence[PassSpec] = DEFAULT_PIPELINE, verify: bool = True,
                 dump: str | os.PathLike | None = None, max_rounds: int = 1, name: str | None = None,
                 bodies: bool = False):
        if max_rounds < 1:
            raise ValueError(f"max_rounds must be at least 1, got {max_rounds}")
        self.passes: list[tuple[str, PassFn]] = [self._resolve(p) for p in passes]
        self.verify = verify
        self.dump = dump
        self.max_rounds = max_rounds
        self.name = name
        self.bodies = bodies
        self.last_report: PipelineReport | None = None

    @staticmethod
    def _resolve(p: PassSpec) -> tuple[str, PassFn]:
        if isinstance(p, str):
            return p, get_pass(p)
        if callable(p):
            return getattr(p, "pass_name", getattr(p, "__name__", "pass")), p
        raise TypeError(f"a pass is a registered name or a Graph -> Graph function, got {p!r}")

    def __repr__(self) -> str:
        label = f"{self.name!r}, " if self.name else ""
        return f"Pipeline({label}[{', '.join(n for n, _ in self.passes)}])"

    def __call__(self, graph: Graph) -> Graph:
        return self.run(graph)[0]

    def run(self, graph: Graph) -> tuple[Graph, PipelineReport]:
        """Runs the passes in order; returns (new graph, report). The input graph is unchanged."""
        report = PipelineReport(graph.name, nodes_in=len(graph.nodes), pipeline=self.name)
        dump_dir = _dump_dir(graph, self.dump, self.name)
        report.dump_dir = dump_dir
        step = 0
        if dump_dir:
            _write(dump_dir, f"{step:02d}_input.txt", str(graph))
        g = graph
        for rnd in range(1, self.max_rounds + 1):
            before = _signature(g)
            for name, fn in self.passes:
                n0 = len(g.nodes)
                t0 = time.perf_counter()
                out = fn(g)
                dt = time.perf_counter() - t0
                if not isinstance(out, Graph):
                    raise GraphcError(f"pass {name!r} returned {type(out).__name__}, not a Graph")
                if self.verify:
                    try:
                        verify_graph(out)
                    except VerifyError as exc:
                        raise VerifyError(f"after pass {name!r} (round {rnd}) the graph is invalid: "
                                          f"{exc}") from exc
                _check_interface(name, g, out)
                g = out
                step += 1
                report.records.append(PassRecord(name, dt, n0, len(g.nodes), rnd))
                if dump_dir:
                    _write(dump_dir, f"{step:02d}_{_safe(name)}.txt", str(g))
            report.rounds = rnd
            if _signature(g) == before:
                break
        if self.bodies and has_bodies(g):
            g = self._run_on_bodies(g, report)
            step += 1
            if dump_dir:
                _write(dump_dir, f"{step:02d}_loop_bodies.txt", str(g))
        report.nodes_out = len(g.nodes)
        if dump_dir:
            _write(dump_dir, "report.txt", str(report))
        self.last_report = report
        return g, report

    def _run_on_bodies(self, g: Graph, report: PipelineReport) -> Graph:
        """`g` with this pipeline run on each loop body; one record counting the bodies' nodes."""
        before = sum(len(b.nodes) for b in bodies(g))
        t0 = time.perf_counter()
        out = map_bodies(g, self, lambda old, new: _signature(new) != _signature(old))
        if self.verify:
            verify_graph(out)
        after = sum(len(b.nodes) for b in bodies(out))
        report.records.append(PassRecord("(loop bodies)", time.perf_counter() - t0, before, after,
                                         report.rounds))
        return out


def _interface(g: Graph) -> tuple:
    return [(v.name, v.type, v.role, v.target) for v in g.inputs], list(g.outputs), dict(g.updates)


def _check_interface(name: str, before: Graph, after: Graph) -> None:
    """GraphcError naming pass `name` if it changed inputs, output names or state updates."""
    (ins0, outs0, upd0), (ins1, outs1, upd1) = _interface(before), _interface(after)
    problems = []
    if ins0 != ins1:
        lost = [n for n, *_ in ins0 if n not in {m for m, *_ in ins1}]
        added = [n for n, *_ in ins1 if n not in {m for m, *_ in ins0}]
        what = (f"dropped input(s) {', '.join(lost)}" if lost else "") + \
               (f"{'; ' if lost else ''}added input(s) {', '.join(added)}" if added else "")
        problems.append(what or "changed the types or roles of the inputs")
    if outs0 != outs1:
        problems.append(f"changed the output names {outs0} to {outs1}")
    if upd0 != upd1:
        problems.append(f"changed which outputs update state ({upd0} to {upd1})")
    if problems:
        raise GraphcError(f"pass {name!r} broke graph {before.name!r}: " + "; ".join(problems))


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.\-]", "_", name) or "graph"


def _dump_dir(graph: Graph, dump: str | os.PathLike | None, pipeline: str | None = None
              ) -> str | None:
    root = os.fspath(dump) if dump is not None else os.environ.get("GRAPHC_DUMP") or None
    if not root:
        return None
    path = os.path.join(root, _safe(graph.name), *([_safe(pipeline)] if pipeline else []))
    os.makedirs(path, exist_ok=True)
    return path


def _write(directory: str, name: str, text: str) -> None:
    with open(os.path.join(directory, name), "w", encoding="utf-8") as f:
        f.write(text + "\n")


def run_passes(graph: Graph, passes: Iterable[PassSpec], verify: bool = True,
               dump: str | os.PathLike | None = None, max_rounds: int = 1
               ) -> tuple[Graph, PipelineReport]:
    """Runs `passes` on `graph` in order; returns (new graph, report). See `Pipeline`."""
    return Pipeline(list(passes), verify=verify, dump=dump, max_rounds=max_rounds).run(graph)


def simplify(graph: Graph, passes: Sequence[PassSpec] | None = None, verify: bool = True,
             dump: str | os.PathLike | None = None, max_rounds: int = 3,
             return_report: bool = False) -> Graph | tuple[Graph, PipelineReport]:
    """Simplifies a graph with the default pipeline (or `passes`), repeated to a fixed point.

    The default pipeline is fold_constants, simplify_algebra, eliminate_common_subexpressions,
    eliminate_dead_code. Output names, parameter data and node provenance are preserved; the
    input graph is not modified.

    Args:
        graph: the graph to simplify.
        passes: pass names or functions to run instead of `DEFAULT_PIPELINE`.
        verify: verify the graph after each pass.
        dump: directory for per-stage text dumps (default: `$GRAPHC_DUMP`, if set).
        max_rounds: repeat the whole pipeline while it still changes the graph, at most this often.
        return_report: also return the `PipelineReport`.

    Returns:
        The simplified graph, or (graph, report) when `return_report` is true.
    """
    g, report = run_passes(graph, DEFAULT_PIPELINE if passes is None else passes, verify=verify,
                           dump=dump, max_rounds=max_rounds)
    return (g, report) if return_report else g


# ---- named pipelines ---------------------------------------------------------------------------

@dataclass(frozen=True)
class PipelineSpec:
    """A named pipeline's passes and how often to repeat them."""

    passes: tuple[str, ...]
    max_rounds: int = 1
    doc: str = ""
    bodies: bool = False


#: graphc's named pipelines
PIPELINES: dict[str, PipelineSpec] = {}


def register_pipeline(name: str, passes: Sequence[str], max_rounds: int = 1, doc: str = "",
                      replace: bool = False, bodies: bool = False) -> None:
    """Registers the named pipeline `name` (pass names, run in order, repeated up to max_rounds;
    with `bodies`, then run on every loop body too)."""
    if name in PIPELINES and not replace:
        raise ValueError(f"a pipeline named {name!r} is already registered")
    PIPELINES[name] = PipelineSpec(tuple(passes), max_rounds, doc, bodies)


def get_pipeline(name: str, verify: bool = True, dump: str | os.PathLike | None = None) -> Pipeline:
    """A fresh Pipeline for the registered pipeline `name`; KeyError listing them otherwise."""
    try:
        spec = PIPELINES[name]
    except KeyError:
        raise KeyError(f"no pipeline named {name!r}; registered pipelines: "
                       f"{', '.join(sorted(PIPELINES))}") from None
    return Pipeline(spec.passes, verify=verify, dump=dump, max_rounds=spec.max_rounds, name=name,
                    bodies=spec.bodies)


register_pipeline("simplify", ("merge_scans",) + DEFAULT_PIPELINE + ("prune_scan_outputs",),
                  max_rounds=3, bodies=True,
                  doc="constant folding, algebra, CSE and DCE to a fixed point, inside loop "
                      "bodies too")
register_pipeline("fuse-forward", ("fuse_losses", "fuse_softmax", "fuse_layer_norm", "fuse_gemm",
                                   "pool_before_relu", "eliminate_dead_code"), bodies=True,
                  doc="fused primitives in the loss graph, so autodiff derives their compact rules")
register_pipeline("autocast-bf16", ("autocast_bf16",),
                  doc="mixed precision: products in bfloat16, the rest float32 (passes/autocast.py)")
register_pipeline("autocast-fp16", ("autocast_fp16",),
                  doc="mixed precision: products in float16, the rest float32 (passes/autocast.py)")
register_pipeline("fold-transposes", ("transpose_products", "eliminate_dead_code"), bodies=True,
                  doc="weight-gradient transposes folded into the products")
register_pipeline("fuse-step", ("hoist_loop_products", "fuse_gemm", "mask_by_multiply",
                               "eliminate_dead_code"),
                  bodies=True,
                  doc="the optimizer's `momentum * buf + grad` into the weight gradient's Gemm; "
                      "ReLU-gradient masks as products (passes/mask_by_multiply.py)")
