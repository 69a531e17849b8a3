"""The backend protocol: what a backend provides, and the registry the runtime asks.

A backend is an object with a name that can

- `compile(graph, device, **options)` a graph into an `Executable`;
- `stepper(graph, device, seed, **options)` make a `Stepper` for a training-step graph (the
  default runs the compiled step and carries the state through the host);
- `check_lowering(graph)` list every node it cannot lower, before compiling anything;
- `available_devices()` say which devices it can run on here.

Backends register themselves by name (`register_backend`); `gc.compile`, `gc.make_stepper`, the
Trainer and `gc.check_lowering` look them up with `get_backend`, so a third party adds a backend
from its own code without editing graphc::

    class ToyBackend(gc.Backend):
        name = "toy"
        def compile(self, graph, device="cpu", **options):
            return ToyExecutable(graph, device)

    gc.register_backend(ToyBackend())
    gc.Trainer(loss_fn, model, backend="toy").fit(data)
"""
from __future__ import annotations

import importlib
from typing import Any, ClassVar, NamedTuple

from ..ir.errors import GraphcError
from ..ir.graph import Graph
from .executable import Executable
from .stepper import ExecutableStepper, Stepper


class MissingLowering(NamedTuple):
    """One node that a backend cannot lower."""

    op: str
    source: str | None
    value: str

    def __str__(self) -> str:
        return f"{self.op} at {self.source or '?'} (%{self.value})"


class Backend:
    """Base class of backends. Subclasses set `name` and implement `compile`.

    Attributes:
        name: the registry name (`backend="..."`).
        aliases: other names that find it.
        devices: the devices it can target at all ("cpu", "cuda").
        lowering_rule: the op attribute holding its lowering rule ("onnx", "tvm", "ref"), or None
            if it can run any primitive (e.g. it interprets through another backend).
    """

    name: ClassVar[str] = ""
    aliases: ClassVar[tuple[str, ...]] = ()
    devices: ClassVar[tuple[str, ...]] = ("cpu",)
    lowering_rule: ClassVar[str | None] = "ref"

    def compile(self, graph: Graph, device: str = "cpu", **options: Any) -> Executable:
        """Compiles a verified graph; returns an Executable. Subclasses implement it."""
        raise NotImplementedError(f"backend {self.name!r} does not implement compile()")

    def stepper(self, graph: Graph, device: str = "cpu", seed: int = 0, **options: Any) -> Stepper:
        """A Stepper for training-step `graph`; by default over `compile` (state via the host)."""
        return ExecutableStepper(graph, self.compile(graph, device, **options), device, seed)

    def available_devices(self) -> list[str]:
        """The devices this backend can run on in this process (default: all of `devices`)."""
        return list(self.devices)

    def check_device(self, device: str) -> None:
        """ValueError naming the devices it supports, for a device it cannot target."""
        if device not in self.devices:
            where = ("the CPU only" if self.devices == ("cpu",) else ", ".join(self.devices))
            hint = "; use backend='onnxruntime' or 'tvm' for device='cuda'" if device == "cuda" else ""
            raise ValueError(f"backend {self.name!r} runs on {where}, not {device!r}{hint}")

    def lowers(self, op: Any) -> bool:
        """Whether this backend has a lowering for primitive `op`."""
        return self.lowering_rule is None or getattr(op, self.lowering_rule, None) is not None

    def check_lowering(self, graph: Graph, raise_on_missing: bool = False) -> list[MissingLowering]:
        """Every node whose primitive this backend cannot lower, in graph order, with its line.

        Raises:
            GraphcError: with `raise_on_missing`, naming all of them at once.
        """
        missing = [MissingLowering(n.op.name, n.source, n.output.name) for n in graph.nodes
                   if not self.lowers(n.op)]
        if missing and raise_on_missing:
            ops = sorted({m.op for m in missing})
            lines = "\n".join(f"  {m}" for m in missing)
            raise GraphcError(f"graph {graph.name!r}: {len(missing)} node(s) have no {self.name} "
                              f"lowering (ops: {', '.join(ops)}):\n{lines}")
        return missing

    def __repr__(self) -> str:
        return f"<backend {self.name!r}>"


_REGISTRY: dict[str, Backend] = {}
_ALIASES: dict[str, str] = {}
#: built-in backends, imported on first use so that `import graphc` stays light
_BUILTIN = {"numpy": "graphc.backends.numpy_ref", "onnxruntime": "graphc.backends.onnx",
            "onnx": "graphc.backends.onnx", "tvm": "graphc.backends.tvm"}


def register_backend(backend: Backend, replace: bool = False) -> Backend:
    """Registers `backend` under its name and aliases; returns it.

    Raises:
        ValueError: the name is empty, or taken by another backend and `replace` is false.
    """
    if isinstance(backend, type):
        backend = backend()
    if not isinstance(backend, Backend):
        raise TypeError(f"register_backend needs a graphc Backend, got {type(backend).__name__}")
    if not backend.name:
        raise ValueError(f"{type(backend).__name__} has no name; set the class attribute `name`")
    for key in (backend.name, *backend.aliases):
        held = _REGISTRY.get(_ALIASES.get(key, key))
        if held is not None and type(held) is not type(backend) and not replace:
            raise ValueError(f"a backend named {key!r} is already registered ({held!r}); pass "
                             "replace=True to override it")
    _REGISTRY[backend.name] = backend
    for a in backend.aliases:
        _ALIASES[a] = backend.name
    return backend


def unregister_backend(name: str) -> None:
    """Removes a backend registered under `name` (tests and plugins clean up with it)."""
    b = _REGISTRY.pop(_ALIASES.get(name, name), None)
    if b is not None:
        for a in b.aliases:
            _ALIASES.pop(a, None)


def get_backend(name: "str | Backend") -> Backend:
    """The backend registered as `name` (a Backend is returned as is).

    Raises:
        ValueError: no such backend; the message lists the registered ones.
    """
    if isinstance(name, Backend):
        return name
    key = _ALIASES.get(name, name)
    if key not in _REGISTRY and name in _BUILTIN:
        importlib.import_module(_BUILTIN[name])  # registers itself on import
        key = _ALIASES.get(name, name)
    if key not in _REGISTRY:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(available_backends())}")
    return _REGISTRY[key]


def available_backends() -> list[str]:
    """Names of the registered backends, built-in ones included."""
    return sorted(set(_REGISTRY) | {k for k in _BUILTIN if k != "onnx"})
