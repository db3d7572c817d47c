"""Charges billed in advance, by hand (tests/fixtures/in_advance).

Each event is a line of its own, invoiced when it happens, for F(peak after) - F(peak before):

- seats, standard 10 per seat (unique_count): s1, s2 added -> 10, 10; s1 removed -> 0; s1 added
  again (not a new value this period) -> 0; s3 -> 10. Total 30 = 3 seats x 10, as in arrears.
- credits, graduated (0-10 at 1 + 5 flat; above 10 at 0.5): levels 4, 12, 7, 10, 12; peaks 4,
  12, 12, 12, 12. F(4) = 4 + 5 = 9 (the first tier's flat comes with the first event);
  F(12) = 10 + 5 + 1 = 16 -> 7; the fall to 7 refunds nothing, and climbing back to 12 owes
  nothing. Total 16 = F(12).
- calls, package 3 per 2 after 1 free: levels 1..4, F = 0, 3, 3, 6 -> 0, 3, 0, 3.
peak_gpus is billed in arrears as usual: max 3 -> 3.00 on the period's invoice of 1 November.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from decimal import Decimal

import pytest

from orchestration import pipeline
from tests.conftest import FIXTURES, catalog_error_after_edit

CASE = FIXTURES / "in_advance"


@pytest.fixture(scope="module")
def invoices():
    return pipeline.simulate(CASE / "catalog", [CASE / "events.jsonl"], as_of=datetime(2026, 11, 15)).invoices


def test_each_event_pays_its_marginal_amount_when_it_happens(invoices):
    advance = defaultdict(list)
    for invoice in invoices:
        for line in invoice["lines"]:
            if "(in advance)" in line["description"]:
                # One event per line, invoiced at the event's own time.
                assert line["event_count"] == 1 and invoice["invoice_at"].endswith("T09:00:00Z")
                advance[line["metric_code"]].append((invoice["invoice_at"], line["amount"]))
    by_metric = {metric: [amount for _, amount in sorted(items)] for metric, items in advance.items()}
    assert by_metric == {
        "seats": ["10.00", "10.00", "0.00", "0.00", "10.00"],
        "credits": ["9.00", "7.00", "0.00", "0.00", "0.00"],
        "calls": ["0.00", "3.00", "0.00", "3.00"],
    }
    assert {m: sum(Decimal(a) for a in amounts) for m, amounts in by_metric.items()} == {
        "seats": Decimal("30.00"), "credits": Decimal("16.00"), "calls": Decimal("6.00")}


def test_arrears_charges_stay_on_the_period_invoice(invoices):
    period_end = next(i for i in invoices if i["issuing_date"] == "2026-11-01")
    assert [(line["metric_code"], line["amount"]) for line in period_end["lines"]] == [("peak_gpus", "3.00")]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("charge_model: graduated\n        pay_in_advance: true\n        properties:\n          graduated_ranges:",
         "charge_model: volume\n        pay_in_advance: true\n        properties:\n          volume_ranges:",
         "charges[1] > pay_in_advance: a volume charge cannot be billed in advance"),
        ("{metric: peak_gpus, charge_model: standard,", "{metric: peak_gpus, charge_model: standard, pay_in_advance: true,",
         "charges[3] > pay_in_advance: metric 'peak_gpus' (max) cannot be billed in advance"),
        ("{metric: seats, charge_model: standard, pay_in_advance: true,",
         "{metric: seats, charge_model: standard, pay_in_advance: true, min_amount: \"5\",",
         "charges[0] > min_amount: a spending minimum needs a charge billed in arrears"),
    ],
)
def test_what_cannot_be_billed_in_advance_is_refused(tmp_path, old, new, expected):
    error = catalog_error_after_edit(CASE / "catalog", tmp_path, old, new)
    assert expected in str(error), str(error)
