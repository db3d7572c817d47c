"""Progressive billing by hand (tests/fixtures/progressive_billing), billed as of 2026-11-20.

Usage thresholds are checked at every local midnight inside a period: when the period's usage
to date reaches a threshold not yet reached, an invoice for the usage so far is issued at that
midnight; the period-end invoice deducts what was billed early. GST 10% on everything.

| customer | plan | by hand |
|---|---|---|
| p_twice (Paris) | 10.00 a month, calls 1.00; thresholds 20.00 and 50.00 | 15 calls on 3 Oct, 10 on 4 Oct (Paris; 23:30Z on the 3rd): the 4 Oct midnight sees 15.00, the 5 Oct one (4 Oct 22:00Z) 25.00, invoice 25.00 + 2.50. 30 calls on 10 Oct: 55.00 at 10 Oct 22:00Z, invoice 30.00 + 3.00. 5 calls on 20 Oct. 1 Nov (31 Oct 23:00Z, winter time): 60.00 + 10.00 = 70.00 less 55.00 already invoiced = 15.00 + 1.50 = 16.50. November: 60 calls on 2 Nov reach both thresholds at once, one invoice of 60.00 + 6.00; the draft of 1 Dec deducts it: 10.00 + 1.00 |
| p_recurring (UTC) | tokens 0.01; thresholds 50.00, then every 100.00 (150, 250, 350...) | 6,000 tokens on 5 Oct: 60.00 on 6 Oct, invoice 60.00. 10,000 on 7 Oct: 160.00 reaches 150, invoice 100.00 on 8 Oct. 20,000 on 15 Oct: 360.00 reaches 250 and 350, one invoice of 200.00 on 16 Oct. 1,000 on 31 Oct (the last day: no midnight after it in the period). 1 Nov: 370.00 less 360.00 = 10.00 + 1.00 |
| p_seats (UTC) | seats (recurring unique count) 10.00, storage (weighted sum, GB-month) 3.10; thresholds 25.00, then every 18.50 (43.50, 62.00) | October (31 days): 10 GB from 1 Oct accrue 10 x days/31 GB-months, 1.00 a day; seats s1, s2 from 1 Oct, s3 from 9 Oct. 6 Oct: 20.00 + 5.00 = 25.00, invoice 25.00. 15 Oct: 30.00 + 13.9999999992 (4.516129032 GB-months, quantities have 9 decimals) = 43.99 reaches 43.50: seats 10.00 + storage 14.00 - 5.00 = 19.00. 62.00 is never reached (61.00 at most). 1 Nov: 30.00 + 31.00 less 44.00 = 17.00 + 1.70. November (30 days): the three seats and 10 GB carry in: 2 Nov 30.00 + 1.03 (31.03), invoice 31.03; 15 Nov 30.00 + 14.47 reaches 43.50: storage 13.44. Draft 1 Dec: 61.00 less 44.47 = 16.53 + 1.65 |
| p_commission (UTC) | sales at 10% + 0.50 a sale, the first two sales free; threshold 10.00 | Sales of 20, 30, 50, 60 on 2-5 Oct, 10 on 20 Oct. 5 Oct midnight: (100 - 50 free) x 10% + 0.50 = 5.50. 6 Oct: (160 - 50) x 10% + 2 x 0.50 = 12.00, invoice 12.00 + 1.20. 1 Nov: (170 - 50) x 10% + 3 x 0.50 = 13.50 less 12.00 = 1.50 + 0.15 |
| p_volume (UTC) | calls at a volume price: up to 10 at 2.00, from 11 at 1.00; threshold 15.00 | 9 calls on 2 Oct: 18.00 on 3 Oct, invoice 18.00 + 1.80. 3 more on 5 Oct: 12 calls cost 12.00. 1 Nov: 12.00 less 12.00 (a line deducts at most itself) = 0; the 6.00 billed beyond is a credit note |
"""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal

import pytest

from tests.conftest import FIXTURES, catalog_error_after_edit, make_home, run_all
from orchestration.warehouse import connect

CASE = FIXTURES / "progressive_billing"
AS_OF = datetime(2026, 11, 20)

INVOICE_COLUMNS = ["customer_id", "invoice_kind", "status", "invoice_at", "fees_amount",
                   "progressive_billing_credit_amount", "tax_amount", "total_amount"]


