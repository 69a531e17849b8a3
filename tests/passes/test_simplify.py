"""The simplification passes and the rewrite engine, on small graphs run on the numpy backend."""
import random

import numpy as np
import pytest

import graphc as gc
from graphc.ir.errors import GraphcError
from graphc.ops import get_op
from graphc.passes import simplify_algebra as sa
from graphc.passes.eliminate_common_subexpressions import eliminate_common_subexpressions
from graphc.passes.eliminate_dead_code import eliminate_dead_code
from graphc.passes.fold_constants import fold_constants
from graphc.passes.pipeline import run_passes, simplify
from graphc.passes.rewrite import RuleError, apply_rules, rule

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # NaN and Inf feeds, on purpose

SPECIAL = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.5, -2.0, 3.25], np.float32)


def _feeds(g, seed=0, special=True):
    """Random feeds for every input, sprinkled with NaN, +-Inf and signed zeros."""
    rng = np.random.default_rng(seed)
    out = {}
    for v in g.inputs:
        shape = tuple(5 if isinstance(d, str) else d for d in v.type.shape)
        if v.type.dtype == "bool":
            out[v.name] = rng.random(shape) < 0.5
        elif v.type.dtype.startswith("int"):
            out[v.name] = rng.integers(-3, 4, shape).astype(v.type.dtype)
        else:
            a = rng.standard_normal(shape).astype(v.type.dtype)
            if special and a.size:
                flat = a.reshape(-1)
                flat[: min(len(SPECIAL), flat.size)] = SPECIAL[: flat.size]
                rng.shuffle(flat)
            out[v.name] = a
    return out


def assert_same_outputs(g1, g2, feeds):
    want = gc.compile(g1, "numpy")(**feeds)
    got = gc.compile(g2, "numpy")(**feeds)
    assert list(got) == list(want)
    for k in want:
        assert got[k].dtype == want[k].dtype and got[k].shape == want[k].shape, k
        np.testing.assert_array_equal(got[k], want[k], err_msg=f"output {k!r}")


def assert_close_outputs(g1, g2, feeds):
    want = gc.compile(g1, "numpy")(**feeds)
    got = gc.compile(g2, "numpy")(**feeds)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-6, atol=1e-6, equal_nan=True)


def algebra(g):
    """simplify_algebra then DCE, verified after each; returns (graph, rewrite stats)."""
    out, _ = run_passes(g, ["simplify_algebra", "eliminate_dead_code"])
    return out, sa.last_stats


# ---- one small graph per rule ----------------------------------------------------------------------

def _g(build, *inputs):
    with gc.Graph("case") as g:
        vals = [g.input(n, shape, dtype) for n, shape, dtype in inputs]
        g.output(y=build(*vals))
    return g


F = ("x", (3, 4), "float32")
Y = ("y", (3, 4), "float32")
ROW = ("r", (4,), "float32")

