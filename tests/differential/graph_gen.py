"""Random graphs for the differential tests: a hypothesis strategy that draws `Program`s.

A `Program` is plain data (eval-able from its repr): the sizes bound to the symbolic dims, the
graph inputs (`In`), a list of `Step`s (a generator op, the names of its argument values and its
parameters) and the outputs. `program.build(dtype)` replays the steps with the graphc DSL in
float32 or float64, so the float64 build is the reference of the float32 one;
`program.feeds(dtype)` gives the same input values to both (drawn in float32, then widened).

While drawing, each step is built at once into a float64 draft graph and evaluated with the
primitives' numpy `ref` kernels, so a step sees the actual values of its operands and keeps
inside the ops' domains: `log`/`sqrt`/`pow`/`div` get operands made positive (`to_pos`:
sigmoid(x) + 0.25), amplifying ops get bounded ones (`tanh`), and kinks (relu, abs, sign,
maximum, comparisons, max reductions, max pools, argmax) are only drawn where no operand lies
so near the kink that float32 rounding could put it on the other side.

Usage::

    from differential.graph_gen import programs
    @given(programs())
    def test(p): g, wrt = p.build("float32"); feeds = p.feeds("float32")
"""
from __future__ import annotations

import builtins
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from hypothesis import strategies as st

import graphc as gc
from graphc.ir.types import broadcast_shapes, eval_dim
from graphc.ops.interpret import resolve_attrs
from graphc.ops.shape import INT_MAX

#: sizes a symbolic dim is bound to (0: an empty batch)
SYMBOL_SIZES = (3, 2, 1, 0)
#: dims of fresh inputs: small sizes, the symbols, and (rarely drawn) an empty dim
DIM_CHOICES = (3, 2, 1, 4, "N", "M", 0)
#: relative distance from a kink below which an operand counts as "on" it
KINK_MARGIN = 1e-3


# ---- the program ---------------------------------------------------------------------------------

@dataclass
class In:
    """A graph input: `kind` is float (in [-2, 2]), pos (in [0.5, 2]), weight (loss weights, in
    [-1, 1]), bool, or index (int64/int32 in [-hi, hi), for gather)."""

    name: str
    shape: tuple
    kind: str = "float"
    hi: int = 0
    int_dtype: str = "int64"

    def dtype(self, float_dtype: str) -> str:
        return {"bool": "bool", "index": self.int_dtype}.get(self.kind, float_dtype)

    @property
    def differentiable(self) -> bool:
        return self.kind in ("float", "pos")


@dataclass
class Step:
    """One call of a generator op: the value it makes is named `v<index of the step>`."""

    op: str
    args: tuple
    params: dict = field(default_factory=dict)


@dataclass
class Program:
    """A random graph as data; `build` and `feeds` replay it in a given float dtype."""

    bindings: dict
    inputs: list
    steps: list
    outputs: list
    seed: int = 0
    dtype: str = "float32"
    features: tuple = ()

    def input_spec(self, name: str) -> In:
        return next(i for i in self.inputs if i.name == name)

    def build(self, dtype: str, name: str = "diff") -> tuple[gc.Graph, list[str]]:
        """(forward graph, names to differentiate): outputs `loss` (sum of each float output times
        its weight input `w_<output>`) and `y0`, `y1`, ...; `wrt` lists the float inputs."""
        g = gc.Graph(name)
        env: dict[str, Any] = {}
        with g:
            for spec in self.inputs:
                env[spec.name] = g.input(spec.name, tuple(spec.shape), spec.dtype(dtype))
            for k, step in enumerate(self.steps):
                env[f"v{k}"] = GEN_OPS[step.op].build([env[a] for a in step.args], **step.params)
            outs = {f"y{i}": env[o] for i, o in enumerate(self.outputs)}
            terms = [gc.sum(t * env[f"w_y{i}"]) for i, t in enumerate(outs.values())
                     if t.dtype == dtype]
            loss = terms[0]
            for t in terms[1:]:
                loss = loss + t
            g.output(loss=loss, **outs)
        return g, [s.name for s in self.inputs if s.differentiable]

    def feeds(self, dtype: str) -> dict[str, np.ndarray]:
        """The input values, identical (float32-representable) in both float dtypes."""
        return {spec.name: input_value(spec, self.bindings, self.seed, k, dtype)
                for k, spec in enumerate(self.inputs)}

    def ops(self) -> set[str]:
        return {s.op for s in self.steps}

    def source(self) -> str:
        """Python that rebuilds this program (paste it to replay a failure)."""
        lines = ["from differential.graph_gen import Program, In, Step",
                 "from differential.check import run_program",
                 f"p = Program(bindings={self.bindings!r}, seed={self.seed!r}, "
                 f"dtype={self.dtype!r}, features={self.features!r},",
                 "    inputs=["]
        lines += [f"        {i!r}," for i in self.inputs]
        lines.append("    ],\n    steps=[")
        lines += [f"        {s!r},  # v{k}" for k, s in enumerate(self.steps)]
        lines.append(f"    ],\n    outputs={self.outputs!r})")
        lines.append("print(run_program(p))")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.source()


def input_value(spec: In, bindings: dict, seed: int, k: int, dtype: str) -> np.ndarray:
    """The k-th input's value, a pure function of (seed, k): float32 values, widened to `dtype`."""
    rng = np.random.default_rng([seed, k])
    shape = tuple(eval_dim(d, bindings) for d in spec.shape)
    if spec.kind == "bool":
        return rng.random(shape) < 0.5
    if spec.kind == "index":
        return rng.integers(-spec.hi, builtins.max(spec.hi, 1), size=shape).astype(spec.int_dtype)
    lo, hi = {"float": (-2.0, 2.0), "pos": (0.5, 2.0), "weight": (-1.0, 1.0)}[spec.kind]
    return rng.uniform(lo, hi, size=shape).astype(np.float32).astype(dtype)


