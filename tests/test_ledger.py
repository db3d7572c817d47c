"""The invoice lifecycle (docs/invoice-lifecycle.md): drafts, grace period, finalisation into an
append-only ledger with gapless numbers, voids, and a ledger that no rebuild can change.

The small fixture is built once; each test works on its own copy of that working folder.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from orchestration import pipeline
from orchestration.ledger import CRASH_VARIABLE, LEDGER_TABLES, FinalisationError, finalise, void
from orchestration.settings import PROJECT_DIR, get_settings
from orchestration.warehouse import connect
from tests.conftest import FIXTURES, SMALL_AS_OF, make_home, run_all

# The small fixture's closed invoices, in number order: TEST-<issuing month>-<sequence>.
EXPECTED_NUMBERS = ["TEST-202609-0001", "TEST-202610-0001", "TEST-202610-0002", "TEST-202611-0001",
                    "TEST-202611-0002"]


@pytest.fixture(scope="module")
def built_home(tmp_path_factory) -> Path:
    settings = make_home(tmp_path_factory.mktemp("ledger"))
    shutil.copy(FIXTURES / "small_events" / "events.jsonl", settings.landing_dir)
    run_all(settings)
    return settings.home


@pytest.fixture
def home(built_home: Path, tmp_path: Path):
    copy = tmp_path / "home"
    shutil.copytree(built_home, copy)
    return get_settings(copy)


def ledger_dump(settings) -> bytes:
    """Every ledger row of every ledger table as sorted CSV: the ledger's content, byte for byte."""
    out = io.StringIO()
    writer = csv.writer(out)
    with connect(settings, read_only=True) as warehouse:
        for table in LEDGER_TABLES:
            writer.writerow([table])
            writer.writerows(sorted(tuple(map(repr, row)) for row in warehouse.query(f"select * from {table}")))
    return out.getvalue().encode()


def invoices(settings) -> list[tuple]:
    with connect(settings, read_only=True) as warehouse:
        return warehouse.query("select invoice_number, status, customer_id, invoice_at, total_amount, invoice_id "
                               "from marts.fct_invoices order by invoice_at, invoice_id")


def rebuild_marts(settings, as_of: datetime = SMALL_AS_OF) -> None:
    pipeline.build(settings, as_of, full_refresh=False, select="path:models/marts")


def test_finalisation_numbers_closed_invoices_and_the_marts_read_them_from_the_ledger(home):
    before = {row[5]: row for row in invoices(home)}
    done = finalise(home)
    assert [number for _, number in done.invoices] == EXPECTED_NUMBERS
    rebuild_marts(home)
    after = invoices(home)
    finalized = [row for row in after if row[1] == "finalized"]
    assert [row[0] for row in finalized] == EXPECTED_NUMBERS
    assert {row[1] for row in after if row[1] != "finalized"} == {"draft"}
    # The same amounts as the drafts they were: finalisation freezes, it does not recompute.
    assert all(before[row[5]][4] == row[4] and before[row[5]][1] == "closed" for row in finalized)
    with connect(home, read_only=True) as warehouse:
        recorded = warehouse.query(
            "select events_cutoff_at, price_book_fingerprint, code_version, events_fingerprint, event_count "
            "from ledger.invoices")
        cutoff = warehouse.query("select max(loaded_at) from raw.events")[0][0]
        fingerprint = warehouse.query("select fingerprint from catalog.price_book_versions")[0][0]
        lines = warehouse.query("select count(*) from ledger.invoice_lines")[0][0]
        marts_lines = warehouse.query("select count(*) from marts.fct_invoice_lines where status = 'finalized'")[0][0]
        files = {row[0] for row in warehouse.query("select file_name from ledger.price_book_files")}
    assert {row[0] for row in recorded} == {cutoff}
    assert {row[1] for row in recorded} == {fingerprint}
    assert all(row[2].startswith("meterline ") and "sha256:" in row[2] for row in recorded)
    with_events = [row[3] for row in recorded if row[4]]
    assert len(set(with_events)) == len(with_events) >= 3  # each invoice's own events
    assert {row[3] for row in recorded if not row[4]} == {hashlib.md5(b"").hexdigest()}
    assert lines == marts_lines > 0
    assert {"billing_entity.yml", "plans.yml", "customers.csv"} <= files


def test_a_full_refresh_and_a_rerun_leave_the_ledger_byte_identical(home):
    finalise(home)
    rebuild_marts(home)
    frozen = ledger_dump(home)
    marts_before = invoices(home)
    pipeline.run_dbt(home, ["build", "--full-refresh"], as_of=SMALL_AS_OF)
    assert ledger_dump(home) == frozen
    # A re-run (catalog, ingest, build, finalise) finds nothing to finalise and changes nothing.
    run_all(home)
    again = finalise(home)
    assert again.invoices == [] and again.finalisation_id is None
    assert ledger_dump(home) == frozen
    assert invoices(home) == marts_before


def test_a_price_change_after_finalisation_changes_drafts_only(home):
    finalise(home)
    rebuild_marts(home)
    before = {row[5]: row for row in invoices(home)}
    plans = home.catalog_dir / "plans.yml"
    text = plans.read_text()
    assert 'amount: "3000"' in text
    plans.write_text(text.replace('amount: "3000"', 'amount: "3100"', 1))
    run_all(home)  # a full rebuild: the catalog changed
    after = {row[5]: row for row in invoices(home)}
    assert {key: row for key, row in after.items() if row[1] == "finalized"} == {
        key: row for key, row in before.items() if row[1] == "finalized"}
    changed = [key for key, row in after.items() if row[1] == "draft" and row[4] != before[key][4]]
    assert changed, "the JPY plan's price rise should change November's draft"


