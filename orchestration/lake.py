"""Events read in place from a Parquet lake: files under a folder, typically partitioned by
date (`events/date=2026-11-20/part-0.parquet`), never copied into the warehouse.

Registering the lake (`meterline run --events-lake DIR`) does per new file what ingestion
does, except copying the accepted rows: the file is validated once, its rejects are kept in
raw.event_rejects with their reasons, and a batch row (file, sha256, counts, loaded_at) goes
to raw.ingest_batches. `raw.events` is then a view over the registered files that applies
the same checks (orchestration/ingest.py VALIDATION_QUERY) and keeps the accepted rows.

The view is a union with one branch per registration, each stamped with its constant
loaded_at: the incremental models read `loaded_at > last run`, DuckDB pushes that filter into
every branch, and the branches of earlier registrations are dropped when the query is
planned. A daily run reads the day's files, not the lake.

A file is identified by its path: lake files are immutable (a producer writes new files, it
does not rewrite old ones). DuckDB target only.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from pathlib import Path

from orchestration.ingest import (
    DEFAULT_MAX_FUTURE,
    IngestReport,
    VALIDATION_QUERY,
    ensure_raw_tables,
    ingest_file,
)
from orchestration.warehouse import DuckDBWarehouse, Warehouse


class LakeError(ValueError):
    """The lake cannot be registered in this warehouse."""


def lake_files(lake: Path) -> list[Path]:
    if not lake.is_dir():
        raise LakeError(f"{lake}: the events lake must be a folder of Parquet files")
    return sorted(path for path in lake.rglob("*.parquet") if path.is_file())


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _events_is_view(warehouse: Warehouse) -> bool:
    return bool(warehouse.query(
        "select count(*) from information_schema.tables "
        "where table_schema = 'raw' and table_name = 'events' and table_type = 'VIEW'")[0][0])


def register_lake(warehouse: Warehouse, lake: Path, metrics, *, loaded_at: datetime,
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
    seen = {row[0] for row in warehouse.query("select source_file from raw.ingest_batches")}
    report = IngestReport()
    for path in lake_files(lake):
        if str(path) in seen:
            continue
        report.add(ingest_file(warehouse, path, metrics, loaded_at=loaded_at, keep_accepted=False))
        if on_file:
            on_file(path)
    define_events_view(warehouse)
    return report


def _staged_branch(warehouse: DuckDBWarehouse, files: list[str], loaded_at: datetime) -> str:
    """The files of one registration as staged records (the ingestion's columns, as text)."""
    file_list = "[" + ", ".join(_sql_text(f) for f in files) + "]"
    scan = f"read_parquet({file_list}, filename = true, file_row_number = true, union_by_name = true)"
    columns = {row[0]: row[1] for row in warehouse.query(f"describe select * from {scan}")}

    def text(name: str, target: str) -> str:
        if name not in columns:
            return f"cast(null as varchar) as {target}"
        if name == "properties" and columns[name] != "VARCHAR":
            return f"cast(to_json({name}) as varchar) as {target}"  # a struct or map column
        return f"cast({name} as varchar) as {target}"

    return f"""
        select
            cast(file_row_number + 1 as bigint) as source_row,
            cast(null as varchar) as parse_error,
            cast(null as varchar) as raw_record,
            {text('transaction_id', 'transaction_id')},
            {text('external_subscription_id', 'external_subscription_id')},
            {text('external_customer_id', 'external_customer_id')},
            {text('code', 'code')},
            {text('timestamp', 'timestamp_text')},
            {text('properties', 'properties_text')},
            filename as source_file,
            cast('{loaded_at:%Y-%m-%d %H:%M:%S.%f}' as timestamp) as loaded_at
        from {scan}"""


def define_events_view(warehouse: DuckDBWarehouse) -> None:
    """raw.lake_staged (the registered files) and raw.events (their accepted rows)."""
    registrations: dict[datetime, list[str]] = defaultdict(list)
    for source_file, loaded_at in warehouse.query(
            "select source_file, loaded_at from raw.ingest_batches order by loaded_at, source_file"):
        registrations[loaded_at].append(source_file)
    if not registrations:
        return
    branches = "\n        union all\n".join(
        _staged_branch(warehouse, files, loaded_at) for loaded_at, files in registrations.items())
    hours = int(DEFAULT_MAX_FUTURE.total_seconds() // 3600)
    validation = (VALIDATION_QUERY
                  .replace("from _staged as s", "from raw.lake_staged as s")
                  .replace("left join _metrics as m",
                           "left join catalog.billable_metrics as m")
                  .replace("$max_event_at", f"(t.loaded_at + interval {hours} hour)"))
    warehouse.execute("begin")
    try:
        warehouse.execute(f"create or replace view raw.lake_staged as {branches}")
        if not _events_is_view(warehouse):
            warehouse.execute("drop table if exists raw.events")  # the empty table ingestion created
        warehouse.execute(f"""
            create or replace view raw.events as
            with validated as ({validation})
            select
                batches.batch_id || '-' || cast(validated.source_row as varchar) as event_id,
                validated.clean_transaction_id as transaction_id,
                validated.clean_subscription_id as external_subscription_id,
                validated.clean_customer_id as external_customer_id,
                validated.clean_code as metric_code,
                validated.parsed_event_at as event_at,
                validated.clean_properties as properties,
                validated.loaded_at,
                batches.batch_id,
                validated.source_file,
                validated.source_row
            from validated
            inner join raw.ingest_batches as batches
                on validated.source_file = batches.source_file
            where validated.reason_code is null
        """)
        warehouse.execute("commit")
    except Exception:
        warehouse.execute("rollback")
        raise
