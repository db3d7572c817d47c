"""Events read in place from a Parquet lake: files under a folder, typically partitioned by
date (`events/date=2026-11-20/part-0.parquet`), never copied into the warehouse.

Registering the lake (`meterline run --events-lake DIR`) does per new file what ingestion
does, except copying the accepted rows: the file is validated once, its rejects are kept in
raw.event_rejects with their reasons, and a batch row (file, sha256, counts, loaded_at and
read hints) goes to raw.ingest_batches. `raw.events` is then a view over the registered files
that leaves out the rejected rows and reads the others as validation did.

The view is a union with one branch per registration (and kind of file), each stamped with its
constant loaded_at: the incremental models read `loaded_at > last run`, DuckDB pushes that
filter into every branch, and the branches of earlier registrations are dropped when the
query is planned. A daily run reads the day's files, not the lake.

A file is identified by its path: lake files are immutable (a producer writes new files, it
does not rewrite old ones). The folder may be local or an object-store prefix (`s3://bucket/events`,
orchestration/object_store.py), whose files are named by the store's first protocol whatever
alias the prefix was given by (`abfs://` for `az://`). DuckDB target only.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from orchestration import object_store
from orchestration.ingest import PARSED_EVENT_AT, IngestReport, ensure_raw_tables, ingest_file
from orchestration.object_store import Location
from orchestration.warehouse import DuckDBWarehouse, Warehouse


class LakeError(ValueError):
    """The lake cannot be registered in this warehouse."""


def lake_files(lake: Location) -> list[Location]:
    """The lake's Parquet files: paths under a local folder, or URIs under an object-store
    prefix (orchestration/object_store.py)."""
    if object_store.protocol(lake):
        try:
            return object_store.list_files(str(lake), ".parquet")
        except (FileNotFoundError, RuntimeError) as error:  # no such prefix, or no fsspec package
            raise LakeError(str(error)) from error
    lake = Path(lake)
    if not lake.is_dir():
        raise LakeError(f"{lake}: the events lake must be a folder of Parquet files")
    return sorted(path for path in lake.rglob("*.parquet") if path.is_file())


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _events_is_view(warehouse: Warehouse) -> bool:
    return bool(warehouse.query(
        "select count(*) from information_schema.tables "
        "where table_schema = 'raw' and table_name = 'events' and table_type = 'VIEW'")[0][0])


def lake_batch_id(path: str) -> str:
    """A lake file's batch id, derived from its path: a path is registered once, and the
    raw.events view recomputes the id from the file name it reads (md5 of a constant per file
    costs nothing), so no per-row lookup of the batch is needed."""
    return hashlib.md5(path.encode()).hexdigest()[:16]


def register_lake(warehouse: Warehouse, lake: Location, metrics, *, loaded_at: datetime,
                  on_file=None) -> IngestReport:
    """Validate and register the lake's new files, then define raw.events over all of them."""
    if not isinstance(warehouse, DuckDBWarehouse):
        raise LakeError("an events lake is read in place by DuckDB: use the duckdb target")
    if not metrics:
        raise LakeError("No billable metrics are loaded: load a catalog before registering events.")
    ensure_raw_tables(warehouse)
    if not _events_is_view(warehouse):
        [[copied]] = warehouse.query("select count(*) from raw.events")
        if copied:
            raise LakeError(f"raw.events already holds {copied} ingested events: a warehouse reads its events "
                            "either from ingested files or from a lake, not both")
    if object_store.protocol(lake):  # this connection reads the store from now on
        object_store.register(warehouse.connection, [object_store.protocol(lake)])
    seen = {row[0] for row in warehouse.query("select source_file from raw.ingest_batches")}
    report = IngestReport()
    for path in lake_files(lake):
        if str(path) in seen:
            continue
        report.add(ingest_file(warehouse, path, metrics, loaded_at=loaded_at, keep_accepted=False,
                               batch_id=lake_batch_id(str(path))))
        if on_file:
            on_file(path)
    define_events_view(warehouse)
    return report


@dataclass(frozen=True)
class _ReadGroup:
    """Registered files read alike: one load (its constant loaded_at), with or without rejects
    to leave out, and with the cheap or the validating expressions."""
    loaded_at: datetime
    has_rejects: bool
    timestamps_cast_exactly: bool
    values_clean: bool


