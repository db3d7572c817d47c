"""Every charge model, computed by hand, through `meterline simulate`.

tests/fixtures/charge_models: one customer on a plan with one charge per charge model, and
30 October events. The October invoice (issued 1 November, UTC) line by line:

- requests, standard 0.50 x 12 = 6.00; spending minimum 10.00 -> true-up 4.00
- images, package 5.00 per 100 after 50 free: 120 + 110 + 45 = 275; ceil(225 / 100) = 3 -> 15.00
- tokens, graduated: 3000 + 3200 = 6200: 1000 x 0 + 1.00 flat | 4000 x 0.002 = 8.00
  | 1200 x 0.001 + 3.00 flat = 4.20 -> 13.20
- storage_gb, volume: 60 + 40.5 = 100.5; ceil 101 falls in 101..1000: 100.5 x 0.08 = 8.04 + 2.00 -> 10.04
- payments, percentage 2.5% + 0.30 per event, first 2 events free, 0.50 <= each <= 5.00:
  10 and 20 free | 100: 2.50 + 0.30 = 2.80 | 1000: 25.30 -> max 5.00 -> 7.80
- tips, percentage 10% + 0.05 per event, first 15.00 free: 5 + 8 + 12 = 25, 10 paid -> 1.00;
  running totals 5, 13 stay under 15, so 2 events are free of the fixed fee: 1 x 0.05 -> 1.05
- payouts, graduated_percentage: 800 + 700 = 1500: 1000 x 1% = 10.00 | 500 x 0.5% = 2.50
  + 2.00 flat -> 14.50
- compute_cost, dynamic: 1.2345 + 2.0005 = 3.2350 -> 3.24 (half-up)
Total 74.83. The open November period (draft) shows the empty-period behaviour: the true-up
of the whole minimum (10.00) and the first graduated tier's flat fee (1.00).
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from orchestration import pipeline
from tests.conftest import FIXTURES, catalog_error_after_edit

CASE = FIXTURES / "charge_models"
AS_OF = datetime(2026, 11, 15, 12)


@pytest.fixture(scope="module")
def simulated():
    return pipeline.simulate(CASE / "catalog", [CASE / "events.jsonl"], as_of=AS_OF)


def _lines(invoice: dict) -> dict[tuple[str, str | None], dict]:
    return {(line["fee_kind"], line["metric_code"]): line for line in invoice["lines"]}


def test_october_invoice_line_by_line(simulated):
    assert simulated.ingest.accepted == 30 and simulated.ingest.rejected == 0
    october = next(i for i in simulated.invoices if i["issuing_date"] == "2026-11-01")
    lines = _lines(october)
    amounts = {key: line["amount"] for key, line in lines.items()}
    assert amounts == {
        ("charge", "requests"): "6.00",
        ("true_up", "requests"): "4.00",
        ("charge", "images"): "15.00",
        ("charge", "tokens"): "13.20",
        ("charge", "storage_gb"): "10.04",
        ("charge", "payments"): "7.80",
        ("charge", "tips"): "1.05",
        ("charge", "payouts"): "14.50",
        ("charge", "compute_cost"): "3.24",
    }
    assert lines[("charge", "images")]["quantity"] == "275"
    assert lines[("charge", "storage_gb")]["quantity"] == "100.5"
    assert lines[("charge", "compute_cost")]["precise_amount"] == "3.235"
    assert october["fees_amount"] == "74.83" and october["total_amount"] == "74.83"


def test_open_period_with_no_usage(simulated):
    november = next(i for i in simulated.invoices if i["issuing_date"] == "2026-12-01")
    assert november["status"] == "draft"
    non_zero = {key: line["amount"] for key, line in _lines(november).items() if line["amount"] != "0.00"}
    assert non_zero == {("true_up", "requests"): "10.00", ("charge", "tokens"): "1.00"}


def test_simulate_cli_prints_the_same_json(tmp_path):
    meterline = Path(sys.executable).parent / "meterline"
    completed = subprocess.run(
        [str(meterline), "simulate", "--catalog", str(CASE / "catalog"), "--events", str(CASE / "events.jsonl"),
         "--as-of", "2026-11-15T12:00:00Z", "--format", "json"],
        capture_output=True, text=True, check=True, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    invoices = json.loads(completed.stdout)
    october = next(i for i in invoices if i["issuing_date"] == "2026-11-01")
    assert october["total_amount"] == "74.83"
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        # A percentage of a count makes no sense: the model does not fit the aggregation.
        (("- metric: payments\n        charge_model: percentage", "- metric: requests_pct\n        charge_model: percentage"),
         "charges[4] > metric: unknown billable metric 'requests_pct'"),
        (("properties: {amount: \"5.00\", package_size: 100, free_units: 50}",
          "properties: {amount: \"5.00\", package_size: 0, free_units: 50}"),
         "charges[1] > properties > package_size: must be greater than 0"),
        (("{from_value: 101, to_value: 1000, per_unit_amount: \"0.08\"",
          "{from_value: 102, to_value: 1000, per_unit_amount: \"0.08\""),
         "charges[3] > properties > volume_ranges: [1] > from_value: 102 does not chain"),
        (("per_transaction_min_amount: \"0.50\"", "per_transaction_min_amount: \"50.00\""),
         "charges[4] > properties > per_transaction_min_amount: larger than per_transaction_max_amount"),
        (("rate: \"2.5\"", "rate: 2.5"), "charges[4] > properties > rate: 2.5 is not a decimal string"),
    ],
)
def test_invalid_charge_properties_name_the_field(tmp_path, edit, expected):
    error = catalog_error_after_edit(CASE / "catalog", tmp_path, *edit)
    assert expected in str(error), str(error)


def test_model_must_fit_the_aggregation(tmp_path):
    # compute_cost and requests swap charge models: dynamic cannot price a count.
    swapped = ("- metric: requests\n        charge_model: standard\n        properties: {amount: \"0.5\"}",
               "- metric: requests\n        charge_model: dynamic")
    error = catalog_error_after_edit(CASE / "catalog", tmp_path, *swapped)
    assert "charge_model: dynamic cannot price metric 'requests' (count aggregation); it needs: sum" in str(error)