# ---- generator ops: how each is built and how its operands are drawn -----------------------------

@dataclass
class GenOp:
    """A generator op: `build(tensors, **params)` with the DSL; `draw(ctx)` adds a step (returns
    the new value's name) or returns None when no operand fits."""

    name: str
    build: Callable[..., Any]
    draw: Callable[["Ctx"], str | None] | None = None
    weight: int = 1


GEN_OPS: dict[str, GenOp] = {}


def genop(name: str, build, draw=None, weight: int = 1):
    GEN_OPS[name] = GenOp(name, build, draw, weight)


def _binary_build(fn):
    def build(ts, scalar=None, scalar_left=False):
        if scalar is not None:
            return fn(scalar, ts[0]) if scalar_left else fn(ts[0], scalar)
        return fn(ts[0], ts[1])
    return build


UNARY = {"neg": gc.neg, "exp": gc.exp, "log": gc.log, "sqrt": gc.sqrt, "abs": gc.abs,
         "tanh": gc.tanh, "sigmoid": gc.sigmoid, "relu": gc.relu, "erf": gc.erf, "sign": gc.sign,
         "gelu": gc.gelu, "leaky_relu": lambda x: gc.leaky_relu(x, 0.1)}
BINARY = {"add": gc.add, "sub": gc.sub, "mul": gc.mul, "div": gc.div, "pow": gc.pow,
          "maximum": gc.maximum, "minimum": gc.minimum}
COMPARE = {"less": gc.less, "less_equal": gc.less_equal, "greater": gc.greater,
           "greater_equal": gc.greater_equal}
REDUCE = {"sum": gc.sum, "mean": gc.mean, "max": gc.max, "min": gc.min}


class Ctx:
    """The drawing state: a float64 draft graph, the values of every node, the steps so far."""

    def __init__(self, draw, seed: int, bindings: dict, dtype: str, dims=DIM_CHOICES):
        self.draw = draw
        self.dims = dims
        self.seed = seed
        self.bindings = bindings
        self.dtype = dtype
        self.graph = gc.Graph("draft")
        self.tensors: dict[str, Any] = {}       # program name -> Tensor in the draft graph
        self.arrays: dict[str, np.ndarray] = {}  # draft graph value name -> float64 value
        self.inputs: list[In] = []
        self.steps: list[Step] = []
        self.features: set[str] = set()

    # ---- values ------------------------------------------------------------------------------
    def value(self, name: str) -> np.ndarray:
        return self.arrays[self.tensors[name].value.name]

    def sym(self, name: str) -> tuple:
        return tuple(self.tensors[name].shape)

    def concrete(self, name: str) -> tuple:
        return self.value(name).shape

    def names(self, kind: str = "f", pred=None) -> list[str]:
        out = []
        for n, t in self.tensors.items():
            k = {"float64": "f", "bool": "b"}.get(t.dtype, "i")
            if k == kind and (pred is None or pred(n)):
                out.append(n)
        return out

    def pick(self, kind: str = "f", pred=None) -> str | None:
        """One value of `kind` satisfying pred, the most recent first (shrinks toward them)."""
        cands = self.names(kind, pred)
        if not cands:
            return None
        return self.draw(st.sampled_from(cands[::-1]))

    def sizes(self, *choices) -> list:
        """`choices` without 0 when this program draws no static empty dims."""
        return [d for d in choices if d != 0 or 0 in self.dims]

    def dim(self) -> Any:
        return self.draw(st.sampled_from(self.dims))

    def new_input(self, shape: tuple, kind: str = "float", hi: int = 0,
                  int_dtype: str = "int64") -> str:
        prefix = {"weight": "w_", "bool": "c", "index": "i"}.get(kind, "x")
        name = f"{prefix}{len(self.inputs)}"
        spec = In(name, tuple(shape), kind, hi, int_dtype)
        self.inputs.append(spec)
        if 0 in spec.shape:
            self.features.add("static_empty")
        val = input_value(spec, self.bindings, self.seed, len(self.inputs) - 1, "float64")
        with self.graph:
            t = self.graph.input(name, tuple(shape), spec.dtype("float64"))
        self.tensors[name] = t
        self.arrays[name] = val
        return name

    def fresh_float(self, shape: tuple | None = None, kind: str | None = None) -> str:
        if shape is None:
            rank = self.draw(st.integers(0, 3))
            shape = tuple(self.dim() for _ in range(rank))
        kind = kind or self.draw(st.sampled_from(["float", "pos"]))
        return self.new_input(shape, kind)

    def apply(self, genop_name: str, args: list[str], /, **params) -> str:
        """Adds a step: builds it in the draft graph and evaluates the new nodes."""
        name = f"v{len(self.steps)}"
        start = len(self.graph.nodes)
        with self.graph:
            out = GEN_OPS[genop_name].build([self.tensors[a] for a in args], **params)
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            for node in self.graph.nodes[start:]:
                xs = [self.arrays[v.name] for v in node.inputs]
                if node.op.name == "mean" and _reduced_count(xs[0], node.attrs["axes"]) == 0:
                    self.features.add("mean_over_empty")
                if 0 in node.output.type.shape:
                    self.features.add("static_empty")
                y = np.asarray(node.op.ref(*xs, **resolve_attrs(node, self.bindings)))
                want = tuple(eval_dim(d, self.bindings) for d in node.output.type.shape)
                # infer and ref must agree: a node whose ref returns another shape is a bug
                assert y.shape == want, (
                    f"{node.op.name}{tuple(x.shape for x in xs)} {node.attrs}: ref returns shape "
                    f"{y.shape}, infer says {node.output.type} = {want} with {self.bindings}")
                self.arrays[node.output.name] = y.astype(node.output.type.dtype, copy=False)
        self.tensors[name] = out
        self.steps.append(Step(genop_name, tuple(args), params))
        return name

    # ---- keeping operands inside domains ----------------------------------------------------
    def bounded(self, name: str, bound: float = 4.0) -> str:
        """`name`, or tanh of it where some element exceeds `bound` in magnitude."""
        v = self.value(name)
        if v.size and not np.max(np.abs(v)) <= bound:  # NaN counts as out of bounds
            return self.apply("tanh", [name])
        return name

    def positive(self, name: str, lo: float = 0.1, hi: float = 1e3) -> str:
        """`name`, or sigmoid(name) + 0.25 where some element is outside [lo, hi]."""
        v = self.value(name)
        if v.size and not (np.min(v) >= lo and np.max(v) <= hi):
            return self.apply("to_pos", [name])
        return name

    def away_from_zero(self, name: str, lo: float = 0.25) -> str:
        """`name`, or sigmoid(name) + 0.25 where some element is within `lo` of 0."""
        v = self.value(name)
        if v.size and not np.min(np.abs(v)) >= lo:
            return self.apply("to_pos", [name])
        return name

    def partner(self, a: str, kinds=("float", "pos")) -> str:
        """A float value broadcasting with `a`: an existing one, or a new input of a shape made
        from a's (dims kept or set to 1, leading dims dropped, or a new leading dim)."""
        sa = self.sym(a)

        def fits(n):
            try:
                broadcast_shapes(sa, self.sym(n))
                return True
            except ValueError:
                return False
        how = self.draw(st.sampled_from(["fresh", "existing"]))
        if how == "existing":
            b = self.pick("f", fits)
            if b is not None:
                return b
        drop = self.draw(st.integers(0, len(sa)))
        shape = [d if self.draw(st.booleans()) else 1 for d in sa[drop:]]
        if drop == 0 and self.draw(st.integers(0, 4)) == 0:
            shape.insert(0, self.draw(st.sampled_from([2, 1, "N"])))
        return self.fresh_float(tuple(shape), self.draw(st.sampled_from(kinds)))