CASES = {
    # a rule over a commutative op also matches the swapped operands (1 * x, 0 + x, ...)
    "mul_one": [lambda x: x * 1.0, lambda x: x * np.ones((3, 4), np.float32),
                lambda r: r * np.ones((3, 4), np.float32), lambda x: 1.0 * x],
    "add_zero": [lambda x: x + 0.0, lambda r: r + gc.zeros_like(gc.constant(np.ones((2, 4), np.float32))),
                 lambda x: 0.0 + x],
    "sub_zero": [lambda x: x - 0.0],
    "zero_sub": [lambda x: 0.0 - x],
    "div_one": [lambda x: x / 1.0],
    "mul_minus_one": [lambda x: x * -1.0, lambda x: -1.0 * x],
    "mul_zero": [lambda i: (i * 0), lambda i: 0.0 * gc.cast(i > 0, "float32"),
                 lambda i: 0.0 * gc.one_hot(i[0], 4)],
    "neg_neg": [lambda x: -(-x)],
    "sub_neg": [lambda x, y: x - (-y)],
    "add_neg": [lambda x, y: x + (-y), lambda x, y: (-x) + y],
    "neg_mul_neg": [lambda x, y: (-x) * (-y)],
    "transpose_identity": [lambda x: gc.transpose(x, (0, 1))],
    "transpose_transpose": [lambda t: gc.transpose(gc.transpose(t, (1, 2, 0)), (2, 0, 1)),
                            lambda t: gc.transpose(gc.transpose(t, (1, 2, 0)), (1, 0, 2))],
    "reshape_same": [lambda x: gc.apply("reshape", [x], {"shape": (3, 4)})],
    "reshape_reshape": [lambda x: gc.reshape(gc.reshape(x, (12,)), (2, 6)),
                        lambda x: gc.reshape(gc.reshape(x, (12,)), (3, 4))],
    "expand_same": [lambda x: gc.apply("expand", [x], {"shape": (3, 4)})],
    "expand_expand": [lambda c: gc.apply("expand", [gc.apply("expand", [c], {"shape": (1, 4)})],
                                         {"shape": (3, 4)})],
    "cast_same": [lambda x: gc.cast(x, "float32")],
    "sum_unit_axes": [lambda u: gc.sum(u, axis=1), lambda u: gc.sum(u, axis=(1, 2), keepdims=True)],
    "mean_unit_axes": [lambda u: gc.mean(u, axis=2)],
    "max_unit_axes": [lambda u: gc.max(u, axis=1, keepdims=True)],
    "min_unit_axes": [lambda u: gc.min(u, axis=(1, 2))],
    "where_constant": [lambda x, y: gc.where(gc.constant(np.array(True)), x, y),
                       lambda x, r: gc.where(gc.constant(np.zeros((3, 4), bool)), x, r)],
    "where_same": [lambda x, y: gc.where(x > y, y, y)],
    "add_where_halves": [lambda x, y: (lambda c: gc.where(c, gc.exp(x), 0.0) + gc.where(c, 0.0, y))(x > y),
                         lambda x, r: (lambda c: gc.where(c, r, 0.0) + gc.where(c, 0.0, x * 2.0))(x > 0),
                         lambda x, y: (lambda c: gc.where(c, 0.0, y) + gc.where(c, x, 0.0))(x > y)],
    "sum_keepdims_reshape": [lambda x: gc.reshape(gc.sum(x, axis=0, keepdims=True), (4,)),
                             lambda t: gc.reshape(gc.sum(t, axis=(0, 2), keepdims=True), (3,))],
    "mean_keepdims_reshape": [lambda x: gc.reshape(gc.mean(x, axis=1, keepdims=True), (3,))],
    "max_keepdims_reshape": [lambda x: gc.reshape(gc.max(x, keepdims=True), ())],
    "min_keepdims_reshape": [lambda x: gc.reshape(gc.min(x, axis=0, keepdims=True), (4,))],
    "transpose_matmul": [lambda x, y: gc.transpose(gc.matmul(gc.transpose(x), y)),
                         lambda x, y: gc.transpose(gc.matmul(x, gc.transpose(y))),
                         lambda t: gc.transpose(gc.matmul(gc.transpose(t, (0, 2, 1)), t), (0, 2, 1))],
    # a Linear layer's weight gradient on (N, S, D) inputs: one product instead of N and a sum
    "sum_batched_matmul": [lambda t: gc.sum(gc.matmul(gc.transpose(t, (0, 2, 1)), t * 2.0), axis=0),
                           lambda t: gc.sum(gc.matmul(gc.transpose(t, (0, 2, 1)), t), axis=0,
                                            keepdims=True)],
    "pad_nothing": [lambda x: gc.pad(x, 0)],
    "pad_pad": [lambda x: gc.pad(gc.pad(x, ((1, 0), (0, 2))), ((0, 1), (1, 1)))],
    "add_adjacent_pads": [
        lambda p, q: gc.pad(p, ((0, 0), (0, 2))) + gc.pad(q, ((0, 0), (2, 0))),
        lambda p, q: gc.pad(p, ((0, 0), (2, 0))) + gc.pad(q, ((0, 0), (0, 2))),
        lambda p, q: gc.pad(p, ((0, 0), (1, 3))) + gc.pad(q, ((0, 0), (3, 1))),
        # the gradient of four slices that tile an axis (an LSTM's gates): one concatenation
        lambda w: sum((gc.pad(w[:, 2 * i:2 * i + 2] * 2.0, ((0, 0), (2 * i, 6 - 2 * i)))
                       for i in (3, 2, 1, 0)), gc.zeros_like(w)),
    ],
    "add_adjacent_pads_assoc": [
        lambda w: sum((gc.pad(w[:, 2 * i:2 * i + 2] * 2.0, ((0, 0), (2 * i, 6 - 2 * i)))
                       for i in (3, 1, 2, 0)), gc.zeros_like(w)),
        lambda w, x: (x + gc.pad(w[:, :2], ((0, 0), (0, 2)))) + gc.pad(w[:, 2:4], ((0, 0), (2, 0))),
    ],
    "safe_mul_finite": [lambda x, i: gc.apply("safe_mul", [x, gc.cast(i > 0, "float32")]),
                        lambda x: gc.apply("safe_mul", [x, gc.constant(np.float32(3.0))])],
    "safe_mul_zero": [lambda x: gc.apply("safe_mul", [gc.zeros_like(x), x])],
}