def bill(home_dir, as_of: datetime):
    settings = make_home(home_dir, CASE / "catalog")
    (settings.landing_dir / "events.jsonl").write_bytes((CASE / "events.jsonl").read_bytes())
    run_all(settings, as_of=as_of)
    with connect(settings, read_only=True) as warehouse:
        invoices = warehouse.query(f"select {', '.join(INVOICE_COLUMNS)} from marts.fct_invoices "
                                   "order by customer_id, invoice_at")
        lines = warehouse.query(
            "select customer_id, invoice_at, description, quantity, amount, progressive_billing_credit_amount, "
            "event_count, is_progressive_billing from marts.fct_invoice_lines where fee_kind = 'charge' "
            "order by customer_id, invoice_at, description")
        credit_notes = warehouse.query("select customer_id, reason, issued_at, amount from marts.fct_credit_notes")
        billed_early = warehouse.query(
            "select lines.invoice_line_id, lines.amount, lines.progressive_billing_credit_amount, "
            "coalesce(sum(early.amount), 0) from marts.fct_invoice_lines as lines "
            "left join intermediate.int_progressive_billing_fees as early "
            "on lines.invoice_line_id = early.period_invoice_line_id "
            "where not lines.is_progressive_billing and lines.fee_kind = 'charge' group by 1, 2, 3")
    return invoices, lines, credit_notes, billed_early, settings.home


@pytest.fixture(scope="module")
def billed(tmp_path_factory):
    return bill(tmp_path_factory.mktemp("progressive"), AS_OF)


def invoices_of(billed, customer: str) -> list[tuple]:
    invoices = billed[0]
    return [(kind, status, at.isoformat(), *(str(Decimal(a).quantize(Decimal("0.01"))) for a in amounts))
            for c, kind, status, at, *amounts in invoices if c == customer]


def test_a_threshold_crossed_twice_in_one_period_at_local_midnights(billed):
    assert invoices_of(billed, "p_twice") == [
        # kind, status, at (UTC), fees, already invoiced, tax, total
        ("progressive_billing", "closed", "2026-10-04T22:00:00", "25.00", "0.00", "2.50", "27.50"),
        ("progressive_billing", "closed", "2026-10-10T22:00:00", "30.00", "0.00", "3.00", "33.00"),
        ("subscription", "closed", "2026-10-31T23:00:00", "70.00", "55.00", "1.50", "16.50"),
        # Both thresholds reached by one day's usage: one invoice.
        ("progressive_billing", "closed", "2026-11-02T23:00:00", "60.00", "0.00", "6.00", "66.00"),
        ("subscription", "draft", "2026-11-30T23:00:00", "70.00", "60.00", "1.00", "11.00"),
    ]
    lines = [(description, format(quantity.normalize(), "f"), str(amount), str(credit), events)
             for c, _, description, quantity, amount, credit, events, _ in billed[1] if c == "p_twice"]
    assert lines[:3] == [
        ("API calls (usage to 2026-10-04)", "25", "25.000", "0.000", 25),
        ("API calls (usage to 2026-10-10)", "30", "30.000", "0.000", 30),
        ("API calls", "60", "60.000", "55.000", 60),
    ]


def test_a_recurring_threshold(billed):
    assert invoices_of(billed, "p_recurring") == [
        ("progressive_billing", "closed", "2026-10-06T00:00:00", "60.00", "0.00", "6.00", "66.00"),
        ("progressive_billing", "closed", "2026-10-08T00:00:00", "100.00", "0.00", "10.00", "110.00"),
        ("progressive_billing", "closed", "2026-10-16T00:00:00", "200.00", "0.00", "20.00", "220.00"),
        ("subscription", "closed", "2026-11-01T00:00:00", "370.00", "360.00", "1.00", "11.00"),
        ("subscription", "draft", "2026-12-01T00:00:00", "0.00", "0.00", "0.00", "0.00"),
    ]


def test_seats_and_storage_to_date_with_a_recurring_threshold(billed):
    """Recurring unique counts count the values active since the period's start, carried in
    or added; weighted sums accrue level x time up to the checkpoint over the month's time."""
    assert invoices_of(billed, "p_seats") == [
        ("progressive_billing", "closed", "2026-10-06T00:00:00", "25.00", "0.00", "2.50", "27.50"),
        ("progressive_billing", "closed", "2026-10-15T00:00:00", "19.00", "0.00", "1.90", "20.90"),
        ("subscription", "closed", "2026-11-01T00:00:00", "61.00", "44.00", "1.70", "18.70"),
        ("progressive_billing", "closed", "2026-11-02T00:00:00", "31.03", "0.00", "3.10", "34.13"),
        ("progressive_billing", "closed", "2026-11-15T00:00:00", "13.44", "0.00", "1.34", "14.78"),
        ("subscription", "draft", "2026-12-01T00:00:00", "61.00", "44.47", "1.65", "18.18"),
    ]
    lines = [(description, str(amount)) for c, at, description, _, amount, _, _, _ in billed[1]
             if c == "p_seats" and at < datetime(2026, 10, 16)]
    assert lines == [("Seats (usage to 2026-10-05)", "20.000"), ("Storage (GB-month) (usage to 2026-10-05)", "5.000"),
                     ("Seats (usage to 2026-10-14)", "10.000"), ("Storage (GB-month) (usage to 2026-10-14)", "9.000")]


