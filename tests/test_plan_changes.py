"""Plan changes by hand (tests/fixtures/plan_changes), billed as of 2026-11-20, all in UTC.

A subscription's later row in subscriptions.csv (same external_subscription_id) is a plan
change requested at its started_at. Base fees: Basic 31.00, Pro 62.00 a month, so a day of
October costs 1.00 or 2.00. Calls cost 1.00 (Basic) or 0.50 (Pro); seats 10.00 or 8.00.

| customer | what happens | by hand |
|---|---|---|
| c_upgrade | Basic in arrears from 1 Sep, seat u1 on 5 Sep; upgrade to Pro on 15 Oct 14:00 (immediate); calls on 10 and 20 Oct, seat u2 on 20 Oct | 1 Oct: 31.00 + seat 10.00 = 41.00. 15 Oct 14:00 (Basic ends): 1-14 Oct (the switch day is Pro's) 14.00 + call 1.00 + seat 10.00 = 25.00. 1 Nov: Pro 15-31 Oct 17 days 34.00 + call 0.50 + seats u1 (carried across the change) and u2 x 8.00 = 16.00: 50.50 |
| c_downgrade | Pro in arrears from 1 Sep; downgrade to Basic requested on 10 Oct: takes effect at the end of October | 1 Nov: Pro's October 62.00 + the 20 Oct call 0.50 = 62.50; the 5 Nov call is Basic's (1.00, November draft) |
| c_terminate | Basic in advance from 1 Sep, ended on 20 Oct | 1 Oct: October in advance 31.00; 20 Oct: usage of 1-19 Oct (a call, 1.00); credit note for 20-31 Oct, 12 of 31 days: 12.00, issued at that instant: it pays the 1.00 (0.00 due) and 11.00 is left |
| c_upgrade_advance | Basic in advance from 1 Sep; upgrade to Pro on 11 Oct | 11 Oct: Pro for 11-31 Oct, 21 days, 42.00; credit note for Basic's 11-31 Oct: 21.00, which pays half of it: 21.00 due |
"""

from __future__ import annotations

from datetime import datetime

import pytest

from orchestration import pipeline
from tests.conftest import FIXTURES, catalog_error_after_edit

CASE = FIXTURES / "plan_changes"


@pytest.fixture(scope="module")
def billed():
    return pipeline.simulate(CASE / "catalog", [CASE / "events.jsonl"], as_of=datetime(2026, 11, 20))


def _invoices(billed, customer: str) -> list[tuple]:
    return [
        (i["invoice_at"], i["total_amount"],
         sorted((line["fee_kind"], line["metric_code"] or "", line["service_period_start"],
                 line["service_period_end"], line["quantity"], line["amount"]) for line in i["lines"]))
        for i in sorted(billed.invoices, key=lambda i: i["invoice_at"]) if i["customer_id"] == customer
    ]


def test_an_upgrade_takes_effect_at_once_and_seats_carry_across_it(billed):
    assert _invoices(billed, "c_upgrade")[:3] == [
        ("2026-10-01T00:00:00Z", "41.00", [
            ("charge", "api_calls", "2026-09-01", "2026-09-30", "0", "0.00"),
            ("charge", "seats", "2026-09-01", "2026-09-30", "1", "10.00"),
            ("subscription", "", "2026-09-01", "2026-09-30", "1", "31.00")]),
        ("2026-10-15T14:00:00Z", "25.00", [
            ("charge", "api_calls", "2026-10-01", "2026-10-15", "1", "1.00"),
            ("charge", "seats", "2026-10-01", "2026-10-15", "1", "10.00"),
            ("subscription", "", "2026-10-01", "2026-10-14", "1", "14.00")]),
        ("2026-11-01T00:00:00Z", "50.50", [
            ("charge", "api_calls", "2026-10-15", "2026-10-31", "1", "0.50"),
            ("charge", "seats", "2026-10-15", "2026-10-31", "2", "16.00"),
            ("subscription", "", "2026-10-15", "2026-10-31", "1", "34.00")]),
    ]


def test_a_downgrade_waits_for_the_end_of_the_period(billed):
    invoices = _invoices(billed, "c_downgrade")
    assert invoices[1] == ("2026-11-01T00:00:00Z", "62.50", [
        ("charge", "api_calls", "2026-10-01", "2026-10-31", "1", "0.50"),
        ("charge", "seats", "2026-10-01", "2026-10-31", "0", "0.00"),
        ("subscription", "", "2026-10-01", "2026-10-31", "1", "62.00")])
    assert invoices[2][:2] == ("2026-12-01T00:00:00Z", "32.00")  # Basic from 1 Nov (draft)
    assert ("charge", "api_calls", "2026-11-01", "2026-11-30", "1", "1.00") in invoices[2][2]


def test_terminating_an_in_advance_plan_bills_used_usage_and_credits_unused_days(billed):
    invoices = _invoices(billed, "c_terminate")
    assert invoices[1][:2] == ("2026-10-01T00:00:00Z", "31.00")
    assert invoices[2] == ("2026-10-20T00:00:00Z", "0.00", [
        ("charge", "api_calls", "2026-10-01", "2026-10-19", "1", "1.00")])
    assert len(invoices) == 3
    [note] = [n for n in billed.credit_notes if n["customer_id"] == "c_terminate"]
    assert (note["reason"], note["issued_at"], note["service_period_start"], note["service_period_end"],
            note["unused_days"], note["days_in_period"], note["amount"], note["status"]) == (
        "termination", "2026-10-20T00:00:00Z", "2026-10-20", "2026-10-31", 12, 31, "12.00", "closed")
    # Issued at the last invoice's instant, it pays that invoice's 1.00; 11.00 is left to use.
    assert (note["applied_amount"], note["balance_amount"]) == ("1.00", "11.00")


def test_an_in_advance_upgrade_bills_the_new_plan_and_credits_the_old_one(billed):
    invoices = _invoices(billed, "c_upgrade_advance")
    # Pro's 42.00, less the 21.00 credit note issued at the same instant.
    assert invoices[2] == ("2026-10-11T00:00:00Z", "21.00", [
        ("charge", "api_calls", "2026-10-01", "2026-10-10", "0", "0.00"),
        ("subscription", "", "2026-10-11", "2026-10-31", "1", "42.00")])
    [note] = [n for n in billed.credit_notes if n["customer_id"] == "c_upgrade_advance"]
    assert (note["reason"], note["issued_at"], note["service_period_start"], note["unused_days"],
            note["amount"], note["subscription_id"]) == (
        "upgrade", "2026-10-11T00:00:00Z", "2026-10-11", 21, "21.00", "s_upa")
    assert len(billed.credit_notes) == 2


def test_only_the_last_row_of_a_subscription_may_end_it(tmp_path):
    error = catalog_error_after_edit(CASE / "catalog", tmp_path, "s_up,c_upgrade,basic_arrears,2026-09-01,",
                                     "s_up,c_upgrade,basic_arrears,2026-09-01,2026-12-01", file="subscriptions.csv")
    assert str(error) == (f"{error.file}: row 2 (external_subscription_id 's_up') > ended_at: "
                          "only the last row of a subscription (its current plan) may end it")
