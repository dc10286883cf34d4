"""Bootstrap tokens: the shared secret a new node presents to join, as kubeadm has them.

A token reads ``<id>.<secret>`` (6 and 16 characters of ``[a-z0-9]``) and is
stored as the Secret ``kube-system/bootstrap-token-<id>`` of type
``bootstrap.kubernetes.io/token``, with the fields Kubernetes' bootstrap
authenticator, token cleaner and kubeadm agree on (``token-id``,
``token-secret``, ``expiration``, ``usage-bootstrap-*``, ``description``,
``auth-extra-groups``). Keeping the same layout means a kubeadm user's habits
(and ``kubectl get secret -n kube-system``) carry over.

This module is shared by the API server (which authenticates a presented
token against its Secret), the controller manager (which deletes expired
ones) and the CLI (``kubelite token``), so it holds only the format: no I/O.
"""

from __future__ import annotations

import hmac
import re
import secrets as _secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from kubelite.api.core.v1 import generated_pb2 as core_v1

NAMESPACE = "kube-system"
SECRET_TYPE = "bootstrap.kubernetes.io/token"
SECRET_PREFIX = "bootstrap-token-"
USER_PREFIX = "system:bootstrap:"
GROUP = "system:bootstrappers"
# Extra groups a token may put its holder in must sit under this prefix (kubeadm's rule).
EXTRA_GROUP_PREFIX = "system:bootstrappers:"

KEY_ID = "token-id"
KEY_SECRET = "token-secret"
KEY_EXPIRATION = "expiration"
KEY_DESCRIPTION = "description"
KEY_EXTRA_GROUPS = "auth-extra-groups"
USAGE_PREFIX = "usage-bootstrap-"
USAGES = ("authentication", "signing")

# kubeadm's default: a token for joining, not a standing credential.
DEFAULT_TTL = timedelta(hours=24)

_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
ID_RE = re.compile(r"^[a-z0-9]{6}$")
TOKEN_RE = re.compile(r"^([a-z0-9]{6})\.([a-z0-9]{16})$")


class TokenFormatError(ValueError):
    """A token or token id that does not have the bootstrap form; the message says what was expected."""


@dataclass(frozen=True)
class Token:
    id: str
    secret: str

    def __str__(self) -> str:
        return f"{self.id}.{self.secret}"

    @property
    def secret_name(self) -> str:
        return secret_name(self.id)


def generate() -> Token:
    """A fresh random token (about 113 bits of randomness, from the OS's CSPRNG)."""
    return Token("".join(_secrets.choice(_ALPHABET) for _ in range(6)),
                 "".join(_secrets.choice(_ALPHABET) for _ in range(16)))


def parse(text: str) -> Token:
    """``abcdef.0123456789abcdef`` → Token; anything else raises TokenFormatError."""
    m = TOKEN_RE.match(text)
    if m is None:
        raise TokenFormatError(f"the bootstrap token {_redact(text)!r} was not of the form "
                               f"{TOKEN_RE.pattern!r} (6 and 16 characters of a-z and 0-9, joined by a dot)")
    return Token(m.group(1), m.group(2))


def parse_id(text: str) -> str:
    """A token id, or a whole token (its id is taken): what ``token delete`` accepts."""
    if ID_RE.match(text):
        return text
    if TOKEN_RE.match(text):
        return text.split(".", 1)[0]
    raise TokenFormatError(f"the token id {_redact(text)!r} was neither a token id ({ID_RE.pattern!r}) "
                           f"nor a token ({TOKEN_RE.pattern!r})")


def _redact(text: str) -> str:
    # An almost-right token in an error message must not leak its secret part into logs.
    head, dot, _ = text.partition(".")
    return f"{head}.<redacted>" if dot else text[:40]


def secret_name(token_id: str) -> str:
    return SECRET_PREFIX + token_id


