"""The token cleaner: deletes bootstrap-token Secrets once they have expired.

An expired token already authenticates nobody (the API server checks the
expiration on every request); deleting its Secret keeps kube-system tidy and
`kubelite token list` short, as Kubernetes' tokencleaner does. A token that
has not expired yet is looked at again when it does (``add_after`` with the
time left), so the controller sleeps instead of polling. The delete carries
the Secret's UID as a precondition: a token re-created under the same id in
the meantime is not the one that expired.

Like Kubernetes', it is off in ``--controllers=*`` and switched on by name
(kubeadm's ``--controllers=*,bootstrapsigner,tokencleaner``; configure-node
does the same).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.client.controller import InstrumentedQueue
from kubelite.client.informer import Informer, deleted_object
from kubelite.controllers.util import Lister, Writer
from kubelite.machinery import bootstraptoken as bt
from kubelite.machinery.errors import StatusError

log = logging.getLogger(__name__)


class TokenCleaner:
    name = "tokencleaner"

    def __init__(self, secrets: Lister[core.Secret], client: Writer, *,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 queue: InstrumentedQueue[str] | None = None) -> None:
        self.secrets = secrets
        self.client = client
        self.clock = clock
        self.queue: InstrumentedQueue[str] = queue or InstrumentedQueue(self.name)

    def attach(self, informer: Informer[core.Secret]) -> None:
        informer.add_handler(self._enqueue, lambda old, new: self._enqueue(new), self._deleted)

    def _enqueue(self, secret: core.Secret) -> None:
        if secret.type == bt.SECRET_TYPE and secret.metadata.namespace == bt.NAMESPACE:
            self.queue.add(secret.metadata.name)

    def _deleted(self, obj: Any) -> None:
        # Nothing to clean; the key may still wait for its expiry, which then finds no Secret.
        deleted_object(obj)

    async def sync(self, key: str) -> None:
        secret = self.secrets.get(bt.NAMESPACE, key)
        if secret is None or secret.type != bt.SECRET_TYPE or secret.metadata.deletion_timestamp.seconds:
            return
        expires = bt.expiration(secret)
        if expires is None:
            return  # a token without expiration lives until someone deletes it
        left = (expires - self.clock()).total_seconds()
        if left > 0:
            self.queue.add_after(key, left)
            return
        try:
            await self.client.delete(core.Secret, key, bt.NAMESPACE, uid=secret.metadata.uid)
        except StatusError as exc:
            if exc.reason in ("NotFound", "Conflict"):
                return  # already gone, or replaced by a new token of the same id (the watch brings it)
            raise
        log.info("deleted expired bootstrap token %s/%s (expired %s)", bt.NAMESPACE, key, bt.format_time(expires))
