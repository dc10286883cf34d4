"""Label and field selectors, with Kubernetes' syntax and matching rules.

``-l 'env in (prod, qa), tier!=db'`` on the command line, ``labelSelector`` in
a list or watch call, a Deployment's ``spec.selector`` and a Service's
``spec.selector`` all end up as the same immutable ``LabelSelector``, so the
API server, the watch cache and the controllers agree on what matches.
Field selectors are the small ``field=value`` language Kubernetes offers for a
few indexed fields (``spec.nodeName``, ``metadata.name``, ``status.phase``);
which fields a resource supports is the caller's business (``unsupported``).

The parser is a small tokenizer plus recursive descent, written from the
grammar rather than from Kubernetes' code; requirements are kept sorted by key
so that ``str()`` is canonical and selectors compare equal when they mean the
same thing.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from kubelite.api.meta.v1 import generated_pb2 as metav1
from kubelite.machinery.errors import FieldError, StatusError, bad_request
from kubelite.machinery.validation import is_qualified_name, is_valid_label_value

# Operators, spelled as in a selector string (``exists`` and ``!`` have no infix form).
EQUALS = "="
NOT_EQUALS = "!="
IN = "in"
NOT_IN = "notin"
EXISTS = "exists"
DOES_NOT_EXIST = "!"
GREATER_THAN = "gt"
LESS_THAN = "lt"

# matchExpressions operators (LabelSelector proto) -> ours
_PROTO_OPERATORS = {"In": IN, "NotIn": NOT_IN, "Exists": EXISTS, "DoesNotExist": DOES_NOT_EXIST}


@dataclass(frozen=True, slots=True)
class Requirement:
    """One condition on one label key."""

    key: str
    operator: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        op = self.operator
        if op == EXISTS:
            return self.key in labels
        if op == DOES_NOT_EXIST:
            return self.key not in labels
        value = labels.get(self.key)
        if op in (EQUALS, IN):
            return value is not None and value in self.values
        if op in (NOT_EQUALS, NOT_IN):
            # As in Kubernetes, an object without the label satisfies "!=" and "notin".
            return value is None or value not in self.values
        if value is None:
            return False
        try:
            have, want = int(value), int(self.values[0])
        except ValueError:
            return False
        return have > want if op == GREATER_THAN else have < want

    def exact_values(self) -> tuple[str, ...] | None:
        """The values a matching object must have for this key, when the set is closed (= and in)."""
        return self.values if self.operator in (EQUALS, IN) else None

    def __str__(self) -> str:
        op = self.operator
        if op == EXISTS:
            return self.key
        if op == DOES_NOT_EXIST:
            return f"!{self.key}"
        if op in (IN, NOT_IN):
            return f"{self.key} {op} ({','.join(self.values)})"
        if op == GREATER_THAN:
            return f"{self.key}>{self.values[0]}"
        if op == LESS_THAN:
            return f"{self.key}<{self.values[0]}"
        return f"{self.key}{op}{self.values[0]}"


@dataclass(frozen=True, slots=True)
class LabelSelector:
    """A conjunction of requirements. The empty selector matches everything.

    ``LabelSelector.nothing()`` matches no object: it stands for an absent
    selector where Kubernetes treats absence as "select nothing" (a
    Deployment or ReplicaSet without selector must not adopt every pod).
    """

    requirements: tuple[Requirement, ...] = ()
    matches_nothing: bool = False

    @classmethod
    def nothing(cls) -> LabelSelector:
        return cls((), True)

    @property
    def empty(self) -> bool:
        return not self.requirements and not self.matches_nothing

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.matches_nothing:
            return False
        return all(r.matches(labels) for r in self.requirements)

    def requires_exact(self, key: str) -> tuple[str, ...] | None:
        """The closed set of values a matching object may have for ``key``, if the selector pins one."""
        for r in self.requirements:
            if r.key == key and (values := r.exact_values()) is not None:
                return values
        return None

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


def _make(requirements: Iterable[Requirement]) -> LabelSelector:
    return LabelSelector(tuple(sorted(requirements, key=lambda r: (r.key, r.operator, r.values))))


def _check_requirement(key: str, op: str, values: list[str], path: str) -> list[FieldError]:
    errs = [FieldError("FieldValueInvalid", f"{path}.key", m, key) for m in is_qualified_name(key)]
    if op in (IN, NOT_IN):
        if not values:
            errs.append(FieldError("FieldValueRequired", f"{path}.values",
                                   f"must be specified when the operator is '{op}'"))
    elif op in (EQUALS, NOT_EQUALS):
        if len(values) != 1:
            errs.append(FieldError("FieldValueInvalid", f"{path}.values",
                                   f"exactly one value is required for '{op}'", len(values)))
    elif op in (EXISTS, DOES_NOT_EXIST):
        if values:
            errs.append(FieldError("FieldValueForbidden", f"{path}.values",
                                   "may not be specified when the operator is 'Exists' or 'DoesNotExist'"))
    elif op in (GREATER_THAN, LESS_THAN):
        if len(values) != 1:
            errs.append(FieldError("FieldValueInvalid", f"{path}.values",
                                   f"exactly one value is required for '{op}'", len(values)))
        for v in values:
            try:
                int(v)
            except ValueError:
                errs.append(FieldError("FieldValueInvalid", f"{path}.values", "must be an integer", v))
        return errs
    for i, v in enumerate(values):
        vpath = f"{path}.values[{i}]"
        errs.extend(FieldError("FieldValueInvalid", vpath, m, v) for m in is_valid_label_value(v))
    return errs


def requirement(key: str, operator: str, values: Iterable[str] = ()) -> Requirement:
    """A validated requirement; raises BadRequest like the parser."""
    vals = sorted(set(values))
    errs = _check_requirement(key, operator, vals, "requirement")
    if errs:
        raise bad_request(f"invalid label selector requirement: {'; '.join(str(e) for e in errs)}", errs)
    return Requirement(key, operator, tuple(vals))


def from_set(labels: Mapping[str, str]) -> LabelSelector:
    """Every label equal: how a Service's ``spec.selector`` map selects pods."""
    return _make(Requirement(k, EQUALS, (v,)) for k, v in labels.items())


