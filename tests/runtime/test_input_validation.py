"""Input validation at the boundary (graphc/ir/feeds.py): names, shapes against symbolic dims,
dtypes and integer ranges, the same for executables, steppers and the Trainer."""
import numpy as np
import pytest

import graphc as gc
from graphc import nn, optim
from graphc.ir.feeds import FeedChecker
from graphc.ir.rebuild import new_frame


def classifier(classes=10, features=4, label_spec=None):
    lin = nn.Linear(features, classes)

    @gc.function(x=gc.spec(("N", features)), y=label_spec or gc.spec(("N",), "int64"))
    def loss_fn(x, y):
        logits = lin(x)
        return {"loss": nn.cross_entropy(logits, y), "logits": logits}
    return loss_fn, lin


def batch(n=64, classes=10, features=4, seed=0):
    rng = np.random.default_rng(seed)
    return {"x": rng.normal(size=(n, features)).astype(np.float32),
            "y": rng.integers(0, classes, n).astype(np.int64)}


# ---- class labels out of range: every entry point raises, naming input, label and index -------------

@pytest.mark.parametrize("bad", [10, -1])
@pytest.mark.parametrize("backend", ["numpy", "onnxruntime"])
def test_labels_out_of_range_raise(backend, bad):
    loss_fn, _ = classifier()
    b = batch()
    b["y"][37] = bad
    exe = gc.compile(loss_fn.graph, backend)
    with pytest.raises(gc.FeedError, match=rf"feed 'y': label {bad} at index 37 is outside \[0, 10\)"):
        exe(**b)
    st = gc.make_stepper(gc.training_step(loss_fn.graph, optimizer=optim.SGD(0.1)), backend)
    with pytest.raises(gc.FeedError, match=rf"batch input 'y': label {bad} at index 37 is outside \[0, 10\)"):
        st.step(b, 0.1)
    assert st.step_count == 0  # rejected before the step ran
    tr = gc.Trainer(loss_fn, backend=backend, progress=False)
    with pytest.raises(gc.FeedError, match=rf"input 'y': label {bad} at index 37 is outside \[0, 10\)"):
        tr.fit(b, batch_size=16)
    with pytest.raises(gc.FeedError, match=rf"label {bad} at index 37"):
        tr.evaluate(b)
    assert tr.step == 0


def test_out_of_range_label_error_says_where_the_range_comes_from_and_how_many():
    loss_fn, _ = classifier()
    b = batch()
    b["y"][[3, 5, 9]] = 12
    exe = gc.compile(loss_fn.graph, "numpy")
    with pytest.raises(gc.FeedError) as info:
        exe(**b)
    msg = str(info.value)
    assert "label 12 at index 3" in msg and "cross_entropy (10 classes" in msg
    assert "test_input_validation.py" in msg and "3 of 64 values are outside" in msg


def test_labels_out_of_range_in_a_list_of_batches_name_the_batch():
    loss_fn, _ = classifier()
    good, bad = batch(16, seed=1), batch(16, seed=2)
    bad["y"][4] = 10
    tr = gc.Trainer(loss_fn, backend="numpy", progress=False)
    with pytest.raises(gc.FeedError, match=r"label 10 at index 4 .*epoch 1, batch 2"):
        tr.fit([good, bad], shuffle=False)
    assert tr.step == 1


def test_spec_range_is_checked_half_open():
    @gc.function(t=gc.spec(("N",), "int64", range=(2, 5)))
    def f(t):
        return gc.cast(t, "float32") * 2.0
    assert f.graph.value("t").range == (2, 5)
    exe = gc.compile(f.graph, "numpy")
    np.testing.assert_allclose(exe(t=np.array([2, 3, 4]))["output"], [4, 6, 8])
    with pytest.raises(gc.FeedError, match=r"feed 't': value 5 at index 2 is outside \[2, 5\) \(its declared range\)"):
        exe(t=np.array([2, 3, 5]))
    with pytest.raises(gc.FeedError, match=r"value 1 at index 0"):
        exe(t=np.array([1, 3, 4]))
    assert exe(t=np.zeros(0, np.int64))["output"].shape == (0,)  # an empty batch has nothing outside


