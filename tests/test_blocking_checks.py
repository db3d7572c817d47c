"""The money checks that stop finalisation (docs/invoice-lifecycle.md): a usage cliff against
the trailing periods, and too many events for unknown customers. They only warn in a build
(billing goes on), and stop finalisation until fixed or, for a real drop, accepted."""

from __future__ import annotations

import json

import pytest

from orchestration import pipeline
from orchestration.ledger import FinalisationError
from orchestration.warehouse import connect
from tests.conftest import make_home, run_all


def requests(subscription: str, month: str, count: int, prefix: str) -> list[dict]:
    return [{"transaction_id": f"{prefix}-{n}", "external_subscription_id": subscription, "code": "api_requests",
             "timestamp": f"{month}-10T10:00:00Z", "properties": {}} for n in range(count)]


def write_events(settings, events: list[dict]) -> None:
    (settings.landing_dir / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))


def test_a_usage_cliff_stops_finalisation_until_accepted(tmp_path):
    settings = make_home(tmp_path)
    subscriptions = settings.catalog_dir / "subscriptions.csv"
    subscriptions.write_text(subscriptions.read_text().replace("sub_a,cus_a,starter,2026-09-01",
                                                               "sub_a,cus_a,starter,2026-06-01"))
    # 150 requests a month from June to August, then 5 in September: a cliff.
    write_events(settings, [event for month, count in (("2026-06", 150), ("2026-07", 150), ("2026-08", 150),
                                                       ("2026-09", 5))
                            for event in requests("sub_a", month, count, month)])
    run_all(settings)  # the build only warns: the invoices are there
    with connect(settings, read_only=True) as warehouse:
        assert warehouse.query("select count(*) from marts.fct_invoices where status = 'closed'")[0][0] > 0
    with pytest.raises(FinalisationError, match="assert_no_usage_cliff"):
        pipeline.finalise(settings)
    done = pipeline.finalise(settings, accept_usage_cliffs=True)
    assert done.invoices


def test_usage_in_one_of_the_periods_before_is_no_baseline_for_a_cliff(tmp_path):
    """300 requests in August after two empty months, none in September: the three periods
    before average 100, but only a steady usage can fall off a cliff (each period at least
    100). The demo's generator made this pattern on some days, and `make run` then stopped."""
    settings = make_home(tmp_path)
    subscriptions = settings.catalog_dir / "subscriptions.csv"
    subscriptions.write_text(subscriptions.read_text().replace("sub_a,cus_a,starter,2026-09-01",
                                                               "sub_a,cus_a,starter,2026-06-01"))
    write_events(settings, requests("sub_a", "2026-08", 300, "august"))
    run_all(settings)
    with connect(settings, read_only=True) as warehouse:
        september = warehouse.query(
            "select sum(quantity) from marts.fct_invoice_lines where subscription_id = 'sub_a' "
            "and fee_kind = 'charge' and metric_code = 'api_requests' and status = 'closed' "
            "and service_start_at >= '2026-09-01'")[0][0]
    assert september == 0  # the empty month is billed, and closed
    assert pipeline.finalise(settings).invoices


def test_too_many_events_for_unknown_subscriptions_stop_finalisation(tmp_path):
    settings = make_home(tmp_path)
    # 1,000 events, 2% of them for a subscription the catalog does not know (the limit is 1%).
    write_events(settings, requests("sub_a", "2026-09", 980, "known") + requests("sub_zz", "2026-09", 20, "unknown"))
    run_all(settings)
    with pytest.raises(FinalisationError, match="assert_unknown_customer_ratio_is_low"):
        pipeline.finalise(settings)
    with connect(settings, read_only=True) as warehouse:
        assert warehouse.query("select count(*) from ledger.invoices")[0][0] == 0
    # Under the limit (0.5%), finalisation goes ahead.
    write_events(settings, requests("sub_a", "2026-09", 995, "known") + requests("sub_zz", "2026-09", 5, "unknown"))
    fresh = make_home(tmp_path / "fresh")
    (fresh.landing_dir / "events.jsonl").write_text((settings.landing_dir / "events.jsonl").read_text())
    run_all(fresh)
    assert pipeline.finalise(fresh).invoices
