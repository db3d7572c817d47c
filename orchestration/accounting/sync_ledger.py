"""The sync ledger: what has been sent to which accounting system, so that each object reaches
it exactly once (docs/accounting-sync.md).

One row per (provider, tenant, object type, local id), enforced by the primary key. A row is
written *before* its request leaves (status `sending`), so a crash or a timeout leaves a trace:
the next run looks the object up remotely before it creates it again. `attempts` counts
requests; the last HTTP status and error stay on the row for the person who has to fix it.
Every request is also appended to `accounting.sync_attempts`, an audit trail.

Credentials never reach these tables: rows hold payload hashes, keys, remote ids and error
messages built by this package, never headers.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from orchestration.warehouse import Warehouse

SYNC_LEDGER = "accounting.sync_ledger"
SYNC_ATTEMPTS = "accounting.sync_attempts"

# A row's life: pending -> sending -> synced, or -> failed (retried by a later run once
# next_attempt_at has passed). `sending` on a row read at the start of a run means the outcome
# of its last request is unknown (timeout, crash): the object is looked up before it is sent.
PENDING, SENDING, SYNCED, FAILED = "pending", "sending", "synced", "failed"

SYNC_LEDGER_COLUMNS = [
    ("provider", "varchar"), ("tenant", "varchar"), ("object_type", "varchar"), ("local_id", "varchar"),
    ("local_number", "varchar"), ("payload_hash", "varchar"), ("idempotency_key", "varchar"),
    ("remote_id", "varchar"), ("remote_number", "varchar"), ("status", "varchar"),
    ("error_kind", "varchar"), ("attempts", "integer"), ("consecutive_failures", "integer"),
    ("next_attempt_at", "timestamp"),
    ("last_http_status", "integer"), ("last_error", "varchar"), ("created_at", "timestamp"),
    ("updated_at", "timestamp"), ("synced_at", "timestamp"),
]
SYNC_ATTEMPT_COLUMNS = [
    ("provider", "varchar"), ("tenant", "varchar"), ("object_type", "varchar"), ("local_id", "varchar"),
    ("attempted_at", "timestamp"), ("operation", "varchar"), ("outcome", "varchar"), ("http_status", "integer"),
    ("error", "varchar"),
]


def ensure_sync_ledger(warehouse: Warehouse) -> None:
    warehouse.execute("create schema if not exists accounting")
    columns = ", ".join(f"{name} {sql_type}" for name, sql_type in SYNC_LEDGER_COLUMNS)
    warehouse.execute(f"create table if not exists {SYNC_LEDGER} ({columns}, "
                      "primary key (provider, tenant, object_type, local_id))")
    columns = ", ".join(f"{name} {sql_type}" for name, sql_type in SYNC_ATTEMPT_COLUMNS)
    warehouse.execute(f"create table if not exists {SYNC_ATTEMPTS} ({columns})")


def payload_hash(canonical_json: str) -> str:
    return hashlib.sha256(canonical_json.encode()).hexdigest()


def idempotency_key(provider: str, tenant: str, object_type: str, local_id: str, payload_digest: str) -> str:
    """The same object with the same payload always gets the same key (Xero keeps keys for a
    while and answers a repeated key with the first response; at most 128 characters)."""
    digest = hashlib.sha256("|".join([provider, tenant, object_type, local_id, payload_digest]).encode())
    return f"meterline-{digest.hexdigest()}"


@dataclass
class SyncRecord:
    provider: str
    tenant: str
    object_type: str
    local_id: str
    local_number: str | None
    payload_hash: str
    idempotency_key: str
    remote_id: str | None = None
    remote_number: str | None = None
    status: str = PENDING
    error_kind: str | None = None
    attempts: int = 0
    consecutive_failures: int = 0
    """Failed runs since the last success: what the retry back-off grows with."""
    next_attempt_at: datetime | None = None
    last_http_status: int | None = None
    last_error: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    synced_at: datetime | None = None

    @property
    def key(self) -> tuple[str, str]:
        return self.object_type, self.local_id

    def as_row(self) -> list[Any]:
        return [getattr(self, name) for name, _ in SYNC_LEDGER_COLUMNS]


class SyncLedger:
    """Reads and writes the sync ledger of one provider and tenant."""

    def __init__(self, warehouse: Warehouse, provider: str, tenant: str):
        self.warehouse = warehouse
        self.provider = provider
        self.tenant = tenant
        ensure_sync_ledger(warehouse)

    def records(self) -> dict[tuple[str, str], SyncRecord]:
        p = self.warehouse.placeholder
        names = [name for name, _ in SYNC_LEDGER_COLUMNS]
        rows = self.warehouse.query(
            f"select {', '.join(names)} from {SYNC_LEDGER} where provider = {p} and tenant = {p}",
            [self.provider, self.tenant])
        records = [SyncRecord(**dict(zip(names, row))) for row in rows]
        return {record.key: record for record in records}

    def save(self, record: SyncRecord, now: datetime) -> None:
        """Insert or update one row (a delete and an insert in one transaction: portable, and the
        primary key still refuses a second row for the same object)."""
        record.updated_at = now
        if record.created_at is None:
            record.created_at = now
        p = self.warehouse.placeholder
        names = [name for name, _ in SYNC_LEDGER_COLUMNS]
        self.warehouse.execute("begin")
        try:
            self.warehouse.execute(
                f"delete from {SYNC_LEDGER} where provider = {p} and tenant = {p} and object_type = {p} "
                f"and local_id = {p}", [record.provider, record.tenant, record.object_type, record.local_id])
            self.warehouse.execute(
                f"insert into {SYNC_LEDGER} ({', '.join(names)}) values ({', '.join([p] * len(names))})",
                record.as_row())
            self.warehouse.execute("commit")
        except Exception:
            self.warehouse.execute("rollback")
            raise

    def log_attempt(self, record: SyncRecord, now: datetime, operation: str, outcome: str,
                    http_status: int | None, error: str | None) -> None:
        p = self.warehouse.placeholder
        self.warehouse.execute(
            f"insert into {SYNC_ATTEMPTS} values ({', '.join([p] * len(SYNC_ATTEMPT_COLUMNS))})",
            [record.provider, record.tenant, record.object_type, record.local_id, now, operation, outcome,
             http_status, error])


def sync_status_counts(warehouse: Warehouse) -> list[tuple[str, str, str, str, int]]:
    """(provider, tenant, object type, status, count) over the whole ledger."""
    if not warehouse.table_exists("accounting", "sync_ledger"):
        return []
    return warehouse.query(
        f"select provider, tenant, object_type, status, count(*) from {SYNC_LEDGER} "
        "group by 1, 2, 3, 4 order by 1, 2, 3, 4")
