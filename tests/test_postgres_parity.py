"""The same dbt project on PostgreSQL produces the same invoices as on DuckDB.

The test starts its own PostgreSQL server (orchestration/local_postgres.py), bills the small
catalog plus a small generated demo on both engines, and compares the invoices field by
field (ids are deterministic hashes, so they must match too).
"""

from __future__ import annotations

import dataclasses
import shutil
from datetime import date, datetime, timezone
from decimal import Decimal

import pytest

from orchestration import pipeline
from orchestration.accounting import sync
from orchestration.accounting.books import read_books
from orchestration.demo.generator import generate_demo
from orchestration.exports import fetch_invoices, reconciliation
from orchestration.ledger import finalise, issue_credit_note
from orchestration.reporting.report import read_tables, write_report
from orchestration.settings import get_settings
from orchestration.warehouse import connect
from tests.conftest import FIXTURES, run_all
from tests.fakes.xero import FakeXero, load_contract

pytestmark = pytest.mark.postgres

AS_OF = datetime(2026, 11, 21, 12)


def _bill(home, monkeypatch, target: str, server=None, *, finalise_invoices: bool = False):
    monkeypatch.setenv("METERLINE_TARGET", target)
    if server is not None:
        for key, value in server.env().items():
            monkeypatch.setenv(key, value)
    settings = get_settings(home)
    run_all(settings, as_of=AS_OF)
    if target != "duckdb":  # the models' arithmetic on this engine (billing builds leave them out)
        pipeline.run_dbt(settings, ["test", "--select", "test_type:unit"])
    if finalise_invoices:  # the ledger's SQL (numbering, fingerprints, copies) on each engine
        # 5,000 events over 10 customers make erratic months: the usage-cliff check would stop it.
        finalise(settings, accept_usage_cliffs=True)
        # A manual credit note on the largest finalised invoice: issued, taxed and applied to
        # the customer's later invoices by each engine's SQL.
        with connect(settings) as warehouse:
            [[number]] = warehouse.query("select invoice_number from ledger.invoices "
                                         "order by total_amount desc, invoice_number limit 1")
        issue_credit_note(settings, number, reason="order_change", now=AS_OF)
        pipeline.rebuild_from_ledger(settings, AS_OF)
    with connect(settings, read_only=target == "duckdb") as warehouse:
        return fetch_invoices(warehouse), reconciliation(warehouse)


