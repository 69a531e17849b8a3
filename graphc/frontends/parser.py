"""Reads the printer's text form (`print(graph)`) back into a Graph.

The text holds every node, type, attribute and source note, so print -> parse -> print gives
the same text. It does not hold parameter values (they get zeros of their type unless given)
nor the values of constants with more than 4 elements (printed as ``<float32[10]>``): those must
be given by value name (`elided_constants(graph)` collects them), or parsing raises a ParseError
naming them; ``elided="zeros"`` fills them with zeros for display only, and lists their names in
``graph.meta["elided"]``.
"""
from __future__ import annotations

import re
from typing import Any, Mapping

import numpy as np

from ..ir.errors import GraphcError
from ..ir.graph import Graph, Value, ValueRange
from ..ir.roles import Role, parse_role
from ..ir.types import TensorType, canonical_dtype, parse_type


class ParseError(GraphcError, ValueError):
    """The text is not in the printer's form; the message names the line."""


_HEADER = re.compile(r"^graph (?P<name>.*?)\((?P<inputs>.*)\) \{$")
_PARAM = re.compile(r"^param %(?P<name>\S+): (?P<type>\w+\[[^\]]*\])(?P<role>(?: @\S+)?)$")
_UPDATES = re.compile(r"^(?P<out>.*) @updates\((?P<state>[^)]*)\)$")
_ROLE = re.compile(r"^(?P<type>.*?\])(?: @(?P<role>\w+)(?:\((?P<target>[^)]*)\))?)?$")
_RANGE = re.compile(r"^(?P<rest>.*?) @range\((?P<lo>-?\d+), ?(?P<hi>-?\d+)"
                    r"(?:, ?ignore=(?P<ignore>-?\d+))?\)$")
_NODE = re.compile(r"^%(?P<name>\S+): (?P<type>\w+\[[^\]]*\]) = (?P<op>\w+)\((?P<args>.*)\)$")
_SOURCE = re.compile(r"^\S+:\d+$")
_INT = re.compile(r"^-?\d+$")
_FLOAT = re.compile(r"^-?(\d+\.?\d*(e[-+]?\d+)?|\.\d+(e[-+]?\d+)?|inf|nan)$", re.IGNORECASE)
_ELIDED = re.compile(r"^<(?P<dtype>\w+)\[(?P<shape>[^\]]*)\]>$")
_OPEN, _CLOSE = "([<", ")]>"


class _Elided:
    """Placeholder for an array the printer elided; becomes zeros or a given value."""

    def __init__(self, dtype: str, shape: tuple[int, ...]):
        self.dtype, self.shape = dtype, shape


def split_top(text: str, sep: str = ",") -> list[str]:
    """Splits at `sep` outside brackets; drops empty trailing parts (as in '(3,)')."""
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch in _OPEN:
            depth += 1
        elif ch in _CLOSE:
            depth -= 1
        if ch == sep and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur).strip())
    if parts and parts[-1] == "":
        parts.pop()
    return parts


def _scalar(tok: str) -> Any:
    if tok == "True":
        return True
    if tok == "False":
        return False
    if tok == "None":
        return None
    if _INT.match(tok):
        return int(tok)
    if _FLOAT.match(tok):
        return float(tok)
    return tok  # a symbolic dim ("N", "8*N"), a dtype name or another word


def parse_attr(text: str) -> Any:
    """One attribute value in the printer's form: tuples (...), arrays [...] or <dtype[shape]>,
    numbers, True/False/None, or words (symbolic dims, dtype names)."""
    text = text.strip()
    if text.startswith("(") and text.endswith(")"):
        return tuple(parse_attr(p) for p in split_top(text[1:-1]))
    if text.startswith("[") and text.endswith("]"):
        items = [_scalar(p) for p in split_top(text[1:-1])]
        if any(isinstance(i, str) or i is None for i in items):
            raise ValueError(f"bad array {text!r}")
        return np.array(items)
    m = _ELIDED.match(text)
    if m:
        body = m["shape"].strip()
        shape = tuple(int(d) for d in body.split(",")) if body else ()
        return _Elided(canonical_dtype(m["dtype"]), shape)
    return _scalar(text)


