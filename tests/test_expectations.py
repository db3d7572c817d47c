"""The raw.events Great Expectations suite, run inside a real DuckDB warehouse file.

A PostgreSQL run of the same suite is included (a throwaway server from
orchestration.local_postgres); it is skipped when no PostgreSQL server binaries
are installed.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pytest

import great_expectations as gx

from expectations.raw_events import (
    PARTIAL_UNEXPECTED_LIMIT,
    ExpectationOutcome,
    SuiteOutcome,
    build_raw_events_suite,
    validate_raw_events,
)

COLUMNS = (
    "event_id",
    "transaction_id",
    "external_subscription_id",
    "external_customer_id",
    "metric_code",
    "event_at",
    "properties",
    "loaded_at",
    "batch_id",
    "source_file",
    "source_row",
)

DDL = """
create table {schema}.events (
    event_id varchar,
    transaction_id varchar,
    external_subscription_id varchar,
    external_customer_id varchar,
    metric_code varchar,
    event_at timestamp,
    properties varchar,
    loaded_at timestamp,
    batch_id varchar,
    source_file varchar,
    source_row bigint
)
"""

LOADED_AT = datetime(2024, 3, 1, 12, 0, 0)

EXPECTED_CHECKS = {
    "event_id_not_null",
    "event_id_unique",
    "transaction_id_not_null",
    "metric_code_not_null",
    "event_at_not_null",
    "loaded_at_not_null",
    "batch_id_not_null",
    "properties_not_null",
    "source_file_not_null",
    "source_row_not_null",
    "customer_or_subscription_present",
    "event_at_not_after_loaded_at_plus_1d",
    "properties_is_json_object",
    "source_row_positive",
}


def event(batch: str, row: int, **overrides: object) -> dict[str, object]:
    values: dict[str, object] = {
        "event_id": f"{batch}-{row}",
        "transaction_id": f"tx-{batch}-{row}",
        "external_subscription_id": f"sub_{row % 3}",
        "external_customer_id": None,
        "metric_code": "api_calls",
        "event_at": LOADED_AT - timedelta(hours=row),
        "properties": "{}",
        "loaded_at": LOADED_AT,
        "batch_id": batch,
        "source_file": f"/data/{batch}.jsonl",
        "source_row": row,
    }
    values.update(overrides)
    return values


GOOD_ROWS = [
    event("b1", 1),
    event("b1", 2, properties='{"region": "eu", "n": 3}'),
    event("b1", 3, external_subscription_id=None, external_customer_id="cus_9"),
    event("b1", 4, external_customer_id="cus_9"),  # both ids given is fine
    # exactly one day ahead of the load is still accepted by ingestion
    event("b1", 5, event_at=LOADED_AT + timedelta(days=1)),
    event("b1", 6, properties="{}", metric_code="storage_gb"),
]

# Each bad row breaks exactly one rule.
BAD_ROWS = [
    event("b2", 1, transaction_id=None),
    event("b2", 2, event_id="b1-2"),  # duplicates a good row's event_id
    event("b2", 3, external_subscription_id=None, external_customer_id=None),
    event("b2", 4, event_at=LOADED_AT + timedelta(days=2)),
    event("b2", 5, properties="[1]"),
    event("b2", 6, event_id="b2-6", source_row=0),
]

# check_name -> (unexpected_count, partial_unexpected_list)
EXPECTED_FAILURES = {
    "transaction_id_not_null": (1, [None]),
    "event_id_unique": (2, ["b1-2", "b1-2"]),
    "customer_or_subscription_present": (1, ["b2-3"]),
    "event_at_not_after_loaded_at_plus_1d": (1, ["b2-4"]),
    "properties_is_json_object": (1, ["b2-5"]),
    "source_row_positive": (1, ["0"]),
}


def insert_rows(
    con: duckdb.DuckDBPyConnection,
    rows: list[dict[str, object]],
    schema: str = "raw",
    table: str = "events",
) -> None:
    if not rows:
        return
    placeholders = ", ".join("?" for _ in COLUMNS)
    con.executemany(
        f"insert into {schema}.{table} ({', '.join(COLUMNS)}) values ({placeholders})",
        [[row[c] for c in COLUMNS] for row in rows],
    )


def make_warehouse(path: Path, rows: list[dict[str, object]], schema: str = "raw") -> str:
    con = duckdb.connect(str(path))
    try:
        con.execute(f"create schema if not exists {schema}")
        con.execute(DDL.format(schema=schema))
        insert_rows(con, rows, schema)
    finally:
        con.close()
    return f"duckdb:///{path.resolve()}"


@pytest.fixture
def warehouse(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "warehouse.duckdb"
    return path, make_warehouse(path, GOOD_ROWS)


def assert_all_pass(outcome: SuiteOutcome, rows: int) -> None:
    failed = [r for r in outcome.results if not r.success]
    assert not failed, failed
    assert outcome.success is True
    assert outcome.evaluated_rows == rows
    for result in outcome.results:
        assert result.exception_message is None
        assert result.unexpected_count == 0, result
        assert result.unexpected_percent == 0.0, result
        assert result.partial_unexpected_list == []


def assert_bad_rows_caught(outcome: SuiteOutcome, rows: int) -> None:
    assert outcome.success is False
    assert outcome.evaluated_rows == rows
    by_name = outcome.by_check_name()
    assert set(by_name) == EXPECTED_CHECKS
    for name, result in by_name.items():
        assert result.exception_message is None, (name, result.exception_message)
        if name in EXPECTED_FAILURES:
            count, partial = EXPECTED_FAILURES[name]
            assert result.success is False, name
            assert result.unexpected_count == count, (name, result)
            assert result.partial_unexpected_list == partial, (name, result)
            assert result.unexpected_percent == pytest.approx(100.0 * count / rows), name
        else:
            assert result.success is True, (name, result)
            assert result.unexpected_count == 0, (name, result)


def test_suite_is_a_gx_suite_of_real_checks() -> None:
    suite = build_raw_events_suite()
    assert isinstance(suite, gx.ExpectationSuite)
    names = [e.meta["check_name"] for e in suite.expectations]
    assert len(names) == len(set(names))
    assert set(names) == EXPECTED_CHECKS
    types = {e.expectation_type for e in suite.expectations}
    assert not {t for t in types if t.startswith("expect_table_row_count")}
    # each check name can be a Dagster asset check name
    assert all(n.replace("_", "").isalnum() and n.islower() for n in names)
    # the suite can be built more than once (one per validation run)
    assert len(build_raw_events_suite().expectations) == len(names)


def test_good_rows_pass_and_nothing_is_printed(warehouse, capfd) -> None:
    _, url = warehouse
    outcome = validate_raw_events(url)
    out, err = capfd.readouterr()
    assert out == ""
    assert "Calculating Metrics" not in err

    assert_all_pass(outcome, rows=len(GOOD_ROWS))
    assert {r.check_name for r in outcome.results} == EXPECTED_CHECKS
    # results come back in suite order
    suite_order = [e.meta["check_name"] for e in build_raw_events_suite().expectations]
    assert [r.check_name for r in outcome.results] == suite_order


def test_each_bad_row_fails_its_own_expectation(warehouse) -> None:
    path, url = warehouse
    assert validate_raw_events(url).success  # also proves the file is released afterwards

    con = duckdb.connect(str(path))
    try:
        insert_rows(con, BAD_ROWS)
    finally:
        con.close()

    outcome = validate_raw_events(url)
    assert_bad_rows_caught(outcome, rows=len(GOOD_ROWS) + len(BAD_ROWS))

    by_name = outcome.by_check_name()
    assert by_name["transaction_id_not_null"].column == "transaction_id"
    assert by_name["transaction_id_not_null"].expectation_type == "expect_column_values_to_not_be_null"
    assert by_name["event_id_unique"].expectation_type == "expect_column_values_to_be_unique"
    assert by_name["customer_or_subscription_present"].columns == (
        "external_subscription_id",
        "external_customer_id",
    )
    assert by_name["customer_or_subscription_present"].column is None


def test_outcome_is_json_serialisable_and_partial_list_is_capped(tmp_path: Path) -> None:
    rows = GOOD_ROWS + [
        event("b3", i, external_subscription_id=None, external_customer_id=None)
        for i in range(1, 16)
    ]
    url = make_warehouse(tmp_path / "w.duckdb", rows)
    outcome = validate_raw_events(url)

    payload = json.loads(json.dumps(outcome.to_dict()))
    assert payload["success"] is False
    assert payload["evaluated_rows"] == len(rows)
    ids = outcome.by_check_name()["customer_or_subscription_present"]
    assert ids.unexpected_count == 15
    assert len(ids.partial_unexpected_list) == PARTIAL_UNEXPECTED_LIMIT
    assert all(isinstance(v, str) and v.startswith("b3-") for v in ids.partial_unexpected_list)
    assert isinstance(outcome.results[0], ExpectationOutcome)


def test_other_schema_and_table_names(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    con = duckdb.connect(str(path))
    try:
        for schema, rows in (("staging", GOOD_ROWS), ("raw", BAD_ROWS)):
            # raw.events_copy is a decoy full of bad rows: it must not be what is validated
            con.execute(f"create schema {schema}")
            con.execute(DDL.format(schema=schema).replace(".events", ".events_copy"))
            insert_rows(con, rows, schema=schema, table="events_copy")
    finally:
        con.close()
    outcome = validate_raw_events(f"duckdb:///{path}", schema="staging", table="events_copy")
    assert_all_pass(outcome, rows=len(GOOD_ROWS))


def test_empty_table_passes(tmp_path: Path) -> None:
    outcome = validate_raw_events(make_warehouse(tmp_path / "w.duckdb", []))
    assert outcome.success is True
    assert outcome.evaluated_rows == 0


@pytest.mark.parametrize("schema, table", [("raw; drop", "events"), ("raw", "events x")])
def test_rejects_non_identifier_names(schema: str, table: str) -> None:
    with pytest.raises(ValueError):
        validate_raw_events("duckdb:////nonexistent.duckdb", schema=schema, table=table)


def test_missing_table_raises(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    duckdb.connect(str(path)).close()
    with pytest.raises(Exception):
        validate_raw_events(f"duckdb:///{path}")


# --------------------------------------------------------------------------- PostgreSQL


@pytest.fixture(scope="module")
def postgres_url():
    from orchestration.local_postgres import LocalPostgresError, find_pg_bin, local_postgres

    try:
        find_pg_bin()
    except LocalPostgresError as exc:
        pytest.skip(f"no PostgreSQL server binaries: {exc}")
    with local_postgres("meterline_gx") as server:
        yield server.url


def _load_postgres(url: str, rows: list[dict[str, object]]) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.begin() as c:
            c.execute(sa.text("create schema if not exists raw"))
            c.execute(sa.text("drop table if exists raw.events"))
            c.execute(sa.text(DDL.format(schema="raw")))
            if rows:
                c.execute(
                    sa.text(
                        f"insert into raw.events ({', '.join(COLUMNS)}) "
                        f"values ({', '.join(':' + c for c in COLUMNS)})"
                    ),
                    rows,
                )
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_same_suite_on_postgres(postgres_url: str) -> None:
    _load_postgres(postgres_url, GOOD_ROWS)
    assert_all_pass(validate_raw_events(postgres_url), rows=len(GOOD_ROWS))

    _load_postgres(postgres_url, GOOD_ROWS + BAD_ROWS)
    assert_bad_rows_caught(
        validate_raw_events(postgres_url), rows=len(GOOD_ROWS) + len(BAD_ROWS)
    )
