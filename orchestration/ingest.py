"""Ingestion: event files -> raw.events (accepted) and raw.event_rejects (with a reason).

Every input record ends in exactly one of the two tables, so nothing is lost. Validation is
one SQL pass in DuckDB over a uniform staging relation, whatever the file format:
Parquet is read natively; JSON lines and CSV are parsed by Python in bounded chunks (a
malformed line must become a reject with its line number, which DuckDB's readers would
either fail on or skip). The reason codes are documented in docs/ingestion.md.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow as pa

from orchestration import object_store
from orchestration.catalog import BillableMetric
from orchestration.object_store import Location
from orchestration.warehouse import DuckDBWarehouse, Warehouse

log = logging.getLogger(__name__)

SUPPORTED_SUFFIXES = {".parquet": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv"}
CHUNK_ROWS = 250_000
DEFAULT_MAX_FUTURE = timedelta(days=1)

# Reason codes, in the order they are checked: a record gets the first that applies.
REASON_CODES = (
    "malformed_record",
    "missing_transaction_id",
    "missing_code",
    "missing_subscription_and_customer",
    "missing_timestamp",
    "invalid_timestamp",
    "timestamp_in_future",
    "properties_not_object",
    "unknown_metric",
    "missing_value",
    "non_numeric_value",
    "invalid_operation_type",
)

RAW_TABLES: dict[str, list[tuple[str, str]]] = {
    "raw.events": [
        ("event_id", "varchar"), ("transaction_id", "varchar"), ("external_subscription_id", "varchar"),
        ("external_customer_id", "varchar"), ("metric_code", "varchar"), ("event_at", "timestamp"),
        ("properties", "varchar"), ("loaded_at", "timestamp"), ("batch_id", "varchar"),
        ("source_file", "varchar"), ("source_row", "bigint"),
    ],
    "raw.event_rejects": [
        ("batch_id", "varchar"), ("source_file", "varchar"), ("source_row", "bigint"), ("loaded_at", "timestamp"),
        ("reason_code", "varchar"), ("reason_detail", "varchar"), ("raw_record", "varchar"),
        ("transaction_id", "varchar"), ("external_subscription_id", "varchar"),
        ("external_customer_id", "varchar"), ("metric_code", "varchar"),
    ],
    "raw.ingest_batches": [
        ("batch_id", "varchar"), ("source_file", "varchar"), ("file_sha256", "varchar"), ("loaded_at", "timestamp"),
        ("row_count", "bigint"), ("accepted_count", "bigint"), ("rejected_count", "bigint"),
        # Lake files only (read in place, orchestration/lake.py), checked over every accepted row
        # when the file is registered: a plain cast of the timestamp text gives the validated
        # instant, and no value needs trimming. The raw.events view then reads the file with the
        # cheap expressions; otherwise with the same ones as validation.
        ("timestamps_cast_exactly", "boolean"), ("values_clean", "boolean"),
        # The latest event time among the accepted rows: a run whose as_of is later holds none of
        # the batch's events back, so int_events_itemised need not read the batch to find them.
        ("max_event_at", "timestamp"),
    ],
}

STAGED_SCHEMA = pa.schema([
    ("source_row", pa.int64()), ("parse_error", pa.string()), ("raw_record", pa.string()),
    ("transaction_id", pa.string()), ("external_subscription_id", pa.string()),
    ("external_customer_id", pa.string()), ("code", pa.string()), ("timestamp_text", pa.string()),
    ("properties_text", pa.string()),
])


@dataclass
class IngestReport:
    files: list[str] = field(default_factory=list)
    accepted: int = 0
    rejected_by_reason: Counter = field(default_factory=Counter)

    @property
    def rejected(self) -> int:
        return sum(self.rejected_by_reason.values())

    def add(self, other: IngestReport) -> None:
        self.files += other.files
        self.accepted += other.accepted
        self.rejected_by_reason.update(other.rejected_by_reason)


def ensure_raw_tables(warehouse: Warehouse) -> None:
    warehouse.execute("create schema if not exists raw")
    for table, columns in RAW_TABLES.items():
        ddl = ", ".join(f"{name} {sql_type}" for name, sql_type in columns)
        warehouse.execute(f"create table if not exists {table} ({ddl})")
        schema, name = table.split(".")
        existing = warehouse.column_names(schema, name)
        for column, sql_type in columns:
            if column not in existing:  # a warehouse written by an earlier version
                warehouse.execute(f"alter table {table} add column {column} {sql_type}")


def file_sha256(path: Location) -> str:
    digest = hashlib.sha256()
    with object_store.open_binary(path) as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _exact_json(value: object) -> str:
    """JSON text that keeps numbers exactly as sent (they were parsed as Decimal, not float)."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))}: {_exact_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_exact_json(v) for v in value) + "]"
    return json.dumps(value)


