"""Coupons and taxes by hand (tests/fixtures/discounts_taxes), billed as of 2026-11-20.

The billing entity taxes every fee at 6.25% (state) + 2.125% (city) unless the customer, plan
or charge names its own taxes. Monthly plans in arrears: Basic 20.00, Pro 30.00 (calls 0.10,
tokens 0.002), Pro EUR 25.00 (tokens taxed at the reduced 5.5% on the charge), Pro Quebec
40.00 CAD (the plan names GST 5% + QST 9.975%).

| customer | what happens | by hand |
|---|---|---|
| c_two_coupons | October: 30.00 + 123 calls 12.30 + 5,000 tokens 10.00 = 52.30. `ten_pct` (10% once) was applied before `tokens_half` (50% of tokens, forever), but coupons limited to metrics apply first | tokens_half 5.00; ten_pct 10% of 47.30 = 4.73, spread 3.00 / 1.23 / 0.50; subtotal 42.57; state 2.660625 -> 2.66, city 0.9046125 -> 0.90 (8.375% at once would give 3.57: taxes round per rate); total 46.13 |
| c_big_coupon | `big50` (50.00 once) on 20.00 invoices | 1 Nov: 20.00 off, 30.00 carried; 1 Dec: 20.00 off, 10.00 carried; totals 0.00, no tax |
| c_recurring | from 1 Sep: `save5x2` (5.00, two invoices), `autumn` (20%, expires 15 Oct), `pro_only` (limited to Pro: never applies to Basic) | 1 Oct: 20 - 5 - 3 = 12.00, state 0.75, city 0.255 -> 0.26 (half-up): 13.01. 1 Nov: 15.00 + 0.94 + 0.32 = 16.26. 1 Dec: 20.00 + 1.25 + 0.43 = 21.68 |
| c_fr | Paris, taxes vat_fr 20%; 25.00 + 45 calls 4.50 + 3,333 tokens 6.666 -> 6.67 | TVA 20% on 29.50 = 5.90; tokens at 5.5%: 0.36685 -> 0.37; total 42.44 |
| c_exempt | tax exempt, `pro_only` 25%: 30.00 + 10 calls 1.00 | 31.00 - 7.75 = 23.25, no tax |
| c_ca | customer names HST 13%, the plan GST + QST | 40.00 + GST 2.00 + QST 3.99 = 45.99 |
"""

from __future__ import annotations

from datetime import datetime

import pytest

from orchestration import pipeline
from tests.conftest import FIXTURES, catalog_error_after_edit

CASE = FIXTURES / "discounts_taxes"


@pytest.fixture(scope="module")
def billed():
    return pipeline.simulate(CASE / "catalog", [CASE / "events.jsonl"], as_of=datetime(2026, 11, 20))


def _invoice(billed, customer: str, invoice_at: str) -> dict:
    [invoice] = [i for i in billed.invoices if i["customer_id"] == customer and i["invoice_at"] == invoice_at]
    return invoice


def _steps(invoice: dict) -> tuple[str, ...]:
    return tuple(invoice[k] for k in ("fees_amount", "discount_amount", "subtotal_excluding_taxes", "tax_amount",
                                       "subtotal_including_taxes", "total_amount"))


def _taxes(invoice: dict) -> list[tuple[str, str, str, str]]:
    return [(t["tax_code"], t["rate"], t["taxable_amount"], t["amount"]) for t in invoice["taxes"]]


def test_two_coupons_one_limited_to_a_metric_and_stacked_taxes_round_per_rate(billed):
    invoice = _invoice(billed, "c_two_coupons", "2026-11-01T00:00:00Z")
    assert _steps(invoice) == ("52.30", "9.73", "42.57", "3.56", "46.13", "46.13")
    # The metric-limited coupon applies first although it was applied later.
    assert [(d["coupon_code"], d["amount"]) for d in invoice["discounts"]] == [("tokens_half", "5.00"),
                                                                               ("ten_pct", "4.73")]
    shares = {line["metric_code"] or "base": line["precise_discount_amount"] for line in invoice["lines"]}
    assert shares == {"base": "3", "api_calls": "1.23", "tokens": "5.5"}
    assert _taxes(invoice) == [("us_city", "2.125", "42.57", "0.90"), ("us_state", "6.25", "42.57", "2.66")]
    # ten_pct was `once`: the December draft has no discount; tokens_half finds no tokens.
    assert _invoice(billed, "c_two_coupons", "2026-12-01T00:00:00Z")["discount_amount"] == "0.00"


def test_a_fixed_coupon_larger_than_the_invoice_carries_the_rest(billed):
    november = _invoice(billed, "c_big_coupon", "2026-11-01T00:00:00Z")
    december = _invoice(billed, "c_big_coupon", "2026-12-01T00:00:00Z")
    assert _steps(november) == ("20.00", "20.00", "0.00", "0.00", "0.00", "0.00")
    assert [(d["amount"], d["carried_amount"]) for d in november["discounts"]] == [("20.00", "30.00")]
    assert [(d["amount"], d["carried_amount"]) for d in december["discounts"]] == [("20.00", "10.00")]
    assert _taxes(november) == [("us_city", "2.125", "0.00", "0.00"), ("us_state", "6.25", "0.00", "0.00")]