def _expand_case(op, side):
    dtype = sa._operand_dtype(get_op(op))  # logical ops take bools, bitwise ops integers

    def build(e, x):
        if dtype == "bool":
            e, x = e > 0, x > 0
        elif dtype != "float32":
            e, x = gc.cast(e * 8.0, dtype), gc.cast(x * 8.0, dtype)
        args = [gc.broadcast_to(e, (3, 4)), x]
        return gc.apply(op, args if side == "a" else args[::-1])
    return build


for _r in sa.EXPAND_OPERAND_RULES:  # op(expand(a), b) for every broadcasting binary op
    _op, _side = _r.name.rsplit("_expand_", 1)
    CASES[_r.name] = [_expand_case(_op, _side)]
    if get_op(_op).traits.commutative:  # one rule covers op(b, expand(a)) too
        CASES[_r.name].append(_expand_case(_op, "b"))

#: rules whose result may differ in the last bits (a matmul kernel may sum in another order)
INEXACT = {"transpose_matmul", "sum_batched_matmul"}
#: rules that trade a kernel for reshapes (free views)
ADDS_VIEWS = {"sum_batched_matmul"}

_INPUTS = {"x": F, "y": Y, "r": ROW, "i": ("i", (3, 4), "int64"), "t": ("t", (2, 3, 4), "float32"),
           "u": ("u", (3, 1, 1), "float32"), "c": ("c", (1, 1), "float32"),
           "p": ("p", (3, 2), "float32"), "q": ("q", (3, 2), "float32"), "w": ("w", (3, 8), "float32"),
           "e": ("e", (1, 4), "float32")}


def _case_graph(fn):
    import inspect
    names = list(inspect.signature(fn).parameters)
    return _g(fn, *(_INPUTS[n] for n in names))


@pytest.mark.parametrize("name,k", [(n, k) for n, fs in CASES.items() for k in range(len(fs))])
def test_rule(name, k):
    g = _case_graph(CASES[name][k])
    out, stats = algebra(g)
    assert stats.fired[name] >= 1, f"{name} did not fire: {stats}"
    root = next(r.root_op for r in sa.RULES if r.name == name)
    count = lambda gr: sum(n.op is root for n in gr.nodes)  # noqa: E731
    # fewer nodes, or (when the result must be broadcast) fewer of the rewritten op
    # (a rule in ADDS_VIEWS may add reshapes, which move no data, to save a kernel that does work)
    work = lambda gr: [n for n in gr.nodes if name not in ADDS_VIEWS or n.op.name != "reshape"]  # noqa: E731
    assert len(work(out)) <= len(work(g)), f"{name}: {len(g.nodes)} -> {len(out.nodes)} nodes\n{out}"
    assert len(out.nodes) < len(g.nodes) or count(out) < count(g), f"{name}: nothing saved\n{out}"
    assert stats.per_sweep[-1] == 0  # a fixed point: the last sweep fired nothing
    check = assert_close_outputs if name in INEXACT else assert_same_outputs
    check(g, out, _feeds(g))
    check(g, out, _feeds(g, seed=1, special=False))


def test_every_rule_has_a_case_and_a_formula():
    names = [r.name for r in sa.RULES]
    assert len(set(names)) == len(names)
    assert sorted(set(names) - set(CASES)) == [], "rules without a test case"
    for r in sa.RULES:
        assert "->" in r.formula and "\n" not in r.formula, r


