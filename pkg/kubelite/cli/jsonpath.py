"""kubectl's JSONPath templates (``-o jsonpath=...``, custom-columns), parsed and run over JSON data.

The dialect is client-go's ``util/jsonpath``, the subset kubectl users write:

- text outside ``{}`` is printed as is; ``{"\\n"}`` / ``{'\\t'}`` are quoted literals;
- ``.a.b``, ``['a']``, ``.labels.app\\.kubernetes\\.io/name`` (escaped dots), ``$`` and ``@`` for
  the current object; ``['b.c']`` is the key "b.c" where the object has one, else the path ``.b.c``
  as client-go reads it (so its documented ``['metadata.name', 'status.capacity']`` works too);
- ``[0]``, ``[-1]``, ``[1:3]``, ``[::2]``, ``[*]``, ``.*``, unions ``[0,2]`` / ``['a','b']``;
- ``..name`` (recursive descent);
- filters ``[?(@.type=="Ready")]`` with ==, !=, <, >, <=, >= and existence ``[?(@.x)]``;
- ``{range .items[*]}...{end}``.

Each ``{...}`` yields a list of values printed joined by one space; strings print
raw, numbers and booleans as in Go, maps and lists as compact JSON. A missing
key is an error unless missing keys are allowed (kubectl's default), in which
case it yields nothing. An index out of range is an error either way, as in kubectl.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any


class ParseError(Exception):
    """The template is malformed; the message is client-go's reason (``unterminated array``)."""


class ExecuteError(Exception):
    """The template does not fit the data (``x is not found``, ``array index out of bounds: ...``)."""


# --- the tree ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Field:
    name: str


@dataclass(frozen=True)
class Key:
    """``['b.c']``: the key "b.c" where an object has it, else the path ``.b.c`` (kubectl's reading)."""

    name: str
    path: tuple[Node, ...]


@dataclass(frozen=True)
class Wildcard:
    pass


@dataclass(frozen=True)
class Recursive:
    pass


@dataclass(frozen=True)
class Slice:
    start: int | None
    end: int | None
    step: int | None
    end_derived: bool = False  # [i] means [i:i+1]; a negative i wraps the end too


@dataclass(frozen=True)
class Literal:
    value: bool | int | float


@dataclass(frozen=True)
class Union:
    branches: tuple[tuple[Node, ...], ...]


@dataclass(frozen=True)
class Filter:
    left: tuple[Node, ...]
    op: str  # "exists" or a comparison
    right: tuple[Node, ...]


Node = Text | Field | Key | Wildcard | Recursive | Slice | Literal | Union | Filter


@dataclass
class Range:
    path: tuple[Node, ...]
    body: list[Item] = field(default_factory=list)


Item = Text | tuple[Node, ...] | Range  # literal text, one {action}, or a range block

# --- parsing ----------------------------------------------------------------------------------------------

_TERMINATORS = set(" \t\r\n.,[]$@{}")
_SLICE = re.compile(r"^(-?\d*)(:-?\d*)?(:-?\d*)?$")
_DICT_KEY = re.compile(r"""^'([^']*)'$|^"([^"]*)"$""")
_FILTER = re.compile(r"^([^!<>=]+)([!<>=]+)(.+?)$")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_OPERATORS = ("==", "!=", "<", ">", "<=", ">=")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'", "0": "\0", "a": "\a",
            "b": "\b", "f": "\f", "v": "\v"}


