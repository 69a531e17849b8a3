"""OnnxModule: an imported ONNX model as a graphc.nn Module, to fine-tune it like any layer.

`gc.import_onnx(path, trainable=True)` returns one. Its parameters are the model's trainable
initializers under readable names (`conv1.weight` stays; exporter names such as
`onnx::Conv_28` become `conv2d_0.weight`, after the op that reads them), so `state_dict`,
optimizers and checkpoints speak the same names. Calling it inside `@gc.function` (or a
`with gc.Graph(...)` block) inlines the imported graph into the graph being built, with its
symbolic dims bound to the caller's; the README's Trainer code then works unchanged::

    backbone = gc.import_onnx("cnn.onnx", trainable=True)

    @gc.function(x=gc.spec(("N", 1, 28, 28)), y=gc.spec(("N",), "int64"))
    def loss_fn(x, y):
        return nn.cross_entropy(backbone(x), y)
"""
from __future__ import annotations

import re
from collections import Counter
from typing import Any

from ...ir.errors import GraphBuildError, user_frame
from ...ir.graph import Graph, Value
from ...ir.types import Dim, dim_product, parse_dim
from .. import dsl
from ..dsl import Tensor
from .module import Module, Parameter, param_tensor

_READABLE = re.compile(r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$")


def readable_names(graph: Graph) -> dict[str, str]:
    """{initializer name: readable state-dict name} for the graph's params.

    A name that already reads as a dotted path (`features.0.weight`) stays; others are named
    after the primitive that first reads them, numbered per primitive, with `weight` for a
    tensor of rank >= 2 and `bias` otherwise (`conv2d_0.weight`, `conv2d_0.bias`).
    """
    first_user: dict[Value, str] = {}
    for n in graph.nodes:
        for i in n.inputs:
            first_user.setdefault(i, n.op.name)
    out: dict[str, str] = {}
    count: Counter = Counter()
    taken: set[str] = set()
    owner: dict[str, str] = {}
    for p in graph.params:
        if _READABLE.match(p.name) and p.name not in taken:
            out[p.name] = p.name
        else:
            op = first_user.get(p, "param")
            slot = "weight" if p.type.rank >= 2 else "bias"
            key = f"{op}_{count[op]}"
            if f"{key}.{slot}" in taken or owner.get(key) == slot:
                count[op] += 1
                key = f"{op}_{count[op]}"
            owner[key] = slot
            out[p.name] = f"{key}.{slot}"
        taken.add(out[p.name])
    return out


def _substitute(d: Dim, sizes: dict[str, Dim]) -> Dim:
    """`d` with each symbol replaced by its size in `sizes` (symbols not in it stay)."""
    coef, syms = parse_dim(d)
    factors: list[Dim] = [coef]
    for s, k in syms.items():
        factors.extend([sizes.get(s, s)] * k)
    return dim_product(factors)


class OnnxModule(Module):
    """An imported graph as a Module: trainable initializers are its Parameters.

    Args:
        graph: the imported graph (`gc.import_onnx(path)`).

    Attributes:
        names: {initializer name: parameter name}.
    """

    def __init__(self, graph: Graph):
        super().__init__()
        object.__setattr__(self, "_graph", graph)
        self.names = readable_names(graph)
        for p in graph.params:
            *path, leaf = self.names[p.name].split(".")
            owner: Module = self
            for part in path:
                child = owner._modules.get(part) if hasattr(owner, "_modules") else None
                if child is None:
                    child = Module()
                    owner.add_module(part, child)
                owner = child
            owner.register_parameter(leaf, Parameter(p.data, requires_grad=p.type.is_float))

    @property
    def graph(self) -> Graph:
        """The imported graph this module replays."""
        return self._graph

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Inlines the imported graph over the given tensors (by input order, or by name).

        Returns:
            The output Tensor, or a tuple of them when the model has several outputs.
        """
        src = self._graph
        if len(args) > len(src.inputs):
            raise GraphBuildError(f"{user_frame()}: {src.name!r} takes {len(src.inputs)} inputs "
                                  f"({', '.join(v.name for v in src.inputs)}), got {len(args)}")
        feeds = dict(zip((v.name for v in src.inputs), args), **kwargs)
        missing = [v.name for v in src.inputs if v.name not in feeds]
        if missing:
            raise GraphBuildError(f"{user_frame()}: {src.name!r} needs input(s) {', '.join(missing)}")
        tensors = [x for x in feeds.values() if isinstance(x, Tensor)]
        if not tensors:
            raise GraphBuildError(f"{user_frame()}: call {src.name!r} on graph Tensors (inside "
                                  "@gc.function or `with gc.Graph(...)`)")
        g = tensors[0].graph
        vmap: dict[Value, Value] = {}
        sizes: dict[str, Dim] = {}
        for v in src.inputs:
            val = dsl.as_value(feeds[v.name], g, v.type.dtype)
            if val.type.rank != v.type.rank:
                raise GraphBuildError(f"{user_frame()}: input {v.name!r} of {src.name!r} is {v.type}, "
                                      f"got {val.type}")
            for want, got in zip(v.type.shape, val.type.shape):
                if isinstance(want, str) and len(parse_dim(want)[1]) == 1 and parse_dim(want)[0] == 1:
                    sizes.setdefault(want, got)
                elif _substitute(want, sizes) != got:
                    raise GraphBuildError(f"{user_frame()}: input {v.name!r} of {src.name!r} is "
                                          f"{v.type}, got {val.type}")
            vmap[v] = val
        params = dict(self.named_parameters())
        for p in src.params:
            vmap[p] = param_tensor(params[self.names[p.name]], g).value
        for n in src.nodes:
            attrs = {k: (tuple(_substitute(d, sizes) for d in a) if k in n.op.shape_attrs else a)
                     for k, a in n.attrs.items()}
            ins = [vmap[i] for i in n.inputs]
            t = n.op.infer_checked([i.type for i in ins], attrs)
            vmap[n.output] = g.add_node(n.op, ins, attrs, t, n.output.name, n.source, n.origin)
        outs = [Tensor(vmap[v]) for v in src.outputs.values()]
        return outs[0] if len(outs) == 1 else tuple(outs)