def _reduced_count(x: np.ndarray, axes) -> int:
    ax = range(x.ndim) if axes is None else axes
    return int(np.prod([x.shape[a] for a in ax], dtype=np.int64))


def _near_kink(d: np.ndarray, scale: float | None = None) -> bool:
    """Whether some element of d is non-zero but within the margin of 0 (exact zeros are ties that
    every precision reproduces; near-zeros are not)."""
    d = np.asarray(d, np.float64)
    if not d.size:
        return False
    a = np.abs(d[np.isfinite(d)])
    s = scale if scale is not None else builtins.max(1.0, float(np.max(a, initial=0.0)))
    return bool(np.any((a > 0) & (a < KINK_MARGIN * s)))


def _near_tie_in_slices(x: np.ndarray, axes: tuple, largest: bool = True,
                        scale: float | None = None) -> bool:
    """Whether the extremum of some slice over `axes` has a runner-up close to it but not equal."""
    if x.size == 0:
        return False
    rest = [i for i in range(x.ndim) if i not in axes]
    rows = np.transpose(x, rest + list(axes)).reshape(int(np.prod([x.shape[i] for i in rest])), -1)
    if rows.shape[1] < 2:
        return False
    s = np.sort(rows, axis=1)
    top = s[:, -1] - s[:, -2] if largest else s[:, 1] - s[:, 0]
    if scale is None:
        scale = builtins.max(1.0, float(np.max(np.abs(x))))
    return bool(np.any((top > 0) & (top < KINK_MARGIN * scale)))


# ---- unary ------------------------------------------------------------------------------------

def _draw_unary(op):
    def draw(ctx: Ctx):
        x = ctx.pick()
        if op in ("exp",):
            x = ctx.bounded(x, 4.0)
        elif op in ("log", "sqrt"):
            x = ctx.positive(x)
        elif op in ("abs", "relu", "sign", "leaky_relu"):
            if _near_kink(ctx.value(x)):
                return None
        return ctx.apply(op, [x])
    return draw


for _name, _fn in UNARY.items():
    genop(_name, (lambda fn: lambda ts: fn(ts[0]))(_fn), _draw_unary(_name))
genop("to_pos", lambda ts: gc.sigmoid(ts[0]) + 0.25, None)


def _softmax_build(kind):
    def build(ts, axis, keepdims=False):
        if kind == "softmax":
            return gc.softmax(ts[0], axis)
        if kind == "log_softmax":
            return gc.log_softmax(ts[0], axis)
        return gc.logsumexp(ts[0], axis, keepdims=keepdims)
    return build


def _draw_softmax(kind):
    def draw(ctx: Ctx):
        x = ctx.pick(pred=lambda n: len(ctx.sym(n)) >= 1)
        if x is None:
            return None
        rank = len(ctx.sym(x))
        axis = ctx.draw(st.integers(-rank, rank - 1))
        if ctx.concrete(x)[axis] == 0:
            return None  # max over an empty axis has no value (numpy raises)
        params = {"axis": axis}
        if kind == "logsumexp":
            params["keepdims"] = ctx.draw(st.booleans())
        return ctx.apply(kind, [ctx.bounded(x, 30.0)], **params)
    return draw