# --------------------------------------------------------------------------------------------
# Selector strings
# --------------------------------------------------------------------------------------------

_SPECIAL = frozenset("!=,()<>")
_KEYWORDS = frozenset({IN, NOT_IN})


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "id", "kw", an operator or punctuation string, or "eof"
    text: str
    pos: int


def _tokenize(s: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(s)
    while i < n:
        c = s[i]
        if c.isspace():
            i += 1
            continue
        if c in _SPECIAL:
            two = s[i:i + 2]
            if two in ("==", "!="):
                tokens.append(_Token(two, two, i))
                i += 2
            else:
                tokens.append(_Token(c, c, i))
                i += 1
            continue
        start = i
        while i < n and not s[i].isspace() and s[i] not in _SPECIAL:
            i += 1
        word = s[start:i]
        tokens.append(_Token("kw" if word in _KEYWORDS else "id", word, start))
    tokens.append(_Token("eof", "", n))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.i = 0

    def peek(self) -> _Token:
        return self.tokens[self.i]

    def take(self) -> _Token:
        tok = self.tokens[self.i]
        if tok.kind != "eof":
            self.i += 1
        return tok

    def fail(self, tok: _Token, problem: str) -> StatusError:
        where = f"at position {tok.pos}" if tok.kind != "eof" else "at the end"
        return bad_request(f"unable to parse label selector {self.text!r} ({where}): {problem}")

    def describe(self, tok: _Token) -> str:
        return "end of string" if tok.kind == "eof" else repr(tok.text)

    def parse(self) -> list[Requirement]:
        reqs: list[Requirement] = []
        if self.peek().kind == "eof":
            return reqs
        while True:
            reqs.append(self.requirement())
            tok = self.take()
            if tok.kind == "eof":
                return reqs
            if tok.kind != ",":
                raise self.fail(tok, f"expected ',' or end of string, found {self.describe(tok)}")

    def requirement(self) -> Requirement:
        tok = self.take()
        if tok.kind == "!":
            key = self.take()
            if key.kind != "id":
                raise self.fail(key, f"expected a label key after '!', found {self.describe(key)}")
            return self.checked(key, DOES_NOT_EXIST, [])
        if tok.kind != "id":
            raise self.fail(tok, f"expected a label key, found {self.describe(tok)}")
        op = self.peek()
        if op.kind in (",", "eof"):
            return self.checked(tok, EXISTS, [])
        self.take()
        if op.kind in ("=", "=="):
            return self.checked(tok, EQUALS, [self.single_value()])
        if op.kind == "!=":
            return self.checked(tok, NOT_EQUALS, [self.single_value()])
        if op.kind in (">", "<"):
            value = self.take()
            if value.kind != "id":
                raise self.fail(value, f"expected an integer after '{op.text}', found {self.describe(value)}")
            return self.checked(tok, GREATER_THAN if op.kind == ">" else LESS_THAN, [value.text])
        if op.kind == "kw":
            return self.checked(tok, op.text, self.value_set())
        raise self.fail(op, f"expected an operator (=, ==, !=, in, notin) after {tok.text!r}, "
                            f"found {self.describe(op)}")

    def single_value(self) -> str:
        tok = self.peek()
        if tok.kind in (",", "eof"):
            return ""  # `key=` selects an empty value, as in Kubernetes
        if tok.kind in ("id", "kw"):
            self.take()
            return tok.text
        raise self.fail(tok, f"expected a label value, found {self.describe(tok)}")

    def value_set(self) -> list[str]:
        tok = self.take()
        if tok.kind != "(":
            raise self.fail(tok, f"expected '(' to start a set of values, found {self.describe(tok)}")
        values: list[str] = []
        while True:
            tok = self.take()
            if tok.kind in ("id", "kw"):
                values.append(tok.text)
                tok = self.take()
            elif tok.kind == ")" and not values:
                raise self.fail(tok, "a set of values may not be empty")
            else:
                raise self.fail(tok, f"expected a label value, found {self.describe(tok)}")
            if tok.kind == ")":
                return values
            if tok.kind != ",":
                raise self.fail(tok, f"expected ',' or ')' in a set of values, found {self.describe(tok)}")

    def checked(self, key: _Token, op: str, values: list[str]) -> Requirement:
        vals = sorted(set(values))
        errs = _check_requirement(key.text, op, vals, "selector")
        if errs:
            reasons = "; ".join(e.detail for e in errs)
            raise self.fail(key, f"invalid requirement on key {key.text!r}: {reasons}")
        return Requirement(key.text, op, tuple(vals))


def parse_label_selector(s: str) -> LabelSelector:
    """Parses Kubernetes label selector syntax; raises StatusError (BadRequest) on bad input."""
    return _make(_Parser(s).parse())


def label_selector_errors(sel: metav1.LabelSelector, path: str) -> list[FieldError]:
    """Problems in a LabelSelector object (for the API server's validation)."""
    errs: list[FieldError] = []
    for key, value in sel.match_labels.items():
        lpath = f"{path}.matchLabels"
        errs.extend(FieldError("FieldValueInvalid", lpath, m, key) for m in is_qualified_name(key))
        errs.extend(FieldError("FieldValueInvalid", lpath, m, value) for m in is_valid_label_value(value))
    for i, expr in enumerate(sel.match_expressions):
        epath = f"{path}.matchExpressions[{i}]"
        op = _PROTO_OPERATORS.get(expr.operator)
        if op is None:
            supported = 'supported values: "DoesNotExist", "Exists", "In", "NotIn"'
            errs.append(FieldError("FieldValueNotSupported", f"{epath}.operator", supported, expr.operator))
            continue
        errs.extend(_check_requirement(expr.key, op, list(expr.values), epath))
    return errs


def from_label_selector_proto(sel: metav1.LabelSelector | None) -> LabelSelector:
    """A LabelSelector object as a selector. ``None`` (absent) selects nothing; ``{}`` selects everything."""
    if sel is None:
        return LabelSelector.nothing()
    errs = label_selector_errors(sel, "selector")
    if errs:
        raise bad_request("invalid label selector: " + ", ".join(str(e) for e in errs), errs)
    reqs = [Requirement(k, EQUALS, (v,)) for k, v in sel.match_labels.items()]
    reqs.extend(
        Requirement(e.key, _PROTO_OPERATORS[e.operator], tuple(sorted(set(e.values))))
        for e in sel.match_expressions
    )
    return _make(reqs)


# --------------------------------------------------------------------------------------------
# Field selectors
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FieldRequirement:
    field: str
    operator: str  # EQUALS or NOT_EQUALS
    value: str

    def matches(self, fields: Mapping[str, str]) -> bool:
        # A field the object does not have reads as "", as in Kubernetes' fields.Set.
        have = fields.get(self.field, "")
        return have == self.value if self.operator == EQUALS else have != self.value

    def __str__(self) -> str:
        return f"{self.field}{self.operator}{_escape(self.value)}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")


