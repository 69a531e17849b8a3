"""Architecture rules that a review would otherwise have to re-check by hand (issue 9)."""
from __future__ import annotations

import ast
import re
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "graphc"


def _sources(*parts: str):
    for sub in parts or ("",):
        yield from sorted((PKG / sub).rglob("*.py"))


def test_role_names_are_spelled_only_in_the_roles_module():
    pattern = re.compile(r'"state:"|"rng_step"|"rng_seed"|"new\.')
    hits = [f"{p.relative_to(PKG)}:{i}" for p in _sources() for i, line in
            enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert all(h.startswith("ir/roles.py:") for h in hits), hits


def test_passes_backends_and_runtime_ask_traits_not_op_names():
    pattern = re.compile(r"op\.name ==|op\.name in")
    hits = [f"{p.relative_to(PKG)}:{i}" for p in _sources("passes", "backends", "runtime", "inspect")
            for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert hits == []


def test_no_module_reads_graph_meta_to_decide_anything():
    # Graph.meta is for free-form annotations; reading a key back would make it a side channel
    hits = []
    for p in _sources():
        for node in ast.walk(ast.parse(p.read_text())):
            meta = None
            if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load):
                meta = node.value
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                    node.func.attr in ("get", "pop", "__getitem__"):
                meta = node.func.value
            if isinstance(meta, ast.Attribute) and meta.attr == "meta":
                hits.append(f"{p.relative_to(PKG)}:{node.lineno}")
    assert hits == []