def _unquote(body: str, quoted: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        nxt = body[i + 1] if i + 1 < len(body) else ""
        if nxt in _ESCAPES:
            out.append(_ESCAPES[nxt])
            i += 2
        elif nxt in ("x", "u", "U"):
            width = {"x": 2, "u": 4, "U": 8}[nxt]
            digits = body[i + 2:i + 2 + width]
            if len(digits) != width or not all(d in "0123456789abcdefABCDEF" for d in digits):
                raise ParseError(f"unquote string {quoted} error invalid syntax")
            out.append(chr(int(digits, 16)))
            i += 2 + width
        else:
            raise ParseError(f"unquote string {quoted} error invalid syntax")
    return "".join(out)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def template(self) -> list[Item]:
        """Top level: literal text and {actions}; {range}...{end} blocks nest."""
        root: list[Item] = []
        stack: list[list[Item]] = [root]
        while self.pos < len(self.text):
            brace = self.text.find("{", self.pos)
            if brace < 0:
                stack[-1].append(Text(self.text[self.pos:]))
                break
            if brace > self.pos:
                stack[-1].append(Text(self.text[self.pos:brace]))
            self.pos = brace + 1
            nodes, keyword = self.action()
            if keyword == "range":
                block = Range(tuple(nodes))
                stack[-1].append(block)
                stack.append(block.body)
            elif keyword == "end":
                if len(stack) == 1:
                    raise ParseError("not in range, nothing to end")
                stack.pop()
            elif nodes:
                stack[-1].append(tuple(nodes))
        return root  # an unclosed range runs to the end of the template, as in kubectl

    def action(self, closing: str = "}") -> tuple[list[Node], str]:
        """The nodes of one action up to ``closing`` ("" = end of text), and its keyword (range/end) if any."""
        nodes: list[Node] = []
        keyword = ""
        text = self.text
        while True:
            if self.pos >= len(text) or text[self.pos] == "\n":
                if closing:
                    raise ParseError("unclosed action")
                return nodes, keyword
            rest = text[self.pos:]
            c = rest[0]
            if closing and c == closing:
                self.pos += 1
                return nodes, keyword
            if rest.startswith("[?("):
                nodes.append(self.filter())
            elif rest.startswith(".."):
                if nodes and isinstance(nodes[-1], Recursive):
                    raise ParseError("invalid multiple recursive descent")
                nodes.append(Recursive())
                self.pos += 2
                if self.pos < len(text) and (text[self.pos].isalnum() or text[self.pos] == "_"):
                    nodes.append(self.field())
            elif c == ".":
                self.pos += 1
                nodes.append(self.field())
            elif c in " \t\r@$":
                self.pos += 1
            elif c == "[":
                nodes.extend(self.array())
            elif c in "\"'":
                nodes.append(self.quote(c))
            elif c in "+-" or c.isdigit():
                nodes.append(self.number())
            elif c.isalpha() or c == "_":
                word = re.match(r"\w+", rest)
                assert word is not None
                self.pos += word.end()
                name = word.group()
                if name in ("true", "false"):
                    nodes.append(Literal(name == "true"))
                elif name in ("range", "end") and not nodes and not keyword:
                    keyword = name
                else:
                    raise ParseError(f"unrecognized identifier {name}")
            else:
                raise ParseError(f"unrecognized character in action: U+{ord(c):04X} {c!r}")

    def field(self) -> Node:
        start = self.pos
        text = self.text
        while self.pos < len(text) and text[self.pos] not in _TERMINATORS:
            self.pos += 2 if text[self.pos] == "\\" else 1
        self.pos = min(self.pos, len(text))
        name = text[start:self.pos].replace("\\", "")
        if name == "*":
            return Wildcard()
        return Field(name)

    def array(self) -> list[Node]:
        end = self.text.find("]", self.pos)
        newline = self.text.find("\n", self.pos)
        if end < 0 or 0 <= newline < end:
            raise ParseError("unterminated array")
        inner = self.text[self.pos + 1:end]
        self.pos = end + 1
        if inner == "*":
            inner = ":"
        parts = inner.split(",")
        if len(parts) > 1:
            return [Union(tuple(tuple(_nodes(f"[{p.strip()}]")) for p in parts))]
        key = _DICT_KEY.match(inner)
        if key:
            name = key.group(1) if key.group(1) is not None else key.group(2)
            path = _nodes("." + name)
            return [Key(name, tuple(path))] if len(path) > 1 else [Field(name)]
        m = _SLICE.match(inner)
        if not m:
            raise ParseError(f"invalid array index {inner}")
        start = int(m.group(1)) if m.group(1) not in ("", "-") else None
        if m.group(1) == "-":
            raise ParseError(f"array index {m.group(1)} is not a number")
        if m.group(2) is None:  # [i]
            if start is None:
                raise ParseError(f"invalid array index {inner}")
            return [Slice(start, start + 1, None, end_derived=True)]
        stop = _slice_param(m.group(2))
        step = _slice_param(m.group(3) or "")
        return [Slice(start, stop, step)]

    def filter(self) -> Filter:
        self.pos += 3
        start = self.pos
        text = self.text
        quote = ""
        while True:
            if self.pos >= len(text) or text[self.pos] == "\n":
                raise ParseError("unterminated filter")
            c = text[self.pos]
            self.pos += 1
            if quote:
                if c == "\\":
                    self.pos += 1
                elif c == quote:
                    quote = ""
            elif c in "\"'":
                quote = c
            elif c == ")":
                break
        if self.pos >= len(text) or text[self.pos] != "]":
            raise ParseError("unclosed array expect ]")
        expr = text[start:self.pos - 1]
        self.pos += 1
        m = _FILTER.match(expr)
        if not m:
            return Filter(tuple(_nodes(expr)), "exists", ())
        op = m.group(2)
        if op not in _OPERATORS:
            raise ParseError(f"unrecognized filter operator {op}")
        return Filter(tuple(_nodes(m.group(1))), op, tuple(_nodes(m.group(3))))

    def quote(self, mark: str) -> Text:
        start = self.pos
        self.pos += 1
        text = self.text
        while True:
            if self.pos >= len(text) or text[self.pos] == "\n":
                raise ParseError("unterminated quoted string")
            c = text[self.pos]
            self.pos += 1
            if c == "\\":
                self.pos += 1
            elif c == mark:
                break
        quoted = text[start:self.pos]
        return Text(_unquote(quoted[1:-1], quoted))

    def number(self) -> Literal:
        m = _NUMBER.match(self.text, self.pos)
        if not m:
            raise ParseError(f"cannot parse number {self.text[self.pos:self.pos + 1]}")
        self.pos = m.end()
        word = m.group()
        if re.fullmatch(r"[+-]?\d+", word):
            return Literal(int(word))
        return Literal(float(word))


def _slice_param(text: str) -> int | None:
    digits = text[1:]  # after the colon
    if digits in ("", "-"):
        if digits == "-":
            raise ParseError("array index - is not a number")
        return None
    return int(digits)


def _nodes(text: str) -> list[Node]:
    """An action's nodes from text without braces (union members, filter operands)."""
    parser = _Parser(text)
    nodes, keyword = parser.action(closing="")
    if keyword:
        raise ParseError(f"unrecognized identifier {keyword}")
    return nodes


# --- evaluation -------------------------------------------------------------------------------------------


def _go_type(value: Any) -> str:
    if isinstance(value, dict):
        return "map[string]interface {}"
    if isinstance(value, list):
        return "[]interface {}"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int64"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, str):
        return "string"
    return "interface {}"


def _children(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [value[k] for k in sorted(value)]  # Go's map order is random; sorted is stable
    if isinstance(value, list):
        return list(value)
    return []


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    raise ExecuteError("invalid type for comparison")


def _compare(left: Any, op: str, right: Any) -> bool:
    kl, kr = _kind(left), _kind(right)
    if kl != kr:
        raise ExecuteError("incompatible types for comparison")
    if op == "==":
        return bool(left == right)
    if op == "!=":
        return bool(left != right)
    if kl == "bool":
        raise ExecuteError("invalid type for comparison")
    return bool({"<": left < right, ">": left > right, "<=": left <= right, ">=": left >= right}[op])


class _Evaluator:
    def __init__(self, allow_missing: bool) -> None:
        self.allow_missing = allow_missing

    def items(self, items: list[Item], data: Any) -> list[list[Any]]:
        groups: list[list[Any]] = []
        for item in items:
            if isinstance(item, Text):
                groups.append([item.text])
            elif isinstance(item, Range):
                for value in self.path(item.path, [data]):
                    groups.extend(self.items(item.body, value))
            else:
                groups.append(self.path(item, [data]))
        return groups

    def path(self, nodes: tuple[Node, ...], values: list[Any]) -> list[Any]:
        for node in nodes:
            values = self.step(node, values)
        return values

    def step(self, node: Node, values: list[Any]) -> list[Any]:
        if isinstance(node, Text):
            return [node.text]
        if isinstance(node, Literal):
            return [node.value for _ in values]
        if isinstance(node, Field):
            if not node.name:  # a bare "." is the current object
                return values
            found = [v[node.name] for v in values if isinstance(v, dict) and node.name in v]
            if values and not found and not self.allow_missing:
                raise ExecuteError(f"{node.name} is not found")
            return found
        if isinstance(node, Key):
            out: list[Any] = []
            for v in values:
                if isinstance(v, dict) and node.name in v:
                    out.append(v[node.name])
                else:
                    out.extend(self.path(node.path, [v]))
            return out
        if isinstance(node, Wildcard):
            return [c for v in values for c in _children(v)]
        if isinstance(node, Recursive):
            return self.recursive(values)
        if isinstance(node, Slice):
            return [c for v in values if v is not None for c in self.slice(node, v)]
        if isinstance(node, Union):
            return [r for branch in node.branches for r in self.path(branch, values)]
        return [item for v in values for item in self.filter(node, v)]

    def recursive(self, values: list[Any]) -> list[Any]:
        out: list[Any] = []
        for v in values:
            children = _children(v)
            if children:
                out.append(v)
                out.extend(self.recursive(children))
        return out

    def slice(self, node: Slice, value: Any) -> list[Any]:
        if not isinstance(value, list):
            raise ExecuteError(f"{_go_type(value)} is not array or slice")
        n = len(value)
        start = 0 if node.start is None else node.start
        if start < 0:
            start += n
        end = n if node.end is None else node.end
        if end < 0 or (end == 0 and node.end_derived):
            end += n
        if end == start:
            return []
        if start >= n or start < 0:
            raise ExecuteError(f"array index out of bounds: index {start}, length {n}")
        if end > n or end < 0:
            raise ExecuteError(f"array index out of bounds: index {end - 1}, length {n}")
        if start > end:
            raise ExecuteError(f"starting index {start} is greater than ending index {end}")
        step = 1 if node.step is None else node.step
        if step <= 0:
            raise ExecuteError("step must be > 0")
        return value[start:end:step]

    def filter(self, node: Filter, value: Any) -> list[Any]:
        if not isinstance(value, list):
            raise ExecuteError(f"{go_sprint(value)} is not array or slice and cannot be filtered")
        kept = []
        for item in value:
            if node.op == "exists":
                try:
                    if self.path(node.left, [item]):
                        kept.append(item)
                except ExecuteError:
                    pass
                continue
            lefts = self.path(node.left, [item])
            if not lefts:
                continue
            rights = self.path(node.right, [item])
            if not rights:
                continue
            if len(lefts) > 1 or len(rights) > 1:
                raise ExecuteError("can only compare one element at a time")
            if _compare(lefts[0], node.op, rights[0]):
                kept.append(item)
        return kept


# --- printing ---------------------------------------------------------------------------------------------


def go_float(value: float) -> str:
    """A float as Go's fmt prints it (%v: shortest digits, exponent form below 1e-4 or from 1e6)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    d = Decimal(repr(value)).normalize()
    sign, digits, exponent = d.as_tuple()
    assert isinstance(exponent, int)
    exp10 = len(digits) - 1 + exponent
    if exp10 < -4 or exp10 >= 6:
        mantissa = str(digits[0]) + ("." + "".join(map(str, digits[1:])) if len(digits) > 1 else "")
        return f"{'-' if sign else ''}{mantissa}e{'-' if exp10 < 0 else '+'}{abs(exp10):02d}"
    return format(d, "f")


def go_json(value: Any) -> str:
    """Compact JSON as Go's json.Marshal writes it (sorted keys, HTML characters escaped)."""
    text = json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                          ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escaped)
    return text


def go_sprint(value: Any) -> str:
    """A value as Go's fmt.Sprint shows it: ``map[k:v]``, ``[a b]``, ``<nil>`` (custom-columns cells)."""
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{go_sprint(value[k])}" for k in sorted(value)) + "]"
    if isinstance(value, list):
        return "[" + " ".join(go_sprint(v) for v in value) + "]"
    if value is None:
        return "<nil>"
    return to_text(value)