def _notes(comment: str | None) -> tuple[str | None, str | None]:
    """(source, origin) from the note after '#': 'origin | source', 'source' or 'origin'."""
    if not comment:
        return None, None
    origin, bar, source = comment.rpartition(" | ")
    if bar and _SOURCE.match(source):
        return source, origin
    if _SOURCE.match(comment):
        return comment, None
    # the printer leaves out a source that the origin already names ('grad of exp @ m.py:3')
    tail = comment.rsplit(" ", 1)[-1]
    return (tail if _SOURCE.match(tail) else None), comment


def _coerce(v: Any, t: TensorType) -> Any:
    """An array-like attribute as an array of the node's output dtype (and shape, if it fits)."""
    if isinstance(v, (bool, int, float, np.ndarray)) and t.is_static:
        a = np.asarray(v).astype(t.dtype)
        return a.reshape(t.shape) if a.size == int(np.prod(t.shape, dtype=np.int64)) else a
    return v


class _Parser:
    def __init__(self, text: str, params: Mapping[str, np.ndarray] | None, elided: str = "error"):
        if elided not in ("error", "zeros"):
            raise ValueError(f"elided must be 'error' or 'zeros', got {elided!r}")
        self.lines = text.splitlines()
        self.given = dict(params or {})
        self.elided = elided
        self.missing: list[tuple[int, str, str]] = []  # (line, value name, type) of unfilled constants
        self.used: set[str] = set()
        self.lineno = 0

    def fail(self, msg: str) -> ParseError:
        line = self.lines[self.lineno - 1] if 0 < self.lineno <= len(self.lines) else ""
        return ParseError(f"line {self.lineno}: {msg}\n    {line.strip()}")

    def value(self, g: Graph, ref: str) -> Value:
        if not ref.startswith("%"):
            raise self.fail(f"expected a value like %name, got {ref!r}")
        if not g.has_value(ref[1:]):
            raise self.fail(f"value {ref} is used before it is defined")
        return g.value(ref[1:])

    def type(self, text: str) -> TensorType:
        try:
            return parse_type(text)
        except (ValueError, TypeError) as exc:
            raise self.fail(str(exc)) from None

    def parse(self) -> Graph:
        body = [(i + 1, ln.strip()) for i, ln in enumerate(self.lines) if ln.strip()]
        if not body:
            raise ParseError("empty text: expected 'graph NAME(...) {'")
        self.bodies: list[dict[str, Graph]] = []
        g, end = self._graph(body, 0)
        if end < len(body):
            self.lineno = body[end][0]
            raise self.fail("text after the closing '}'")
        unused = set(self.given) - self.used
        if unused:
            raise ParseError(f"values given for {', '.join(sorted(unused))}, which the text does not "
                             "declare as parameters or elided constants")
        if self.missing and self.elided == "error":
            listed = "\n".join(f"  line {ln}: %{name} = constant <{t}>" for ln, name, t in self.missing)
            raise ParseError(
                f"{len(self.missing)} constant(s) have values the text elides (more than 4 elements):"
                f"\n{listed}\ngive them by value name (params={{**graph.param_data(), "
                "**gc.elided_constants(graph)}), or pass elided='zeros' to read them as zeros "
                "(for display only: the graph then computes something else)")
        return g

    def _graph(self, body: list[tuple[int, str]], start: int) -> tuple[Graph, int]:
        """The graph whose header is body[start] (nested loop bodies included); the index after
        its closing '}'."""
        self.lineno, head = body[start]
        m = _HEADER.match(head)
        if not m:
            raise self.fail("expected 'graph NAME(%input: type, ...) {'")
        g = Graph(m["name"])
        for part in split_top(m["inputs"]):
            name, sep, t = part.partition(": ")
            if not sep or not name.startswith("%"):
                raise self.fail(f"bad input {part!r}: expected %name: type")
            self._new_name(g, name[1:])
            rng = None
            m_range = _RANGE.match(t.strip())
            if m_range:
                ignore = int(m_range["ignore"]) if m_range["ignore"] is not None else None
                t, rng = m_range["rest"], ValueRange(int(m_range["lo"]), int(m_range["hi"]),
                                                     ignore=ignore)
            t, role, target = self._typed_role(t, Role.DATA)
            try:
                g.add_input(name[1:], t, role, target, rng)
            except GraphcError as exc:
                raise self.fail(str(exc).split(": ", 1)[-1]) from None
        closed = False
        self.bodies.append({})
        i = start + 1
        while i < len(body):
            self.lineno, line = body[i]
            i += 1
            if line == "}":
                closed = True
                break
            if line.startswith("body @"):  # a loop body, printed above its first use
                name, eq, rest = line[len("body @"):].partition(" = ")
                if not eq:
                    raise self.fail("expected 'body @NAME = graph NAME(...) {'")
                sub, i = self._graph(body[:i - 1] + [(self.lineno, rest)] + body[i:], i - 1)
                self.bodies[-1][name] = sub
            elif line.startswith("param "):
                self._param(g, line)
            elif line.startswith("return"):
                self._return(g, line[len("return"):].strip())
            else:
                self._node(g, line[1:].lstrip() if line.startswith(">") else line)
        self.bodies.pop()
        if not closed:
            raise self.fail("missing the closing '}'")
        return g, i

    def _new_name(self, g: Graph, name: str) -> None:
        if g.has_value(name):
            raise self.fail(f"%{name} is defined twice")

    def _param(self, g: Graph, line: str) -> None:
        m = _PARAM.match(line)
        if not m:
            raise self.fail("expected 'param %name: type'")
        name = m["name"]
        t, role, _ = self._typed_role(m["type"] + m["role"], Role.PARAM)
        self._new_name(g, name)
        if not t.is_static:
            raise self.fail(f"parameter %{name} needs a static shape, got {t}")
        if name in self.given:
            data = np.asarray(self.given[name])
            if data.shape != t.shape or canonical_dtype(data.dtype) != t.dtype:
                raise self.fail(f"value given for %{name} has shape {data.shape} and dtype {data.dtype}, "
                                f"but the text declares {t}")
            self.used.add(name)
        else:
            data = np.zeros(t.shape, t.dtype)
        g.add_param(name, data, role)

    def _typed_role(self, text: str, default: Role) -> tuple[TensorType, Role, str | None]:
        """'f32[] @lr' -> (type, Role.LR, None); 'f32[N] @cotangent(y)' names its target."""
        m = _ROLE.match(text.strip())
        if not m:
            raise self.fail(f"expected 'type' or 'type @role', got {text.strip()!r}")
        try:
            role = parse_role(m["role"]) if m["role"] else default
        except ValueError as exc:
            raise self.fail(str(exc)) from None
        return self.type(m["type"]), role, m["target"]

    def _node(self, g: Graph, line: str) -> None:
        from ..ops.base import OPS
        text, _, comment = line.partition("  # ")
        if not comment and " # " in line:  # a short node line: no padding before '#'
            text, _, comment = line.partition(" # ")
        m = _NODE.match(text.strip())
        if not m:
            raise self.fail("expected '%name: type = op(%input, ..., attr=value)'")
        name, t, opname = m["name"], self.type(m["type"]), m["op"]
        self._new_name(g, name)
        if opname not in OPS:
            raise self.fail(f"unknown primitive {opname!r}")
        op = OPS[opname]
        inputs: list[Value] = []
        attrs: dict[str, Any] = {}
        for arg in split_top(m["args"]):
            key, eq, val = arg.partition("=")
            if arg.startswith("%"):
                if attrs:
                    raise self.fail(f"input {arg} after attributes")
                inputs.append(self.value(g, arg))
            elif eq and key.isidentifier() and val.strip().startswith("@"):
                ref = val.strip()[1:]
                if ref not in self.bodies[-1]:
                    raise self.fail(f"attribute {key}: no body @{ref} is defined above")
                attrs[key] = self.bodies[-1][ref]
            elif eq and key.isidentifier():
                try:
                    attrs[key] = parse_attr(val)
                except ValueError as exc:
                    raise self.fail(f"attribute {key}: {exc}") from None
            else:
                raise self.fail(f"bad argument {arg!r}")
        self._fill_elided(g, name, attrs)
        types = [v.type for v in inputs]
        inferred = self._infer(op, types, attrs, quiet=True)
        if inferred != t:
            # the text does not tell a 0-d array from a number, nor give a small array's shape or
            # dtype: read array-like attributes as arrays of the declared type, then infer again
            coerced = {k: _coerce(v, t) for k, v in attrs.items()}
            if self._infer(op, types, coerced, quiet=True) == t:
                attrs, inferred = coerced, t
            else:
                inferred = self._infer(op, types, attrs)  # raises naming the problem, if it fails
        if inferred != t:
            raise self.fail(f"%{name} is declared {t} but {opname} infers {inferred}")
        source, origin = _notes(comment.strip() or None)
        out = g.add_node(op, inputs, attrs, t, name=name, source=source, origin=origin)
        if out.name != name:
            raise self.fail(f"bad value name %{name}")

    def _fill_elided(self, g: Graph, name: str, attrs: dict[str, Any]) -> None:
        for k, v in attrs.items():
            if not isinstance(v, _Elided):
                continue
            if name in self.given:
                data = np.asarray(self.given[name])
                if data.shape != v.shape or canonical_dtype(data.dtype) != v.dtype:
                    raise self.fail(f"value given for %{name} has shape {data.shape} and dtype "
                                    f"{data.dtype}, but the text has {v.dtype}{list(v.shape)}")
                self.used.add(name)
                attrs[k] = data
            else:
                attrs[k] = np.zeros(v.shape, v.dtype)
                g.meta.setdefault("elided", []).append(name)
                self.missing.append((self.lineno, name, f"{v.dtype}{list(v.shape)}"))

    def _infer(self, op, types, attrs, quiet: bool = False) -> TensorType | None:
        try:
            return op.infer_checked(types, attrs)
        except Exception as exc:  # noqa: BLE001 - any failure means the line is inconsistent
            if quiet:
                return None
            raise self.fail(f"{op.name}: {exc}") from None

    def _return(self, g: Graph, text: str) -> None:
        for part in split_top(text):
            upd = _UPDATES.match(part)
            if upd:
                part = upd["out"]
            key, eq, ref = part.partition("=")
            if eq:
                key, v = key.strip(), self.value(g, ref.strip())
            else:
                v = self.value(g, part)
                key = v.name
            g.outputs[key] = v
            if upd:
                g.updates[key] = self.value(g, "%" + upd["state"]).name


