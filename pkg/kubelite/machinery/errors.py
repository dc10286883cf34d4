"""The one error type every kubelite boundary speaks: a Kubernetes-style Status.

Storage, gRPC and Docker errors are translated into StatusError where they
enter (``raise StatusError... from exc``), so that a client sees the same
reasons a Kubernetes user knows (NotFound, AlreadyExists, Conflict, Invalid,
Expired, ...). On the wire the status travels as gRPC trailing metadata next
to a matching gRPC code; see ``to_grpc_metadata`` / ``from_grpc_error``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import grpc

from kubelite.api.meta.v1 import generated_pb2 as metav1

STATUS_METADATA_KEY = "kubelite-status-bin"

# reason -> (HTTP code Kubernetes answers with, gRPC code we answer with)
_REASONS: dict[str, tuple[int, grpc.StatusCode]] = {
    "BadRequest": (400, grpc.StatusCode.INVALID_ARGUMENT),
    "Unauthorized": (401, grpc.StatusCode.UNAUTHENTICATED),
    "Forbidden": (403, grpc.StatusCode.PERMISSION_DENIED),
    "NotFound": (404, grpc.StatusCode.NOT_FOUND),
    "MethodNotAllowed": (405, grpc.StatusCode.UNIMPLEMENTED),
    "AlreadyExists": (409, grpc.StatusCode.ALREADY_EXISTS),
    "Conflict": (409, grpc.StatusCode.ABORTED),
    "Expired": (410, grpc.StatusCode.OUT_OF_RANGE),
    "RequestEntityTooLarge": (413, grpc.StatusCode.RESOURCE_EXHAUSTED),
    "UnsupportedMediaType": (415, grpc.StatusCode.INVALID_ARGUMENT),
    "Invalid": (422, grpc.StatusCode.INVALID_ARGUMENT),
    "TooManyRequests": (429, grpc.StatusCode.RESOURCE_EXHAUSTED),
    "InternalError": (500, grpc.StatusCode.INTERNAL),
    "ServiceUnavailable": (503, grpc.StatusCode.UNAVAILABLE),
    "Timeout": (504, grpc.StatusCode.DEADLINE_EXCEEDED),
}

# gRPC code -> reason, for failures that carry no Status (transport errors).
_GRPC_REASONS: dict[grpc.StatusCode, str] = {
    grpc.StatusCode.UNAVAILABLE: "ServiceUnavailable",
    grpc.StatusCode.DEADLINE_EXCEEDED: "Timeout",
    grpc.StatusCode.NOT_FOUND: "NotFound",
    grpc.StatusCode.ALREADY_EXISTS: "AlreadyExists",
    grpc.StatusCode.ABORTED: "Conflict",
    grpc.StatusCode.OUT_OF_RANGE: "Expired",
    grpc.StatusCode.PERMISSION_DENIED: "Forbidden",
    grpc.StatusCode.UNAUTHENTICATED: "Unauthorized",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "RequestEntityTooLarge",
    grpc.StatusCode.INVALID_ARGUMENT: "BadRequest",
    grpc.StatusCode.UNIMPLEMENTED: "MethodNotAllowed",
}


@dataclass(frozen=True)
class FieldError:
    """One invalid field, as in Kubernetes' field.Error.

    ``type`` is the cause reason: FieldValueRequired, FieldValueInvalid,
    FieldValueNotSupported, FieldValueDuplicate, FieldValueTooLong,
    FieldValueForbidden, FieldValueTypeInvalid or UnknownField.
    """

    type: str
    field: str
    detail: str = ""
    value: Any = None

    def __str__(self) -> str:
        text = {
            "FieldValueRequired": "Required value",
            "FieldValueNotFound": "Not found",
            "FieldValueInvalid": "Invalid value",
            "FieldValueNotSupported": "Unsupported value",
            "FieldValueDuplicate": "Duplicate value",
            "FieldValueTooLong": "Too long",
            "FieldValueForbidden": "Forbidden",
            "FieldValueTypeInvalid": "Invalid type",
            "UnknownField": "unknown field",
        }.get(self.type, self.type)
        if self.value is not None and self.type in ("FieldValueInvalid", "FieldValueNotSupported", "FieldValueNotFound",
                                                     "FieldValueDuplicate", "FieldValueTypeInvalid"):
            text = f"{text}: {_quote(self.value)}"
        if self.detail:
            text = f"{text}: {self.detail}"
        return f"{self.field}: {text}"


def _quote(value: Any) -> str:
    return f'"{value}"' if isinstance(value, str) else repr(value)


@dataclass
class StatusError(Exception):
    """A failed API call, shaped like Kubernetes' metav1.Status."""

    reason: str
    message: str
    name: str = ""
    group: str = ""
    kind: str = ""
    causes: list[FieldError] = field(default_factory=list)
    retry_after_seconds: int = 0

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message

    @property
    def code(self) -> int:
        return _REASONS.get(self.reason, (500, grpc.StatusCode.UNKNOWN))[0]

    @property
    def grpc_code(self) -> grpc.StatusCode:
        return _REASONS.get(self.reason, (500, grpc.StatusCode.UNKNOWN))[1]

    def to_status(self) -> metav1.Status:
        return metav1.Status(
            api_version="v1",
            kind="Status",
            status="Failure",
            message=self.message,
            reason=self.reason,
            code=self.code,
            details=metav1.StatusDetails(
                name=self.name,
                group=self.group,
                kind=self.kind,
                retry_after_seconds=self.retry_after_seconds,
                causes=[metav1.StatusCause(reason=c.type, message=str(c), field=c.field) for c in self.causes],
            ),
        )

    @classmethod
    def from_status(cls, status: metav1.Status) -> StatusError:
        d = status.details
        return cls(
            reason=status.reason or "InternalError",
            message=status.message,
            name=d.name,
            group=d.group,
            kind=d.kind,
            retry_after_seconds=d.retry_after_seconds,
            causes=[FieldError(type=c.reason, field=c.field, detail=c.message) for c in d.causes],
        )

    def to_grpc_metadata(self) -> tuple[tuple[str, bytes], ...]:
        return ((STATUS_METADATA_KEY, self.to_status().SerializeToString()),)

    @classmethod
    def from_grpc_error(cls, exc: grpc.RpcError) -> StatusError:
        """Rebuilds the server's StatusError, or maps a bare transport failure."""
        trailing: Any = getattr(exc, "trailing_metadata", lambda: None)()
        for key, value in trailing or ():
            if key == STATUS_METADATA_KEY and isinstance(value, bytes):
                return cls.from_status(metav1.Status.FromString(value))
        code: grpc.StatusCode | None = exc.code() if hasattr(exc, "code") else None
        details = exc.details() if hasattr(exc, "details") else str(exc)
        reason = _GRPC_REASONS.get(code, "InternalError") if code is not None else "InternalError"
        return cls(reason=reason, message=details or reason)