def test_spec_range_on_a_2d_input_names_the_index_tuple():
    @gc.function(t=gc.spec(("N", 3), "int32", range=(0, 4)))
    def f(t):
        return gc.cast(t, "float32")
    t = np.zeros((5, 3), np.int32)
    t[2, 1] = 7
    with pytest.raises(gc.FeedError, match=r"value 7 at index \(2, 1\)"):
        gc.compile(f.graph, "numpy")(t=t)


def test_bad_spec_ranges_raise_at_the_users_line():
    with pytest.raises(gc.GraphBuildError, match="integer dtype"):
        gc.spec(("N",), "float32", range=(0, 3))
    with pytest.raises(gc.GraphBuildError, match="empty"):
        gc.spec(("N",), "int64", range=(3, 3))
    with pytest.raises(gc.GraphBuildError, match="pair of ints"):
        gc.spec(("N",), "int64", range=(0, 2.5))
    with pytest.raises(gc.GraphBuildError, match="test_input_validation.py"):
        gc.spec(("N",), "int64", range=(5,))


def test_declared_range_is_narrowed_by_the_loss():
    loss_fn, _ = classifier(label_spec=gc.spec(("N",), "int64", range=(0, 20)))
    r = loss_fn.graph.value("y").range
    assert r == (0, 10) and "cross_entropy" in r.origin
    loss_fn, _ = classifier(label_spec=gc.spec(("N",), "int64", range=(2, 5)))
    assert loss_fn.graph.value("y").range == (2, 5)


def test_declared_range_disjoint_from_the_classes_raises():
    loss_fn, _ = classifier(label_spec=gc.spec(("N",), "int64", range=(10, 20)))
    with pytest.raises(gc.GraphBuildError, match=r"declared with range \[10, 20\), but the loss has 10 classes"):
        loss_fn.graph


def test_nll_loss_and_multi_margin_loss_declare_label_ranges():
    for loss in (lambda z, y: nn.functional.nll_loss(nn.functional.log_softmax(z, -1), y),
                 lambda z, y: nn.functional.multi_margin_loss(z, y)):
        @gc.function(z=gc.spec(("N", 7)), y=gc.spec(("N",), "int64"))
        def f(z, y):
            return loss(z, y)
        assert f.graph.value("y").range == (0, 7)
    # probabilities as targets (a float tensor): no range
    @gc.function(z=gc.spec(("N", 7)), q=gc.spec(("N", 7)))
    def soft(z, q):
        return nn.cross_entropy(z, q)
    assert soft.graph.value("q").range is None


def test_labels_computed_in_the_graph_get_no_range():
    @gc.function(z=gc.spec(("N", 3)), y=gc.spec(("N",), "int32"))
    def f(z, y):
        return nn.cross_entropy(z, gc.cast(y, "int64"))
    assert f.graph.value("y").range is None


def test_range_survives_clone_prune_rebuild_training_step_and_text():
    loss_fn, _ = classifier()
    g = loss_fn.graph
    assert g.clone()[0].value("y").range == (0, 10)
    assert g.prune(["loss"]).value("y").range == (0, 10)
    assert new_frame(g)[0].value("y").range == (0, 10)
    assert gc.grad(g, wrt=[p.name for p in g.params]).value("y").range == (0, 10)
    sg = gc.training_step(g, optimizer=optim.Adam(1e-3))
    assert sg.value("y").range == (0, 10)
    text = str(g)
    assert "%y: i64[N] @range(0, 10)" in text
    back = gc.parse_graph(text, params=gc.elided_constants(g))
    assert back.value("y").range == (0, 10) and str(back) == text
    assert gc.parse_graph(str(sg), params=gc.elided_constants(sg)).value("y").range == (0, 10)


# ---- shapes against symbolic dims, names, dtypes: the same checks at every entry ------------------