def _branch(warehouse: DuckDBWarehouse, group: _ReadGroup, files: list[str]) -> str:
    """One group's accepted events, with the columns of raw.events."""
    file_list = "[" + ", ".join(_sql_text(f) for f in files) + "]"
    scan = f"read_parquet({file_list}, filename = true, file_row_number = true, union_by_name = true)"
    columns = {row[0]: row[1] for row in warehouse.query(f"describe select * from {scan}")}

    def text(name: str) -> str:
        if name not in columns:
            return "cast(null as varchar)"
        if name == "properties" and columns[name] != "VARCHAR":
            return f"cast(to_json({name}) as varchar)"  # a struct or map column
        return f"cast({name} as varchar)"

    def clean(name: str) -> str:
        return text(name) if group.values_clean else f"nullif(trim({text(name)}), '')"

    properties = (text("properties") if group.values_clean
                  else f"coalesce(nullif(trim({text('properties')}), ''), '{{}}')")
    # The same instant validation accepted (ingest.py VALIDATION_QUERY), checked per file. A
    # column the files already type as microsecond timestamps is that instant: validation read
    # its text, which round-trips exactly (a naive one is UTC), so the view skips formatting
    # and parsing it again (about 3 s per pass over 100M events on 2 cores).
    if columns.get("timestamp") == "TIMESTAMP":
        event_at = "lake.timestamp"
    elif columns.get("timestamp") == "TIMESTAMP WITH TIME ZONE":
        event_at = "cast(timezone('UTC', lake.timestamp) as timestamp)"
    elif group.timestamps_cast_exactly:
        event_at = f"cast({text('timestamp')} as timestamp)"
    else:
        event_at = PARSED_EVENT_AT.replace("$text", text("timestamp"))
    rejects = ("" if not group.has_rejects else """
        where not exists (
            select 1 from raw.event_rejects as rejects
            where rejects.source_file = lake.filename and rejects.source_row = lake.file_row_number + 1
        )""")
    # event_id is "<batch_id>-<row>", as ingest.py names events: macro event_id relies on it.
    return f"""
        select
            substr(md5(lake.filename), 1, 16) || '-' || cast(lake.file_row_number + 1 as varchar) as event_id,
            {clean('transaction_id')} as transaction_id,
            {clean('external_subscription_id')} as external_subscription_id,
            {clean('external_customer_id')} as external_customer_id,
            {clean('code')} as metric_code,
            {event_at} as event_at,
            {properties} as properties,
            cast('{group.loaded_at:%Y-%m-%d %H:%M:%S.%f}' as timestamp) as loaded_at,
            substr(md5(lake.filename), 1, 16) as batch_id,
            lake.filename as source_file,
            cast(lake.file_row_number + 1 as bigint) as source_row
        from {scan} as lake{rejects}"""


def define_events_view(warehouse: DuckDBWarehouse) -> None:
    """raw.events over the registered files: their accepted rows, read in place.

    Not the validation query again: registration kept every reject (file and row) and checked
    which cheap expressions give exactly the validated values (the read hints), so a view read
    costs what reading the columns costs, plus a join for the few files that had rejects."""
    groups: dict[_ReadGroup, list[str]] = defaultdict(list)
    for source_file, loaded_at, rejected, cast_exactly, clean in warehouse.query(
            "select source_file, loaded_at, rejected_count, timestamps_cast_exactly, values_clean "
            "from raw.ingest_batches order by loaded_at, source_file"):
        groups[_ReadGroup(loaded_at, bool(rejected), bool(cast_exactly), bool(clean))].append(source_file)
    if not groups:
        return
    branches = "\n        union all\n".join(_branch(warehouse, group, files) for group, files in groups.items())
    warehouse.execute("begin")
    try:
        if not _events_is_view(warehouse):
            warehouse.execute("drop table if exists raw.events")  # the empty table ingestion created
        warehouse.execute("drop view if exists raw.lake_staged")  # an earlier version's staging view
        warehouse.execute(f"create or replace view raw.events as {branches}")
        warehouse.execute("commit")
    except Exception:
        warehouse.execute("rollback")
        raise
