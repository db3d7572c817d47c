"""The billing calendar, by hand (tests/fixtures/calendar), billed as of 2026-11-20.

Base fees equal the days of a full period (31.00 a month, 7.00 a week, 90.00 a quarter,
184.00 a half-year, 365.00 a year), so a prorated fee is its number of billed days. Each
API call costs 1.00 (0.0005 KWD, 0.5 JPY).

| customer | plan, billing time, zone | what is checked |
|---|---|---|
| c_leap | monthly anniversary from 31 Jan 2024, UTC | periods 31 Jan-28 Feb, 29 Feb-30 Mar, 31 Mar-29 Apr, 30 Apr-30 May: the 31st clamps to 29 Feb and comes back; an event at 28 Feb 23:59:59 is in the first, one at 29 Feb 12:00 in the second |
| c_nonleap | monthly anniversary from 31 Jan 2025 | 31 Jan-27 Feb (28 days), 28 Feb-30 Mar, 31 Mar-29 Apr; an event at 28 Feb 00:00 opens the second |
| c_weekly | weekly calendar from Wed 2 Sep 2026 | first week Mon 31 Aug-Sun 6 Sep, 5 of 7 days billed: 5.00; then 7.00 a week |
| c_quarter | quarterly calendar from 10 Feb 2026 | Q1 prorated 50 of 90 days: 50.00; Q2, Q3 90.00; Q4 a draft |
| c_semi | semiannual calendar, in advance, from 15 Aug 2026 | period 1 Jul-31 Dec, 139 of 184 days billed at the start: 139.00 |
| c_year | yearly anniversary, in advance, from 29 Feb 2024 | periods 29 Feb 2024-27 Feb 2025, 28 Feb 2025-27 Feb 2026, 28 Feb 2026-27 Feb 2027 (365 days each): 365.00 at each start |
| c_tonga | monthly, Pacific/Tongatapu (UTC+13) | October closes at 31 Oct 11:00 UTC; an event at 10:30 UTC is October's, one at 11:30 UTC November's |
| c_honolulu | monthly, Pacific/Honolulu (UTC-10) | October closes at 1 Nov 10:00 UTC; events at 09:30 and 10:30 UTC split the same way |
| c_paris | weekly, Europe/Paris | the week of 19 Oct runs from 18 Oct 22:00 UTC (CEST) to 25 Oct 23:00 UTC (CET, clocks went back): 7 days and 1 hour; an event at 22:30 UTC on the 25th is in it |
| c_newyork | monthly, America/New_York, from 1 Sep 2025 | October 2025 ends 1 Nov 04:00 UTC (EDT), November 1 Dec 05:00 UTC (EST); an event at 1 Dec 04:30 UTC is November's |
| c_kwd | monthly KWD from 10 Oct 2026, Asia/Kuwait | 10.000 x 22/31 = 7.0967741... -> 7.097; 3 calls x 0.0005 = 0.0015 -> 0.002 |
| c_jpy | monthly JPY from 10 Oct 2026, Asia/Tokyo | 1000 x 22/31 = 709.677... -> 710; 3 calls x 0.5 = 1.5 -> 2 |
| c_trial | monthly in arrears, 14-day trial, from 10 Oct 2026 | trial 10-23 Oct, base fee 24-31 Oct: 8.00; the call made during the trial is billed: 9.00 on 1 Nov |
| c_trial_advance | monthly in advance, 14-day trial, from 10 Oct 2026 | first invoice at the trial's end (24 Oct): 8.00 for 24-31 Oct; 1 Nov: November 31.00 + October's call 1.00 |
| c_trial_long | monthly in arrears, 14-day trial, from 25 Sep 2026 | September is all trial: no base fee line, the call 1.00; October's fee from 9 Oct: 23.00 |
| c_override | the monthly plan with a contract (subscription_overrides.yml): base 20.00, calls at 0.25, commitment 25.00 | October: 20.00 + 4 calls x 0.25 = 21.00, commitment true-up 4.00: 25.00; the plan's other customers keep 31.00 and 1.00 a call |
| add-ons (add_ons.yml, applied_add_ons.csv) | c_leap: 2 x setup 250.00 on 15 Oct; c_weekly: setup at a negotiated 199.99 on Monday 2 Nov, the instant its weekly invoice is issued; c_kwd: 3 x training 45.125 KWD on 20 Oct 09:30 Kuwait time | one-off invoices of their own: 500.00, 199.99 (beside the week's 7.00 invoice, not merged), 135.375 KWD |
| c_yearly_usage | yearly calendar in advance (1,200.00), charges billed monthly (10.00 a call), commitment 1,500.00, from 1 Jul 2025 | 1 Jul 2025: 1,200 x 184/365 = 604.93; each month's calls invoiced at the month's end (August 30.00, November 20.00); 1 Jan 2026: December's usage 0.00, the 2025 commitment 1,500 x 184/365 = 756.16 - (604.93 + 30.00 + 20.00) = 101.23, and 2026's fee 1,200.00 |
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest

from orchestration import pipeline
from orchestration.catalog import read_catalog
from tests.conftest import FIXTURES, catalog_error_after_edit

CASE = FIXTURES / "calendar"
AS_OF = datetime(2026, 11, 20)


@pytest.fixture(scope="module")
def invoices() -> list[dict]:
    return pipeline.simulate(CASE / "catalog", [CASE / "events.jsonl"], as_of=AS_OF).invoices


def _of(invoices: list[dict], customer: str) -> list[dict]:
    """The customer's subscription invoices (one-off add-on invoices are tested on their own)."""
    return sorted((i for i in invoices if i["customer_id"] == customer
                   and not all(line["fee_kind"] == "add_on" for line in i["lines"])), key=lambda i: i["invoice_at"])


