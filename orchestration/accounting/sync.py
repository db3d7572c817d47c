"""The sync engine: sends the books to one accounting system exactly once (docs/accounting-sync.md).

A provider (Xero, NetSuite) turns the books into operations, one per remote object, in the
order their references need (a contact before its invoices, an invoice before the credit
note allocated to it). For each operation the engine reads the sync ledger:

- synced, same payload: nothing to do. Synced with a new payload: sent again only for the
  object types that may change (contacts, items); an issued document never changes.
- `sending` (its last request got no answer) or failed with an uncertain outcome: the object is
  looked up remotely first, and adopted if it is there (its totals are checked).
- otherwise sent, in batches, with a deterministic idempotency key, after the row is marked
  `sending`. Each element of a batch succeeds or fails on its own.

Failures are kept on the row: permanent ones (validation, missing mapping) wait until the data
or the mappings change; transient ones (rate limits, 5xx) are retried by the next run once
`next_attempt_at` has passed. Objects whose references failed wait for them. The engine never
raises for one object's failure: the report lists them, and the caller (CLI, Dagster) fails
loudly when any remain.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from orchestration.accounting.http import (
    AlreadyExists,
    CredentialsError,
    PermanentSyncError,
    SyncError,
    TransientSyncError,
    UncertainOutcome,
    dumps,
)
from orchestration.accounting.sync_ledger import (
    FAILED,
    SENDING,
    SYNCED,
    SyncLedger,
    SyncRecord,
    idempotency_key,
    payload_hash,
)

log = logging.getLogger(__name__)

RETRY_BACKOFF = (timedelta(minutes=5), timedelta(minutes=30), timedelta(hours=2), timedelta(hours=12))
"""When a transiently failed object is tried again, by its number of failed runs."""


@dataclass(frozen=True)
class Remote:
    """What the accounting system calls an object."""

    remote_id: str
    remote_number: str | None = None
    total: Decimal | None = None
    """The remote total, when the object has one: checked against ours before adopting it."""


Payload = dict[str, Any]
RemoteIds = Mapping[tuple[str, str], Remote]


@dataclass
class Operation:
    object_type: str
    local_id: str
    local_number: str | None
    build: Callable[[RemoteIds], Payload]
    """The request body of this object, given the remote ids of the objects it refers to. May
    raise PermanentSyncError (a missing mapping)."""
    depends_on: tuple[tuple[str, str], ...] = ()
    total: Decimal | None = None
    currency: str | None = None
    mutable: bool = False
    """Sent again when its payload changes (contacts, items); issued documents never are."""


@dataclass
class Sendable:
    operation: Operation
    payload: Payload
    record: SyncRecord


ElementOutcome = Remote | SyncError
"""What a batch answered for one element."""


class Provider(Protocol):
    name: str
    tenant: str
    object_types: Sequence[str]

    def operations(self) -> list[Operation]: ...

    def batch_size(self, object_type: str) -> int: ...

    def send(self, object_type: str, batch: Sequence[Sendable], batch_key: str) -> list[ElementOutcome]: ...

    def lookup(self, sendable: Sendable) -> Remote | None: ...


class ProviderBase:
    """What both providers keep: the books, the mappings, a session (None in a dry run) and the
    tenant (Xero organisation, NetSuite account) the sync ledger is kept for."""

    def __init__(self, books, mappings, session, tenant: str):
        self.books = books
        self.mappings = mappings
        self.session = session
        self.tenant = tenant
        self._invoices = {invoice.invoice_id: invoice for invoice in books.invoices}
        self._credit_notes = {note.credit_note_id: note for note in books.credit_notes}


@dataclass
class SyncFailure:
    object_type: str
    local_id: str
    local_number: str | None
    error_kind: str
    http_status: int | None
    message: str


@dataclass
class SyncReport:
    provider: str
    tenant: str
    dry_run: bool = False
    counts: Counter = field(default_factory=Counter)
    """(object type, outcome) -> objects. Outcomes: created, updated, adopted (found remotely
    after an uncertain outcome), unchanged, failed, waiting (a retry not due yet), blocked (a
    reference failed), would_send (dry run)."""
    failures: list[SyncFailure] = field(default_factory=list)
    synced_totals: dict[tuple[str, str], Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    """(object type, currency) -> total of the documents synced by this run."""
    dry_run_payloads: list[tuple[str, str | None, Payload]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures and not any(outcome in ("blocked", "waiting") for _, outcome in self.counts)


def _canonical(payload: Payload) -> str:
    return dumps(payload)


def _is_uncertain(record: SyncRecord) -> bool:
    """Its last request got no answer (a crash while `sending`, a timeout): look it up first."""
    return record.status == SENDING or (record.status == FAILED and record.error_kind == "uncertain")


class SyncEngine:
    def __init__(self, provider: Provider, ledger: SyncLedger, *, now: Callable[[], datetime],
                 dry_run: bool = False, retry_failed_now: bool = False):
        self.provider = provider
        self.ledger = ledger
        self.now = now
        self.dry_run = dry_run
        self.retry_failed_now = retry_failed_now
        self.report = SyncReport(provider.name, provider.tenant, dry_run=dry_run)

    def run(self) -> SyncReport:
        records = {} if self.dry_run else self.ledger.records()
        # Whatever exists remotely can be referred to, even when its last update failed.
        remote: dict[tuple[str, str], Remote] = {
            key: Remote(r.remote_id, r.remote_number) for key, r in records.items() if r.remote_id}
        operations = self.provider.operations()
        by_type: dict[str, list[Operation]] = defaultdict(list)
        for operation in operations:
            by_type[operation.object_type].append(operation)
        for object_type in self.provider.object_types:
            self._sync_type(object_type, by_type.get(object_type, []), records, remote)
        return self.report

    # -- one object type ----------------------------------------------------------------------

    def _sync_type(self, object_type: str, operations: list[Operation], records: dict[tuple[str, str], SyncRecord],
                   remote: dict[tuple[str, str], Remote]) -> None:
        to_send: list[Sendable] = []
        for operation in operations:
            key = (operation.object_type, operation.local_id)
            record = records.get(key)
            if record and record.status == SYNCED and not operation.mutable:
                self._count(object_type, "unchanged")
                continue
            if (record and record.status == FAILED and record.next_attempt_at and not self.retry_failed_now
                    and record.next_attempt_at > self.now()):
                self._count(object_type, "waiting")
                continue
            missing = [dep for dep in operation.depends_on if dep not in remote and not self.dry_run]
            if missing:
                self._count(object_type, "blocked")
                log.warning("%s %s waits for %s", object_type, operation.local_number or operation.local_id,
                            ", ".join(f"{t} {i}" for t, i in missing))
                continue
            try:
                payload = operation.build(remote if not self.dry_run else _Placeholders(remote))
            except PermanentSyncError as error:
                # A row whose last request got no answer stays uncertain: once the mapping is
                # fixed, the object is looked up before it is sent.
                kind = "uncertain" if record and _is_uncertain(record) else "permanent"
                record = record or self._new_record(operation, "", "")
                self._fail(record, error, kind, attempted=False)
                continue
            digest = payload_hash(_canonical(payload))
            if record and record.status == SYNCED and record.payload_hash == digest:
                self._count(object_type, "unchanged")
                continue
            if (record and record.status == FAILED and record.error_kind == "permanent"
                    and record.payload_hash == digest and not self.retry_failed_now):
                # The same request was refused: it stays failed until the data, the mappings or
                # the remote organisation change (then `--retry-failed`), without another request.
                self.report.failures.append(SyncFailure(object_type, record.local_id, record.local_number,
                                                        "permanent", record.last_http_status, record.last_error or ""))
                self._count(object_type, "failed")
                continue
            if self.dry_run:
                self.report.dry_run_payloads.append((object_type, operation.local_number or operation.local_id, payload))
                self._count(object_type, "would_send")
                continue
            if record is None:
                record = self._new_record(operation, digest,
                                          idempotency_key(self.provider.name, self.provider.tenant, object_type,
                                                          operation.local_id, digest))
                records[key] = record
            else:
                uncertain = _is_uncertain(record)
                record.payload_hash = digest
                record.idempotency_key = idempotency_key(self.provider.name, self.provider.tenant, object_type,
                                                         operation.local_id, digest)
                if uncertain and self._adopt_if_found(Sendable(operation, payload, record), remote):
                    continue
            to_send.append(Sendable(operation, payload, record))
        size = max(1, self.provider.batch_size(object_type))
        for start in range(0, len(to_send), size):
            self._send_batch(object_type, to_send[start:start + size], remote)

    def _send_batch(self, object_type: str, batch: list[Sendable], remote: dict[tuple[str, str], Remote]) -> None:
        now = self.now()
        for item in batch:
            item.record.status = SENDING
            item.record.attempts += 1
            self.ledger.save(item.record, now)
        # One element: its own key, so a resend of it in a later run is recognised as a repeat.
        batch_key = batch[0].record.idempotency_key if len(batch) == 1 else idempotency_key(
            self.provider.name, self.provider.tenant, object_type, ",".join(i.operation.local_id for i in batch),
            payload_hash("".join(i.record.idempotency_key for i in batch)))
        try:
            outcomes = self.provider.send(object_type, batch, batch_key)
        except UncertainOutcome as error:
            # Whatever was applied is found by a lookup. The rest is not sent again in this run:
            # the server may still be applying it, and a second request of another composition
            # would not be recognised as a repeat. The next run looks it up again first.
            for item in batch:
                if not self._adopt_if_found(item, remote):
                    self._fail(item.record, error, "uncertain")
            return
        except TransientSyncError as error:
            for item in batch:
                self._fail(item.record, error, "transient")
            return
        except PermanentSyncError as error:
            for item in batch:
                self._fail(item.record, error, "permanent")
            return
        if len(outcomes) != len(batch):
            raise RuntimeError(f"{self.provider.name} answered {len(outcomes)} elements for a batch of {len(batch)}")
        for item, outcome in zip(batch, outcomes):
            if isinstance(outcome, Remote):
                self._synced(item, outcome, remote, "updated" if item.record.remote_id else "created")
            elif isinstance(outcome, AlreadyExists):
                # A create the server says it has (sent before): adopt it. An update refused as a
                # duplicate (a contact renamed to another's name), or a create that clashes with
                # something else, is for a person to resolve.
                if item.record.remote_id or not self._adopt_if_found(item, remote):
                    self._fail(item.record, PermanentSyncError(str(outcome), outcome.http_status), "permanent")
            elif isinstance(outcome, UncertainOutcome):
                if not self._adopt_if_found(item, remote):
                    self._fail(item.record, outcome, "uncertain")
            else:
                kind = "transient" if isinstance(outcome, TransientSyncError) else "permanent"
                self._fail(item.record, outcome, kind)

    # -- outcomes -----------------------------------------------------------------------------

    def _adopt_if_found(self, item: Sendable, remote: dict[tuple[str, str], Remote]) -> bool:
        """Look the object up; if it exists remotely (a request applied without our knowing),
        record it as synced. A remote total that differs from ours is a permanent error."""
        try:
            found = self.provider.lookup(item)
        except CredentialsError:
            raise
        except SyncError as error:
            self._fail(item.record, error, "uncertain")
            return True
        self.ledger.log_attempt(item.record, self.now(), "lookup", "found" if found else "not_found", None, None)
        if found is None:
            return False
        if found.total is not None and item.operation.total is not None and found.total != item.operation.total:
            self._fail(item.record, PermanentSyncError(
                f"{item.operation.local_number or item.operation.local_id} exists in {self.provider.name} with total "
                f"{found.total}, not {item.operation.total}: reconcile it by hand"), "permanent")
            return True
        if item.operation.mutable:
            # Found, but whether it holds this payload is unknown: the next run sends it as an update.
            item.record.payload_hash = "adopted"
        self._synced(item, found, remote, "adopted")
        return True

    def _synced(self, item: Sendable, outcome: Remote, remote: dict[tuple[str, str], Remote], how: str) -> None:
        record = item.record
        now = self.now()
        if outcome.total is not None and item.operation.total is not None and outcome.total != item.operation.total:
            # It exists remotely (it cannot be unsent) but says another total: a person must look.
            record.remote_id, record.remote_number = outcome.remote_id, outcome.remote_number
            remote[record.key] = outcome
            self._fail(record, PermanentSyncError(
                f"{item.operation.local_number or item.operation.local_id} was saved by {self.provider.name} with total "
                f"{outcome.total}, not {item.operation.total}: reconcile it by hand"), "permanent")
            return
        record.status = SYNCED
        record.remote_id = outcome.remote_id
        record.remote_number = outcome.remote_number
        record.error_kind = record.last_error = None
        record.next_attempt_at = None
        record.consecutive_failures = 0
        record.last_http_status = None if how == "adopted" else 200
        record.synced_at = now
        self.ledger.save(record, now)
        self.ledger.log_attempt(record, now, "lookup" if how == "adopted" else "send", how,
                                record.last_http_status, None)
        remote[record.key] = outcome
        self._count(record.object_type, how)
        if item.operation.total is not None and item.operation.currency:
            self.report.synced_totals[(record.object_type, item.operation.currency)] += item.operation.total

    def _fail(self, record: SyncRecord, error: SyncError, kind: str, *, attempted: bool = True) -> None:
        now = self.now()
        if self.dry_run:
            self.report.failures.append(SyncFailure(record.object_type, record.local_id, record.local_number, kind,
                                                    error.http_status, str(error)))
            self._count(record.object_type, "failed")
            return
        record.status = FAILED
        record.error_kind = kind
        record.last_http_status = error.http_status
        record.last_error = str(error)[:2000]
        record.consecutive_failures += 1
        record.next_attempt_at = (None if kind == "permanent" else
                                  now + RETRY_BACKOFF[min(record.consecutive_failures, len(RETRY_BACKOFF)) - 1])
        if kind == "uncertain":
            record.next_attempt_at = now  # the next run looks it up first, whenever it comes
        self.ledger.save(record, now)
        self.ledger.log_attempt(record, now, "send" if attempted else "build", f"failed_{kind}",
                                error.http_status, record.last_error)
        self.report.failures.append(SyncFailure(record.object_type, record.local_id, record.local_number, kind,
                                                error.http_status, str(error)))
        self._count(record.object_type, "failed")
        log.error("%s %s %s failed (%s): %s", self.provider.name, record.object_type,
                  record.local_number or record.local_id, kind, error)

    def _new_record(self, operation: Operation, digest: str, key: str) -> SyncRecord:
        return SyncRecord(provider=self.provider.name, tenant=self.provider.tenant,
                          object_type=operation.object_type, local_id=operation.local_id,
                          local_number=operation.local_number, payload_hash=digest, idempotency_key=key)

    def _count(self, object_type: str, outcome: str) -> None:
        self.report.counts[(object_type, outcome)] += 1


class _Placeholders(dict):
    """Remote ids in a dry run: what is not synced yet shows as <object type local id>."""

    def __init__(self, known: Mapping[tuple[str, str], Remote]):
        super().__init__(known)

    def __missing__(self, key: tuple[str, str]) -> Remote:
        return Remote(remote_id=f"<{key[0]} {key[1]}>")

    def __contains__(self, key: object) -> bool:
        return True

