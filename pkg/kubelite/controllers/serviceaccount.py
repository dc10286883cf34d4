"""The ServiceAccount controller: every namespace has a ``default`` ServiceAccount.

Pods without ``serviceAccountName`` run as ``default`` (admission fills it
in), so the account must exist in every namespace, including those created
before this controller ran and after someone deleted it. Terminating
namespaces are skipped: the API server refuses new objects in them, and the
namespace controller is emptying them anyway.
"""

from __future__ import annotations

import logging
from typing import Any

from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.client.controller import InstrumentedQueue
from kubelite.client.informer import Informer, deleted_object
from kubelite.controllers.util import Lister, Writer, is_being_deleted
from kubelite.machinery.errors import StatusError

log = logging.getLogger(__name__)

DEFAULT = "default"


class ServiceAccountsController:
    name = "serviceaccount"

    def __init__(self, ns_lister: Lister[core.Namespace], sa_lister: Lister[core.ServiceAccount], client: Writer,
                 *, names: tuple[str, ...] = (DEFAULT,), queue: InstrumentedQueue[str] | None = None) -> None:
        self.namespaces = ns_lister
        self.accounts = sa_lister
        self.client = client
        self.names = names
        self.queue: InstrumentedQueue[str] = queue or InstrumentedQueue(self.name)

    def attach(self, ns_informer: Informer[core.Namespace], sa_informer: Informer[core.ServiceAccount]) -> None:
        ns_informer.add_handler(self._namespace, lambda old, new: self._namespace(new))
        sa_informer.add_handler(on_delete=self._account_deleted)

    def _namespace(self, ns: core.Namespace) -> None:
        if not is_being_deleted(ns):
            self.queue.add(ns.metadata.name)

    def _account_deleted(self, obj: Any) -> None:
        sa: core.ServiceAccount = deleted_object(obj)
        if sa.metadata.name in self.names:
            self.queue.add(sa.metadata.namespace)

    async def sync(self, key: str) -> None:
        ns = self.namespaces.get("", key)
        if ns is None or is_being_deleted(ns) or ns.status.phase == "Terminating":
            return
        for name in self.names:
            if self.accounts.get(key, name) is not None:
                continue
            sa = core.ServiceAccount(api_version="v1", kind="ServiceAccount")
            sa.metadata.name = name
            sa.metadata.namespace = key
            try:
                await self.client.create(sa)
            except StatusError as exc:
                if exc.reason == "AlreadyExists":
                    continue  # the cache lags our own earlier create
                if exc.reason == "Forbidden" and "terminat" in exc.message.lower():
                    continue  # the namespace started terminating meanwhile
                raise
            log.info("created serviceaccount %s/%s", key, name)