@dataclass(frozen=True, slots=True)
class FieldSelector:
    requirements: tuple[FieldRequirement, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.requirements

    def matches(self, fields: Mapping[str, str]) -> bool:
        return all(r.matches(fields) for r in self.requirements)

    def requires(self, field: str) -> str | None:
        """The exact value ``field`` must have, if the selector pins one (for index lookups)."""
        for r in self.requirements:
            if r.field == field and r.operator == EQUALS:
                return r.value
        return None

    def fields(self) -> list[str]:
        return [r.field for r in self.requirements]

    def unsupported(self, allowed: Collection[str]) -> list[str]:
        """Fields used by the selector that are not in ``allowed``, in order, without repeats."""
        out: list[str] = []
        for r in self.requirements:
            if r.field not in allowed and r.field not in out:
                out.append(r.field)
        return out

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


def _split_unescaped(s: str, sep: str) -> list[str]:
    parts: list[str] = []
    cur: list[str] = []
    i = 0
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s):
            cur.append(s[i:i + 2])
            i += 2
            continue
        if c == sep:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    parts.append("".join(cur))
    return parts


def _unescape(value: str, whole: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(value):
        c = value[i]
        if c == "\\":
            if i + 1 >= len(value) or value[i + 1] not in "\\,=":
                raise bad_request(f"invalid field selector {whole!r}: invalid escape sequence in {value!r}")
            out.append(value[i + 1])
            i += 2
            continue
        if c in ",=":
            raise bad_request(f"invalid field selector {whole!r}: unescaped {c!r} in value {value!r}")
        out.append(c)
        i += 1
    return "".join(out)


def parse_field_selector(s: str) -> FieldSelector:
    """Parses ``a=b,c!=d``; ``\\,``, ``\\=`` and ``\\\\`` escape those characters in values."""
    if not s.strip():
        return FieldSelector()
    reqs: list[FieldRequirement] = []
    for term in _split_unescaped(s, ","):
        reqs.append(_parse_field_term(term, s))
    return FieldSelector(tuple(reqs))


def _parse_field_term(term: str, whole: str) -> FieldRequirement:
    # The first unescaped operator splits the term; values may contain escaped '=' only.
    i = 0
    while i < len(term):
        if term[i] == "\\":
            i += 2
            continue
        for op in ("!=", "==", "="):
            if term.startswith(op, i):
                field = term[:i].strip()
                if not field:
                    raise bad_request(f"invalid field selector {whole!r}: missing field name in {term!r}")
                if "\\" in field:
                    raise bad_request(f"invalid field selector {whole!r}: field names may not contain '\\'")
                value = _unescape(term[i + len(op):].strip(), whole)
                return FieldRequirement(field, NOT_EQUALS if op == "!=" else EQUALS, value)
        i += 1
    raise bad_request(f"invalid field selector {whole!r}: {term.strip()!r} is not of the form "
                      "field=value, field==value or field!=value")


def field_selector(**fields: str) -> FieldSelector:
    """An all-equal field selector, for code that builds one (``field_selector(**{"spec.nodeName": n})``)."""
    return FieldSelector(tuple(FieldRequirement(k, EQUALS, v) for k, v in fields.items()))
