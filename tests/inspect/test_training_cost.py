"""gc.inspect.summary on a training step: per-layer forward/backward/optimizer FLOPs and bytes.

The figures are counted by hand from the ops' documented cost rules (gemm: 2*M*N*K plus 2 per
output for the bias; elementwise: 1 per output element; sum: 1 per input element).
"""
import pytest

import graphc as gc
from graphc import optim
from graphc.inspect import summary

A, H, C, N = 6, 5, 3, 7      # a 6-5-3 MLP on a batch of 7
F32 = 4


@pytest.fixture(scope="module")
def adam_step():
    step = gc.training_step(gc.models.mlp((A, H, C), seed=0), None, optim.Adam(1e-3))
    return summary(step, {"N": N})


def test_forward_backward_and_optimizer_flops_per_layer_match_a_hand_count(adam_step):
    rows = {r.scope: r for r in adam_step.layers}
    assert list(rows)[:2] == ["fc1", "fc2"]
    fc1, fc2 = rows["fc1"], rows["fc2"]
    assert fc1.forward_flops == (2 * N * A * H + 2 * N * H) + N * H       # gemm + relu
    assert fc2.forward_flops == 2 * N * H * C + 2 * N * C                 # gemm
    # fc2: dX and dW gemms and the bias-gradient sum; fc1 (input is data: no dX): relu's
    # mask (greater) and where, dW gemm, bias sum. conv2's dX must not land in the layer below.
    assert fc2.backward_flops == 2 * N * C * H + 2 * C * H * N + N * C
    assert fc1.backward_flops == N * H + N * H + 2 * H * A * N + N * H
    # Adam: 13 elementwise ops per parameter element; the step's bias corrections (7 scalar
    # ops, shared by every parameter) are named under the first parameter, fc1.weight
    assert fc1.optimizer_flops == 13 * (A * H + H) + 7
    assert fc2.optimizer_flops == 13 * (H * C + C)
    s = adam_step
    assert s.optimizer_flops == fc1.optimizer_flops + fc2.optimizer_flops
    assert s.forward_flops + s.backward_flops + s.optimizer_flops == s.flops
    assert sum(r.forward_flops for r in s.layers) == s.forward_flops
    assert sum(r.backward_flops for r in s.layers) == s.backward_flops


def test_parameter_gradient_and_optimizer_state_bytes(adam_step):
    rows = {r.scope: r for r in adam_step.layers}
    for scope, (i, o) in {"fc1": (A, H), "fc2": (H, C)}.items():
        p = F32 * (i * o + o)
        assert (rows[scope].param_bytes, rows[scope].grad_bytes, rows[scope].state_bytes) == \
            (p, p, 2 * p)      # Adam keeps two moments per parameter
    assert adam_step.param_count == A * H + H + H * C + C      # step inputs, not zero
    assert adam_step.trained == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]


def test_activation_bytes_saved_for_backward(adam_step):
    rows = {r.scope: r for r in adam_step.layers}
    assert rows["fc1"].saved_bytes == F32 * N * H       # relu's output (fc2's dW and relu's mask)
    assert rows["fc2"].saved_bytes == F32 * N * C       # the logits (softmax in the loss grad)
    saved = {n.name for n in adam_step.nodes if n.saved}
    assert {"fc1.relu", "fc2.add"} <= saved and "fc1.add" not in saved


def test_lenet_input_gradient_is_charged_to_the_layer_that_made_it():
    step = gc.training_step(gc.models.lenet5(seed=0), None, optim.SGD(0.1, momentum=0.9))
    s = summary(step, {"N": 2})
    by_name = {n.name: n for n in s.nodes}
    # conv2's dX is named after the value it is the gradient of (pool1's output)
    assert by_name["d_pool1.max_pool2d"].op == "conv_transpose2d"
    assert by_name["d_pool1.max_pool2d"].scope == "conv2"
    assert by_name["new.fc1.weight"].part == "optimizer"
    rows = {r.scope: r for r in s.layers}
    assert rows["pool1"].backward_flops < rows["conv2"].backward_flops
    assert rows["conv1"].state_bytes == rows["conv1"].param_bytes   # one momentum buffer


def test_step_peak_holds_the_inputs_for_the_whole_run():
    with gc.Graph("chain") as g:
        x = g.input("x", (10,))
        a = x * 2.0
        g.output(b=a + 1.0)
    s = summary(g)
    assert [n.op for n in s.nodes] == ["constant", "mul", "constant", "add"]
    # at the last node: x and both constants (ONNX initializers, held by the session for the
    # whole run), a (read) and b: 40 + 4 + 4 + 40 + 40
    assert (s.step_peak_bytes, s.step_peak_node) == (128, "add")
    assert (s.memory.resident_bytes, s.memory.transient_peak_bytes) == (48, 80)
    assert s.step_peak_bytes >= s.peak_bytes


def test_report_text_and_json_carry_the_training_figures(adam_step):
    text = str(adam_step)
    for piece in ("optimizer", "opt state", "saved", "peak of the step", "fc1", "fc2"):
        assert piece in text
    d = adam_step.to_dict()
    assert d["optimizer_flops"] == adam_step.optimizer_flops and d["layers"][0]["scope"] == "fc1"
    assert d["state_bytes"] == 2 * d["param_bytes"]
    import json
    json.dumps(d)


def test_lenet5_sgd_step_matches_a_hand_count_per_layer():
    n = 2
    s = summary(gc.training_step(gc.models.lenet5(seed=0), None, optim.SGD(0.1)), {"N": n})
    rows = {r.scope: (r.forward_flops, r.backward_flops, r.optimizer_flops) for r in s.layers}
    c1, p1, c2, p2 = n * 6 * 28 * 28, n * 6 * 14 * 14, n * 16 * 10 * 10, n * 16 * 5 * 5

    def fc(i, o, relu):   # forward: gemm + bias (+ relu); backward: relu mask, dX, dW, db
        return ((2 * n * i * o + 2 * n * o + (n * o if relu else 0)),
                (2 * n * o if relu else 0) + 2 * n * o * i * 2 + n * o,
                2 * (i * o + o))                                      # SGD: lr*g, p - that
    # the step pools before the ReLU (passes/pool_before_relu.py), so each ReLU and its mask
    # (greater, cast, mul: the cast counts 0) run on the pooled tensor, charged to the pool
    expected = {
        # conv2d 2*K per output (K = C_in*5*5) and the bias add 1 per output
        "conv1": (2 * c1 * 25 + c1,
                  # bias-gradient sum, dW conv (no dX: x is data)
                  c1 + 2 * (6 * 25) * (n * 28 * 28), 2 * (150 + 6)),
        # max over 2x2 and the relu; its gradient 2 per window elt and the relu mask
        "pool1": (4 * p1 + p1, 2 * p1 * 4 + 2 * p1, 0),
        "conv2": (2 * c2 * 150 + c2,
                  # bias sum, dX (conv_transpose) and dW: 2*K per output each
                  c2 + 2 * c2 * 150 + 2 * (16 * 150) * (n * 10 * 10), 2 * (2400 + 16)),
        "pool2": (4 * p2 + p2, 2 * p2 * 4 + 2 * p2, 0),
        "fc1": fc(400, 120, True), "fc2": fc(120, 84, True), "fc3": fc(84, 10, False),
    }
    for scope, want in expected.items():
        assert rows[scope] == want, scope
    assert s.optimizer_flops == 2 * s.param_count