def _text(value: object) -> str | None:
    """A scalar field as text; objects and lists keep their JSON form so checks can see them."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, (dict, list, bool)):
        return _exact_json(value)
    return str(value)


def _staged_from_mapping(source_row: int, raw_record: str, record: object) -> dict:
    if not isinstance(record, dict):
        return {"source_row": source_row, "parse_error": "record is not a JSON object", "raw_record": raw_record}
    properties = record.get("properties")
    if isinstance(properties, str):
        properties_text = properties  # CSV and some producers send the object as JSON text
    elif properties is None:
        properties_text = None
    else:
        properties_text = _exact_json(properties)
    return {
        "source_row": source_row, "parse_error": None, "raw_record": raw_record,
        "transaction_id": _text(record.get("transaction_id")),
        "external_subscription_id": _text(record.get("external_subscription_id")),
        "external_customer_id": _text(record.get("external_customer_id")),
        "code": _text(record.get("code")),
        "timestamp_text": _text(record.get("timestamp")),
        "properties_text": properties_text,
    }


def _chunks(rows: Iterator[dict]) -> Iterator[pa.Table]:
    batch: list[dict] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= CHUNK_ROWS:
            yield pa.Table.from_pylist(batch, schema=STAGED_SCHEMA)
            batch = []
    if batch:
        yield pa.Table.from_pylist(batch, schema=STAGED_SCHEMA)


def _jsonl_rows(path: Path) -> Iterator[dict]:
    with path.open(encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            text = line.rstrip("\r\n")
            if not text.strip():
                continue  # blank lines carry no record
            try:
                record = json.loads(text, parse_float=Decimal)
            except json.JSONDecodeError as error:
                yield {"source_row": number, "parse_error": f"not JSON: {error.msg} at column {error.colno}",
                       "raw_record": text}
                continue
            yield _staged_from_mapping(number, text, record)


def _csv_rows(path: Path) -> Iterator[dict]:
    with path.open(newline="", encoding="utf-8-sig", errors="replace") as handle:
        reader = csv.reader(handle)
        header = next(reader, None) or []
        for row in reader:
            number = reader.line_num  # the line the record ends on; the header is line 1
            if not row:
                continue  # a blank line carries no record, as in JSON lines
            raw = json.dumps(row)
            if len(row) != len(header):
                yield {"source_row": number, "raw_record": raw,
                       "parse_error": f"expected {len(header)} columns, found {len(row)}"}
                continue
            record = {k: (v if v != "" else None) for k, v in zip(header, row)}
            yield _staged_from_mapping(number, json.dumps(record), record)


def _stage_parquet(con: duckdb.DuckDBPyConnection, path: Location) -> None:
    """A Parquet file read in place; columns it lacks become NULL and fail per row."""
    columns = {row[0] for row in con.execute("select name from parquet_schema(?)", [str(path)]).fetchall()}

    def text_column(name: str, target: str) -> str:
        if name not in columns:
            return f"cast(null as varchar) as {target}"
        if name == "properties":
            # A struct or map column becomes JSON; a text column is taken as JSON text.
            return f"case when typeof({name}) = 'VARCHAR' then cast({name} as varchar) else cast(to_json({name}) as varchar) end as {target}"
        return f"cast({name} as varchar) as {target}"

    con.execute(
        f"""
        create or replace temp table _staged as
        select
            cast(file_row_number + 1 as bigint) as source_row,
            cast(null as varchar) as parse_error,
            cast(null as varchar) as raw_record,
            {text_column('transaction_id', 'transaction_id')},
            {text_column('external_subscription_id', 'external_subscription_id')},
            {text_column('external_customer_id', 'external_customer_id')},
            {text_column('code', 'code')},
            {text_column('timestamp', 'timestamp_text')},
            {text_column('properties', 'properties_text')}
        from read_parquet(?, file_row_number = true)
        """,
        [str(path)],
    )


def _stage_python(con: duckdb.DuckDBPyConnection, rows: Iterator[dict]) -> None:
    con.execute("create or replace temp table _staged as select * from _empty_staged")
    for chunk in _chunks(rows):
        con.register("_chunk", chunk)
        con.execute("insert into _staged select * from _chunk")
        con.unregister("_chunk")


# The instant of a timestamp text ($text): ISO 8601 (UTC unless it says otherwise) or unix seconds.
PARSED_EVENT_AT = """
        case
            -- Unix seconds (optionally with a fraction): exact decimal, never a float. 9 to 11
            -- digits (1973 to 5138); a shorter number like 20261005 is not taken for one. (An
            -- ISO date has a '-': the cheap test spares almost every row the regular expression.)
            when not contains($text, '-')
                and regexp_full_match(trim($text), '[0-9]{9,11}(\\.[0-9]{1,6})?')
                then make_timestamp(cast(cast(trim($text) as decimal(38, 6)) * 1000000 as bigint))
            -- ISO 8601; a value without an offset is UTC.
            else cast(timezone('UTC', try_cast(trim($text) as timestamptz)) as timestamp)
        end
