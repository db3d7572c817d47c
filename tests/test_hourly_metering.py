"""Bulk metering counts events by the hour before matching them to the calendar
(match_event_hours in macros/metering.sql): every event of an hour is billed alike, unless
something inside the hour splits it. Those hours are metered by the events' exact times. Each
case here puts one such split inside an hour and events on both sides of it:

| split inside the hour | events |
|---|---|
| sub_k starts at 10:30 UTC on 6 October | 10:10 (before its first period) and 10:45 (billed) |
| cus_k's local midnight in Kolkata, 18:30 UTC | 18:10 (local 8 October) and 18:50 (local 9 October) |
| the run's as_of, 12:20 on 21 November | 12:10 (billed) and 12:40 (after the cut-off) |
| the 60-day look-back of the load at 12:25 on 21 November | 12:05 on 22 September (too late) and 12:45 (billed) |

The bulk tables must agree, line by line and day by day, with matching each event on its own
(int_events_matched, the lineage view).
"""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal

import pytest

from orchestration.warehouse import connect
from tests.conftest import FIXTURES, make_home, run_all

AS_OF = datetime(2026, 11, 21, 12, 20)
LOADED_AT = datetime(2026, 11, 21, 12, 25)


def event(transaction_id: str, subscription: str, code: str, at: str, **properties) -> dict:
    return {"transaction_id": transaction_id, "external_subscription_id": subscription, "code": code,
            "timestamp": at, "properties": properties}


EVENTS = [
    event("start-before", "sub_k", "api_requests", "2026-10-06T10:10:00Z"),
    event("start-after", "sub_k", "api_requests", "2026-10-06T10:45:00Z"),
    event("night-before", "sub_k", "input_tokens", "2026-10-08T18:10:00Z", tokens=100),
    event("night-after", "sub_k", "input_tokens", "2026-10-08T18:50:00Z", tokens=200),
    event("cutoff-before", "sub_a", "api_requests", "2026-11-21T12:10:00Z"),
    event("cutoff-after", "sub_a", "api_requests", "2026-11-21T12:40:00Z"),
    event("lookback-before", "sub_a", "input_tokens", "2026-09-22T12:05:00Z", tokens=300),
    event("lookback-after", "sub_a", "input_tokens", "2026-09-22T12:45:00Z", tokens=400),
    # Company in the same hours, on the same lines, metered by the hour.
    event("start-hour-next", "sub_k", "api_requests", "2026-10-06T11:05:00Z"),
    event("night-hour-next", "sub_k", "input_tokens", "2026-10-08T19:10:00Z", tokens=50),
]


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    settings = make_home(tmp_path_factory.mktemp("hourly"))
    catalog = settings.catalog_dir
    with open(catalog / "customers.csv", "a") as customers:
        customers.write("cus_k,Kappa Pvt,,IN,USD,Asia/Kolkata\n")
    with open(catalog / "subscriptions.csv", "a") as subscriptions:
        subscriptions.write("sub_k,cus_k,starter,2026-10-06T10:30:00Z,\n")
    entity = catalog / "billing_entity.yml"
    entity.write_text(entity.read_text().rstrip("\n") + "\n  late_events_lookback_days: 60\n")
    (settings.landing_dir / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in EVENTS))
    run_all(settings, as_of=AS_OF, loaded_at=LOADED_AT)
    return settings


def by_event(settings) -> dict[str, tuple]:
    with connect(settings, read_only=True) as warehouse:
        rows = warehouse.query("select transaction_id, exclusion_reason, usage_date, units "
                               "from intermediate.int_events_matched")
    return {row[0]: row[1:] for row in rows}


def test_each_event_is_matched_on_its_side_of_the_split(settings):
    matched = by_event(settings)
    assert matched["start-before"][0] == "outside_subscription_period"
    assert matched["start-after"][:2] == (None, date(2026, 10, 6))
    assert matched["night-before"][:2] == (None, date(2026, 10, 8))
    assert matched["night-after"][:2] == (None, date(2026, 10, 9))
    assert matched["cutoff-before"][:2] == (None, date(2026, 11, 21))
    assert matched["cutoff-after"][0] == "after_cutoff"
    assert matched["lookback-before"][0] == "beyond_lookback"
    assert matched["lookback-after"][:2] == (None, date(2026, 9, 22))


GRAIN = "metric_code, exclusion_reason, invoice_line_id, usage_date"


def test_bulk_metering_agrees_with_each_event_matched_alone(settings):
    with connect(settings, read_only=True) as warehouse:
        bulk = warehouse.query(
            f"select {GRAIN}, sum(event_count), sum(units) from intermediate.int_usage_increments "
            f"where not is_pay_in_advance group by all having sum(event_count) <> 0 order by all")
        alone = warehouse.query(
            f"select {GRAIN}, count(*), sum(units) from intermediate.int_events_matched "
            f"where not is_pay_in_advance group by all order by all")
    assert bulk == alone
    # Both sides of each split, and the hours after them, are there with their own counts.
    tokens_by_day = {row[3]: (row[4], row[5]) for row in bulk
                     if row[0] == "input_tokens" and row[1] is None and row[3] >= date(2026, 10, 8)}
    assert tokens_by_day == {date(2026, 10, 8): (1, Decimal(100)), date(2026, 10, 9): (2, Decimal(250))}