def test_postgres_invoices_equal_duckdb(tmp_path, monkeypatch, postgres_server):
    home = tmp_path / "demo"
    generate_demo(home, customers=10, events=5_000, seed=3, as_of=AS_OF.replace(tzinfo=timezone.utc), overwrite=True)
    shutil.copy(FIXTURES / "small_events" / "events.jsonl", home / "landing" / "zz-extra.jsonl")

    duckdb_invoices, duckdb_outcomes = _bill(home, monkeypatch, "duckdb", finalise_invoices=True)
    postgres_invoices, postgres_outcomes = _bill(home, monkeypatch, "postgres", postgres_server,
                                                 finalise_invoices=True)

    assert len(duckdb_invoices) > 20
    assert any(i["discount_amount"] not in ("0", "0.00") for i in duckdb_invoices), "the demo should exercise a coupon"
    assert {i["currency"] for i in duckdb_invoices} >= {"USD", "EUR", "JPY"}
    assert any(i["invoice_number"] for i in duckdb_invoices) and any(i["status"] == "draft" for i in duckdb_invoices)
    # When a run computed or finalised an invoice differs between the two runs, not what it says.
    strip = lambda items: [{k: v for k, v in i.items() if k not in ("computed_as_of", "finalized_at")}  # noqa: E731
                           for i in items]
    assert strip(postgres_invoices) == strip(duckdb_invoices)
    assert sorted(postgres_outcomes) == sorted(duckdb_outcomes)
    assert any(i["credit_note_credit_amount"] not in ("0", "0.00") for i in duckdb_invoices), \
        "the credit note should pay a later invoice"

    # What the accounting sync reads is the same on both engines, and its ledger works on Postgres.
    postgres_settings = get_settings(home)
    duckdb_settings = dataclasses.replace(postgres_settings, target="duckdb")

    # The revenue report's figures are the same on both engines, and a month closes on each.
    months = [date(2026, 9, 1), date(2026, 10, 1), date(2026, 11, 1)]
    for settings in (duckdb_settings, postgres_settings):
        write_report(settings, "2026-10", output_dir=tmp_path / f"report-{settings.target}", now=AS_OF)
    figures = {}
    for settings in (duckdb_settings, postgres_settings):
        with connect(settings, read_only=settings.target == "duckdb") as warehouse:
            figures[settings.target] = [
                (name, table.rows) for month in months for name, table in read_tables(warehouse, month).items()]
            assert warehouse.query("select count(*) from ledger.month_closes where month_start = date '2026-10-01'")[0][0]
    for (name, duckdb_rows), (_, postgres_rows) in zip(figures["duckdb"], figures["postgres"]):
        assert postgres_rows == duckdb_rows, name
    assert any(rows for name, rows in figures["duckdb"] if name == "mrr_movements")
    with connect(duckdb_settings, read_only=True) as warehouse:
        duckdb_books = read_books(warehouse)
    with connect(postgres_settings) as warehouse:
        postgres_books = read_books(warehouse)
    assert postgres_books == duckdb_books and duckdb_books.invoices
    assert any(i.prepaid_credit_amount for i in duckdb_books.invoices), "the demo should exercise a wallet"
    xero = FakeXero(load_contract(), tax_rates={code: Decimal(0) for code in (
        "TAX001", "TAX002", "OUTPUT2", "OUTPUT3", "TAX003", "ZERORATEDOUTPUT", "NONE")}).start()
    try:
        report = sync(postgres_settings, "xero", now=lambda: AS_OF, env=xero.env())
        assert report.ok, report.failures
        assert len(xero.invoices) == len(duckdb_books.invoices) and not xero.violations
        for invoice in duckdb_books.invoices:
            remote = xero.invoice_by_number(invoice.number)
            assert remote["Total"] == invoice.subtotal_including_taxes - invoice.prepaid_credit_amount
        again = sync(postgres_settings, "xero", now=lambda: AS_OF, env=xero.env())
        assert again.ok and set(outcome for _, outcome in again.counts) == {"unchanged"}
    finally:
        xero.stop()


FIXTURE_CASES = {
    "charge_models": datetime(2026, 11, 15, 12),
    "aggregations": datetime(2026, 11, 15),
    "filters_groups": datetime(2026, 11, 15),
    "in_advance": datetime(2026, 11, 15),
    "calendar": datetime(2026, 11, 20),
    "plan_changes": datetime(2026, 11, 20),
    "discounts_taxes": datetime(2026, 11, 20),
    "wallets": datetime(2026, 11, 20),
    "progressive_billing": datetime(2026, 11, 20),
    "revenue": datetime(2026, 9, 15),
}


def _reset_postgres(server) -> None:
    import psycopg2

    with psycopg2.connect(server.dsn) as connection:
        connection.autocommit = True
        with connection.cursor() as cursor:
            for schema in ("raw", "catalog", "staging", "intermediate", "marts", "reference", "ledger", "accounting"):
                cursor.execute(f"drop schema if exists {schema} cascade")


@pytest.mark.parametrize("case", sorted(FIXTURE_CASES))
def test_every_pricing_feature_bills_the_same_on_postgres(tmp_path, monkeypatch, postgres_server, case):
    """Each hand-computed fixture (charge models, aggregations, filters and groups, in advance,
    calendar, plan changes, discounts and taxes, wallets) gives the same invoices on PostgreSQL as on DuckDB."""
    from orchestration import pipeline

    source = FIXTURES / case
    expected = pipeline.simulate(source / "catalog", [source / "events.jsonl"], as_of=FIXTURE_CASES[case]).invoices

    home = tmp_path / "home"
    shutil.copytree(source / "catalog", home / "catalog")
    (home / "landing").mkdir()
    shutil.copy(source / "events.jsonl", home / "landing")
    _reset_postgres(postgres_server)
    monkeypatch.setenv("METERLINE_TARGET", "postgres")
    for key, value in postgres_server.env().items():
        monkeypatch.setenv(key, value)
    settings = get_settings(home)
    run_all(settings, as_of=FIXTURE_CASES[case])
    with connect(settings) as warehouse:
        actual = fetch_invoices(warehouse)
    strip = lambda items: [{k: v for k, v in i.items() if k != "computed_as_of"} for i in items]  # noqa: E731
    assert strip(actual) == strip(expected)