def _summary(invoice: dict) -> tuple:
    """(invoice_at, service start of the base fee or usage, period end, base fee, API calls, total)."""
    lines = {line["fee_kind"]: line for line in invoice["lines"]}
    charge = lines.get("charge")
    return (
        invoice["invoice_at"],
        invoice["period_start"],
        invoice["period_end"],
        lines["subscription"]["amount"] if "subscription" in lines else None,
        charge["event_count"] if charge else None,
        invoice["total_amount"],
    )


def test_anniversary_on_the_31st_clamps_to_february_and_comes_back(invoices):
    assert [_summary(i) for i in _of(invoices, "c_leap")[:4]] == [
        ("2024-02-29T00:00:00Z", "2024-01-31", "2024-02-28", "31.00", 1, "32.00"),
        ("2024-03-31T00:00:00Z", "2024-02-29", "2024-03-30", "31.00", 1, "32.00"),
        ("2024-04-30T00:00:00Z", "2024-03-31", "2024-04-29", "31.00", 0, "31.00"),
        ("2024-05-31T00:00:00Z", "2024-04-30", "2024-05-30", "31.00", 0, "31.00"),
    ]
    assert [_summary(i) for i in _of(invoices, "c_nonleap")[:3]] == [
        ("2025-02-28T00:00:00Z", "2025-01-31", "2025-02-27", "31.00", 1, "32.00"),
        ("2025-03-31T00:00:00Z", "2025-02-28", "2025-03-30", "31.00", 1, "32.00"),
        ("2025-04-30T00:00:00Z", "2025-03-31", "2025-04-29", "31.00", 0, "31.00"),
    ]


def test_weekly_quarterly_semiannual_calendar_periods_and_first_period_proration(invoices):
    weekly = _of(invoices, "c_weekly")
    assert [_summary(i) for i in weekly[:2]] == [
        ("2026-09-07T00:00:00Z", "2026-09-02", "2026-09-06", "5.00", 0, "5.00"),
        ("2026-09-14T00:00:00Z", "2026-09-07", "2026-09-13", "7.00", 0, "7.00"),
    ]
    assert len(weekly) == 12  # 11 closed weeks to Sunday 15 Nov, and the open week of 16 Nov
    assert [i["status"] for i in weekly].count("draft") == 1
    assert [_summary(i) for i in _of(invoices, "c_quarter")] == [
        ("2026-04-01T00:00:00Z", "2026-02-10", "2026-03-31", "50.00", 0, "50.00"),
        ("2026-07-01T00:00:00Z", "2026-04-01", "2026-06-30", "90.00", 0, "90.00"),
        ("2026-10-01T00:00:00Z", "2026-07-01", "2026-09-30", "90.00", 0, "90.00"),
        ("2027-01-01T00:00:00Z", "2026-10-01", "2026-12-31", "90.00", 0, "90.00"),
    ]
    semi = _of(invoices, "c_semi")
    assert _summary(semi[0]) == ("2026-08-15T00:00:00Z", "2026-08-15", "2026-12-31", "139.00", None, "139.00")
    base = next(line for line in semi[0]["lines"] if line["fee_kind"] == "subscription")
    assert (base["service_period_start"], base["service_period_end"]) == ("2026-08-15", "2026-12-31")
    assert base["precise_amount"] == "139"  # 184.00 x 139 / 184