def elided_constants(graph: Graph) -> dict[str, np.ndarray]:
    """The values `print(graph)` elides (constants of more than 4 elements), by value name.

    Pass them to `parse_graph` with the parameters for an exact round trip:
    ``parse_graph(str(g), params={**g.param_data(), **elided_constants(g)})``.
    """
    out = {n.output.name: v for n in graph.nodes for v in n.attrs.values()
           if isinstance(v, np.ndarray) and v.ndim and v.size > 4}
    for n in graph.nodes:  # loop bodies (scan) print their constants too
        for v in n.attrs.values():
            if isinstance(v, Graph):
                out.update(elided_constants(v))
    return out


def parse_graph(text: str, params: Mapping[str, np.ndarray] | None = None,
                elided: str = "error") -> Graph:
    """Reads the text form written by `print(graph)` back into a Graph.

    Args:
        text: the printed graph (lines marked with '>' by error messages are accepted too).
        params: initial values by parameter name; parameters not given get zeros of their type.
            Constants whose values the printer elided (more than 4 elements) are given here by
            their value name too (`elided_constants(graph)`).
        elided: what to do with an elided constant not in `params`: "error" (the default)
            raises a ParseError naming every such constant; "zeros" reads it as zeros (to
            display a graph, not to run it) and lists it in graph.meta["elided"].

    Returns:
        The Graph; printing it gives `text` back (up to blank lines and trailing spaces).

    Raises:
        ParseError: naming the line, for text not in the printer's form or inconsistent types,
            or naming the elided constants not given (unless elided="zeros").
        ValueError: `elided` is neither "error" nor "zeros".

    Example: ``g2 = parse_graph(str(g), params={**g.param_data(), **elided_constants(g)})``
    """
    return _Parser(text, params, elided).parse()