"""

# One pass of checks over the staged records (_staged) against the loaded metrics (_metrics);
# every record gets its first failing reason, or none. A lake's files go through it once, when
# they are registered (orchestration/lake.py).
VALIDATION_QUERY = """
with parsed as (
    select
        s.*,
        nullif(trim(s.transaction_id), '') as clean_transaction_id,
        nullif(trim(s.external_subscription_id), '') as clean_subscription_id,
        nullif(trim(s.external_customer_id), '') as clean_customer_id,
        nullif(trim(s.code), '') as clean_code,
        """ + PARSED_EVENT_AT.strip().replace("$text", "s.timestamp_text") + """ as parsed_event_at,
        coalesce(nullif(trim(s.properties_text), ''), '{}') as clean_properties
    from _staged as s
),
typed as (
    select
        p.*,
        try(json_type(p.clean_properties)) as properties_type,
        m.aggregation,
        m.field_name,
        case when m.field_name is not null
            then try(json_extract_string(p.clean_properties, '$.' || m.field_name)) end as metric_value,
        try(json_extract_string(p.clean_properties, '$.operation_type')) as operation_type
    from parsed as p
    left join _metrics as m on m.metric_code = p.clean_code
)
select
    t.*,
    case
        when t.parse_error is not null then 'malformed_record'
        when t.clean_transaction_id is null then 'missing_transaction_id'
        when t.clean_code is null then 'missing_code'
        when t.clean_subscription_id is null and t.clean_customer_id is null then 'missing_subscription_and_customer'
        when nullif(trim(t.timestamp_text), '') is null then 'missing_timestamp'
        when t.parsed_event_at is null then 'invalid_timestamp'
        when t.parsed_event_at > $max_event_at then 'timestamp_in_future'
        when t.properties_type is distinct from 'OBJECT' then 'properties_not_object'
        when t.aggregation is null then 'unknown_metric'
        when t.field_name is not null and t.metric_value is null then 'missing_value'
        when t.aggregation in ('sum', 'max', 'latest', 'weighted_sum')
            and try_cast(t.metric_value as decimal(38, 9)) is null then 'non_numeric_value'
        when t.operation_type is not null and t.operation_type not in ('add', 'remove') then 'invalid_operation_type'
    end as reason_code,
    case
        when t.parse_error is not null then t.parse_error
        when t.clean_transaction_id is null then 'transaction_id is missing or empty'
        when t.clean_code is null then 'code is missing or empty'
        when t.clean_subscription_id is null and t.clean_customer_id is null
            then 'neither external_subscription_id nor external_customer_id is given'
        when nullif(trim(t.timestamp_text), '') is null then 'timestamp is missing'
        when t.parsed_event_at is null then 'timestamp ' || t.timestamp_text || ' is neither ISO 8601 nor unix seconds'
        when t.parsed_event_at > $max_event_at
            then 'timestamp ' || t.timestamp_text || ' is later than ' || cast($max_event_at as varchar) || ' UTC'
        when t.properties_type is distinct from 'OBJECT' then 'properties is not a JSON object'
        when t.aggregation is null then 'no billable metric has code ' || t.clean_code
        when t.field_name is not null and t.metric_value is null
            then 'properties.' || t.field_name || ' is missing (metric ' || t.clean_code || ' aggregates it: '
                || t.aggregation || ')'
        when t.aggregation in ('sum', 'max', 'latest', 'weighted_sum')
            and try_cast(t.metric_value as decimal(38, 9)) is null
            then 'properties.' || t.field_name || ' = ' || t.metric_value || ' is not a number'
        when t.operation_type is not null and t.operation_type not in ('add', 'remove')
            then 'properties.operation_type = ' || t.operation_type || ' (expected add or remove)'
    end as reason_detail