def test_yearly_anniversary_from_29_february_in_advance(invoices):
    bases = [
        (line["service_period_start"], line["service_period_end"], line["amount"], inv["invoice_at"])
        for inv in _of(invoices, "c_year") for line in inv["lines"] if line["fee_kind"] == "subscription"
    ]
    assert bases == [
        ("2024-02-29", "2025-02-27", "365.00", "2024-02-29T00:00:00Z"),
        ("2025-02-28", "2026-02-27", "365.00", "2025-02-28T00:00:00Z"),
        ("2026-02-28", "2027-02-27", "365.00", "2026-02-28T00:00:00Z"),
    ]


@pytest.mark.parametrize(("customer", "october_closes", "november_closes"), [
    ("c_tonga", "2026-10-31T11:00:00Z", "2026-11-30T11:00:00Z"),
    ("c_honolulu", "2026-11-01T10:00:00Z", "2026-12-01T10:00:00Z"),
])
def test_far_east_and_far_west_customers_get_one_invoice_per_month_with_the_right_events(
        invoices, customer, october_closes, november_closes):
    by_period = {}
    for invoice in _of(invoices, customer):
        assert invoice["period_start"] not in by_period, f"two invoices for {invoice['period_start']}"
        by_period[invoice["period_start"]] = invoice
    assert sorted(by_period) == ["2026-09-01", "2026-10-01", "2026-11-01"]
    assert _summary(by_period["2026-10-01"]) == (october_closes, "2026-10-01", "2026-10-31", "31.00", 1, "32.00")
    assert _summary(by_period["2026-11-01"]) == (november_closes, "2026-11-01", "2026-11-30", "31.00", 1, "32.00")


def test_periods_across_daylight_saving_changes(invoices):
    paris = {i["period_start"]: i for i in _of(invoices, "c_paris")}
    # Week of Monday 19 Oct: 18 Oct 22:00 UTC (CEST) to 25 Oct 23:00 UTC (CET).
    assert _summary(paris["2026-10-19"]) == ("2026-10-25T23:00:00Z", "2026-10-19", "2026-10-25", "7.00", 1, "8.00")
    assert _summary(paris["2026-10-12"])[0] == "2026-10-18T22:00:00Z"
    assert _summary(paris["2026-10-26"]) == ("2026-11-01T23:00:00Z", "2026-10-26", "2026-11-01", "7.00", 1, "8.00")
    newyork = {i["period_start"]: i for i in _of(invoices, "c_newyork")}
    assert _summary(newyork["2025-10-01"]) == ("2025-11-01T04:00:00Z", "2025-10-01", "2025-10-31", "31.00", 1, "32.00")
    assert _summary(newyork["2025-11-01"]) == ("2025-12-01T05:00:00Z", "2025-11-01", "2025-11-30", "31.00", 1, "32.00")


def test_currencies_round_half_up_to_their_own_exponent(invoices):
    kwd = _of(invoices, "c_kwd")[0]
    lines = {line["fee_kind"]: line for line in kwd["lines"]}
    assert kwd["currency"] == "KWD"
    assert (lines["subscription"]["precise_amount"], lines["subscription"]["amount"]) == ("7.096774193548", "7.097")
    assert (lines["charge"]["precise_amount"], lines["charge"]["amount"]) == ("0.0015", "0.002")
    assert kwd["total_amount"] == "7.099"
    jpy = _of(invoices, "c_jpy")[0]
    lines = {line["fee_kind"]: line for line in jpy["lines"]}
    assert (lines["subscription"]["amount"], lines["charge"]["amount"], jpy["total_amount"]) == ("710", "2", "712")


def test_invalid_interval_names_the_plan(tmp_path):
    error = catalog_error_after_edit(CASE / "catalog", tmp_path, "interval: quarterly", "interval: fortnightly")
    assert "plans[2] (code 'quarterly') > interval" in str(error)


