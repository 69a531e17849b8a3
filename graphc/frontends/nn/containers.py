"""Containers: Sequential, ModuleList, ModuleDict (children named "0", "1", ... or by key)."""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Iterable, Iterator

from .module import Module


class Sequential(Module):
    """Applies its modules in order; children are named "0", "1", ... (or by an OrderedDict)."""

    def __init__(self, *modules: Module | "OrderedDict[str, Module]"):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], OrderedDict):
            for k, m in modules[0].items():
                self.add_module(k, m)
        else:
            for i, m in enumerate(modules):
                self.add_module(str(i), m)

    def forward(self, x):
        for m in self._modules.values():
            x = m(x)
        return x

    def __getitem__(self, idx: int | slice) -> Module:
        mods = list(self._modules.values())
        if isinstance(idx, slice):
            return Sequential(*mods[idx])
        return mods[idx]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def append(self, module: Module) -> "Sequential":
        self.add_module(str(len(self._modules)), module)
        return self


class ModuleList(Module):
    """A list of modules, registered as children "0", "1", ... (renumbered after a delete or an
    insert, as torch's); not callable itself."""

    def __init__(self, modules: Iterable[Module] | None = None):
        super().__init__()
        for m in modules or ():
            self.append(m)

    def _renumber(self, mods: list[Module]) -> None:
        self._modules.clear()
        for i, m in enumerate(mods):
            self.add_module(str(i), m)

    def append(self, module: Module) -> "ModuleList":
        self.add_module(str(len(self._modules)), module)
        return self

    def extend(self, modules: Iterable[Module]) -> "ModuleList":
        for m in modules:
            self.append(m)
        return self

    def insert(self, index: int, module: Module) -> None:
        mods = list(self._modules.values())
        mods.insert(index, module)
        self._renumber(mods)

    def pop(self, index: int = -1) -> Module:
        mods = list(self._modules.values())
        m = mods.pop(index)
        self._renumber(mods)
        return m

    def __getitem__(self, idx: int | slice) -> "Module | ModuleList":
        mods = list(self._modules.values())
        if isinstance(idx, slice):
            return ModuleList(mods[idx])
        return mods[idx]

    def __setitem__(self, idx: int, module: Module) -> None:
        mods = list(self._modules.values())
        mods[idx] = module
        self._renumber(mods)

    def __delitem__(self, idx: int | slice) -> None:
        mods = list(self._modules.values())
        del mods[idx]
        self._renumber(mods)

    def __iadd__(self, modules: Iterable[Module]) -> "ModuleList":
        return self.extend(modules)

    def __add__(self, other: Iterable[Module]) -> "ModuleList":
        return ModuleList(list(self) + list(other))

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(list(self._modules.values()))


class ModuleDict(Module):
    """Modules by name, registered as children under their keys."""

    def __init__(self, modules: "dict[str, Module] | Iterable[tuple[str, Module]] | None" = None):
        super().__init__()
        if modules is not None:
            self.update(modules)

    def update(self, modules: "dict[str, Module] | Iterable[tuple[str, Module]]") -> None:
        """Adds (or replaces) modules from a mapping or from (key, module) pairs."""
        for k, m in (modules.items() if hasattr(modules, "items") else modules):
            self.add_module(str(k), m)

    def __getitem__(self, key: str) -> Module:
        return self._modules[key]

    def __setitem__(self, key: str, module: Module) -> None:
        self.add_module(key, module)

    def __delitem__(self, key: str) -> None:
        del self._modules[key]

    def pop(self, key: str) -> Module:
        return self._modules.pop(key)

    def clear(self) -> None:
        self._modules.clear()

    def __contains__(self, key: Any) -> bool:
        return key in self._modules

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._modules))

    def __len__(self) -> int:
        return len(self._modules)

    def keys(self):
        return self._modules.keys()

    def items(self):
        return self._modules.items()

    def values(self):
        return self._modules.values()
