"""The generic registry store: the semantics of every verb, for every kind.

One class implements create, get, list, update, status update, patch, delete
and watch on top of storage and the watch cache; what differs per kind comes
from its Strategy. This is where Kubernetes' object rules live: uid and
creationTimestamp at create, generateName, resourceVersion as the etcd
revision with compare-and-swap, generation bumped only when the spec changes,
status written through its own call, deletionTimestamp with finalizers and
grace periods, dry runs, and the size limit.
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import contextlib
import json
import logging
import random
import secrets
import time
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from google.protobuf.message import DecodeError, Message

from kubelite.apiserver.pipeline import Admission, Attributes
from kubelite.apiserver.registry.strategy import Strategy, meta_of
from kubelite.apiserver.registry.subresource import Subresource
from kubelite.apiserver.watchcache import Filter, OutOfWindow, WatchCache, rv_suffix
from kubelite.machinery import codec, errors, fieldmanager, patch, selectors
from kubelite.machinery.errors import FieldError
from kubelite.storage.interface import (
    ClaimTakenError,
    CompactedError,
    ConflictError,
    FutureRevisionError,
    KeyExistsError,
    KeyNotFoundError,
    Storage,
    StorageError,
    TooLargeError,
    UnavailableError,
)

log = logging.getLogger(__name__)

# etcd refuses values over 1.5 MiB (its default --max-request-bytes).
MAX_OBJECT_BYTES = 1_572_864
# Unconditional updates and patches retry this often on a conflicting write.
MAX_CONFLICT_RETRIES = 16
_NAME_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
# DeleteCollection deletes this many objects at once, so that their writes
# share etcd transactions (the storage's group commit) without flooding it.
DELETE_COLLECTION_WORKERS = 16


def translate(exc: StorageError, store: ResourceStore, name: str) -> errors.StatusError:
    """Maps a storage failure to the Kubernetes reason a client expects."""
    g, r = store.rt.group, store.rt.resource
    if isinstance(exc, KeyNotFoundError):
        return errors.not_found(g, r, name)
    if isinstance(exc, KeyExistsError):
        return errors.already_exists(g, r, name)
    if isinstance(exc, ConflictError):
        return errors.conflict(g, r, name, "the object has been modified; please apply your changes to the "
                                           "latest version and try again")
    if isinstance(exc, ClaimTakenError):
        return errors.StatusError("Conflict", f"{exc}", name=name, group=g, kind=r)
    if isinstance(exc, CompactedError):
        return errors.expired(f"too old resource version: {exc.requested_revision} ({exc.compact_revision})")
    if isinstance(exc, TooLargeError):
        return errors.too_large(f"{exc}")
    if isinstance(exc, FutureRevisionError):
        return errors.StatusError("Timeout", f"Too large resource version: {exc.requested_revision}",
                                  retry_after_seconds=1)
    if isinstance(exc, UnavailableError):
        return errors.unavailable(f"storage is unavailable: {exc}")
    return errors.internal(str(exc))


def now_seconds() -> int:
    return int(time.time())


# What a watch yields: the (type, wire bytes) events of one revision, or a bookmark revision.
WatchChunk = list[tuple[str, bytes]] | int
# A paged list reads at most this many keys in one storage call, however
# sparse the selector's matches are (kube-apiserver's cap is the same).
MAX_PAGE_READ = 10_000


class ListPage(tuple[list[bytes], int, str]):
    """A page of a list: wire bytes of the objects, the revision, the continue token.

    Unpacks as that triple; ``remaining_item_count`` is the ListMeta field of
    the same name: how many objects follow this page, known only for a paged
    list without selectors (as Kubernetes reports it), else None.
    """

    remaining_item_count: int | None

    def __new__(cls, items: list[bytes], revision: int, continue_token: str = "",
                remaining_item_count: int | None = None) -> ListPage:
        page = super().__new__(cls, (items, revision, continue_token))
        page.remaining_item_count = remaining_item_count
        return page


@dataclass(frozen=True)
class Stored:
    """An object read from storage, decoded, with its revision.

    ``current`` is False when it came from the watch cache, which may lag
    etcd: a write based on it is a guess that a conflict corrects.
    """

    obj: Message
    raw: bytes
    revision: int
    current: bool = True


class ResourceStore:
    """All verbs for one resource."""

    def __init__(self, strategy: Strategy, storage: Storage, admission: Admission,
                 cache_factory: Callable[[ResourceStore], WatchCache]) -> None:
        self.strategy = strategy
        self.rt = strategy.rt
        self.storage = storage
        self.admission = admission
        self.prefix = f"/registry/{self.rt.resource}/"
        self.cache = cache_factory(self)
        # Routes under each object (status, scale, binding, ...), by name; the server fills them.
        self.subresources: dict[str, Subresource] = {}

    # --- keys and encoding -----------------------------------------------

    def key(self, namespace: str, name: str) -> str:
        return f"{self.prefix}{namespace}/{name}" if self.rt.namespaced else f"{self.prefix}{name}"

    def decode(self, raw: bytes) -> Message:
        try:
            return self.rt.message.FromString(raw)
        except DecodeError as exc:
            raise errors.internal(f"stored {self.rt.kind} cannot be decoded: {exc}") from exc

    def _encode_for_storage(self, obj: Message) -> bytes:
        """Serialized without resourceVersion (the revision is etcd's to give)."""
        meta_of(obj).resource_version = ""
        raw = obj.SerializeToString(deterministic=True)
        if len(raw) > MAX_OBJECT_BYTES:
            raise errors.too_large(
                f'{self.rt.kind} "{meta_of(obj).name}" is too large: {len(raw)} bytes, the limit is '
                f"{MAX_OBJECT_BYTES} bytes")
        return raw

    def _with_revision(self, raw: bytes, revision: int) -> Message:
        return self.decode(raw + rv_suffix(self.rt.message, revision))

    async def _read(self, namespace: str, name: str) -> Stored:
        try:
            kv = await self.storage.get(self.key(namespace, name))
        except StorageError as exc:
            raise translate(exc, self, name) from exc
        return Stored(self._with_revision(kv.value, kv.mod_revision), kv.value, kv.mod_revision)

    async def _read_cached(self, namespace: str, name: str) -> Stored:
        """The object as the watch cache holds it, or from etcd when the cache has none.

        Kubernetes' GuaranteedUpdate starts from the cached object too: most
        writes (bindings, status updates) are based on a state the cache
        already has, and a stale guess costs one conflict and one real read,
        instead of a quorum read for every write.
        """
        co = self.cache.get(self.key(namespace, name)) if self.cache.ready else None
        if co is None:
            return await self._read(namespace, name)
        # ``co.obj`` is decoded afresh for each caller: ours to change.
        return Stored(co.obj, co.raw, co.revision, current=False)

    # --- helpers ---------------------------------------------------------

    def _check_kind(self, obj: Message) -> None:
        if obj.DESCRIPTOR.full_name != self.rt.message_name:
            raise errors.bad_request(
                f"the body of the request was of type {obj.DESCRIPTOR.full_name}, expected {self.rt.message_name}")
        obj.api_version = self.rt.api_version  # type: ignore[attr-defined]
        obj.kind = self.rt.kind  # type: ignore[attr-defined]

    def _check_namespace(self, obj: Message, namespace: str) -> None:
        meta = meta_of(obj)
        if not self.rt.namespaced:
            if meta.namespace:
                raise errors.bad_request(f"{self.rt.kind} is cluster-scoped: metadata.namespace must be empty")
            return
        if not namespace:
            raise errors.bad_request("the namespace of the object is required")
        if meta.namespace and meta.namespace != namespace:
            raise errors.bad_request("the namespace of the provided object does not match the namespace sent on "
                                     "the request")
        meta.namespace = namespace

    def _claim_error(self, obj: Message, exc: ClaimTakenError) -> errors.StatusError:
        causes = self.strategy.claim_taken_causes(obj, exc.key)
        return self._invalid(obj, causes) if causes else translate(exc, self, meta_of(obj).name)

    def _invalid(self, obj: Message, causes: list[FieldError]) -> errors.StatusError:
        return errors.invalid(self.rt.group, self.rt.kind, meta_of(obj).name or meta_of(obj).generate_name, causes)

    # --- create ----------------------------------------------------------

    async def create(self, attrs: Attributes, obj: Message) -> Message:
        self._check_kind(obj)
        self._check_namespace(obj, attrs.namespace)
        meta = meta_of(obj)
        if meta.resource_version:
            raise errors.bad_request("resourceVersion should not be set on objects to be created")
        generated = not meta.name and bool(meta.generate_name)
        for _attempt in range(8 if generated else 1):
            candidate = type(obj)()
            candidate.CopyFrom(obj)
            cmeta = meta_of(candidate)
            if generated:
                cmeta.name = cmeta.generate_name + "".join(secrets.choice(_NAME_SUFFIX_ALPHABET) for _ in range(5))
            try:
                return await self._create_one(attrs, candidate)
            except errors.StatusError as exc:
                if not (generated and exc.reason == "AlreadyExists"):
                    raise
        raise errors.StatusError("AlreadyExists", "could not generate a unique name; try again")

    async def _create_one(self, attrs: Attributes, obj: Message, *, track: bool = True) -> Message:
        meta = meta_of(obj)
        attrs = Attributes(attrs.user, "create", self.rt, attrs.namespace, meta.name, dry_run=attrs.dry_run,
                           field_manager=attrs.field_manager)
        self.strategy.prepare_for_create(obj)
        meta.uid = str(uuid.uuid4())
        meta.creation_timestamp.seconds = now_seconds()
        meta.creation_timestamp.nanos = 0
        meta.ClearField("deletion_timestamp")
        meta.ClearField("deletion_grace_period_seconds")
        meta.generation = 1 if self.strategy.spec_of(obj) is not None else 0
        self.strategy.default(obj)
        if track:
            self._record_update(attrs, None, obj, "")
        await self.admission.admit(attrs, obj, None)
        causes = self.strategy.validate(obj)
        if causes:
            raise self._invalid(obj, causes)
        await self.admission.validate(attrs, obj, None)
        raw = self._encode_for_storage(obj)
        if attrs.dry_run:
            return obj
        for _attempt in range(MAX_CONFLICT_RETRIES):
            try:
                revision = await self.storage.create(self.key(attrs.namespace, meta.name), raw,
                                                     claims=self.strategy.claims_for_create(obj),
                                                     ttl=self.strategy.ttl_seconds(obj))
                break
            except ClaimTakenError as exc:
                # An allocation raced with another writer: let the strategy pick again.
                if not self.strategy.on_claim_taken(obj, exc.key):
                    raise self._claim_error(obj, exc) from exc
                raw = self._encode_for_storage(obj)
            except StorageError as exc:
                raise translate(exc, self, meta.name) from exc
        else:
            raise errors.StatusError("Conflict", "could not allocate; try again")
        meta.resource_version = str(revision)
        return obj

    # --- get / list --------------------------------------------------------

    async def get(self, namespace: str, name: str, resource_version: str = "") -> Message:
        """One object: "" reads etcd (the latest state); "0" or "N" may be served by the watch cache.

        "0" takes whatever the cache holds; "N" waits until the cache has seen
        revision N, as Kubernetes serves gets with a resourceVersion.
        """
        if not resource_version:
            return (await self._read(namespace, name)).obj
        await self._wait_cache(resource_version)
        co = self.cache.get(self.key(namespace, name))
        if co is None:
            raise errors.not_found(self.rt.group, self.rt.resource, name)
        return co.obj  # decoded afresh: the caller's own copy

    async def list_objects(self, namespace: str, label_selector: str = "",
                           field_selector: str = "") -> builtins.list[Message]:
        """Matching objects, decoded and consistent with etcd (for subresources and DeleteCollection)."""
        flt = self.make_filter(namespace, label_selector, field_selector)
        await self._wait_cache("")
        return [co.obj for co in self.cache.list(flt)[0]]  # each decoded afresh: the caller's own copy

    def make_filter(self, namespace: str, label_selector: str, field_selector: str) -> Filter:
        labels = selectors.parse_label_selector(label_selector) if label_selector else None
        fields = selectors.parse_field_selector(field_selector) if field_selector else None
        if fields is not None:
            bad = fields.unsupported(self.strategy.selectable_fields())
            if bad:
                raise errors.bad_request(f'field label not supported: {bad[0]}')
        return Filter(namespace if self.rt.namespaced else "", labels, fields)

    async def _wait_cache(self, resource_version: str) -> None:
        """Brings the cache up to the revision the caller asked for.

        "" means the latest state: read the current revision from etcd (a
        quorum read) and wait until the cache has seen it — Kubernetes'
        consistent reads from cache. "0" accepts whatever the cache holds.
        """
        await self.cache.wait_ready()
        if resource_version == "0":
            return
        if resource_version:
            target = parse_rv(resource_version)
        else:
            try:
                target = await self.storage.current_revision()
            except StorageError as exc:
                raise translate(exc, self, "") from exc
        await self.cache.wait_for_revision(target)

    async def list(self, namespace: str, label_selector: str = "", field_selector: str = "",
                   resource_version: str = "", limit: int = 0,
                   continue_token: str = "") -> ListPage:
        """Matching objects (wire bytes, sorted by key), the list's revision and a continue token.

        Without a limit the list comes from the watch cache. With a limit (or
        a continue token) pages are read from etcd at one pinned revision, so
        that every page shows the same moment, as in Kubernetes.
        """
        flt = self.make_filter(namespace, label_selector, field_selector)
        if limit < 0:
            raise errors.bad_request("limit must not be negative")
        if limit or continue_token:
            return await self._list_pages(flt, limit, continue_token)
        await self._wait_cache(resource_version)
        items, revision = self.cache.list(flt)
        return ListPage([co.wire for co in items], revision)

    async def _list_pages(self, flt: Filter, limit: int, continue_token: str) -> ListPage:
        """One page read from etcd: only the keys it needs, at the revision of the first page.

        Reads ``limit`` keys from where the token left off; when the selector
        drops some, reads on in doubling chunks until the page is full or the
        prefix ends. The token points after the last key read, so no key is
        read twice across pages.
        """
        revision, after = 0, ""
        if continue_token:
            try:
                token = json.loads(base64.urlsafe_b64decode(continue_token.encode()))
                revision, after = int(token["rv"]), str(token["start"])
            except (ValueError, KeyError, TypeError) as exc:
                raise errors.bad_request("the continue token is not valid") from exc
        prefix = self.prefix + (f"{flt.namespace}/" if flt.namespace and self.rt.namespaced else "")
        if after and not after.startswith(prefix):
            raise errors.bad_request("the continue token is not valid")
        # The namespace is in the prefix: without label or field selectors every key matches, undecoded.
        unfiltered = flt.labels is None and flt.fields is None
        chunk = limit or MAX_PAGE_READ
        start = after + "\0" if after else ""
        out: list[bytes] = []
        last_read = ""
        while True:
            try:
                page = await self.storage.list_page(prefix, start=start, limit=chunk, revision=revision)
            except CompactedError as exc:
                raise errors.expired("The provided continue parameter is too old to display a consistent list "
                                     "result. You can start a new list without the continue parameter.") from exc
            except StorageError as exc:
                raise translate(exc, self, "") from exc
            revision = revision or page.revision
            more, consumed = page.more, 0
            for kv in page.items:
                if limit and len(out) == limit:
                    more = True  # read but not returned: the next page starts at this key
                    break
                consumed += 1
                last_read = kv.key
                if unfiltered:
                    out.append(kv.value + rv_suffix(self.rt.message, kv.mod_revision))
                    continue
                co = self.cache.make(kv.key, kv.value, kv.mod_revision)
                if flt.matches(co):
                    out.append(co.wire)
            if not more:
                return ListPage(out, revision)
            if not limit or len(out) < limit:
                # Not full yet (a selector dropped items, or no limit): read on, in larger chunks.
                start = last_read + "\0"
                chunk = min(chunk * 2, MAX_PAGE_READ)
                continue
            token_doc = json.dumps({"rv": revision, "start": last_read}).encode()
            # Without selectors every remaining key is an item: etcd's count says how many.
            remaining = page.count - consumed if unfiltered else None
            return ListPage(out, revision, base64.urlsafe_b64encode(token_doc).decode(), remaining)

    # --- update ----------------------------------------------------------

    async def update(self, attrs: Attributes, obj: Message, *, status: bool = False) -> Message:
        self._check_kind(obj)
        self._check_namespace(obj, attrs.namespace)
        meta = meta_of(obj)
        if status and not self.rt.has_status:
            raise errors.method_not_supported(self.rt.group, self.rt.resource, "update status")
        if attrs.name and meta.name and meta.name != attrs.name:
            raise errors.bad_request(f"the name of the object ({meta.name}) does not match the name on the URL "
                                     f"({attrs.name})")
        name = meta.name or attrs.name
        precondition = parse_rv(meta.resource_version) if meta.resource_version else 0

        async def mutate(current: Stored) -> Message:
            new = type(obj)()
            new.CopyFrom(obj)
            return new

        try:
            return await self.guaranteed_update(attrs, name, mutate, precondition=precondition, status=status,
                                                from_cache=True)
        except errors.StatusError as exc:
            # Kinds written idempotently (Leases, Endpoints, Events) are created by an update,
            # as Kubernetes' AllowCreateOnUpdate; a pinned resourceVersion on a missing object stays NotFound.
            if exc.reason != "NotFound" or status or precondition or not self.strategy.allow_create_on_update:
                raise
        created = type(obj)()
        created.CopyFrom(obj)
        meta_of(created).name = name
        meta_of(created).ClearField("generate_name")
        try:
            return await self._create_one(attrs, created)
        except errors.StatusError as exc:
            if exc.reason != "AlreadyExists":
                raise
        # Another writer created it first: this update now applies to theirs.
        return await self.guaranteed_update(attrs, name, mutate, status=status)

    async def guaranteed_update(
        self,
        attrs: Attributes,
        name: str,
        mutate: Callable[[Stored], Awaitable[Message]],
        *,
        precondition: int = 0,
        status: bool = False,
        from_cache: bool = False,
        track: bool = True,
    ) -> Message:
        """Read, change, compare-and-swap; retried on conflicts unless the caller pinned a revision.

        With ``from_cache`` the first attempt starts from the watch cache's
        copy; whenever that guess is what fails (a precondition, a conflict,
        or "nothing changed"), the object is read from etcd and the attempt
        repeated, so the outcome is the same as with a quorum read. With
        ``track`` the write is an Update in the object's managedFields
        (server-side apply records its own entries and passes False).
        """
        namespace = attrs.namespace
        verb_attrs = Attributes(attrs.user, attrs.verb, self.rt, namespace, name,
                                subresource="status" if status else attrs.subresource, dry_run=attrs.dry_run,
                                field_manager=attrs.field_manager)
        use_cache = from_cache
        for _attempt in range(MAX_CONFLICT_RETRIES):
            current = await (self._read_cached(namespace, name) if use_cache else self._read(namespace, name))
            use_cache = False
            if precondition and precondition != current.revision:
                if not current.current:
                    continue
                raise errors.conflict(self.rt.group, self.rt.resource, name,
                                      "the object has been modified; please apply your changes to the latest "
                                      "version and try again")
            try:
                new = await mutate(current)
            except errors.StatusError:
                if not current.current:
                    continue  # the callback refused a stale state: judge the real one
                raise
            self._check_kind(new)
            self._check_namespace(new, namespace)
            old = current.obj
            if status:
                self.strategy.prepare_for_status_update(new, old)
            else:
                self.strategy.prepare_for_update(new, old, verb_attrs.subresource)
            self._keep_system_meta(new, old)
            if not status:
                self.strategy.default(new)
            if track:
                self._record_update(verb_attrs, old, new, verb_attrs.subresource)
            await self.admission.admit(verb_attrs, new, old)
            causes = (self.strategy.validate_status_update(new, old) if status
                      else self.strategy.validate_update(new, old, verb_attrs.subresource))
            if causes:
                raise self._invalid(new, causes)
            await self.admission.validate(verb_attrs, new, old)
            raw = self._encode_for_storage(new)
            if raw == current.raw:
                if not current.current:
                    continue  # unchanged against a cached copy: confirm against etcd
                return old  # nothing changed: no write, resourceVersion stays
            if attrs.dry_run:
                meta_of(new).resource_version = str(current.revision)
                return new
            nmeta = meta_of(new)
            if nmeta.deletion_timestamp.seconds and not nmeta.finalizers and \
                    nmeta.deletion_timestamp.seconds <= now_seconds() and not self.strategy.delete_blocked(new):
                # The last finalizer is gone from an object being deleted: remove it.
                try:
                    return await self._remove(name, namespace, new, current.revision)
                except ConflictError:
                    continue
            try:
                revision = await self.storage.update(
                    self.key(namespace, name), raw, expected_revision=current.revision,
                    claims=self.strategy.claims_for_update(new, old),
                    releases=self.strategy.releases_for_update(new, old),
                    ttl=self.strategy.ttl_seconds(new))
            except ClaimTakenError as exc:
                if self.strategy.on_claim_taken(new, exc.key):
                    continue
                raise self._claim_error(new, exc) from exc
            except ConflictError:
                if precondition and current.current:
                    raise errors.conflict(self.rt.group, self.rt.resource, name,
                                          "the object has been modified; please apply your changes to the "
                                          "latest version and try again") from None
                continue
            except StorageError as exc:
                raise translate(exc, self, name) from exc
            nmeta.resource_version = str(revision)
            return new
        raise errors.conflict(self.rt.group, self.rt.resource, name, "too many concurrent updates; try again")

    def _keep_system_meta(self, new: Message, old: Message) -> None:
        """Fields only the server sets survive any update; generation follows the spec."""
        nm, om = meta_of(new), meta_of(old)
        nm.uid = om.uid
        nm.creation_timestamp.CopyFrom(om.creation_timestamp)
        if om.HasField("deletion_timestamp"):
            nm.deletion_timestamp.CopyFrom(om.deletion_timestamp)
        else:
            nm.ClearField("deletion_timestamp")
        if om.HasField("deletion_grace_period_seconds"):
            nm.deletion_grace_period_seconds = om.deletion_grace_period_seconds
        else:
            nm.ClearField("deletion_grace_period_seconds")
        if not nm.generate_name:
            nm.generate_name = om.generate_name
        if not nm.managed_fields:  # a writer that does not know about field ownership keeps it
            nm.managed_fields.extend(om.managed_fields)
        nm.generation = om.generation
        if self.strategy.spec_of(new) != self.strategy.spec_of(old):
            nm.generation = om.generation + 1

    def _record_update(self, attrs: Attributes, old: Message | None, new: Message, subresource: str) -> None:
        """The write as an ``Update`` of ``attrs.field_manager`` in new's managedFields (see fieldmanager).

        Bindings record nothing, as in Kubernetes (the scheduler's binding is
        not a field-managed write), nor do the server's own writes.
        """
        if attrs.field_manager is None or subresource == "binding":
            return
        if old is None:
            changed, removed = frozenset(fieldmanager.object_fields(new, subresource)), frozenset[fieldmanager.Path]()
        else:
            changed, removed = fieldmanager.diff(old, new, subresource)
        fieldmanager.record_update(meta_of(new).managed_fields, changed, removed, attrs.field_manager,
                                   self.rt.api_version, subresource, now_seconds())

    # --- patch -----------------------------------------------------------

    async def patch(self, attrs: Attributes, patch_type: str, body: bytes, subresource: str = "") -> Message:
        if patch_type not in patch.PATCH_CONTENT_TYPES:
            raise errors.StatusError("UnsupportedMediaType", f'the patch type "{patch_type}" is not supported; use '
                                     + ", ".join(patch.PATCH_CONTENT_TYPES))
        if subresource not in ("", "status"):
            raise errors.bad_request(f'the subresource "{subresource}" does not support patching')
        try:
            doc = json.loads(body)
        except ValueError as exc:
            raise errors.bad_request(f"the patch is not valid JSON: {exc}") from exc
        if patch_type == patch.JSON_PATCH and not isinstance(doc, list):
            raise errors.bad_request("a JSON patch must be a list of operations")
        precondition = 0
        if isinstance(doc, dict):
            rv = doc.get("metadata", {}).get("resourceVersion") if isinstance(doc.get("metadata"), dict) else None
            if isinstance(rv, str) and rv:
                precondition = parse_rv(rv)

        async def mutate(current: Stored) -> Message:
            result = patch.apply_patch(codec.encode(current.obj), doc, patch_type, self.rt.message)
            return codec.decode_into(result, self.rt.message)

        return await self.guaranteed_update(attrs, attrs.name, mutate, precondition=precondition,
                                             status=subresource == "status", from_cache=True)

    # --- server-side apply ---------------------------------------------

    async def apply(self, attrs: Attributes, intent: Mapping[str, Any], field_manager: str, *,
                    force: bool = False) -> Message:
        """Server-side apply of ``intent`` by ``field_manager``: creates the object when absent.

        The intent is validated as a whole object first (unknown fields and
        wrong types refuse it); conflicts with other managers' fields are a
        409 naming each field, unless ``force``. See machinery.fieldmanager.
        """
        if not field_manager:
            raise errors.bad_request("PATCH, field manager is required for apply requests "
                                     "(the fieldManager query parameter)")
        self._check_apply_intent(intent, attrs)
        codec.decode_into(intent, self.rt.message)  # every problem of the intent, with its path
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

        def applied(live: dict[str, Any] | None) -> Message:
            result = fieldmanager.apply(live, intent, self.rt.message, field_manager, self.rt.api_version, now,
                                        force)
            if result.conflicts:
                raise errors.StatusError(
                    "Conflict", fieldmanager.conflict_message(result.conflicts), name=attrs.name,
                    group=self.rt.group, kind=self.rt.resource,
                    causes=[errors.FieldError("FieldManagerConflict", c.field(), f"conflict with {c.who()}")
                            for c in result.conflicts])
            return codec.decode_into(result.object, self.rt.message)

        async def mutate(current: Stored) -> Message:
            return applied(codec.encode(current.obj))

        for _attempt in range(2):
            try:
                return await self.guaranteed_update(attrs, attrs.name, mutate, from_cache=True, track=False)
            except errors.StatusError as exc:
                if exc.reason != "NotFound":
                    raise
            obj = applied(None)
            meta_of(obj).name = attrs.name
            if self.rt.namespaced:
                meta_of(obj).namespace = attrs.namespace
            try:
                return await self._create_one(attrs, obj, track=False)
            except errors.StatusError as exc:
                if exc.reason != "AlreadyExists":
                    raise
        raise errors.conflict(self.rt.group, self.rt.resource, attrs.name, "the object changed during apply; "
                                                                          "try again")

    def _check_apply_intent(self, intent: Mapping[str, Any], attrs: Attributes) -> None:
        if not isinstance(intent, Mapping):
            raise errors.bad_request("an apply patch must be an object")
        if intent.get("apiVersion") != self.rt.api_version or intent.get("kind") != self.rt.kind:
            raise errors.bad_request(f"apply patches must name their apiVersion and kind: this resource takes "
                                     f"{self.rt.api_version} {self.rt.kind}, the patch has "
                                     f"{intent.get('apiVersion') or '(none)'} {intent.get('kind') or '(none)'}")
        meta = intent.get("metadata")
        name = meta.get("name") if isinstance(meta, Mapping) else None
        if name != attrs.name:
            raise errors.bad_request(f'metadata.name "{name or ""}" of the apply patch does not match the name '
                                     f'on the URL "{attrs.name}"')
        namespace = meta.get("namespace") if isinstance(meta, Mapping) else None
        if namespace and namespace != attrs.namespace:
            raise errors.bad_request("the namespace of the provided object does not match the namespace sent on "
                                     "the request")

    # --- delete ----------------------------------------------------------

    async def delete(self, attrs: Attributes, *, propagation_policy: str = "", uid: str = "",
                     resource_version: str = "", grace_period: int | None = None) -> tuple[Message, bool]:
        if propagation_policy not in ("", "Background", "Foreground", "Orphan"):
            raise errors.bad_request(f'unsupported propagationPolicy "{propagation_policy}": use Background, '
                                     "Foreground or Orphan")
        if grace_period is not None and grace_period < 0:
            raise errors.invalid(self.rt.group, self.rt.kind, attrs.name, [
                FieldError("FieldValueInvalid", "gracePeriodSeconds", "must be >= 0", grace_period)])
        name, namespace = attrs.name, attrs.namespace
        for _attempt in range(MAX_CONFLICT_RETRIES):
            current = await self._read(namespace, name)
            meta = meta_of(current.obj)
            if uid and uid != meta.uid:
                raise errors.conflict(self.rt.group, self.rt.resource, name,
                                      f"Precondition failed: UID in precondition: {uid}, UID in object meta: "
                                      f"{meta.uid}")
            if resource_version and parse_rv(resource_version) != current.revision:
                raise errors.conflict(self.rt.group, self.rt.resource, name,
                                      f"Precondition failed: ResourceVersion in precondition: {resource_version}, "
                                      f"ResourceVersion in object meta: {current.revision}")
            await self.admission.validate(attrs, None, current.obj)
            new = type(current.obj)()
            new.CopyFrom(current.obj)
            nmeta = meta_of(new)
            if propagation_policy == "Orphan" and "orphan" not in nmeta.finalizers:
                nmeta.finalizers.append("orphan")
            elif propagation_policy == "Foreground" and "foregroundDeletion" not in nmeta.finalizers:
                nmeta.finalizers.append("foregroundDeletion")
            grace = self.strategy.grace_period(current.obj, grace_period)
            if not nmeta.finalizers and grace == 0 and not self.strategy.delete_blocked(new):
                if attrs.dry_run:
                    return current.obj, True
                try:
                    return await self._remove(name, namespace, current.obj, current.revision), True
                except ConflictError:
                    continue
            # Graceful: mark the object; finalizers' owners (or the kubelet) finish the job.
            deadline = now_seconds() + grace
            if nmeta.HasField("deletion_timestamp"):
                if nmeta.deletion_timestamp.seconds <= deadline and list(nmeta.finalizers) == list(meta.finalizers):
                    return current.obj, False
            nmeta.deletion_timestamp.seconds = deadline
            nmeta.deletion_timestamp.nanos = 0
            nmeta.deletion_grace_period_seconds = grace
            if grace > 0 and meta.generation > 0:
                # A grace period is a change of the desired state (the kubelet must stop the pod);
                # a deletion held only by finalizers is not.
                nmeta.generation = meta.generation + 1
            self.strategy.on_graceful_delete(new)
            if attrs.dry_run:
                return new, False
            raw = self._encode_for_storage(new)
            try:
                revision = await self.storage.update(self.key(namespace, name), raw,
                                                     expected_revision=current.revision)
            except ConflictError:
                continue
            except StorageError as exc:
                raise translate(exc, self, name) from exc
            nmeta.resource_version = str(revision)
            return new, False
        raise errors.conflict(self.rt.group, self.rt.resource, name, "too many concurrent updates; try again")

    async def delete_collection(self, attrs: Attributes, label_selector: str = "", field_selector: str = "", *,
                                propagation_policy: str = "", grace_period: int | None = None,
                                ) -> builtins.list[Message]:
        """Deletes every matching object with the same options; returns them as deleted or marked.

        The set is read consistently once; objects that vanish meanwhile are
        skipped (someone else deleted them), as Kubernetes' DeleteCollection
        does. A failure on one object stops nothing else and is raised after
        the others are done.
        """
        items = await self.list_objects(attrs.namespace, label_selector, field_selector)
        gate = asyncio.Semaphore(DELETE_COLLECTION_WORKERS)
        failures: list[errors.StatusError] = []

        async def one(obj: Message) -> Message | None:
            meta = meta_of(obj)
            one_attrs = Attributes(attrs.user, "delete", self.rt, meta.namespace, meta.name, dry_run=attrs.dry_run)
            async with gate:
                try:
                    return (await self.delete(one_attrs, propagation_policy=propagation_policy,
                                              grace_period=grace_period))[0]
                except errors.StatusError as exc:
                    if exc.reason != "NotFound":
                        failures.append(exc)
                    return None

        done = await asyncio.gather(*(one(obj) for obj in items))
        if failures:
            raise failures[0]
        return [obj for obj in done if obj is not None]

    async def _remove(self, name: str, namespace: str, obj: Message, revision: int) -> Message:
        """Deletes the key if it is still at ``revision``; raises ConflictError otherwise."""
        try:
            kv = await self.storage.delete(self.key(namespace, name), expected_revision=revision,
                                           releases=self.strategy.releases_for_delete(obj))
        except ConflictError:
            raise
        except StorageError as exc:
            raise translate(exc, self, name) from exc
        gone = type(obj)()
        gone.CopyFrom(obj)
        meta_of(gone).resource_version = str(kv.mod_revision)
        return gone

    # --- watch -----------------------------------------------------------

    async def watch(self, namespace: str, label_selector: str, field_selector: str, resource_version: str,
                    allow_bookmarks: bool) -> AsyncGenerator[WatchChunk, None]:
        """Yields the (type, wire bytes) events of one revision at a time, or a bookmark revision."""
        flt = self.make_filter(namespace, label_selector, field_selector)
        start: int | None = None
        if resource_version in ("", "0"):
            # "" = the current state, read consistently, then changes; "0" = any state the cache has.
            await self._wait_cache(resource_version)
        else:
            start = parse_rv(resource_version)
            await self.cache.wait_ready()
            await self.cache.wait_for_revision(start)
        # Every watch ends after a server-chosen time, jittered so that the
        # clients of a restarted server do not all come back at once; they
        # resume from their last resourceVersion, maybe on another server.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.cache.watch_timeout * (1.0 + random.random())
        try:
            w = self.cache.watch(start, flt, allow_bookmarks)
        except OutOfWindow:
            assert start is not None
            async with contextlib.aclosing(self._watch_storage(start, flt, deadline)) as chunks:
                async for chunk in chunks:
                    yield chunk
            return
        expiry = loop.call_at(deadline, self.cache.expire, w)
        try:
            while True:
                item = await w.queue.get()
                if item is None:
                    return
                if isinstance(item, int):
                    yield item
                else:
                    yield [(t, co.wire) for t, co in item]
        finally:
            expiry.cancel()
            self.cache.unwatch(w)

    async def _watch_storage(self, start: int, flt: Filter, deadline: float) -> AsyncGenerator[WatchChunk, None]:
        """Serves a watch older than the cache's history straight from etcd's history, until ``deadline``."""
        stream = self.storage.watch(self.prefix, start_revision=start + 1)
        loop = asyncio.get_running_loop()
        batches = aiter(stream)
        try:
            while True:
                try:
                    batch = await asyncio.wait_for(anext(batches), max(deadline - loop.time(), 0))
                except (StopAsyncIteration, TimeoutError):
                    return
                out: list[tuple[str, bytes]] = []
                for ev in batch.events:
                    co = self.cache.make(ev.key, ev.value, ev.revision)
                    prev = self.cache.make(ev.key, ev.prev_value, ev.revision) if ev.prev_value else None
                    matches = flt.matches(co)
                    if ev.type == "DELETE":
                        if matches:
                            out.append(("DELETED", co.wire))
                        continue
                    old = prev is not None and flt.matches(prev)
                    if matches and old:
                        out.append(("MODIFIED", co.wire))
                    elif matches:
                        out.append(("ADDED", co.wire))
                    elif old:
                        assert prev is not None
                        out.append(("DELETED", prev.wire))
                if out:
                    yield out
        except CompactedError as exc:
            raise errors.expired(f"too old resource version: {start} ({exc.compact_revision})") from exc
        finally:
            await stream.close()

    def bookmark(self, revision: int) -> bytes:
        return rv_suffix(self.rt.message, revision)


def parse_rv(value: str) -> int:
    try:
        rv = int(value)
    except ValueError:
        raise errors.bad_request(f'invalid resource version "{value}": must be a decimal number') from None
    if rv < 0:
        raise errors.bad_request(f'invalid resource version "{value}"')
    return rv