def test_a_percentage_charge_to_date_keeps_its_free_events(billed):
    assert invoices_of(billed, "p_commission")[:2] == [
        ("progressive_billing", "closed", "2026-10-06T00:00:00", "12.00", "0.00", "1.20", "13.20"),
        ("subscription", "closed", "2026-11-01T00:00:00", "13.50", "12.00", "0.15", "1.65"),
    ]


def test_usage_billed_beyond_the_period_amount_is_credited_back(billed):
    assert invoices_of(billed, "p_volume")[:2] == [
        ("progressive_billing", "closed", "2026-10-03T00:00:00", "18.00", "0.00", "1.80", "19.80"),
        ("subscription", "closed", "2026-11-01T00:00:00", "12.00", "12.00", "0.00", "0.00"),
    ]
    assert [(reason, at.isoformat(), str(amount)) for c, reason, at, amount in billed[2] if c == "p_volume"] == [
        ("progressive_billing_overbilled", "2026-11-01T00:00:00", "6.000")]


def test_each_period_line_deducts_what_was_billed_early_or_all_of_itself(billed):
    _, _, credit_notes, billed_early, _ = billed
    assert billed_early
    overbilled = Decimal(0)
    for line_id, amount, deducted, early in billed_early:
        assert deducted == min(amount, early), line_id
        overbilled += early - deducted
    assert overbilled == sum((a for _, reason, _, a in credit_notes if reason == "progressive_billing_overbilled"),
                             Decimal(0))


def test_a_run_as_of_an_earlier_day_sees_only_the_thresholds_reached_by_then(tmp_path):
    """As of 8 Oct noon only the first Paris invoice is issued; 10 Oct's calls are not yet
    events (they would be after the run's cut-off)."""
    invoices, *_ = bill(tmp_path, datetime(2026, 10, 8, 12))
    assert invoices_of((invoices,), "p_twice") == [
        ("progressive_billing", "closed", "2026-10-04T22:00:00", "25.00", "0.00", "2.50", "27.50"),
        ("subscription", "draft", "2026-10-31T23:00:00", "35.00", "25.00", "1.00", "11.00"),
    ]


def test_the_invoice_and_its_lines_show_what_was_billed_early(billed):
    """`meterline invoice` shows the deduction as a step; `meterline explain` says where a
    progressive line comes from and which line deducts it."""
    from typer.testing import CliRunner

    from orchestration.cli import app

    home = ["--home", str(billed[4])]
    runner = CliRunner()
    listed = runner.invoke(app, ["invoices", *home, "--format", "json", "--customer", "p_twice"])
    assert listed.exit_code == 0, listed.output
    invoices = json.loads(listed.output)
    october = next(i for i in invoices if i["invoice_at"] == "2026-10-31T23:00:00Z")
    assert (october["invoice_kind"], october["progressive_billing_credit_amount"]) == ("subscription", "55.00")
    shown = runner.invoke(app, ["invoice", *home, october["invoice_id"][:12]])
    assert shown.exit_code == 0, shown.output
    assert "Already invoiced by progressive billing" in shown.output and "-55.00" in shown.output
    early = next(i for i in invoices if i["invoice_at"] == "2026-10-10T22:00:00Z")
    assert early["invoice_kind"] == "progressive_billing"
    [line] = early["lines"]
    explained = runner.invoke(app, ["explain", *home, line["line_id"]])
    assert explained.exit_code == 0, explained.output
    text = " ".join(explained.output.split())  # the console wraps long lines
    assert "usage to 2026-10-10 = 55 units" in text
    assert "less what earlier progressive invoices of the period billed for it = 30" in text


@pytest.mark.parametrize(("old", "new", "where", "message"), [
    ('- {amount: "50.00", name: Second step}', '- {amount: "50.00", name: Second step, recurring: true}\n'
     '      - {amount: "70.00", recurring: true}', "plans[0] (code 'twice') > usage_thresholds",
     "at most one threshold may be recurring"),
    ('- {amount: "50.00", name: Second step}', '- {amount: "20.00", name: Second step}',
     "plans[0] (code 'twice') > usage_thresholds", "two fixed thresholds have the same amount"),
    ('- {amount: "50.00"}', '- {amount: "0"}', "plans[1] (code 'recurring') > usage_thresholds[0] > amount", "'0' must be above zero"),
])
def test_invalid_thresholds_are_located(tmp_path, old, new, where, message):
    error = catalog_error_after_edit(CASE / "catalog", tmp_path, old, new)
    assert str(error) == f"{error.file}: {where}: {message}"