from typed as t
"""
VALIDATE_SQL = "create or replace temp table _validated as\n" + VALIDATION_QUERY

# A lake file's read hints (RAW_TABLES, raw.ingest_batches), over its accepted rows: the raw.events
# view may read it with a plain cast of the timestamp text and without trimming only when both
# give exactly what validation accepted, row by row.
READ_HINTS_SQL = """
    select
        coalesce(bool_and(try_cast(timestamp_text as timestamp) is not distinct from parsed_event_at), true),
        coalesce(bool_and(
            transaction_id is not distinct from clean_transaction_id
            and external_subscription_id is not distinct from clean_subscription_id
            and external_customer_id is not distinct from clean_customer_id
            and code is not distinct from clean_code
            and properties_text is not distinct from clean_properties), true)
    from _validated
    where reason_code is null
"""


def _reader_for(path: Location) -> Callable[[duckdb.DuckDBPyConnection], None]:
    kind = SUPPORTED_SUFFIXES.get(object_store.suffix(path).lower())
    if kind == "parquet":
        return lambda con: _stage_parquet(con, path)
    if kind == "jsonl":
        return lambda con: _stage_python(con, _jsonl_rows(path))
    if kind == "csv":
        return lambda con: _stage_python(con, _csv_rows(path))
    raise ValueError(f"{path}: unsupported file type {object_store.suffix(path)!r} "
                     "(expected .parquet, .jsonl or .csv)")


def expand_paths(paths: list[Path]) -> list[Path]:
    """Files as given, and the supported files inside given folders, sorted for a stable order."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.suffix.lower() in SUPPORTED_SUFFIXES and p.is_file())
        elif path.exists():
            files.append(path)
        else:
            raise FileNotFoundError(f"{path}: no such file or folder")
    return files