def test_recurring_coupon_expiry_and_a_coupon_limited_to_another_plan(billed):
    invoices = [_invoice(billed, "c_recurring", at) for at in
                ("2026-10-01T00:00:00Z", "2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z")]
    assert [_steps(i) for i in invoices] == [
        ("20.00", "8.00", "12.00", "1.01", "13.01", "13.01"),
        ("20.00", "5.00", "15.00", "1.26", "16.26", "16.26"),
        ("20.00", "0.00", "20.00", "1.68", "21.68", "21.68"),
    ]
    assert [[(d["coupon_code"], d["amount"]) for d in i["discounts"]] for i in invoices] == [
        [("save5x2", "5.00"), ("autumn", "3.00")], [("save5x2", "5.00")], []]
    assert _taxes(invoices[0]) == [("us_city", "2.125", "12.00", "0.26"), ("us_state", "6.25", "12.00", "0.75")]


def test_customer_charge_and_plan_taxes_win_over_the_billing_entity(billed):
    france = _invoice(billed, "c_fr", "2026-10-31T23:00:00Z")
    assert _steps(france) == ("36.17", "0.00", "36.17", "6.27", "42.44", "42.44")
    assert _taxes(france) == [("vat_fr", "20", "29.50", "5.90"), ("vat_fr_reduced", "5.5", "6.67", "0.37")]
    rates = {line["metric_code"] or "base": line["tax_rate"] for line in france["lines"]}
    assert rates == {"base": "20", "api_calls": "20", "tokens": "5.5"}
    quebec = _invoice(billed, "c_ca", "2026-11-01T00:00:00Z")
    assert _taxes(quebec) == [("ca_gst", "5", "40.00", "2.00"), ("ca_qst", "9.975", "40.00", "3.99")]
    assert quebec["total_amount"] == "45.99"


def test_a_tax_exempt_customer_pays_no_tax(billed):
    invoice = _invoice(billed, "c_exempt", "2026-11-01T00:00:00Z")
    assert _steps(invoice) == ("31.00", "7.75", "23.25", "0.00", "23.25", "23.25")
    assert invoice["taxes"] == []


@pytest.mark.parametrize(("file", "old", "new", "where", "message"), [
    ("plans.yml", "taxes: [ca_gst, ca_qst]", "taxes: [ca_gst, ca_pst]",
     "plans[3] (code 'pro_ca') > taxes[1]", "unknown tax 'ca_pst' (taxes.yml)"),
    ("plans.yml", "taxes: [vat_fr_reduced]", "taxes: [vat_fr_reduced, vat_fr_reduced]",
     "plans[2] (code 'pro_eu') > charges[1] > taxes[1]", "tax 'vat_fr_reduced' is listed twice"),
    ("taxes.yml", 'rate: "9.975"', 'rate: "109.975"', "taxes[5] (code 'ca_qst') > rate",
     "'109.975' is above 100 (a rate is in percent)"),
    ("billing_entity.yml", "taxes: [us_state, us_city]", "taxes: [us_state, us_county]",
     "billing_entity > taxes[1]", "unknown tax 'us_county' (taxes.yml)"),
    ("customers.csv", "c_fr,Client France,,FR,EUR,Europe/Paris,vat_fr,", "c_fr,Client France,,FR,EUR,Europe/Paris,vat_de,",
     "row 4 (external_customer_id 'c_fr') > tax_codes", "unknown tax 'vat_de' (taxes.yml)"),
    ("customers.csv", "c_exempt,Exempt Charity,,US,USD,UTC,,true", "c_exempt,Exempt Charity,,US,USD,UTC,,yes",
     "row 5 (external_customer_id 'c_exempt') > tax_exempt", "'yes' is not true or false"),
    ("coupons.yml", "plan_codes: [pro]", "plan_codes: [pro, premium]", "coupons[5] (code 'pro_only') > plan_codes[1]",
     "unknown plan 'premium'"),
    ("coupons.yml", "metric_codes: [tokens]", "metric_codes: [tokens], plan_codes: [pro]",
     "coupons[1] (code 'tokens_half') > plan_codes", "a coupon is limited to plans or to metrics, not both"),
    ("coupons.yml", 'amount: "5.00", currency: USD', 'amount: "5.005", currency: USD',
     "coupons[3] (code 'save5x2') > amount", "5.005 has more decimals than USD (2)"),
    ("applied_coupons.csv", "c_recurring,autumn,2026-09-01", "c_recurring,autumn,2026-10-16",
     "row 7 (external_customer_id 'c_recurring') > applied_at", "coupon 'autumn' expired on 2026-10-15"),
])
def test_invalid_taxes_and_coupons_are_located(tmp_path, file, old, new, where, message):
    error = catalog_error_after_edit(CASE / "catalog", tmp_path, old, new, file=file)
    assert str(error) == f"{error.file}: {where}: {message}"


def test_a_customer_holds_at_most_the_coupons_dbt_applies(tmp_path):
    from orchestration.catalog import MAX_COUPONS_PER_CUSTOMER

    extra = "".join(f"c_exempt,pro_only,2026-09-{day:02d}\n" for day in range(2, MAX_COUPONS_PER_CUSTOMER + 2))
    error = catalog_error_after_edit(CASE / "catalog", tmp_path, "c_exempt,pro_only,2026-09-01\n",
                                     "c_exempt,pro_only,2026-09-01\n" + extra, file="applied_coupons.csv")
    assert "a customer holds at most 10" in str(error)