def test_times_zero_keeps_nan_and_inf():
    # x * 0 on a float input must stay: NaN * 0 and Inf * 0 are NaN
    g = _g(lambda x: x * 0.0 + 0.0 * x, F)
    out, stats = algebra(g)
    assert stats.fired["mul_zero"] == 0
    assert sum(n.op.name == "mul" for n in out.nodes) == 2
    feeds = {"x": np.full((3, 4), np.nan, np.float32)}
    feeds["x"][0, 0] = np.inf
    assert np.isnan(gc.compile(out)(**feeds)["y"]).all()
    assert_same_outputs(g, out, feeds)


def test_rules_see_through_broadcast_literals():
    # expand(1.0, (3, 4)) is a one, as autodiff's seeds are
    g = _g(lambda x: x * gc.ones_like(x) + gc.zeros_like(x), F)
    out, stats = algebra(g)
    assert [n.op.name for n in out.nodes] == [] and out.outputs["y"] is out.inputs[0]
    assert stats.fired["mul_one"] == 1 and stats.fired["add_zero"] == 1


def test_where_same_needs_the_same_value():
    g = _g(lambda x, y: gc.where(x > y, x, y), F, Y)
    out, stats = algebra(g)
    assert stats.total == 0 and len(out.nodes) == len(g.nodes)


def test_fixed_point_on_long_chains():
    def build(x):
        for _ in range(7):
            x = -x
        return gc.transpose(gc.transpose(gc.transpose(x * 1.0 + 0.0))) * 1.0
    g = _g(build, F)
    out, stats = algebra(g)
    assert [n.op.name for n in out.nodes] == ["neg", "transpose"]
    assert stats.per_sweep[-1] == 0 and stats.sweeps >= 2
    assert_same_outputs(g, out, _feeds(g))
    again, stats2 = algebra(out)
    assert str(again) == str(out) and stats2.total == 0


def test_replacement_keeps_name_and_provenance():
    with gc.Graph("prov") as g:
        x = g.input("x", (3, 4))
        with g.origin("grad of sub @ model.py:3"):
            z = 0.0 - x
        g.output(d_w=z)
    src = g.nodes[-1].source
    out, stats = algebra(g)
    (node,) = out.nodes
    assert node.op.name == "neg" and node.output.name == "sub"
    assert node.origin == "grad of sub @ model.py:3" and node.source == src
    assert "grad of sub @ model.py:3" in str(out)


def test_engine_rejects_bad_rules():
    with pytest.raises(ValueError, match="formula docstring"):
        @rule(lambda x: -x)
        def nodoc(m, x):
            return x

    with pytest.raises(ValueError, match="must build at least one node"):
        @rule(lambda x: x)
        def empty(m, x):
            """x -> x"""
            return x

    @rule(lambda x: gc.exp(x))
    def wrong_type(m, x):
        """exp(x) -> sum(x) (wrong on purpose)"""
        return gc.sum(x)

    g = _g(lambda x: gc.exp(x), F)
    with pytest.raises(RuleError, match="wrong_type.*replaced a value of type f32\\[3, 4\\]"):
        apply_rules(g, [wrong_type])

    @rule(lambda x: gc.exp(x))
    def declines_late(m, x):
        """exp(x) -> (declines after building)"""
        gc.neg(x)
        return None

    with pytest.raises(RuleError, match="declined after building"):
        apply_rules(g, [declines_late])


def test_engine_with_a_user_rule():
    @rule(lambda x: gc.exp(gc.log(x)), when=lambda m: False)
    def never(m, x):
        """exp(log x) -> x (guard says no)"""
        return x

    @rule(lambda x, y: gc.maximum(x, y), when=lambda m: m.values["x"] is m.values["y"])
    def max_self(m, x, y):
        """max(x, x) -> x"""
        return x

    g = _g(lambda x: gc.exp(gc.log(x)) + gc.maximum(x, x), F)
    out, stats = apply_rules(g, [never, max_self])
    assert stats.fired == {"max_self": 1} and stats.sweeps == 2
    assert "maximum" not in [n.op.name for n in out.nodes]
    assert_same_outputs(g, out, _feeds(g))


# ---- fold_constants ------------------------------------------------------------------------------