def to_text(value: Any) -> str:
    """How -o jsonpath prints one result: strings raw, maps and lists as compact JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return go_float(value)
    if isinstance(value, int):
        return str(value)
    if value is None:
        return "null"
    return go_json(value)


class JSONPath:
    """A parsed template: ``JSONPath("{.metadata.name}").execute(obj)``."""

    def __init__(self, template: str) -> None:
        self.template = template
        self.items = _Parser(template).template()

    def find(self, data: Any, allow_missing: bool = True) -> list[list[Any]]:
        """The results, one list per literal text or {action} (range bodies once per element)."""
        return _Evaluator(allow_missing).items(self.items, data)

    def execute(self, data: Any, allow_missing: bool = True) -> str:
        return "".join(" ".join(to_text(v) for v in group) for group in self.find(data, allow_missing))


_RELAXED = re.compile(r"^\{\.?([^{}]+)\}$|^\.?([^{}]+)$")


def relaxed_expression(path: str) -> str:
    """kubectl's custom-columns leniency: ``.a.b``, ``a.b``, ``{a.b}`` and ``{.a.b}`` all mean ``{.a.b}``."""
    if not path:
        return path
    m = _RELAXED.match(path)
    if not m:
        raise ParseError("unexpected path string, expected a 'name1.name2' or '.name1.name2' or "
                         "'{name1.name2}' or '{.name1.name2}'")
    return "{." + (m.group(1) or m.group(2)) + "}"