@pytest.mark.parametrize("step", ["finalisation_recorded", "invoices_written", "invoice_lines_written",
                                  "invoice_wallet_credits_written"])
def test_a_crash_between_finalisation_steps_leaves_no_trace_and_numbers_stay_gapless(home, step):
    """The process dies (os._exit, no cleanup) after one step of the transaction."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("METERLINE_")}
    crashed = subprocess.run(
        [sys.executable, "-c", "from orchestration.cli import app; app()", "finalise", "--home", str(home.home)],
        cwd=PROJECT_DIR, env={**env, CRASH_VARIABLE: step}, capture_output=True, text=True)
    assert crashed.returncode == 70, crashed.stdout + crashed.stderr
    with connect(home, read_only=True) as warehouse:
        assert [warehouse.query(f"select count(*) from {table}")[0][0] for table in LEDGER_TABLES] == [0] * len(
            LEDGER_TABLES)
    done = finalise(home)
    assert [number for _, number in done.invoices] == EXPECTED_NUMBERS


def test_the_grace_period_keeps_invoices_drafts_and_numbering_continues_gapless(home):
    customers = home.catalog_dir / "customers.csv"
    rows = list(csv.DictReader(customers.open()))
    for row in rows:
        row["invoice_grace_period_days"] = "25" if row["external_customer_id"] == "cus_a" else ""
    with customers.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    run_all(home)
    first = finalise(home)
    # cus_a's 1 November invoice is 20.5 days old on 21 November: still in its 25-day grace period.
    assert [number for _, number in first.invoices] == EXPECTED_NUMBERS[:4]
    rebuild_marts(home)
    held = [row for row in invoices(home) if row[2] == "cus_a" and row[1] == "closed"]
    assert len(held) == 1 and held[0][3] == datetime(2026, 10, 31, 23)
    with connect(home, read_only=True) as warehouse:
        assert warehouse.query("select grace_period_ends_at from marts.fct_invoices where invoice_id = ?",
                               [held[0][5]])[0][0] == datetime(2026, 11, 25, 23)
    run_all(home, as_of=datetime(2026, 11, 26))
    second = finalise(home)
    assert second.invoices == [(held[0][5], "TEST-202611-0002")]


def test_a_voided_invoice_stays_visible_and_keeps_its_number(home):
    done = finalise(home)
    invoice_id, number = done.invoices[1]
    assert void(home, number, "billed to the wrong customer") == (invoice_id, number)
    rebuild_marts(home)
    with connect(home, read_only=True) as warehouse:
        status = warehouse.query("select status, invoice_number, voided_at is not null from marts.fct_invoices "
                                 "where invoice_id = ?", [invoice_id])
        line_statuses = {row[0] for row in warehouse.query(
            "select status from marts.fct_invoice_lines where invoice_id = ?", [invoice_id])}
        reason = warehouse.query("select reason from ledger.invoice_voids")[0][0]
        kept = warehouse.query("select count(*) from ledger.invoices where invoice_id = ?", [invoice_id])[0][0]
    assert status == [("voided", number, True)] and line_statuses == {"voided"}
    assert reason == "billed to the wrong customer" and kept == 1
    with pytest.raises(FinalisationError, match="already voided"):
        void(home, number, "again")
    draft = next(row[5] for row in invoices(home) if row[1] == "draft")
    with pytest.raises(FinalisationError, match="only finalised ones can be voided"):
        void(home, draft, "a draft")
    # Voiding does not give the number back: the next finalisation continues after it.
    assert finalise(home).invoices == []


def test_finalisation_refuses_a_stale_build(home):
    (home.landing_dir / "late.jsonl").write_text(
        '{"transaction_id": "late-1", "external_subscription_id": "sub_a", "code": "api_requests", '
        '"timestamp": "2026-10-15T10:00:00Z", "properties": {}}\n')
    pipeline.ingest(home, pipeline.new_landing_files(home))
    with pytest.raises(FinalisationError, match="events were loaded since the last build"):
        finalise(home)
    plans = home.catalog_dir / "plans.yml"
    plans.write_text(plans.read_text().replace('amount: "10.00"', 'amount: "12.00"', 1))
    pipeline.read_and_load_catalog(home, home.catalog_dir)
    with pytest.raises(FinalisationError, match="the catalog changed since the last build"):
        finalise(home)
    with connect(home, read_only=True) as warehouse:
        assert warehouse.query("select count(*) from ledger.invoices")[0][0] == 0


def test_finalisation_stops_when_an_event_went_missing_from_a_derived_table(home):
    """Conservation is a blocking check, run again on the tables as they are before freezing."""
    with connect(home) as warehouse:
        # The key index that later loads are deduplicated against loses an event.
        warehouse.execute("delete from intermediate.int_event_keys where source_row = "
                          "(select min(source_row) from intermediate.int_event_keys)")
    with pytest.raises(FinalisationError, match="assert_every_event_accounted_for"):
        finalise(home)
    with connect(home, read_only=True) as warehouse:
        assert warehouse.query("select count(*) from ledger.invoices")[0][0] == 0
