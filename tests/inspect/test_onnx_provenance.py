"""Exported ONNX carries graphc's provenance: a doc_string per node, the version and pipelines."""
import pytest

import graphc as gc
from graphc import optim

pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def lenet_step_model():
    step = gc.training_step(gc.models.lenet5(seed=0), None, optim.Adam(1e-3))
    return step, gc.export_onnx(step)


def test_every_node_of_an_exported_training_step_has_a_doc_string(lenet_step_model):
    _, model = lenet_step_model
    missing = [n.name for n in model.graph.node if not n.doc_string]
    assert model.graph.node and not missing


def test_doc_string_holds_the_source_line_and_for_backward_nodes_the_forward_op(lenet_step_model):
    step, model = lenet_step_model
    docs = {n.name: n.doc_string for n in model.graph.node}
    fwd = next(n for n in step.nodes if n.output.name == "conv2.conv2d")
    assert f"source: {fwd.source}" in docs["conv2.conv2d"] and "origin:" not in docs["conv2.conv2d"]
    bwd = next(n for n in step.nodes if n.origin and n.origin.startswith("grad of conv2d")
               and n.output.name in docs)
    assert f"origin: grad of conv2d @ {fwd.source}" in docs[bwd.output.name]
    assert "models.py:128" in fwd.source


def test_metadata_props_name_the_graphc_version_and_the_pipelines(lenet_step_model):
    step, model = lenet_step_model
    props = {p.key: p.value for p in model.metadata_props}
    assert props["graphc.version"] == gc.__version__
    assert props["graphc.pipelines"].split(", ") == list(step.spec.reports)
    assert "fuse-step" in props["graphc.pipelines"]
    assert model.producer_version == gc.__version__


def test_a_plain_forward_export_has_provenance_but_no_pipelines():
    model = gc.export_onnx(gc.models.lenet5(seed=0))
    props = {p.key: p.value for p in model.metadata_props}
    assert "graphc.pipelines" not in props and props["graphc.version"]
    assert all("source: " in n.doc_string or n.op_type == "Identity" for n in model.graph.node)