def test_fold_constants_folds_literal_chains():
    with gc.Graph("fold") as g:
        x = g.input("x", (2, 3))
        c = gc.exp(gc.constant(np.array([0.0, 1.0, 2.0], np.float32))) * 2.0
        k = gc.reshape(gc.transpose(gc.constant(np.arange(6.0, dtype=np.float32).reshape(3, 2))), (2, 3))
        g.output(y=x * c + k)
    out = fold_constants(g)
    out.verify()
    consts = [n for n in out.nodes if n.op.name == "constant"]
    assert [n.op.name for n in out.nodes if n.op.name != "constant"] == ["mul", "add"]
    # the folded values are the reference kernels' results, named and placed like the nodes
    folded = {n.output.name: n.attrs["value"] for n in consts}
    np.testing.assert_array_equal(folded["mul"], np.exp(np.array([0, 1, 2], np.float32)) * 2)
    assert folded["mul"].dtype == np.float32
    out2 = eliminate_dead_code(out)
    assert len(out2.nodes) == 4
    assert_same_outputs(g, out2, _feeds(g))


def test_fold_constants_skips_huge_and_symbolic_results():
    with gc.Graph("big") as g:
        x = g.input("x", ("N", 3))
        big = gc.broadcast_to(gc.constant(np.float32(2.0)), (100, 100))
        small = gc.broadcast_to(gc.constant(np.float32(2.0)), (4, 3))
        sym = gc.broadcast_to(gc.constant(np.float32(3.0)), ("N", 3))
        g.output(a=gc.sum(big), b=x * sym, c=small)
    out = fold_constants(g)
    ops = {n.output.name: n.op.name for n in out.nodes}
    # 10,000 elements stay an expand; the sum over them is 1 element but needs the big input
    assert ops[g.outputs["a"].producer.inputs[0].name] == "expand"
    assert ops[g.outputs["c"].name] == "constant"
    assert ops[g.outputs["b"].producer.inputs[1].name] == "expand"  # symbolic shape: run time
    folded_all = fold_constants(fold_constants(g, max_elements=10**5), max_elements=10**5)
    assert {n.op.name for n in eliminate_dead_code(folded_all).nodes} == {"constant", "expand", "mul"}
    assert_same_outputs(g, out, _feeds(g))


def test_fold_constants_leaves_failures_to_run_time():
    with gc.Graph("bad") as g:
        x = g.input("x", (2,))
        bad = gc.take(gc.constant(np.arange(3.0, dtype=np.float32)), np.array([5, 0]))
        g.output(y=x + bad)
    out = fold_constants(g)
    assert "gather" in [n.op.name for n in out.nodes]
    with pytest.raises(GraphcError, match="gather"):
        gc.compile(out)(x=np.zeros(2, np.float32))


# ---- CSE and DCE ---------------------------------------------------------------------------------

def test_cse_merges_equal_computations_only():
    with gc.Graph("cse") as g:
        x = g.input("x", (3, 4))
        a1 = gc.exp(x)
        a2 = gc.exp(x)
        c1 = gc.constant(np.array([1.0, 2.0, 3.0, 4.0], np.float32))
        c2 = gc.constant(np.array([1.0, 2.0, 3.0, 4.0], np.float32))
        c3 = gc.constant(np.array([1.0, 2.0, 3.0, 5.0], np.float32))
        z1, z2 = gc.constant(np.float32(0.0)), gc.constant(np.float32(-0.0))
        s0, s1, s0b = gc.sum(x, axis=0), gc.sum(x, axis=1), gc.sum(x, axis=0)
        g.output(y=a1 * c1 + a2 * c2 + x * c3, z=x * z1 + x * z2,
                 s=gc.sum(s0) + gc.sum(s1) + gc.sum(s0b))
    out = eliminate_common_subexpressions(g)
    out.verify()
    ops = [n.op.name for n in eliminate_dead_code(out).nodes]
    assert ops.count("exp") == 1
    assert ops.count("constant") == 4  # c1 == c2; c3 differs; 0.0 and -0.0 differ bitwise
    assert ops.count("sum") == 4  # axis 0, axis 1, and one total of each (s0b is s0)
    kept = next(n for n in out.nodes if n.op.name == "exp")
    assert kept.output.name == a1.name  # the first one survives
    assert_same_outputs(g, out, _feeds(g, special=False))