def format_time(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    """RFC 3339 (``2026-12-03T01:00:00Z`` or with an offset) → an aware datetime."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def build_secret(token: Token, *, ttl: timedelta | None = DEFAULT_TTL, description: str = "",
                 usages: tuple[str, ...] = USAGES, extra_groups: tuple[str, ...] = (),
                 now: datetime | None = None) -> core_v1.Secret:
    """The Secret that stores ``token``; ``ttl`` None (or zero) means it never expires."""
    for u in usages:
        if u not in USAGES:
            raise TokenFormatError(f"usages: {u!r} is not one of {', '.join(USAGES)}")
    for g in extra_groups:
        if not g.startswith(EXTRA_GROUP_PREFIX):
            raise TokenFormatError(f"groups: {g!r} must start with {EXTRA_GROUP_PREFIX!r}")
    s = core_v1.Secret(type=SECRET_TYPE)
    s.metadata.name = token.secret_name
    s.metadata.namespace = NAMESPACE
    s.data[KEY_ID] = token.id.encode()
    s.data[KEY_SECRET] = token.secret.encode()
    if ttl:
        s.data[KEY_EXPIRATION] = format_time((now or datetime.now(UTC)) + ttl).encode()
    if description:
        s.data[KEY_DESCRIPTION] = description.encode()
    for u in usages:
        s.data[USAGE_PREFIX + u] = b"true"
    if extra_groups:
        s.data[KEY_EXTRA_GROUPS] = ",".join(extra_groups).encode()
    return s


def _field(s: core_v1.Secret, key: str) -> str:
    return s.data[key].decode(errors="replace") if key in s.data else ""


def token_id(s: core_v1.Secret) -> str:
    """The id a bootstrap Secret stores (its ``token-id``, else the suffix of its name)."""
    return _field(s, KEY_ID) or s.metadata.name.removeprefix(SECRET_PREFIX)


def expiration(s: core_v1.Secret) -> datetime | None:
    """When the token expires; None when it never does. An unreadable time counts as already expired
    (the safe reading: a token whose lifetime cannot be told is not honoured)."""
    text = _field(s, KEY_EXPIRATION)
    if not text:
        return None
    try:
        return parse_time(text)
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)


def is_expired(s: core_v1.Secret, now: datetime | None = None) -> bool:
    exp = expiration(s)
    return exp is not None and exp <= (now or datetime.now(UTC))


def usages(s: core_v1.Secret) -> list[str]:
    return [u for u in USAGES if _field(s, USAGE_PREFIX + u) == "true"]


def description(s: core_v1.Secret) -> str:
    return _field(s, KEY_DESCRIPTION)


def extra_groups(s: core_v1.Secret) -> list[str]:
    return [g.strip() for g in _field(s, KEY_EXTRA_GROUPS).split(",") if g.strip()]


def authenticates(s: core_v1.Secret, token: Token, now: datetime | None = None) -> str:
    """Why the Secret does not let ``token`` authenticate, or "" when it does."""
    if s.type != SECRET_TYPE:
        return f"secret type is {s.type!r}, not {SECRET_TYPE!r}"
    if s.metadata.deletion_timestamp.seconds:
        return "the token is being deleted"
    if _field(s, KEY_ID) != token.id:
        return "token-id does not match"
    # A constant-time comparison: response timing must not reveal how much of a guess was right.
    if not hmac.compare_digest(_field(s, KEY_SECRET).encode(), token.secret.encode()):
        return "token-secret does not match"
    if is_expired(s, now):
        return "the token has expired"
    if "authentication" not in usages(s):
        return "the token may not be used for authentication"
    for g in extra_groups(s):
        if not g.startswith(EXTRA_GROUP_PREFIX):
            return f"auth-extra-groups: {g!r} does not start with {EXTRA_GROUP_PREFIX!r}"
    return ""


def human_ttl(s: core_v1.Secret, now: datetime | None = None) -> str:
    """kubeadm's TTL column: ``23h``, ``59m``, ``<forever>`` or ``<invalid>`` once past."""
    exp = expiration(s)
    if exp is None:
        return "<forever>"
    left = exp - (now or datetime.now(UTC))
    seconds = int(left.total_seconds())
    if seconds <= 0:
        return "<invalid>"
    if seconds >= 2 * 86400:
        return f"{seconds // 86400}d"
    if seconds >= 3600:
        return f"{seconds // 3600}h"
    if seconds >= 60:
        return f"{seconds // 60}m"
    return f"{seconds}s"
