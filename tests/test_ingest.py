"""Ingestion loses nothing: every input record lands in raw.events or raw.event_rejects.

The same logical records are written as JSON lines, CSV and Parquet; each bad record fails
exactly one check (orchestration.ingest.REASON_CODES), and the counts, row numbers and
stored values are asserted exactly. The last test runs the whole pipeline and re-sends the
same file: invoices must not change, and the reconciliation must show the re-sent events as
duplicates.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from orchestration import pipeline
from orchestration.catalog import read_catalog, write_catalog
from orchestration.ingest import REASON_CODES, IngestReport, ingest_paths
from orchestration.warehouse import DuckDBWarehouse
from tests.conftest import SMALL_AS_OF, SMALL_CATALOG, run_all

LOADED_AT = datetime(2026, 11, 21, 12, 0, 0)
FUTURE = "2026-11-24T12:00:00Z"  # 3 days after LOADED_AT (the limit is 1 day)
ALL = frozenset({"jsonl", "csv", "parquet"})
DROP = object()
CSV_COLUMNS = ["transaction_id", "external_subscription_id", "external_customer_id", "code", "timestamp",
               "properties"]


@dataclass(frozen=True)
class Item:
    """One input record: a dict (every format), a raw JSON line, or a raw CSV row."""

    label: str
    payload: Any
    reason: str | None  # None: accepted
    formats: frozenset = ALL
    expected_at: datetime | None = None
    detail: str = ""  # a substring the reject's reason_detail must contain


BLANK = Item("blank", "", None, frozenset({"jsonl"}))
BLANK_SPACES = Item("blank-spaces", "   \t", None, frozenset({"jsonl"}))


def _record(tx: str | None, **changes: Any) -> dict:
    record: dict[str, Any] = {"transaction_id": tx, "external_subscription_id": "sub_a", "code": "api_requests",
                              "timestamp": "2026-10-05T11:00:00Z"}
    for key, value in changes.items():
        if value is DROP:
            record.pop(key, None)
        else:
            record[key] = value
    return record


GOOD = [
    Item("iso-z", {"transaction_id": "ok-z", "external_subscription_id": "sub_a", "code": "api_requests",
                   "timestamp": "2026-10-05T10:00:00Z"}, None, expected_at=datetime(2026, 10, 5, 10, 0)),
    Item("iso-offset", {"transaction_id": "ok-offset", "external_subscription_id": "sub_a", "code": "input_tokens",
                        "timestamp": "2026-10-05T10:00:00+02:00", "properties": {"tokens": 1500}}, None,
         expected_at=datetime(2026, 10, 5, 8, 0)),
    Item("iso-naive", {"transaction_id": "ok-naive", "external_customer_id": "cus_b", "code": "input_tokens",
                       "timestamp": "2026-10-06T09:30:00", "properties": {"tokens": "12.5", "model": "small"}},
         None, expected_at=datetime(2026, 10, 6, 9, 30)),
    Item("unix", {"transaction_id": "ok-unix", "external_subscription_id": "sub_a", "code": "api_requests",
                  "timestamp": 1790000000}, None, expected_at=datetime(2026, 9, 21, 14, 13, 20)),
    Item("unix-fraction", {"transaction_id": "ok-unix-fraction", "external_subscription_id": "sub_a",
                           "code": "api_requests", "timestamp": 1790000000.25}, None,
         expected_at=datetime(2026, 9, 21, 14, 13, 20, 250000)),
]


def bad_items(future: str = FUTURE) -> list[Item]:
    return [
        Item("not-json", '{"transaction_id": "bad-json", "code": ', "malformed_record", frozenset({"jsonl"}),
             detail="not JSON"),
        Item("json-array", '["bad-array", "sub_a", "api_requests"]', "malformed_record", frozenset({"jsonl"}),
             detail="not a JSON object"),
        Item("csv-columns", ["bad-columns", "sub_a", "api_requests"], "malformed_record", frozenset({"csv"}),
             detail="expected 6 columns, found 3"),
        Item("missing-tx", _record(None, transaction_id=DROP), "missing_transaction_id", detail="transaction_id"),
        Item("null-tx", _record(None), "missing_transaction_id", detail="transaction_id"),
        Item("missing-code", _record("bad-code", code=DROP), "missing_code", detail="code"),
        Item("no-owner", _record("bad-owner", external_subscription_id=DROP), "missing_subscription_and_customer",
             detail="external_customer_id"),
        Item("missing-ts", _record("bad-ts-missing", timestamp=DROP), "missing_timestamp", detail="timestamp"),
        Item("bad-ts", _record("bad-ts", timestamp="5 octobre 2026"), "invalid_timestamp", detail="5 octobre 2026"),
        Item("future", _record("bad-future", timestamp=future), "timestamp_in_future", detail=future),
        Item("props-list", _record("bad-props-list", properties=[1, 2]), "properties_not_object",
             detail="properties"),
        Item("props-string", _record("bad-props-string", properties="abc"), "properties_not_object",
             detail="properties"),
        Item("unknown-metric", _record("bad-metric", code="output_tokens"), "unknown_metric",
             detail="output_tokens"),
        Item("sum-missing", _record("bad-sum-missing", code="input_tokens", properties={"model": "small"}),
             "missing_value", detail="properties.tokens"),
        Item("sum-abc", _record("bad-sum-abc", code="input_tokens", properties={"tokens": "abc"}),
             "non_numeric_value", detail="abc"),
        Item("sum-true", _record("bad-sum-true", code="input_tokens", properties={"tokens": True}),
             "non_numeric_value", detail="true"),
        Item("bad-operation", _record("bad-operation", code="input_tokens",
                                      properties={"tokens": 5, "operation_type": "delete"}),
             "invalid_operation_type", detail="delete"),
    ]


def mixed_items(future: str = FUTURE) -> list[Item]:
    bad = bad_items(future)
    return [*GOOD[:2], BLANK, *bad[:8], BLANK_SPACES, GOOD[2], *bad[8:], *GOOD[3:]]


# ---------------------------------------------------------------- writers


@dataclass(frozen=True)
class Placed:
    row: int  # source_row: the line (JSONL, CSV) or 1-based row (Parquet)
    item: Item
    raw_line: str | None = None


def write_jsonl(path: Path, items: list[Item]) -> list[Placed]:
    lines, placed = [], []
    for item in items:
        if "jsonl" not in item.formats:
            continue
        line = item.payload if isinstance(item.payload, str) else json.dumps(item.payload)
        lines.append(line)
        if line.strip():
            placed.append(Placed(len(lines), item, line))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return placed


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value)


def write_csv(path: Path, items: list[Item]) -> list[Placed]:
    placed = []
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        line = 1
        for item in items:
            if "csv" not in item.formats:
                continue
            row = item.payload if isinstance(item.payload, list) else [
                _text(item.payload.get(c)) for c in CSV_COLUMNS]
            writer.writerow(row)
            line += 1
            placed.append(Placed(line, item))
    return placed


def write_parquet(path: Path, items: list[Item]) -> list[Placed]:
    kept = [item for item in items if "parquet" in item.formats]
    columns = {c: [None if item.payload.get(c) is None else _text(item.payload.get(c)) for item in kept]
               for c in CSV_COLUMNS}
    pq.write_table(pa.table(columns, schema=pa.schema([(c, pa.string()) for c in CSV_COLUMNS])), path)
    return [Placed(index, item) for index, item in enumerate(kept, start=1)]


WRITERS = {"jsonl": write_jsonl, "csv": write_csv, "parquet": write_parquet}


# ---------------------------------------------------------------- helpers


@pytest.fixture
def catalog():
    return read_catalog(SMALL_CATALOG)


@pytest.fixture
def warehouse(tmp_path: Path, catalog):
    wh = DuckDBWarehouse(tmp_path / "w.duckdb")
    write_catalog(wh, catalog, LOADED_AT)
    yield wh
    wh.close()


def rows(wh: DuckDBWarehouse, sql: str) -> list[dict]:
    cursor = wh.connection.execute(sql)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def expected_counts(placed: list[Placed]) -> Counter:
    return Counter(p.item.reason for p in placed if p.item.reason)


def assert_ingested_exactly(wh: DuckDBWarehouse, path: Path, placed: list[Placed], report: IngestReport,
                            fmt: str) -> None:
    expected = expected_counts(placed)
    accepted_items = [p for p in placed if p.item.reason is None]
    assert report.files == [str(path)]
    assert report.accepted == len(accepted_items) == len(GOOD)
    assert report.rejected_by_reason == expected
    assert report.accepted + report.rejected == len(placed)

    events = rows(wh, "select * from raw.events order by source_row")
    rejects = rows(wh, "select * from raw.event_rejects order by source_row")
    batches = rows(wh, "select * from raw.ingest_batches")
    assert len(events) == report.accepted
    assert len(rejects) == report.rejected
    assert len(batches) == 1
    batch = batches[0]
    assert batch == {
        "batch_id": batch["batch_id"], "source_file": str(path),
        "file_sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "loaded_at": LOADED_AT,
        "row_count": len(placed), "accepted_count": len(accepted_items),
        "rejected_count": len(placed) - len(accepted_items),
        # Read hints are for lake files only; a loaded file's rows are already typed.
        "timestamps_cast_exactly": None, "values_clean": None,
        "max_event_at": max(event["event_at"] for event in events),
    }
    batch_id = batch["batch_id"]
    assert batch_id

    by_row = {p.row: p for p in placed}

    # Every reject: right row, right reason, the record as read, a useful detail.
    assert [r["source_row"] for r in rejects] == [p.row for p in placed if p.item.reason]
    for reject in rejects:
        item = by_row[reject["source_row"]].item
        assert reject["reason_code"] == item.reason, (item.label, reject)
        assert reject["batch_id"] == batch_id
        assert reject["source_file"] == str(path)
        assert reject["loaded_at"] == LOADED_AT
        assert reject["reason_detail"], item.label
        assert item.detail in reject["reason_detail"], (item.label, reject["reason_detail"])
        assert reject["raw_record"], item.label
        if fmt == "jsonl":
            assert reject["raw_record"] == by_row[reject["source_row"]].raw_line
        elif isinstance(item.payload, list):
            assert json.loads(reject["raw_record"]) == item.payload
        else:
            read_back = json.loads(reject["raw_record"])
            assert read_back.get("transaction_id") == item.payload.get("transaction_id"), item.label
        if isinstance(item.payload, dict):  # what could be read of the identifying fields
            assert reject["transaction_id"] == item.payload.get("transaction_id")
            assert reject["external_subscription_id"] == item.payload.get("external_subscription_id")
            assert reject["metric_code"] == item.payload.get("code")

    # Every accepted row: stable id naming its row, the batch's loaded_at, UTC event time.
    assert [e["source_row"] for e in events] == [p.row for p in accepted_items]
    for event in events:
        record = by_row[event["source_row"]].item.payload
        assert event["event_id"] == f"{batch_id}-{event['source_row']}"
        assert event["batch_id"] == batch_id
        assert event["loaded_at"] == LOADED_AT
        assert event["source_file"] == str(path)
        assert event["transaction_id"] == record["transaction_id"]
        assert event["external_subscription_id"] == record.get("external_subscription_id")
        assert event["external_customer_id"] == record.get("external_customer_id")
        assert event["metric_code"] == record["code"]
        assert event["event_at"] == by_row[event["source_row"]].item.expected_at, record
        assert json.loads(event["properties"]) == record.get("properties", {})


# ---------------------------------------------------------------- one file, every reason


def test_the_bad_rows_cover_every_reason_code() -> None:
    reasons = {item.reason for item in bad_items()}
    assert reasons == set(REASON_CODES)
    for fmt in ("jsonl", "csv"):
        assert {i.reason for i in bad_items() if fmt in i.formats} == set(REASON_CODES)


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_every_record_is_accepted_or_rejected_with_its_reason(tmp_path: Path, warehouse, catalog, fmt: str) -> None:
    path = tmp_path / f"events.{fmt}"
    placed = WRITERS[fmt](path, mixed_items())
    report = ingest_paths(warehouse, [path], catalog.metrics_by_code, loaded_at=LOADED_AT)

    expected = {
        "missing_transaction_id": 2, "missing_code": 1, "missing_subscription_and_customer": 1,
        "missing_timestamp": 1, "invalid_timestamp": 1, "timestamp_in_future": 1, "properties_not_object": 2,
        "unknown_metric": 1, "missing_value": 1, "non_numeric_value": 2, "invalid_operation_type": 1,
        "malformed_record": {"jsonl": 2, "csv": 1, "parquet": 0}[fmt],
    }
    assert report.rejected_by_reason == Counter({k: v for k, v in expected.items() if v})
    assert report.accepted == 5
    assert len(placed) == 5 + sum(expected.values())
    if fmt == "jsonl":  # blank lines count in line numbers, not as records
        lines = path.read_text().splitlines()
        assert len(placed) == sum(1 for line in lines if line.strip()) == len(lines) - 2
    assert_ingested_exactly(warehouse, path, placed, report, fmt)


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        ("2026-10-05T10:00:00Z", datetime(2026, 10, 5, 10, 0)),
        ("2026-10-05T10:00:00+02:00", datetime(2026, 10, 5, 8, 0)),
        ("2026-10-05T23:30:00-07:00", datetime(2026, 10, 6, 6, 30)),
        ("2026-10-05T10:00:00", datetime(2026, 10, 5, 10, 0)),
        ("2026-10-05T10:00:00.123456Z", datetime(2026, 10, 5, 10, 0, 0, 123456)),
        (1790000000, datetime(2026, 9, 21, 14, 13, 20)),
        (1790000000.5, datetime(2026, 9, 21, 14, 13, 20, 500000)),
        ("1790000000.000001", datetime(2026, 9, 21, 14, 13, 20, 1)),
        ("2026-11-22T12:00:00Z", datetime(2026, 11, 22, 12, 0)),  # exactly loaded_at + 1 day: allowed
    ],
)
def test_timestamps_are_stored_in_utc(tmp_path: Path, warehouse, catalog, timestamp, expected) -> None:
    path = tmp_path / "ts.jsonl"
    path.write_text(json.dumps({"transaction_id": "t", "external_subscription_id": "sub_a", "code": "api_requests",
                                "timestamp": timestamp}) + "\n")
    report = ingest_paths(warehouse, [path], catalog.metrics_by_code, loaded_at=LOADED_AT)
    assert (report.accepted, report.rejected) == (1, 0)
    assert warehouse.query("select event_at from raw.events") == [(expected,)]


def test_one_second_past_the_future_limit_is_rejected(tmp_path: Path, warehouse, catalog) -> None:
    path = tmp_path / "ts.jsonl"
    path.write_text(json.dumps({"transaction_id": "t", "external_subscription_id": "sub_a", "code": "api_requests",
                                "timestamp": "2026-11-22T12:00:01Z"}) + "\n")
    report = ingest_paths(warehouse, [path], catalog.metrics_by_code, loaded_at=LOADED_AT)
    assert (report.accepted, report.rejected_by_reason) == (0, Counter({"timestamp_in_future": 1}))


# ---------------------------------------------------------------- Parquet specifics


def test_parquet_struct_properties(tmp_path: Path, warehouse, catalog) -> None:
    path = tmp_path / "struct.parquet"
    props_type = pa.struct([("tokens", pa.int64()), ("model", pa.string())])
    table = pa.table({
        "transaction_id": ["s1", "s2", "s3"],
        "external_subscription_id": ["sub_a", "sub_a", "sub_a"],
        "code": ["input_tokens", "input_tokens", "api_requests"],
        "timestamp": ["2026-10-05T10:00:00Z", "2026-10-05T11:00:00Z", "2026-10-05T12:00:00+01:00"],
        "properties": pa.array([{"tokens": 700, "model": "big"}, {"tokens": None, "model": "big"}, None],
                               type=props_type),
    })  # no external_customer_id column at all: it reads as NULL
    pq.write_table(table, path)
    report = ingest_paths(warehouse, [path], catalog.metrics_by_code, loaded_at=LOADED_AT)

    assert report.accepted == 2
    assert report.rejected_by_reason == Counter({"missing_value": 1})
    events = rows(warehouse, "select * from raw.events order by source_row")
    assert [(e["source_row"], e["transaction_id"], e["event_at"]) for e in events] == [
        (1, "s1", datetime(2026, 10, 5, 10, 0)), (3, "s3", datetime(2026, 10, 5, 11, 0))]
    assert json.loads(events[0]["properties"]) == {"tokens": 700, "model": "big"}
    assert json.loads(events[1]["properties"]) == {}
    assert events[0]["external_customer_id"] is None
    reject = rows(warehouse, "select * from raw.event_rejects")[0]
    assert (reject["source_row"], reject["transaction_id"]) == (2, "s2")
    assert json.loads(json.loads(reject["raw_record"])["properties"]) == {"tokens": None, "model": "big"}


def test_parquet_without_timestamp_column_rejects_every_row(tmp_path: Path, warehouse, catalog) -> None:
    path = tmp_path / "no_ts.parquet"
    pq.write_table(pa.table({
        "transaction_id": ["n1", "n2", "n3"],
        "external_subscription_id": ["sub_a", "sub_a", "sub_a"],
        "code": ["api_requests"] * 3,
        "properties": ["{}", None, '{"a": 1}'],
    }), path)
    report = ingest_paths(warehouse, [path], catalog.metrics_by_code, loaded_at=LOADED_AT)
    assert report.accepted == 0
    assert report.rejected_by_reason == Counter({"missing_timestamp": 3})
    rejects = rows(warehouse, "select * from raw.event_rejects order by source_row")
    assert [(r["source_row"], r["transaction_id"], r["reason_code"]) for r in rejects] == [
        (1, "n1", "missing_timestamp"), (2, "n2", "missing_timestamp"), (3, "n3", "missing_timestamp")]
    assert all(json.loads(r["raw_record"])["timestamp"] is None for r in rejects)
    assert warehouse.query("select row_count, accepted_count, rejected_count from raw.ingest_batches") == [(3, 0, 3)]


# ---------------------------------------------------------------- exact values


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_numeric_property_keeps_its_exact_decimal_text(tmp_path: Path, warehouse, catalog, fmt: str) -> None:
    # raw.events.properties is "the properties object as JSON text" and quantities are
    # decimal(38, 9) downstream: the number the sender wrote must reach raw.events unchanged.
    # (Read back with Decimal: DuckDB's own JSON functions would go through a double.)
    value = "1234567890.123456789"
    path = tmp_path / f"precise.{fmt}"
    if fmt == "jsonl":
        path.write_text('{"transaction_id": "p1", "external_subscription_id": "sub_a", "code": "input_tokens", '
                        '"timestamp": "2026-10-05T10:00:00Z", "properties": {"tokens": ' + value + "}}\n")
    else:
        path.write_text("transaction_id,external_subscription_id,code,timestamp,properties\n"
                        'p1,sub_a,input_tokens,2026-10-05T10:00:00Z,"{""tokens"": ' + value + '}"\n')
    report = ingest_paths(warehouse, [path], catalog.metrics_by_code, loaded_at=LOADED_AT)
    assert report.accepted == 1
    stored = warehouse.query("select properties from raw.events")[0][0]
    assert json.loads(stored, parse_float=Decimal) == {"tokens": Decimal(value)}, stored


# ---------------------------------------------------------------- sending a file again


def test_ingesting_the_same_file_twice_appends_a_second_batch(tmp_path: Path, warehouse, catalog) -> None:
    path = tmp_path / "events.jsonl"
    placed = write_jsonl(path, mixed_items())
    first = ingest_paths(warehouse, [path], catalog.metrics_by_code, loaded_at=LOADED_AT)
    second = ingest_paths(warehouse, [path], catalog.metrics_by_code, loaded_at=LOADED_AT + timedelta(hours=1))

    assert (second.accepted, second.rejected_by_reason) == (first.accepted, first.rejected_by_reason)
    assert warehouse.query("select count(*), count(distinct event_id) from raw.events") == [(10, 10)]
    assert warehouse.query("select count(*) from raw.event_rejects") == [(2 * (len(placed) - 5),)]
    batches = warehouse.query("select batch_id, file_sha256, loaded_at from raw.ingest_batches order by loaded_at")
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    assert [(b[1], b[2]) for b in batches] == [(sha, LOADED_AT), (sha, LOADED_AT + timedelta(hours=1))]
    assert batches[0][0] != batches[1][0]
    per_batch = warehouse.query("select batch_id, count(*) from raw.events group by 1 order by 1")
    assert sorted(n for _, n in per_batch) == [5, 5]


def test_the_same_file_twice_in_one_call_still_gets_unique_event_ids(tmp_path: Path, warehouse, catalog) -> None:
    # `meterline ingest f.jsonl f.jsonl`, or a folder plus a file inside it, or two ingests in
    # the same second (utc_now drops microseconds): one loaded_at for both copies. The contract
    # says event_id is unique and there is one batch per file per ingest.
    path = tmp_path / "events.jsonl"
    write_jsonl(path, GOOD)
    report = ingest_paths(warehouse, [path, path], catalog.metrics_by_code, loaded_at=LOADED_AT)
    assert report.accepted == 10
    assert warehouse.query("select count(*) from raw.events") == [(10,)]
    assert warehouse.query("select count(distinct batch_id) from raw.ingest_batches") == [(2,)]
    assert warehouse.query("select count(distinct event_id) from raw.events") == [(10,)]


# ---------------------------------------------------------------- end to end


def _read_results(settings) -> dict:
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    try:
        return {
            "invoices": con.execute(
                "select invoice_id, status, total_amount, event_count from marts.fct_invoices order by 1").fetchall(),
            "reconciliation": {(o, r): n for o, r, n in con.execute(
                "select outcome, reason, event_count from marts.fct_event_reconciliation").fetchall()},
            "raw_events": con.execute("select count(*) from raw.events").fetchone()[0],
            "raw_rejects": con.execute("select count(*) from raw.event_rejects").fetchone()[0],
        }
    finally:
        con.close()


def test_resending_a_file_changes_no_invoice(small_home) -> None:
    settings = small_home
    future = (pipeline.utc_now() + timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    path = settings.landing_dir / "events.jsonl"
    placed = write_jsonl(path, mixed_items(future))
    rejected = expected_counts(placed)

    _, report, _, outputs = run_all(settings)
    assert (report.accepted, report.rejected_by_reason) == (5, rejected)
    assert pipeline.new_landing_files(settings) == []
    before = _read_results(settings)
    json_before = outputs["json"].read_text()

    assert before["raw_events"] == 5 and before["raw_rejects"] == len(placed) - 5
    assert sum(n for *_, n in before["invoices"]) == 5  # every accepted event is on an invoice
    assert {k: v for k, v in before["reconciliation"].items() if v} == {
        ("billed", "closed_invoice"): 5, **{("rejected", reason): n for reason, n in rejected.items()}}
    assert sum(before["reconciliation"].values()) == len(placed)

    again = pipeline.ingest(settings, [path], loaded_at=pipeline.utc_now() + timedelta(minutes=1))
    assert (again.accepted, again.rejected_by_reason) == (5, rejected)
    result = pipeline.build(settings, SMALL_AS_OF)
    assert not result.full_refresh, result.reason  # the incremental models see the re-sent batch
    outputs = pipeline.export(settings)
    after = _read_results(settings)

    assert after["invoices"] == before["invoices"]
    assert outputs["json"].read_text() == json_before
    assert after["raw_events"] == 10 and after["raw_rejects"] == 2 * (len(placed) - 5)
    assert {k: v for k, v in after["reconciliation"].items() if v} == {
        ("billed", "closed_invoice"): 5, ("excluded", "duplicate"): 5,
        **{("rejected", reason): 2 * n for reason, n in rejected.items()}}
    assert sum(after["reconciliation"].values()) == after["raw_events"] + after["raw_rejects"]
