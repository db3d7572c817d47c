"""End to end on a catalog small enough to check every figure by hand.

tests/fixtures/small_catalog: cus_a (USD, Europe/Paris) on `starter` (10.00 in advance;
api_requests 0.015 each; input_tokens: first 1000 free, then 0.001 each + 2.00 flat once the
second range is reached) with a 5.00 `once` coupon applied 2026-09-20; cus_b (JPY,
Asia/Tokyo) on `pro_jpy` (3000 in arrears from 2026-09-16; input_tokens 0.15 each).
tests/fixtures/small_events/events.jsonl: 7 lines, of which one duplicate, one not JSON and
one with non-numeric tokens.
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from decimal import Decimal

import duckdb

from orchestration.exports import fetch_invoices
from orchestration.explain import explain_line
from orchestration.warehouse import connect
from tests.conftest import FIXTURES, run_all

EVENTS = FIXTURES / "small_events" / "events.jsonl"


def _invoices(settings) -> list[dict]:
    with connect(settings, read_only=True) as warehouse:
        return fetch_invoices(warehouse)


def _summary(invoices: list[dict]) -> list[tuple]:
    return [(i["customer_id"], i["issuing_date"], i["status"], i["fees_amount"], i["discount_amount"],
             i["total_amount"]) for i in invoices]


def test_hand_computed_invoices(small_home):
    shutil.copy(EVENTS, small_home.landing_dir)
    _, report, _, outputs = run_all(small_home)
    assert report.accepted == 5 and dict(report.rejected_by_reason) == {"malformed_record": 1, "non_numeric_value": 1}

    invoices = _invoices(small_home)
    assert _summary(invoices) == [
        # Starts 2026-09-01 in Paris: September's fee is invoiced in advance on the 1st.
        ("cus_a", "2026-09-01", "closed", "10.00", "0.00", "10.00"),
        # September usage: 1 request x 0.015 = 0.015 -> 0.02 (half-up); 1500 tokens: 1000 free,
        # 500 x 0.001 = 0.50 + 2.00 flat = 2.50; October's fee 10.00 in advance. Fees 12.52;
        # the once coupon (applied 20 Sep) takes 5.00 off this first invoice after it.
        ("cus_a", "2026-10-01", "closed", "12.52", "5.00", "7.52"),
        # October: the unix-seconds request (1791000000 = 2026-10-03) 0.02; no tokens; November fee.
        ("cus_a", "2026-11-01", "closed", "10.02", "0.00", "10.02"),
        # November is still open on 21 November: a draft with no usage yet.
        ("cus_a", "2026-12-01", "draft", "0.00", "0.00", "0.00"),
        # 16-30 September in Tokyo: 15 of 30 days x 3000 = 1500 in arrears; 7 tokens x 0.15 =
        # 1.05 -> 1 yen. The event names only the customer: it resolves to sub_b.
        ("cus_b", "2026-10-01", "closed", "1501", "0", "1501"),
        ("cus_b", "2026-11-01", "closed", "3000", "0", "3000"),
        ("cus_b", "2026-12-01", "draft", "3000", "0", "3000"),
    ]
    september = invoices[1]
    assert september["period_start"] == "2026-09-01" and september["period_end"] == "2026-09-30"
    lines = {(line["fee_kind"], line["metric_code"]): line for line in september["lines"]}
    assert lines[("charge", "input_tokens")]["quantity"] == "1500"
    assert lines[("charge", "input_tokens")]["amount"] == "2.50"
    assert lines[("charge", "api_requests")]["precise_amount"] == "0.015"
    assert lines[("charge", "api_requests")]["amount"] == "0.02"
    assert september["discounts"] == [{"coupon_code": "five_off", "name": "Five off", "amount": "5.00",
                                      "carried_amount": "0.00"}]

    written = json.loads(outputs["json"].read_text())
    assert written == invoices
    assert len(list(outputs["per_invoice"].glob("*.json"))) == len(invoices)
    header = outputs["csv"].read_text().splitlines()[0].split(",")
    assert {"invoice_id", "line_id", "line_amount", "total_amount"} <= set(header)


def test_reconciliation_accounts_for_every_record(small_home):
    shutil.copy(EVENTS, small_home.landing_dir)
    run_all(small_home)
    with duckdb.connect(str(small_home.warehouse_path), read_only=True) as con:
        outcomes = dict(((o, r), n) for o, r, n in con.execute(
            "select outcome, reason, event_count from marts.fct_event_reconciliation").fetchall())
        raw = con.execute("select count(*) from raw.events").fetchone()[0]
        rejects = con.execute("select count(*) from raw.event_rejects").fetchone()[0]
    assert outcomes == {("billed", "closed_invoice"): 4, ("excluded", "duplicate"): 1,
                        ("rejected", "malformed_record"): 1, ("rejected", "non_numeric_value"): 1}
    assert sum(n for (o, _), n in outcomes.items() if o != "rejected") == raw == 5
    assert sum(n for (o, _), n in outcomes.items() if o == "rejected") == rejects == 2


def test_late_day_incrementally_equals_full_rebuild(small_home, tmp_path):
    """A second day of events billed incrementally gives the same invoices as a full rebuild."""
    shutil.copy(EVENTS, small_home.landing_dir)
    run_all(small_home, as_of=datetime(2026, 11, 10))
    later = small_home.landing_dir / "day2.jsonl"
    later.write_text("\n".join(json.dumps(e) for e in [
        {"transaction_id": "n1", "external_subscription_id": "sub_a", "code": "input_tokens",
         "timestamp": "2026-11-12T08:00:00Z", "properties": {"tokens": 1200}},
        {"transaction_id": "n2", "external_subscription_id": "sub_b", "code": "input_tokens",
         "timestamp": "2026-11-12T08:00:00Z", "properties": {"tokens": 100}},
        # A retry of an event billed in the first run: must not be billed again.
        {"transaction_id": "t2", "external_subscription_id": "sub_a", "code": "input_tokens",
         "timestamp": "2026-09-06T10:00:00Z", "properties": {"tokens": 1500}},
    ]) + "\n")
    _, _, incremental_result, _ = run_all(small_home)
    assert not incremental_result.full_refresh
    incremental = _invoices(small_home)
    run_all(small_home, full_refresh=True)
    assert _invoices(small_home) == incremental
    november_a = next(i for i in incremental if i["customer_id"] == "cus_a" and i["issuing_date"] == "2026-12-01")
    # 1200 tokens: 1000 free, 200 x 0.001 = 0.20 + 2.00 flat.
    assert november_a["fees_amount"] == "2.20"


def test_explain_shows_events_and_arithmetic(small_home):
    shutil.copy(EVENTS, small_home.landing_dir)
    run_all(small_home)
    invoices = _invoices(small_home)
    line = next(line for i in invoices if i["issuing_date"] == "2026-10-01" and i["customer_id"] == "cus_a"
                for line in i["lines"] if line["metric_code"] == "input_tokens")
    with connect(small_home, read_only=True) as warehouse:
        text = explain_line(warehouse, line["line_id"])
        rows = warehouse.query(
            "select transaction_id, units from marts.fct_invoice_line_events where invoice_line_id = ?",
            [line["line_id"]])
    assert rows == [("t2", Decimal("1500"))]
    assert "tier 1 [1001..inf]: 500 x 0.001 + flat 2 = 2.5" in text
    assert "1 duplicate(s) lost to them" in text
    assert "2.50 USD" in text
    assert f"invoice_line_id = '{line['line_id']}'" in text


def test_rerun_with_same_inputs_is_identical(small_home):
    shutil.copy(EVENTS, small_home.landing_dir)
    run_all(small_home)
    first = _invoices(small_home)
    _, report, result, _ = run_all(small_home)  # nothing new in landing: nothing ingested
    assert report.accepted == 0 and report.rejected == 0
    assert _invoices(small_home) == first
