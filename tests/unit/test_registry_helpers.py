"""Shared builders for the registry strategy tests (no tests here): objects from manifests, strategies by kind."""

from __future__ import annotations

from typing import Any, TypeVar

from google.protobuf.message import Message

from kubelite.apiserver.registry.all import build_strategies
from kubelite.apiserver.registry.strategy import Strategy
from kubelite.machinery import codec
from kubelite.machinery.errors import FieldError
from kubelite.machinery.kinds import SCHEME
from kubelite.machinery.scheme import ResourceType

M = TypeVar("M", bound=Message)

STRATEGIES = build_strategies(SCHEME)


def strategy(rt: ResourceType) -> Strategy:
    return STRATEGIES[(rt.group, rt.resource)]


def load(data: dict[str, Any], message_type: type[M]) -> M:
    return codec.decode_into(data, message_type)


def create(rt: ResourceType, obj: M) -> list[FieldError]:
    """What the store does on create before writing: prepare, default, validate."""
    s = strategy(rt)
    s.prepare_for_create(obj)
    s.default(obj)
    return s.validate(obj)


def paths(errs: list[FieldError]) -> list[str]:
    return [e.field for e in errs]


def find(errs: list[FieldError], path: str) -> FieldError:
    for e in errs:
        if e.field == path:
            return e
    raise AssertionError(f"no error at {path}: {[str(e) for e in errs]}")