def ingest_file(
    warehouse: Warehouse,
    path: Location,
    metrics: Mapping[str, BillableMetric],
    *,
    loaded_at: datetime,
    max_future: timedelta = DEFAULT_MAX_FUTURE,
    keep_accepted: bool = True,
    batch_id: str | None = None,
) -> IngestReport:
    """Validate one file and append its rows to raw.events / raw.event_rejects atomically.

    keep_accepted=False (a lake's file, read in place by the raw.events view): only the
    rejects and the batch (with its read hints) are written, under the given batch_id."""
    reader = _reader_for(path)
    sha = file_sha256(path)
    # Random, not derived from the file: the same file ingested twice in one call (or in the
    # same second) is two batches, and event ids (batch-row) must not collide. A lake file is
    # registered once per path, and its id derives from the path (orchestration/lake.py).
    batch_id = batch_id or uuid.uuid4().hex[:16]

    # Validation runs in DuckDB: the warehouse itself when it is DuckDB (no copy), otherwise
    # an in-memory DuckDB whose results are then appended to the target warehouse.
    own = not isinstance(warehouse, DuckDBWarehouse)
    con = duckdb.connect() if own else warehouse.connection
    try:
        con.execute("set TimeZone = 'UTC'")
        con.register("_empty_arrow", STAGED_SCHEMA.empty_table())
        con.execute("create or replace temp table _empty_staged as select * from _empty_arrow")
        con.unregister("_empty_arrow")
        metric_rows = pa.table({
            "metric_code": [m.code for m in metrics.values()],
            "aggregation": [m.aggregation for m in metrics.values()],
            "field_name": [m.field for m in metrics.values()],
        }, schema=pa.schema([("metric_code", pa.string()), ("aggregation", pa.string()), ("field_name", pa.string())]))
        con.register("_metrics_arrow", metric_rows)
        con.execute("create or replace temp table _metrics as select * from _metrics_arrow")
        con.unregister("_metrics_arrow")

        reader(con)
        con.execute(VALIDATE_SQL.replace("$max_event_at", "cast(? as timestamp)"),
                    [loaded_at + max_future] * 3)

        accepted_sql = f"""
            select
                '{batch_id}-' || cast(source_row as varchar) as event_id,
                clean_transaction_id as transaction_id,
                clean_subscription_id as external_subscription_id,
                clean_customer_id as external_customer_id,
                clean_code as metric_code,
                parsed_event_at as event_at,
                clean_properties as properties,
                cast(? as timestamp) as loaded_at,
                '{batch_id}' as batch_id,
                ? as source_file,
                source_row
            from _validated where reason_code is null
        """
        rejected_sql = f"""
            select
                '{batch_id}' as batch_id, ? as source_file, source_row, cast(? as timestamp) as loaded_at,
                reason_code, reason_detail,
                coalesce(raw_record, to_json(struct_pack(
                    transaction_id := transaction_id, external_subscription_id := external_subscription_id,
                    external_customer_id := external_customer_id, code := code, timestamp := timestamp_text,
                    properties := properties_text))::varchar) as raw_record,
                clean_transaction_id as transaction_id, clean_subscription_id as external_subscription_id,
                clean_customer_id as external_customer_id, clean_code as metric_code
            from _validated where reason_code is not null
        """
        counts = dict(con.execute(
            "select coalesce(reason_code, '(accepted)'), count(*) from _validated group by 1").fetchall())
        hints = (None, None) if keep_accepted else con.execute(READ_HINTS_SQL).fetchone()
        [[max_event_at]] = con.execute(
            "select max(parsed_event_at) from _validated where reason_code is null").fetchall()
        accepted = counts.pop("(accepted)", 0)
        total = accepted + sum(counts.values())

        ensure_raw_tables(warehouse)
        warehouse.execute("begin")
        try:
            if own:
                if keep_accepted:
                    warehouse.append_arrow("raw.events",
                                           con.sql(accepted_sql, params=[loaded_at, str(path)]).to_arrow_table())
                warehouse.append_arrow("raw.event_rejects",
                                       con.sql(rejected_sql, params=[str(path), loaded_at]).to_arrow_table())
            else:
                if keep_accepted:
                    con.execute(f"insert into raw.events {accepted_sql}", [loaded_at, str(path)])
                con.execute(f"insert into raw.event_rejects {rejected_sql}", [str(path), loaded_at])
            names = [name for name, _ in RAW_TABLES["raw.ingest_batches"]]
            warehouse.execute(
                f"insert into raw.ingest_batches ({', '.join(names)}) values ("
                + ", ".join([warehouse.placeholder] * len(names)) + ")",
                [batch_id, str(path), sha, loaded_at, total, accepted, total - accepted, *hints, max_event_at],
            )
            warehouse.execute("commit")
        except Exception:
            warehouse.execute("rollback")
            raise
        finally:
            con.execute("drop table if exists _staged")
            con.execute("drop table if exists _validated")
    finally:
        if own:
            con.close()

    report = IngestReport(files=[str(path)], accepted=accepted, rejected_by_reason=Counter(counts))
    log.info("ingested %s: %d accepted, %d rejected", path, report.accepted, report.rejected)
    return report


def ingest_paths(
    warehouse: Warehouse,
    paths: list[Path],
    metrics: Mapping[str, BillableMetric],
    *,
    loaded_at: datetime,
    max_future: timedelta = DEFAULT_MAX_FUTURE,
    on_file: Callable[[Path], None] | None = None,
) -> IngestReport:
    """Ingest every file (folders are expanded); all files of one call share `loaded_at`."""
    if not metrics:
        raise ValueError("No billable metrics are loaded: load a catalog before ingesting events.")
    report = IngestReport()
    for path in expand_paths(paths):
        report.add(ingest_file(warehouse, path, metrics, loaded_at=loaded_at, max_future=max_future))
        if on_file:
            on_file(path)
    return report