def test_dce_drops_unused_nodes_but_keeps_the_interface():
    with gc.Graph("dce") as g:
        x = g.input("x", (3,))
        unused_in = g.input("unused", (2,))
        w = g.param("w", init=np.ones(3, np.float32))
        g.param("unused_param", init=np.zeros(2, np.float32))
        gc.exp(gc.log(x))  # dead
        g.output(y=x * w)
    out = eliminate_dead_code(g)
    assert [n.op.name for n in out.nodes] == ["mul"]
    assert [v.name for v in out.inputs] == ["x", "unused"] and unused_in.name == "unused"
    assert [p.name for p in out.params] == ["w", "unused_param"]
    assert_same_outputs(g, out, _feeds(g))


# ---- random graphs: simplify never changes a value ----------------------------------------------------

def _random_graph(seed):
    r = random.Random(seed)
    with gc.Graph(f"rand{seed}") as g:
        vals = [g.input("x", (3, 4)), g.input("y", (3, 4)), g.input("b", (4,))]
        lits = [0.0, 1.0, -1.0, 2.0, -0.0]
        for _ in range(r.randint(4, 14)):
            a = r.choice(vals)
            kind = r.randrange(14)
            if kind == 0:
                v = a * r.choice(lits) if r.random() < 0.5 else r.choice(lits) * a
            elif kind == 1:
                v = a + r.choice(lits) if r.random() < 0.5 else r.choice(lits) - a
            elif kind == 2:
                v = -a
            elif kind == 3:
                v = a - (-r.choice(vals)) if r.random() < 0.5 else (-a) * (-r.choice(vals))
            elif kind == 4 and a.ndim == 2:
                v = gc.transpose(gc.transpose(a))
            elif kind == 5:
                v = gc.reshape(gc.reshape(a, (-1,)), a.shape)
            elif kind == 6:
                v = gc.sum(gc.expand_dims(a, 0), axis=0)
            elif kind == 7:
                v = gc.where(gc.constant(np.array(r.random() < 0.5)), a, r.choice(vals))
            elif kind == 8:
                v = a / 1.0 + gc.zeros_like(a)
            elif kind == 9:
                v = a * r.choice(vals) + gc.exp(gc.constant(np.float32(r.random())))
            elif kind == 10:
                v = gc.cast(a, "float32") * gc.cast(gc.constant(np.array(r.randint(0, 2))), "float32")
            elif kind == 11:
                v = gc.broadcast_to(a, (3, 4)) * r.choice(vals)
            elif kind == 12:
                v = gc.reshape(gc.sum(a, axis=0, keepdims=True), a.shape[1:])
            elif a.ndim == 2:
                v = gc.pad(a[:, :2], ((0, 0), (0, 2))) + gc.pad(a[:, 2:], ((0, 0), (2, 0)))
            else:
                v = gc.apply("safe_mul", [a, gc.constant(np.float32(r.choice(lits)))])
            vals.append(v)
        g.output(out0=vals[-1], out1=vals[len(vals) // 2])
    return g


@pytest.mark.parametrize("seed", range(60))
def test_simplify_preserves_values_on_random_graphs(seed):
    g = _random_graph(seed)
    out = simplify(g)
    assert len(out.nodes) <= len(g.nodes)
    assert_same_outputs(g, out, _feeds(g, seed))
    again = simplify(out)
    assert str(again) == str(out)  # simplify is idempotent: its result is a fixed point


def test_passes_enable_each_other_across_rounds():
    # two equal conditions become one by CSE; then the halves of where merge in the next round
    with gc.Graph("rounds") as g:
        x, y = g.input("x", (3, 4)), g.input("y", (3, 4))
        g.output(z=gc.where(x > y, gc.exp(x), 0.0) + gc.where(x > y, 0.0, y))
    out, report = run_passes(g, ["fold_constants", "simplify_algebra", "eliminate_common_subexpressions",
                                 "eliminate_dead_code"], max_rounds=4)
    assert sorted(n.op.name for n in out.nodes) == ["exp", "greater", "where"]
    assert report.rounds == 3  # round 1 merges the conditions, round 2 the wheres, round 3 is quiet
    assert_same_outputs(g, out, _feeds(g))
