"""Every aggregation type, by hand, through `meterline simulate` (tests/fixtures/aggregations).

Each charge is standard at 1 per unit (seats at 10), so a line's amount shows its units.
September 2026 has 2,592,000 seconds, October 2,678,400.

| metric | aggregation | September | October |
|---|---|---|---|
| gpu_peak | max of 2, 8, 5 | 8 | 0 (no events) |
| storage_level | latest: 10, 25, then -5 | 0 (negative -> 0) | 7 |
| active_users | unique_count: u1, u2, u1 again; u3 only removed | 2 | 1 |
| seats (x10) | recurring unique_count: s1, s2 (removed 20 Sep), s3 | 3 -> 30 | s1, s3 carried, s4 added, s1 removed: 3 -> 30 |
| storage_gb | recurring weighted_sum: +100 on 11 Sep (20 days left), +50 on 21 Sep (10 days) | (100 x 1,728,000 + 50 x 864,000) / 2,592,000 = 83.333... -> 83.33 | starts at 150; -150 on 16 Oct (16 days left): (150 x 2,678,400 - 150 x 1,382,400) / 2,678,400 = 72.5806... -> 72.58 |
| licences | recurring sum: +5, +3 | 8 | -2 carried on 8: 6 |
| compute_hours | sum, ceil to 0 decimals: 1.2 + 2.3 = 3.5 | 4 | 0 |
| bandwidth | sum, round to tens: 14 + 12 = 26 | 30 | 24 -> 20 |

Totals: September 165.33, October 136.58. November (open, no events): seats s3 and s4 carried
(20), licences 6: 26.00.
"""

from __future__ import annotations

from datetime import datetime

import pytest

from orchestration import pipeline
from tests.conftest import FIXTURES

CASE = FIXTURES / "aggregations"


@pytest.fixture(scope="module")
def invoices():
    return pipeline.simulate(CASE / "catalog", [CASE / "events.jsonl"], as_of=datetime(2026, 11, 15)).invoices


def _amounts(invoices, issuing_date):
    invoice = next(i for i in invoices if i["issuing_date"] == issuing_date)
    return invoice, {line["metric_code"]: line["amount"] for line in invoice["lines"]}


def test_september(invoices):
    invoice, amounts = _amounts(invoices, "2026-10-01")
    assert amounts == {"gpu_peak": "8.00", "storage_level": "0.00", "active_users": "2.00", "seats": "30.00",
                       "storage_gb": "83.33", "licences": "8.00", "compute_hours": "4.00", "bandwidth": "30.00"}
    assert invoice["total_amount"] == "165.33"


def test_october_carries_recurring_levels(invoices):
    invoice, amounts = _amounts(invoices, "2026-11-01")
    assert amounts == {"gpu_peak": "0.00", "storage_level": "7.00", "active_users": "1.00", "seats": "30.00",
                       "storage_gb": "72.58", "licences": "6.00", "compute_hours": "0.00", "bandwidth": "20.00"}
    assert invoice["total_amount"] == "136.58"
    storage = next(line for line in invoice["lines"] if line["metric_code"] == "storage_gb")
    assert storage["quantity"] == "72.580645161"


def test_open_period_without_events_keeps_recurring_levels(invoices):
    invoice, amounts = _amounts(invoices, "2026-12-01")
    assert invoice["status"] == "draft"
    assert {k: v for k, v in amounts.items() if v != "0.00"} == {"seats": "20.00", "licences": "6.00"}