def test_invalid_billing_time_names_the_row(tmp_path):
    error = catalog_error_after_edit(CASE / "catalog", tmp_path, "2026-02-10,,\n", "2026-02-10,,monthly\n",
                                     file="subscriptions.csv")
    assert str(error) == (f"{error.file}: row 5 (external_subscription_id 's_quarter') > billing_time: "
                          "'monthly' is not one of calendar, anniversary")


def _lines(invoice: dict) -> list[tuple]:
    return sorted((line["fee_kind"], line["service_period_start"], line["service_period_end"], line["amount"],
                   line["event_count"]) for line in invoice["lines"])


def test_trials_waive_the_base_fee_and_bill_usage(invoices):
    trial = _of(invoices, "c_trial")[0]
    assert (trial["invoice_at"], trial["total_amount"]) == ("2026-11-01T00:00:00Z", "9.00")
    assert _lines(trial) == [("charge", "2026-10-10", "2026-10-31", "1.00", 1),
                             ("subscription", "2026-10-24", "2026-10-31", "8.00", 0)]

    advance = _of(invoices, "c_trial_advance")
    assert (advance[0]["invoice_at"], advance[0]["total_amount"]) == ("2026-10-24T00:00:00Z", "8.00")
    assert _lines(advance[0]) == [("subscription", "2026-10-24", "2026-10-31", "8.00", 0)]
    assert (advance[1]["invoice_at"], advance[1]["total_amount"]) == ("2026-11-01T00:00:00Z", "32.00")
    assert _lines(advance[1]) == [("charge", "2026-10-10", "2026-10-31", "1.00", 1),
                                  ("subscription", "2026-11-01", "2026-11-30", "31.00", 0)]

    long_trial = _of(invoices, "c_trial_long")
    assert _lines(long_trial[0]) == [("charge", "2026-09-25", "2026-09-30", "1.00", 1)]
    assert _lines(long_trial[1]) == [("charge", "2026-10-01", "2026-10-31", "0.00", 0),
                                     ("subscription", "2026-10-09", "2026-10-31", "23.00", 0)]


def test_a_negative_trial_is_refused(tmp_path):
    error = catalog_error_after_edit(CASE / "catalog", tmp_path, "trial_period: 14\n    charges:\n      - {metric: api_calls, charge_model: standard, properties: {amount: \"1.00\"}}\n  - code: monthly_trial_advance",
                                     "trial_period: -1\n    charges:\n      - {metric: api_calls, charge_model: standard, properties: {amount: \"1.00\"}}\n  - code: monthly_trial_advance")
    assert "plans[7] (code 'monthly_trial') > trial_period" in str(error)


def test_a_yearly_plan_bills_usage_monthly_and_trues_up_its_commitment_at_year_end(invoices):
    yearly = _of(invoices, "c_yearly_usage")
    summary = [(i["invoice_at"][:10], i["total_amount"], _lines(i)) for i in yearly]
    assert summary[:7] == [
        ("2025-07-01", "604.93", [("subscription", "2025-07-01", "2025-12-31", "604.93", 0)]),
        ("2025-08-01", "0.00", [("charge", "2025-07-01", "2025-07-31", "0.00", 0)]),
        ("2025-09-01", "30.00", [("charge", "2025-08-01", "2025-08-31", "30.00", 3)]),
        ("2025-10-01", "0.00", [("charge", "2025-09-01", "2025-09-30", "0.00", 0)]),
        ("2025-11-01", "0.00", [("charge", "2025-10-01", "2025-10-31", "0.00", 0)]),
        ("2025-12-01", "20.00", [("charge", "2025-11-01", "2025-11-30", "20.00", 2)]),
        ("2026-01-01", "1301.23", [("charge", "2025-12-01", "2025-12-31", "0.00", 0),
                                   ("commitment", "2025-07-01", "2025-12-31", "101.23", 0),
                                   ("subscription", "2026-01-01", "2026-12-31", "1200.00", 0)]),
    ]
    # 2026 is not over: monthly usage invoices, no commitment yet.
    assert [row[0] for row in summary[7:]] == [f"2026-{m:02d}-01" for m in range(2, 13)]
    assert not any(line[0] == "commitment" for row in summary[7:] for line in row[2])


def test_monthly_charges_need_a_longer_interval(tmp_path):
    error = catalog_error_after_edit(CASE / "catalog", tmp_path, "amount: \"31.00\"\n    pay_in_advance: false\n    charges",
                                     "amount: \"31.00\"\n    pay_in_advance: false\n    bill_charges_monthly: true\n    charges")
    assert "plans[0] (code 'monthly')" in str(error)
    assert "a monthly plan already bills its charges every month" in str(error)