# Constructors named after Kubernetes' apierrors helpers.


def _resource(group: str, resource: str) -> str:
    return f"{resource}.{group}" if group else resource


def not_found(group: str, resource: str, name: str) -> StatusError:
    return StatusError("NotFound", f'{_resource(group, resource)} "{name}" not found', name=name, group=group,
                       kind=resource)


def already_exists(group: str, resource: str, name: str) -> StatusError:
    return StatusError("AlreadyExists", f'{_resource(group, resource)} "{name}" already exists', name=name,
                       group=group, kind=resource)


def conflict(group: str, resource: str, name: str, detail: str) -> StatusError:
    return StatusError(
        "Conflict",
        f'Operation cannot be fulfilled on {_resource(group, resource)} "{name}": {detail}',
        name=name, group=group, kind=resource,
    )


def invalid(group: str, kind: str, name: str, causes: list[FieldError]) -> StatusError:
    what = f"{kind}.{group}" if group else kind
    joined = ", ".join(str(c) for c in causes)
    msg = f'{what} "{name}" is invalid: {joined}' if len(causes) < 2 else f'{what} "{name}" is invalid: [{joined}]'
    return StatusError("Invalid", msg, name=name, group=group, kind=kind, causes=list(causes))


def bad_request(message: str, causes: list[FieldError] | None = None) -> StatusError:
    return StatusError("BadRequest", message, causes=list(causes or []))


def forbidden(message: str) -> StatusError:
    return StatusError("Forbidden", message)


def expired(message: str) -> StatusError:
    return StatusError("Expired", message)


def too_large(message: str) -> StatusError:
    return StatusError("RequestEntityTooLarge", message)


def method_not_supported(group: str, resource: str, verb: str) -> StatusError:
    return StatusError("MethodNotAllowed", f"{verb} is not supported on resources of kind {_resource(group, resource)}")


def internal(message: str) -> StatusError:
    return StatusError("InternalError", f"Internal error occurred: {message}")


def unavailable(message: str) -> StatusError:
    return StatusError("ServiceUnavailable", message)


def timeout(message: str) -> StatusError:
    return StatusError("Timeout", message)


def is_reason(exc: BaseException, reason: str) -> bool:
    return isinstance(exc, StatusError) and exc.reason == reason