for _k in ("softmax", "log_softmax", "logsumexp"):
    genop(_k, _softmax_build(_k), _draw_softmax(_k))


def _layer_norm_build(ts, k):
    x = ts[0]
    w = ts[1] if len(ts) > 1 else None
    b = ts[2] if len(ts) > 2 else None
    return gc.layer_norm(x, tuple(x.shape[-k:]), w, b)


def _draw_layer_norm(ctx: Ctx):
    x = ctx.pick(pred=lambda n: len(ctx.sym(n)) >= 1)
    if x is None:
        return None
    rank = len(ctx.sym(x))
    k = ctx.draw(st.integers(1, builtins.min(2, rank)))
    v = ctx.value(x)
    if v.size:
        # a slice of (near-)equal values is ill-conditioned: 1/sqrt(var + 1e-5) amplifies the
        # float32 rounding of x - mean ~300x, and the gradient more (equal values need not give
        # an exact mean in float32); only all-zero slices are exact
        axes = tuple(range(rank - k, rank))
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")  # an empty slice has no variance (NaN)
            var = np.var(v, axis=axes)
            nonzero = np.max(np.abs(v), axis=axes, initial=0.0) > 0
        if np.any(nonzero & (var < 1e-2 * builtins.max(1.0, float(np.max(np.abs(v)))) ** 2)):
            return None
    args = [x]
    for _ in range(ctx.draw(st.integers(0, 2))):
        args.append(ctx.new_input(ctx.sym(x)[-k:], "float"))
    return ctx.apply("layer_norm", args, k=k)


genop("layer_norm", _layer_norm_build, _draw_layer_norm)


# ---- binary -----------------------------------------------------------------------------------

def _draw_binary(op):
    def draw(ctx: Ctx):
        a = ctx.pick()
        if ctx.draw(st.integers(0, 4)) == 0:  # a Python scalar operand
            left = ctx.draw(st.booleans())
            c = ctx.draw(st.sampled_from([2.0, 0.5, -1.5, 3.0]))
            if op == "pow":
                if left:
                    c = abs(c)
                    a = ctx.bounded(a, 3.0)
                else:
                    a = ctx.positive(ctx.bounded(a, 10.0), lo=0.1)
            elif op == "div" and left:
                a = ctx.away_from_zero(a)
            elif op in ("maximum", "minimum") and _near_kink(ctx.value(a) - c):
                return None
            return ctx.apply(op, [a], scalar=c, scalar_left=left)
        b = ctx.partner(a)
        if op == "div":
            b = ctx.away_from_zero(b)
        elif op == "pow":
            a = ctx.positive(ctx.bounded(a, 10.0))
            b = ctx.bounded(b, 2.5)
        elif op == "mul":
            a, b = ctx.bounded(a, 30.0), ctx.bounded(b, 30.0)
        elif op in ("maximum", "minimum"):
            va, vb = np.broadcast_arrays(ctx.value(a), ctx.value(b))
            if _near_kink(va - vb, builtins.max(1.0, float(np.max(np.abs(va), initial=0)),
                                                float(np.max(np.abs(vb), initial=0)))):
                return None
        return ctx.apply(op, [a, b])
    return draw


for _name, _fn in BINARY.items():
    genop(_name, _binary_build(_fn), _draw_binary(_name))


def _compare_ok(ctx: Ctx, a: str, b: str) -> bool:
    va, vb = np.broadcast_arrays(ctx.value(a), ctx.value(b))
    scale = builtins.max(1.0, float(np.max(np.abs(va), initial=0)),
                         float(np.max(np.abs(vb), initial=0)))
    return not _near_kink(va - vb, scale)


def _draw_compare(ctx: Ctx):
    a = ctx.pick()
    b = ctx.partner(a)
    if not _compare_ok(ctx, a, b):
        return None
    return ctx.apply("compare", [a, b], op=ctx.draw(st.sampled_from(sorted(COMPARE))))


genop("compare", lambda ts, op: COMPARE[op](ts[0], ts[1]), _draw_compare)


def _logical_build(ts, op):
    if op == "not":
        return gc.logical_not(ts[0])
    return (gc.logical_and if op == "and" else gc.logical_or)(ts[0], ts[1])


def _bool_value(ctx: Ctx, like: str) -> str | None:
    """A bool operand broadcasting with `like`: a comparison result or a new bool input."""
    sa = ctx.sym(like)

    def fits(n):
        try:
            broadcast_shapes(sa, ctx.sym(n))
            return True
        except ValueError:
            return False
    c = ctx.pick("b", fits) if ctx.draw(st.booleans()) else None
    if c is None:
        drop = ctx.draw(st.integers(0, len(sa)))
        c = ctx.new_input(tuple(d if ctx.draw(st.booleans()) else 1 for d in sa[drop:]), "bool")
    return c


def _draw_logical(ctx: Ctx):
    a = ctx.pick("b")
    if a is None:
        a = _bool_value(ctx, ctx.pick())
    op = ctx.draw(st.sampled_from(["and", "or", "not"]))
    if op == "not":
        return ctx.apply("logical", [a], op=op)
    return ctx.apply("logical", [a, _bool_value(ctx, a)], op=op)


genop("logical", _logical_build, _draw_logical)