def test_a_subscription_override_prices_one_contract_without_touching_the_plan(invoices):
    october = _of(invoices, "c_override")[0]
    assert october["total_amount"] == "25.00"
    assert sorted((line["fee_kind"], line["description"], line["quantity"], line["amount"])
                  for line in october["lines"]) == [
        ("charge", "API calls (contract price)", "4", "1.00"),
        ("commitment", "Monthly (minimum commitment)", "1", "4.00"),
        ("subscription", "Monthly", "1", "20.00"),
    ]
    others = [line for i in _of(invoices, "c_newyork") for line in i["lines"] if line["fee_kind"] == "subscription"]
    assert {line["amount"] for line in others} == {"31.00"}

    catalog = read_catalog(CASE / "catalog")
    contract = next(p for p in catalog.plans if p.code == "monthly@s_override")
    assert (contract.base_plan_code, contract.amount, contract.charges[0].properties.amount) == (
        "monthly", Decimal("20.00"), Decimal("0.25"))
    plan = next(p for p in catalog.plans if p.code == "monthly")
    assert (plan.amount, plan.minimum_commitment) == (Decimal("31.00"), None)
    assert {s.external_subscription_id: s.plan_code for s in catalog.subscriptions}["s_override"] == "monthly@s_override"


@pytest.mark.parametrize(("old", "new", "expected"), [
    ("subscription: s_override", "subscription: s_nobody",
     "subscription_overrides[0] > subscription: unknown subscription 's_nobody'"),
    ("metric: api_calls", "metric: tokens",
     "subscription_overrides[0] (subscription 's_override') > charges[0] > metric: plan 'monthly' has no charge on 'tokens'"),
    ('properties: {amount: "0.25"}', "properties: {amount: 0.25}",
     "subscription_overrides[0] (subscription 's_override') > charges[0] > properties > amount: 0.25 is not a decimal string"),
    ('amount: "20.00"', 'interval: weekly',
     "subscription_overrides[0] (subscription 's_override') > interval: cannot be overridden"),
])
def test_invalid_overrides_name_the_field(tmp_path, old, new, expected):
    error = catalog_error_after_edit(CASE / "catalog", tmp_path, old, new, file="subscription_overrides.yml")
    assert str(error).startswith(f"{error.file}: {expected}")


def test_add_ons_are_one_off_invoices_of_their_own(invoices):
    one_off = sorted((i["customer_id"], i["currency"], i["invoice_at"], i["total_amount"],
                      [(line["description"], line["quantity"], line["unit_amount"], line["amount"]) for line in i["lines"]])
                     for i in invoices if any(line["fee_kind"] == "add_on" for line in i["lines"]))
    assert one_off == [
        ("c_kwd", "KWD", "2026-10-20T06:30:00Z", "135.375", [("Training (KWD)", "3", "45.125", "135.375")]),
        ("c_leap", "USD", "2026-10-15T00:00:00Z", "500.00", [("Integration setup", "2", "250", "500.00")]),
        ("c_weekly", "USD", "2026-11-02T00:00:00Z", "199.99", [("Setup (negotiated)", "1", "199.99", "199.99")]),
    ]
    week = [i for i in invoices if i["customer_id"] == "c_weekly" and i["invoice_at"] == "2026-11-02T00:00:00Z"]
    assert sorted(i["total_amount"] for i in week) == ["199.99", "7.00"]  # two invoices, not one


@pytest.mark.parametrize(("old", "new", "expected"), [
    ("c_leap,setup,", "c_leap,onboarding,", "row 2 (external_customer_id 'c_leap') > add_on_code: unknown add-on 'onboarding'"),
    ("c_kwd,training_kwd,", "c_kwd,setup,", "row 4 (external_customer_id 'c_kwd') > add_on_code: add-on is in USD, customer pays in KWD"),
    (",199.99,", ",-5,", "row 3 (external_customer_id 'c_weekly') > amount: '-5' must not be negative"),
])
def test_invalid_applied_add_ons_name_the_row(tmp_path, old, new, expected):
    error = catalog_error_after_edit(CASE / "catalog", tmp_path, old, new, file="applied_add_ons.csv")
    assert str(error) == f"{error.file}: {expected}"
