"""simplify_loop_bodies: runs the "simplify" pipeline (folding, algebra, CSE, DCE) inside every
loop body (a Graph held in a node attribute, as `scan`'s `body`), nested bodies included.

A body keeps its inputs and output names (the scan node indexes them); a body that simplifies to
no fewer nodes is kept as it was, so the K nodes of one scan still share one body object.
"""
from __future__ import annotations

from ..ir.graph import Graph
from ..ir.rebuild import new_frame, set_outputs
from .pipeline import get_pipeline, register_pass


@register_pass("simplify_loop_bodies")
def simplify_loop_bodies(graph: Graph) -> Graph:
    """A copy of `graph` whose loop bodies are simplified (the graph itself unchanged otherwise)."""
    return in_loop_bodies(graph, "simplify")


@register_pass("fold_transposes_in_loop_bodies")
def fold_transposes_in_loop_bodies(graph: Graph) -> Graph:
    """The "fold-transposes" pipeline inside loop bodies (the backward loop's weight gradients)."""
    return in_loop_bodies(graph, "fold-transposes")


@register_pass("fuse_gemm_in_loop_bodies")
def fuse_gemm_in_loop_bodies(graph: Graph) -> Graph:
    """The "fuse-step" pipeline (products and sums into gemm) inside loop bodies."""
    return in_loop_bodies(graph, "fuse-step")


def in_loop_bodies(graph: Graph, pipeline: str) -> Graph:
    """A copy of `graph` whose loop bodies went through the named pipeline (bodies kept where it
    does not make them smaller)."""
    if not any(isinstance(a, Graph) for n in graph.nodes for a in n.attrs.values()):
        return graph
    done: dict[int, Graph] = {}
    new, vmap = new_frame(graph)
    for node in graph.nodes:
        attrs = dict(node.attrs)
        for k, body in node.attrs.items():
            if isinstance(body, Graph):
                if id(body) not in done:
                    simpler = get_pipeline(pipeline)(body)
                    done[id(body)] = simpler if len(simpler.nodes) < len(body.nodes) else body
                attrs[k] = done[id(body)]
        vmap[node.output] = new.add_node(node.op, [vmap[i] for i in node.inputs], attrs,
                                         node.output.type, node.output.name, node.source,
                                         node.origin)
    return set_outputs(new, graph, vmap)