def _draw_where(ctx: Ctx):
    a = ctx.pick()
    b = ctx.partner(a)
    c = _bool_value(ctx, a)
    try:
        broadcast_shapes(ctx.sym(a), ctx.sym(b), ctx.sym(c))
    except ValueError:
        return None
    args = [c, b, a] if ctx.draw(st.booleans()) else [c, a, b]
    return ctx.apply("where", args)


genop("where", lambda ts: gc.where(ts[0], ts[1], ts[2]), _draw_where)


def _draw_mask(ctx: Ctx):
    a = ctx.pick()
    return ctx.apply("mask", [a, _bool_value(ctx, a)])


genop("mask", lambda ts: ts[0] * gc.cast(ts[1], ts[0].dtype), _draw_mask)


# ---- reductions -------------------------------------------------------------------------------

def _draw_axes(ctx: Ctx, rank: int):
    how = ctx.draw(st.sampled_from(["some", "all", "none"]))
    if how == "all" or rank == 0:
        return None
    if how == "none":
        return ()
    axes = ctx.draw(st.lists(st.integers(0, rank - 1), min_size=1, max_size=rank, unique=True))
    # a negative spelling of an axis now and then (the DSL normalizes it)
    return tuple(a - rank if ctx.draw(st.integers(0, 3)) == 0 else a for a in axes)


def _draw_reduce(op):
    def draw(ctx: Ctx):
        x = ctx.pick()
        rank = len(ctx.sym(x))
        axes = _draw_axes(ctx, rank)
        norm = tuple(range(rank)) if axes is None else tuple(sorted(a % rank for a in axes))
        v = ctx.value(x)
        if op in ("max", "min"):
            if any(v.shape[a] == 0 for a in norm) or _near_tie_in_slices(v, norm, op == "max"):
                return None
        return ctx.apply(op, [x], axes=axes, keepdims=ctx.draw(st.booleans()))
    return draw


for _name, _fn in REDUCE.items():
    genop(_name, (lambda fn: lambda ts, axes, keepdims: fn(ts[0], axes, keepdims))(_fn),
          _draw_reduce(_name))


def _draw_argmax(ctx: Ctx):
    x = ctx.pick(pred=lambda n: len(ctx.sym(n)) >= 1)
    if x is None:
        return None
    rank = len(ctx.sym(x))
    axis = ctx.draw(st.integers(-rank, rank - 1))
    v = ctx.value(x)
    if v.shape[axis] == 0 or _near_tie_in_slices(v, (axis % rank,)):
        return None
    return ctx.apply("argmax", [x], axis=axis, keepdims=ctx.draw(st.booleans()))


genop("argmax", lambda ts, axis, keepdims: gc.argmax(ts[0], axis, keepdims), _draw_argmax)


# ---- matmul -----------------------------------------------------------------------------------

def _draw_matmul(ctx: Ctx):
    a = ctx.pick(pred=lambda n: len(ctx.sym(n)) >= 1)
    if a is None:
        return None
    a = ctx.bounded(a, 10.0)
    sa = ctx.sym(a)
    side = ctx.draw(st.sampled_from(["right", "left"])) if len(sa) >= 2 else "right"
    k = sa[-1] if side == "right" else sa[-2]
    form = ctx.draw(st.sampled_from(["matrix", "vector", "batched", "existing"]))
    if form == "existing":
        def fits(n):
            s = ctx.sym(n)
            if not s:
                return False
            inner = (s[-2] if len(s) >= 2 else s[0]) if side == "right" else s[-1]
            try:  # the product must type-check: build it on a scratch graph
                if inner != k:
                    return False
                pair = (sa, s) if side == "right" else (s, sa)
                _matmul_shape(*pair)
                return True
            except ValueError:
                return False
        b = ctx.pick("f", fits)
        if b is None:
            form = "matrix"
        else:
            b = ctx.bounded(b, 10.0)
    if form == "matrix":
        m = ctx.dim()
        b = ctx.new_input((k, m) if side == "right" else (m, k), "float")
    elif form == "vector":
        b = ctx.new_input((k,), "float")
    elif form == "batched":
        m = ctx.dim()
        batch = tuple(d if ctx.draw(st.booleans()) else 1 for d in sa[:-2]) if len(sa) > 2 else \
            (ctx.draw(st.sampled_from([2, 1, "N"])),)
        b = ctx.new_input(batch + ((k, m) if side == "right" else (m, k)), "float")
    args = [a, b] if side == "right" else [b, a]
    return ctx.apply("matmul", args)


def _matmul_shape(sa, sb):
    if not sa or not sb:
        raise ValueError("rank 0")
    a = sa if len(sa) > 1 else (1,) + sa
    b = sb if len(sb) > 1 else sb + (1,)
    if a[-1] != b[-2]:
        raise ValueError("inner")
    broadcast_shapes(a[:-2], b[:-2])


genop("matmul", lambda ts: gc.matmul(ts[0], ts[1]), _draw_matmul, weight=2)


# ---- shapes -----------------------------------------------------------------------------------

