"""`meterline reproduce` (docs/invoice-lifecycle.md): a finalised invoice rebuilt from what it
recorded (events up to its cut-off, its price book, the ledger before it, its as_of) is
identical; once an event behind it is altered, the differences are reported."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone

from typer.testing import CliRunner

from orchestration import pipeline
from orchestration.cli import app
from orchestration.demo.generator import generate_demo
from orchestration.reproduce import reproduce
from orchestration.settings import get_settings
from orchestration.warehouse import connect
from tests.conftest import FIXTURES, make_home, run_all

DEMO_AS_OF = datetime(2026, 11, 21, 12)


def test_the_demo_invoices_reproduce_identically(tmp_path):
    home = tmp_path / "demo"
    generate_demo(home, customers=10, events=4_000, seed=5, as_of=DEMO_AS_OF.replace(tzinfo=timezone.utc),
                  overwrite=True)
    settings = get_settings(home)
    run_all(settings, as_of=DEMO_AS_OF)
    # 4,000 events over 10 customers make erratic months: accept what the usage-cliff check flags.
    first = pipeline.finalise(settings, accept_usage_cliffs=True)
    # Later events and a later finalisation: the first invoices must still reproduce as they were.
    shutil.copy(FIXTURES / "small_events" / "events.jsonl", settings.landing_dir / "zz-later.jsonl")
    run_all(settings, as_of=datetime(2026, 11, 23))
    pipeline.finalise(settings, accept_usage_cliffs=True)
    with connect(settings, read_only=True) as warehouse:
        # The finalised invoice with the most steps in use (coupon, tax, credits), and the last one.
        [[busiest]] = warehouse.query(
            "select invoice_number from ledger.invoices order by (case when discount_amount > 0 then 1 else 0 end)"
            " + (case when tax_amount > 0 then 1 else 0 end) + (case when prepaid_credit_amount > 0 then 1 else 0 end)"
            " desc, line_count desc, invoice_number limit 1")
        [[last]] = warehouse.query("select max(invoice_number) from ledger.invoices")
    assert busiest in {number for _, number in first.invoices}
    for number in (busiest, last):
        result = reproduce(settings, number)
        assert result.identical, result.differences
        assert result.events_copied > 0


def test_an_altered_event_is_reported_as_a_difference(tmp_path):
    settings = make_home(tmp_path)
    shutil.copy(FIXTURES / "small_events" / "events.jsonl", settings.landing_dir)
    run_all(settings)
    pipeline.finalise(settings)
    runner = CliRunner()
    # cus_a's September usage: 1,500 input tokens (event t2) on invoice TEST-202610-0002.
    same = runner.invoke(app, ["reproduce", "--home", str(settings.home), "TEST-202610-0002"])
    assert same.exit_code == 0, same.output
    assert "identical" in same.output
    with connect(settings) as warehouse:
        warehouse.execute("update raw.events set properties = ? where transaction_id = 't2'",
                          [json.dumps({"tokens": 2500})])
    changed = runner.invoke(app, ["reproduce", "--home", str(settings.home), "TEST-202610-0002"])
    assert changed.exit_code == 1, changed.output
    result = reproduce(settings, "TEST-202610-0002")
    changed_columns = {(table, column) for table, _, column, _, _ in result.differences}
    assert ("ledger.invoices", "events_fingerprint") in changed_columns
    assert ("ledger.invoices", "total_amount") in changed_columns
    assert ("ledger.invoice_lines", "quantity") in changed_columns
    [(was, now)] = [(was, now) for table, _, column, was, now in result.differences
                    if table == "ledger.invoice_lines" and column == "quantity"]
    assert (was, now) == ("1500.000000000", "2500.000000000")
