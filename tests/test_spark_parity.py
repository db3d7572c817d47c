"""The same dbt project on Apache Spark (dbt-spark, session mode, local) bills the same events
into the same invoices as on DuckDB: every model and test, from deduplication and metering to
coupons, wallets, taxes, invoices, revenue and the event reconciliation.

Spark runs in this test's process (one JVM per pytest worker), as `meterline` runs it.
"""

from __future__ import annotations

import shutil
import subprocess
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from orchestration import pipeline
from orchestration.demo.generator import generate_demo
from orchestration.settings import get_settings
from orchestration.warehouse import connect
from tests.conftest import FIXTURES

pytestmark = pytest.mark.spark

AS_OF = datetime(2026, 11, 21, 12)
# The results compared, row for row (sorted here: engines order nulls differently).
COMPARED = [
    "intermediate.int_usage",
    "intermediate.int_invoice_fees",
    "marts.fct_invoice_line_events",
    "marts.fct_invoices",
    "marts.fct_invoice_lines",
    "marts.fct_invoice_discounts",
    "marts.fct_invoice_wallet_credits",
    "marts.fct_invoice_taxes",
    "marts.fct_wallets",
    "marts.fct_event_reconciliation",
    "marts.fct_revenue_monthly",
]
# Not results: when a run matched an event (the run's clock); where the two copies of the
# files lie and the load's ids (random per ingestion), which event ids derive from.
IGNORED = {"matched_at", "last_matched_at", "event_id", "source_file", "batch_id", "winner_event_id"}


def _java_available() -> bool:
    try:
        return subprocess.run(["java", "-version"], capture_output=True).returncode == 0
    except FileNotFoundError:
        return False


def _normalised(value):
    # Decimals compare by value (Spark and DuckDB may print different trailing zeros).
    return value.normalize() if isinstance(value, Decimal) else value


def _bill(home, monkeypatch, target: str) -> dict[str, list[tuple]]:
    monkeypatch.setenv("METERLINE_TARGET", target)
    settings = get_settings(home)
    pipeline.read_and_load_catalog(settings, settings.catalog_dir)
    pipeline.ingest(settings, pipeline.new_landing_files(settings), loaded_at=datetime(2026, 11, 21, 6))
    pipeline.prepare_build(settings)
    pipeline.run_dbt(settings, ["build", "--full-refresh"], as_of=AS_OF)
    tables = {}
    with connect(settings) as warehouse:
        for table in COMPARED:
            schema, name = table.split(".")
            columns = sorted(warehouse.column_names(schema, name) - IGNORED)
            rows = warehouse.query(f"select {', '.join(columns)} from {table}")
            ordered = sorted((tuple(map(_normalised, row)) for row in rows), key=_sort_key)
            tables[table] = [dict(zip(columns, row)) for row in ordered]
    return tables


def _sort_key(row: tuple) -> tuple:
    # None first, then by value; every value as text so mixed types never compare.
    return tuple((value is not None, str(value)) for value in row)


@pytest.fixture(scope="module")
def homes(tmp_path_factory):
    """Two identical working folders: a small generated demo (12 customers: the smallest with a
    wallet, so coupons, wallets and taxes all apply) plus the hand-computed fixture."""
    made = {}
    for target in ("duckdb", "spark"):
        home = tmp_path_factory.mktemp(target) / "home"
        generate_demo(home, customers=12, events=3_000, seed=5, as_of=AS_OF.replace(tzinfo=timezone.utc),
                      overwrite=True)
        shutil.copy(FIXTURES / "small_events" / "events.jsonl", home / "landing" / "zz-extra.jsonl")
        made[target] = home
    return made


def test_spark_bills_like_duckdb(homes, monkeypatch):
    if not _java_available():
        pytest.skip("no Java runtime: Spark cannot start")
    duckdb_tables = _bill(homes["duckdb"], monkeypatch, "duckdb")
    spark_tables = _bill(homes["spark"], monkeypatch, "spark")

    fees = duckdb_tables["intermediate.int_invoice_fees"]
    assert len(fees) > 50
    assert {fee["currency"] for fee in fees} >= {"USD", "EUR"}
    assert {fee["charge_model"] for fee in fees} >= {"standard", "graduated", "package"}
    assert any(fee["proration_factor"] not in (None, Decimal(1)) for fee in fees), "a prorated fee"
    for table in ("marts.fct_invoices", "marts.fct_invoice_discounts", "marts.fct_invoice_wallet_credits",
                  "marts.fct_invoice_taxes"):
        assert duckdb_tables[table], f"the demo exercises {table}"
    for table in COMPARED:
        assert len(spark_tables[table]) == len(duckdb_tables[table]), table
        for spark_row, duckdb_row in zip(spark_tables[table], duckdb_tables[table]):
            assert spark_row == duckdb_row, table