def _draw_reshape(ctx: Ctx):
    # now and then a bool value (data movement is dtype-blind), else a float one
    x = ctx.pick(kind=ctx.draw(st.sampled_from(["f", "f", "b"]))) or ctx.pick()
    s = list(ctx.sym(x))
    how = ctx.draw(st.sampled_from(["flatten", "split", "unsqueeze", "squeeze", "all"]))
    if how == "flatten" and len(s) >= 2:
        a = ctx.draw(st.integers(0, len(s) - 2))
        b = ctx.draw(st.integers(a + 1, len(s) - 1))
        shape = tuple(ctx.tensors[x].shape[:a]) + (gc.ir.types.dim_product(s[a:b + 1]),) + \
            tuple(s[b + 1:])
    elif how == "split" and any(isinstance(d, int) for d in s):
        i = ctx.draw(st.sampled_from([i for i, d in enumerate(s) if isinstance(d, int)]))
        d = s[i]
        f = ctx.draw(st.sampled_from([f for f in range(1, 5) if d == 0 or d % f == 0]))
        shape = tuple(s[:i]) + ((f, d // f) if d else (f, 0)) + tuple(s[i + 1:])
    elif how == "unsqueeze":
        i = ctx.draw(st.integers(0, len(s)))
        shape = tuple(s[:i]) + (1,) + tuple(s[i:])
    elif how == "squeeze" and 1 in s:
        shape = tuple(d for d in s if d != 1)
    else:
        shape = (gc.ir.types.dim_product(s),)
    if shape == tuple(s):
        return None
    return ctx.apply("reshape", [x], shape=shape)


genop("reshape", lambda ts, shape: gc.reshape(ts[0], shape), _draw_reshape)


def _draw_transpose(ctx: Ctx):
    x = ctx.pick(pred=lambda n: len(ctx.sym(n)) >= 2)
    if x is None:
        return None
    perm = tuple(ctx.draw(st.permutations(range(len(ctx.sym(x))))))
    return ctx.apply("transpose", [x], axes=perm)


genop("transpose", lambda ts, axes: gc.transpose(ts[0], axes), _draw_transpose)


def _draw_expand(ctx: Ctx):
    x = ctx.pick()
    s = ctx.sym(x)
    # a symbol only where an input has it as a dim: else no backend but numpy can size it
    bound = {d for spec in ctx.inputs for d in spec.shape if isinstance(d, str)}
    sym = [d for d in ("N",) if d in bound]
    lead = tuple(ctx.draw(st.sampled_from([2, 1, 3] + sym))
                 for _ in range(ctx.draw(st.integers(0, 2))))
    body = tuple(ctx.draw(st.sampled_from(ctx.sizes(3, 2, 0) + sym))
                 if d == 1 and ctx.draw(st.booleans()) else d for d in s)
    shape = lead + body
    if shape == s:
        return None
    return ctx.apply("expand", [x], shape=shape)


genop("expand", lambda ts, shape: gc.broadcast_to(ts[0], shape), _draw_expand)


def _draw_concat(ctx: Ctx):
    x = ctx.pick(pred=lambda n: len(ctx.sym(n)) >= 1)
    if x is None:
        return None
    s = ctx.sym(x)
    axis = ctx.draw(st.integers(-len(s), len(s) - 1))
    parts = [x]
    for _ in range(ctx.draw(st.integers(1, 2))):
        how = ctx.draw(st.sampled_from(["fresh", "same", "existing"]))
        if how == "same":
            parts.append(x)
            continue
        if how == "existing":
            def fits(n):
                t = ctx.sym(n)
                return len(t) == len(s) and all(a == b for i, (a, b) in enumerate(zip(s, t))
                                                if i != axis % len(s)) and \
                    (isinstance(s[axis], int) and isinstance(t[axis], int) or t[axis] == s[axis])
            e = ctx.pick("f", fits)
            if e is not None:
                parts.append(e)
                continue
        d = ctx.draw(st.sampled_from(ctx.sizes(2, 1, 0, 3))) if isinstance(s[axis], int) \
            else s[axis]
        parts.append(ctx.new_input(s[:axis % len(s)] + (d,) + s[axis % len(s) + 1:], "float"))
    dims = [ctx.sym(p)[axis] for p in parts]
    if not all(isinstance(d, int) for d in dims) and len(set(dims)) != 1:
        return None
    return ctx.apply("concat", parts, axis=axis)


genop("concat", lambda ts, axis: gc.concatenate(ts, axis), _draw_concat)


def _draw_slice(ctx: Ctx):
    ranked = lambda n: len(ctx.sym(n)) >= 1  # noqa: E731
    x = ctx.pick(ctx.draw(st.sampled_from(["f", "f", "b"])), ranked) or ctx.pick("f", ranked)
    if x is None:
        return None
    s, c = ctx.sym(x), ctx.concrete(x)
    axes = ctx.draw(st.lists(st.integers(0, len(s) - 1), min_size=1, max_size=2, unique=True))
    starts, ends, steps = [], [], []
    no_grad = False
    for a in axes:
        d = c[a]
        if isinstance(s[a], int):
            st_ = ctx.draw(st.sampled_from([1, 2, -1, 3, -2]))
            lo, hi = -d - 2, d + 2
            start = ctx.draw(st.integers(lo, hi))
            end = ctx.draw(st.one_of(st.integers(lo, hi),
                                     st.sampled_from([INT_MAX, -INT_MAX])))
        else:  # the forms graphc types on a symbolic dim, valid for the bound size
            form = ctx.draw(st.sampled_from(["head", "tail", "range"]))
            st_ = 1
            if form == "head" or d == 0:
                start, end = ctx.draw(st.integers(0, 0)), INT_MAX
            elif form == "tail":
                start, end = -ctx.draw(st.integers(1, d)), INT_MAX
            else:
                start = ctx.draw(st.integers(0, d - 1))
                end = ctx.draw(st.integers(start + 1, d))
            # the gradient would pad by a symbolic amount, which graphc cannot express (it
            # raises, naming the slice): such a slice is taken of a stop_gradient
            no_grad = no_grad or (start, end) != (0, INT_MAX)
        starts.append(start)
        ends.append(end)
        steps.append(st_)
    # a negative spelling of an axis now and then
    axes = [a - len(s) if ctx.draw(st.integers(0, 3)) == 0 else a for a in axes]
    params = {"no_grad": True} if no_grad else {}
    return ctx.apply("slice", [x], starts=tuple(starts), ends=tuple(ends), axes=tuple(axes),
                     steps=tuple(steps), **params)


def _slice_build(ts, starts, ends, axes, steps, no_grad=False):
    x = gc.stop_gradient(ts[0]) if no_grad else ts[0]
    return gc.slice(x, starts, ends, axes, steps)


genop("slice", _slice_build, _draw_slice)


def _draw_gather(ctx: Ctx):
    x = ctx.pick(pred=lambda n: len(ctx.sym(n)) >= 1)
    if x is None:
        return None
    s, c = ctx.sym(x), ctx.concrete(x)
    axis = ctx.draw(st.integers(-len(s), len(s) - 1))
    rank = ctx.draw(st.integers(0, 2))
    ishape = tuple(ctx.dim() for _ in range(rank))
    if c[axis] == 0:
        # no index is in range of an empty axis: only an empty index tensor is valid
        if not any(eval_dim(d, ctx.bindings) == 0 for d in ishape):
            return None
    idx = ctx.new_input(ishape, "index", hi=c[axis],
                        int_dtype=ctx.draw(st.sampled_from(["int64", "int32"])))
    return ctx.apply("gather", [x, idx], axis=axis)


genop("gather", lambda ts, axis: gc.take(ts[0], ts[1], axis), _draw_gather)


def _draw_pad(ctx: Ctx):
    x = ctx.pick(pred=lambda n: len(ctx.sym(n)) >= 1)
    if x is None:
        return None
    s = ctx.sym(x)
    pads = tuple((0, 0) if not isinstance(d, int) else
                 (ctx.draw(st.integers(0, 2)), ctx.draw(st.integers(0, 2))) for d in s)
    if all(p == (0, 0) for p in pads):
        return None
    return ctx.apply("pad", [x], pads=pads, value=ctx.draw(st.sampled_from([0.0, 0.5, -1.0])))


genop("pad", lambda ts, pads, value: gc.pad(ts[0], pads, value), _draw_pad)


# ---- convolutions and pools ---------------------------------------------------------------------

def _image(ctx: Ctx, min_hw: int = 1) -> str:
    """A rank-4 float value with static C, H, W (an existing one or a new input)."""
    def fits(n):
        s = ctx.sym(n)
        return len(s) == 4 and all(isinstance(d, int) for d in s[1:]) and \
            builtins.min(s[2:]) >= builtins.max(min_hw, 1)
    x = ctx.pick("f", fits) if ctx.draw(st.booleans()) else None
    if x is None:
        # an empty batch now and then, and (rarer) no channels at all
        shape = (ctx.draw(st.sampled_from(ctx.sizes("N", 2, 1, 0))),
                 0 if 0 in ctx.dims and ctx.draw(st.integers(0, 7)) == 0
                 else ctx.draw(st.integers(1, 4)),
                 ctx.draw(st.integers(builtins.max(min_hw, 3), 7)),
                 ctx.draw(st.integers(builtins.max(min_hw, 3), 7)))
        x = ctx.new_input(shape, "float")
    return ctx.bounded(x, 4.0)


def _out_len(n, k, s, p, d):
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def _draw_conv(ctx: Ctx):
    x = _image(ctx)
    _, c, h, w = ctx.sym(x)
    groups = ctx.draw(st.sampled_from([g for g in (1, 2, 3, 4) if c % g == 0]))
    o = groups * ctx.draw(st.integers(1, 2))
    kh, kw = ctx.draw(st.integers(1, 3)), ctx.draw(st.integers(1, 3))
    stride = (ctx.draw(st.integers(1, 3)), ctx.draw(st.integers(1, 3)))
    padding = (ctx.draw(st.integers(0, 2)), ctx.draw(st.integers(0, 2)))
    dilation = (ctx.draw(st.integers(1, 2)), ctx.draw(st.integers(1, 2)))
    if _out_len(h, kh, stride[0], padding[0], dilation[0]) < 1 or \
            _out_len(w, kw, stride[1], padding[1], dilation[1]) < 1:
        return None
    wt = ctx.new_input((o, c // groups, kh, kw), "float")
    return ctx.apply("conv2d", [x, wt], stride=stride, padding=padding, dilation=dilation,
                     groups=groups)


genop("conv2d", lambda ts, **a: gc.conv2d(ts[0], ts[1], **a), _draw_conv, weight=2)


def _draw_conv_t(ctx: Ctx):
    x = _image(ctx)
    _, c, h, w = ctx.sym(x)
    groups = ctx.draw(st.sampled_from([g for g in (1, 2) if c % g == 0]))
    og = ctx.draw(st.integers(1, 2))
    kh, kw = ctx.draw(st.integers(1, 3)), ctx.draw(st.integers(1, 3))
    stride = (ctx.draw(st.integers(1, 2)), ctx.draw(st.integers(1, 2)))
    dilation = (ctx.draw(st.integers(1, 2)), ctx.draw(st.integers(1, 2)))
    padding = (ctx.draw(st.integers(0, 1)), ctx.draw(st.integers(0, 1)))
    out_pad = tuple(ctx.draw(st.integers(0, s - 1)) for s in stride)
    for n, k, s, p, d, op in zip((h, w), (kh, kw), stride, padding, dilation, out_pad):
        if (n - 1) * s - 2 * p + d * (k - 1) + op + 1 < 1:
            return None
    wt = ctx.new_input((c, og, kh, kw), "float")
    return ctx.apply("conv_transpose2d", [x, wt], stride=stride, padding=padding,
                     output_padding=out_pad, dilation=dilation, groups=groups)


genop("conv_transpose2d", lambda ts, **a: gc.conv_transpose2d(ts[0], ts[1], **a), _draw_conv_t)


def _pool_params(ctx: Ctx, x: str):
    _, _, h, w = ctx.sym(x)
    k = (ctx.draw(st.integers(1, 3)), ctx.draw(st.integers(1, 3)))
    stride = (ctx.draw(st.integers(1, 3)), ctx.draw(st.integers(1, 3)))
    padding = tuple(ctx.draw(st.integers(0, kk // 2)) for kk in k)
    if _out_len(h, k[0], stride[0], padding[0], 1) < 1 or \
            _out_len(w, k[1], stride[1], padding[1], 1) < 1:
        return None
    return {"kernel_size": k, "stride": stride, "padding": padding}


def _draw_max_pool(ctx: Ctx):
    x = _image(ctx)
    p = _pool_params(ctx, x)
    if p is None:
        return None
    from graphc.ops.nn import _windows
    v = ctx.value(x)
    if v.size:
        win = _windows(v, p["kernel_size"], p["stride"], p["padding"], (1, 1), -np.inf)
        flat = win.reshape(win.shape[:4] + (-1,))
        # padding (-inf) is never a window's maximum: p <= k // 2 leaves a real element in each
        scale = builtins.max(1.0, float(np.max(np.abs(v))))
        if _near_tie_in_slices(np.where(np.isfinite(flat), flat, -1e9), (4,), scale=scale):
            return None
    return ctx.apply("max_pool2d", [x], **p)


genop("max_pool2d", lambda ts, **a: gc.max_pool2d(ts[0], **a), _draw_max_pool)


def _draw_avg_pool(ctx: Ctx):
    x = _image(ctx)
    p = _pool_params(ctx, x)
    if p is None:
        return None
    return ctx.apply("avg_pool2d", [x], count_include_pad=ctx.draw(st.booleans()), **p)


genop("avg_pool2d", lambda ts, **a: gc.avg_pool2d(ts[0], **a), _draw_avg_pool)


# ---- the strategy ----------------------------------------------------------------------------

#: ops a step is drawn from (each as often as its weight)
DRAWN = [name for name, op in GEN_OPS.items() if op.draw is not None for _ in range(op.weight)]


@st.composite
def programs(draw, max_steps: int = 8, dtypes=("float32", "float64"), ops=None,
             static_empty: bool = True) -> Program:
    """A random Program of 1..max_steps steps drawn from `ops` (default: every generator op).

    `static_empty=False` leaves size 0 out of the dims of new inputs (symbols may still be bound
    to 0, and slices may still come out empty): fewer graphs with statically empty tensors.
    """
    seed = draw(st.integers(0, 2**31 - 1))
    dtype = draw(st.sampled_from(dtypes))
    bindings = {"N": draw(st.sampled_from(SYMBOL_SIZES)), "M": draw(st.sampled_from(SYMBOL_SIZES))}
    dims = DIM_CHOICES if static_empty else tuple(d for d in DIM_CHOICES if d != 0)
    ctx = Ctx(draw, seed, bindings, dtype, dims)
    pool = DRAWN if ops is None else [n for n in DRAWN if n in ops]
    for _ in range(draw(st.integers(1, 2))):
        ctx.fresh_float()
    n = draw(st.integers(1, max_steps))
    # hypothesis favours the first elements of a list: ops are drawn from an order shuffled per
    # program (by its seed), so that over many programs each op is about equally likely
    order = [pool[i] for i in np.random.default_rng(seed).permutation(len(pool))]
    made = 0
    while made < n:
        op = draw(st.sampled_from(order))
        for _ in range(3):
            if GEN_OPS[op].draw(ctx) is not None:
                made += 1
                break
        else:  # no operand fitted three times: a step that always fits
            ctx.apply("tanh", [ctx.pick()])
            made += 1
    steps = [f"v{k}" for k in range(len(ctx.steps))]
    last_float = next(f"v{k}" for k in range(len(ctx.steps) - 1, -1, -1)
                      if ctx.tensors[f"v{k}"].dtype == "float64") \
        if any(ctx.tensors[s].dtype == "float64" for s in steps) else ctx.names("f")[-1]
    outputs = [last_float]
    # every value no later step consumed is an output (else gc.grad's simplification prunes its
    # steps), and one or two consumed ones now and then (an output that is also an operand)
    used = {a for s in ctx.steps for a in s.args}
    outputs += [s for s in steps if s not in used and s != last_float]
    for extra in draw(st.lists(st.sampled_from(steps), max_size=2, unique=True)):
        if extra not in outputs:
            outputs.append(extra)
    for i, o in enumerate(outputs):
        if ctx.tensors[o].dtype == "float64":
            spec = In(f"w_y{i}", ctx.sym(o), "weight")
            ctx.inputs.append(spec)
    return Program(bindings=bindings, inputs=list(ctx.inputs), steps=list(ctx.steps),
                   outputs=outputs, seed=seed, dtype=dtype, features=tuple(sorted(ctx.features)))
