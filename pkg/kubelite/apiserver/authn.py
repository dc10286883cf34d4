"""Authentication of bearer tokens: bootstrap tokens today, ServiceAccount tokens later.

Kubernetes' rule, kept here: a request that presents no credential is
anonymous (allowed, as long as anonymous access is); a request that presents a
bearer token no authenticator accepts is refused with 401 Unauthorized, even
though it would have been allowed without the token. A wrong, expired or
deleted token must never quietly degrade to anonymous: the caller believes it
is someone, and should learn at once that it is not.

Until the security work switches authorization on, the anonymous identity is
the allow-all one (``pipeline.AllowAll``), so existing clients without a token
behave exactly as before.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Protocol

from kubelite.api.core.v1 import generated_pb2 as core_v1
from kubelite.apiserver.pipeline import AllowAll, Authenticator, RequestInfo, UserInfo
from kubelite.machinery import bootstraptoken as bt

log = logging.getLogger(__name__)

AUTHENTICATED = "system:authenticated"

# (namespace, name) -> the Secret, or None when there is none.
SecretLookup = Callable[[str, str], Awaitable[core_v1.Secret | None]]


class TokenAuthenticator(Protocol):
    async def authenticate_token(self, token: str) -> UserInfo | None:
        """The token's owner, or None when this authenticator does not accept it."""
        ...


class BootstrapTokenAuthenticator:
    """Accepts ``<id>.<secret>`` tokens whose Secret ``kube-system/bootstrap-token-<id>`` matches and
    is in date, as ``system:bootstrap:<id>`` in ``system:bootstrappers`` (plus the Secret's extra groups)."""

    def __init__(self, lookup: SecretLookup, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._lookup = lookup
        self._clock = clock

    async def authenticate_token(self, token: str) -> UserInfo | None:
        try:
            parsed = bt.parse(token)
        except bt.TokenFormatError:
            return None  # some other authenticator's kind of token
        secret = await self._lookup(bt.NAMESPACE, parsed.secret_name)
        if secret is None:
            log.info("bootstrap token %s refused: no secret %s/%s", parsed.id, bt.NAMESPACE, parsed.secret_name)
            return None
        why = bt.authenticates(secret, parsed, self._clock())
        if why:
            log.info("bootstrap token %s refused: %s", parsed.id, why)
            return None
        groups = (bt.GROUP, *bt.extra_groups(secret), AUTHENTICATED)
        return UserInfo(bt.USER_PREFIX + parsed.id, tuple(dict.fromkeys(groups)))


class BearerTokenAuthentication:
    """The authenticator chain: no token → ``anonymous``; a token → the first token authenticator that
    accepts it, else None (the pipeline answers 401 Unauthorized)."""

    def __init__(self, token_authenticators: Sequence[TokenAuthenticator],
                 anonymous: Authenticator | None = None) -> None:
        self._tokens = tuple(token_authenticators)
        self._anonymous = anonymous or AllowAll()

    async def authenticate(self, request: RequestInfo) -> UserInfo | None:
        token = request.bearer_token
        if not token:
            return await self._anonymous.authenticate(request)
        for a in self._tokens:
            user = await a.authenticate_token(token)
            if user is not None:
                return user
        return None