def test_symbolic_dim_must_agree_across_batch_inputs_in_a_stepper():
    loss_fn, _ = classifier()
    st = gc.make_stepper(gc.training_step(loss_fn.graph, optimizer=optim.SGD(0.1)), "numpy")
    b = batch(32)
    with pytest.raises(gc.FeedError, match=r"batch input 'y' has shape \(31,\): dim 0 \(N\) is 31, "
                                           r"but batch input 'x' set N = 32"):
        st.step({"x": b["x"], "y": b["y"][:31]}, 0.1)


def test_unknown_batch_input_raises_in_a_stepper():
    loss_fn, _ = classifier()
    st = gc.make_stepper(gc.training_step(loss_fn.graph, optimizer=optim.SGD(0.1)), "numpy")
    with pytest.raises(gc.FeedError, match=r"has no input named 'lr'; its inputs are x, y"):
        st.step({**batch(8), "lr": np.float32(3.0)}, 0.1)
    with pytest.raises(gc.FeedError, match=r"missing batch input\(s\) 'y'; it takes x, y"):
        st.step({"x": batch(8)["x"]}, 0.1)
    with pytest.raises(gc.FeedError, match="must be a dict"):
        st.step((batch(8)["x"], batch(8)["y"]), 0.1)


def test_static_dim_and_dtype_errors_name_the_input_and_dim():
    loss_fn, _ = classifier()
    st = gc.make_stepper(gc.training_step(loss_fn.graph, optimizer=optim.SGD(0.1)), "numpy")
    b = batch(8)
    with pytest.raises(gc.FeedError, match=r"batch input 'x' has shape \(8, 5\), expected f32\[N, 4\]: "
                                           r"dim 1 is 5, expected 4"):
        st.step({"x": np.zeros((8, 5), np.float32), "y": b["y"]}, 0.1)
    with pytest.raises(gc.FeedError, match=r"batch input 'y' has dtype float32, expected int64"):
        st.step({"x": b["x"], "y": b["y"].astype(np.float32)}, 0.1)
    # same kind is cast: float64 features, int32 / uint8 / bool labels
    st.step({"x": b["x"].astype(np.float64), "y": b["y"].astype(np.uint8)}, 0.1)
    st.step({"x": b["x"], "y": np.ones(8, bool)}, 0.1)


def test_integer_cast_that_changes_a_value_raises():
    @gc.function(t=gc.spec(("N",), "int32"))
    def f(t):
        return gc.cast(t, "float32")
    exe = gc.compile(f.graph, "numpy")
    np.testing.assert_array_equal(exe(t=np.array([1, 2], np.int64))["output"], [1, 2])
    with pytest.raises(gc.FeedError, match=r"value 1099511627776 at index 1 does not fit its declared dtype int32"):
        exe(t=np.array([1, 2 ** 40], np.int64))


def test_compound_symbolic_dims_are_checked():
    with gc.Graph("pairs") as g:
        a = g.input("a", ("N", 2))
        b = g.input("b", ("2*N",))
        g.output(s=gc.sum(a) + gc.sum(b))
    exe = gc.compile(g, "numpy")
    assert float(exe(a=np.ones((3, 2), np.float32), b=np.ones(6, np.float32))["s"]) == 12
    with pytest.raises(gc.FeedError, match=r"feed 'b' has shape \(5,\): dim 0 \(2\*N\) is 5, but N = 3 make it 6"):
        exe(a=np.ones((3, 2), np.float32), b=np.ones(5, np.float32))
    checker = FeedChecker(g, ["b"], allow_params=False)
    assert checker.check({"b": np.ones(8, np.float32)})[1] == {"N": 4}
    with pytest.raises(gc.FeedError, match="not a multiple of 2"):
        checker.check({"b": np.ones(7, np.float32)})


def test_checker_returns_contiguous_arrays_of_the_declared_dtype_for_steppers():
    loss_fn, _ = classifier()
    sg = gc.training_step(loss_fn.graph, optimizer=optim.SGD(0.1))
    st = gc.make_stepper(sg, "numpy")
    x = np.asfortranarray(np.zeros((8, 4)))
    out = st.check_batch({"x": x, "y": np.arange(8, dtype=np.int32)})
    assert out["x"].dtype == np.float32 and out["x"].flags.c_contiguous
    assert out["y"].dtype == np.int64
