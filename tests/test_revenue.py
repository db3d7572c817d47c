"""Revenue reporting by hand (docs/revenue.md): tests/fixtures/revenue, billed as of
15 September 2026 and finalised, all in UTC, USD.

| customer | what happens | by hand |
|---|---|---|
| c_cycle | Basic (31.00/month, arrears) from 1 Jan; upgrade to Pro (62.00) on 10 Mar (immediate); downgrade to Basic asked on 10 Apr (from 1 May); terminated 15 Jun; back on Basic from 1 Aug (a new subscription) | MRR at each month's end: Jan 31 new, Feb 31, Mar 62 expansion +31, Apr 62, May 31 contraction -31, Jun 0 churn -31, Jul nothing, Aug 31 reactivation +31, Sep 31 |
| c_yearly | Yearly 1,200.00 in advance from 1 Jan 2026 | MRR 100.00, ARR 1,200.00. Billed 1 Jan; recognised 1,200 x days/365, rounded to date: Jan 31 days 101.92, Feb (59 days: 193.97) 92.05, Mar (90: 295.89) 101.92, Apr (120: 394.52) 98.63; 1-15 Sep (258: 848.22, Aug 243: 798.90) 49.32. Deferred at the end of Jan 1,098.08 |
| c_prepaid | no base fee, calls at 1.00; wallet: 10 credits granted and 100 purchased (1.00 each) on 5 Jan, expiring 31 Mar; 30 calls in Jan, 10 in Feb | the purchase (100.00) is a prepayment, not revenue. Usage 30.00 (Jan) + 10.00 (Feb) is revenue when consumed, billed 1 Feb and 1 Mar, paid by credits, granted first: the 10 granted credits are a discount of January's usage (-10.00, recognised with it), 30 purchased credits are spent. On 31 Mar the 70 purchased credits left expire: breakage 70.00. Revenue in all: 30 + 10 - 10 + 70 = 100.00, what the customer paid |
"""

from __future__ import annotations

import shutil
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchestration import pipeline
from orchestration.cli import app
from orchestration.ledger import void
from orchestration.reporting import CloseError, close_month, write_report
from orchestration.settings import get_settings
from orchestration.warehouse import connect
from tests.conftest import FIXTURES, make_home

CASE = FIXTURES / "revenue"
AS_OF = datetime(2026, 9, 15)
LOADED_AT = datetime(2026, 9, 1)  # a fixed load time: the results never depend on the real clock


@pytest.fixture(scope="module")
def billed_home(tmp_path_factory) -> Path:
    settings = make_home(tmp_path_factory.mktemp("revenue"), CASE / "catalog")
    shutil.copy(CASE / "events.jsonl", settings.landing_dir)
    pipeline.read_and_load_catalog(settings, settings.catalog_dir)
    pipeline.ingest(settings, pipeline.new_landing_files(settings), loaded_at=LOADED_AT)
    pipeline.build(settings, AS_OF, full_refresh=True)
    # Each customer has one invoice a month: the usage-cliff check would stop the quiet months.
    assert pipeline.finalise(settings, accept_usage_cliffs=True).invoices
    return settings.home


@pytest.fixture
def home(billed_home: Path, tmp_path: Path):
    copy = tmp_path / "home"
    shutil.copytree(billed_home, copy)
    return get_settings(copy)


def _rows(settings, sql: str, params=()) -> list[tuple]:
    with connect(settings, read_only=True) as warehouse:
        return warehouse.query(sql, list(params))


def _money(*values: str) -> tuple[Decimal, ...]:
    return tuple(Decimal(value) for value in values)


def test_mrr_movements_of_a_customer_who_upgrades_downgrades_churns_and_returns(billed_home):
    rows = _rows(get_settings(billed_home),
                 "select month_start, mrr, movement, net_change, new_mrr, expansion_mrr, contraction_mrr, churn_mrr, "
                 "reactivation_mrr from marts.fct_mrr where customer_id = 'c_cycle' order by month_start")
    assert [(r[0].month, r[1], r[2], r[3]) for r in rows] == [
        (1, *_money("31"), "new", *_money("31")),
        (2, *_money("31"), "unchanged", *_money("0")),
        (3, *_money("62"), "expansion", *_money("31")),
        (4, *_money("62"), "unchanged", *_money("0")),
        (5, *_money("31"), "contraction", *_money("-31")),
        (6, *_money("0"), "churn", *_money("-31")),
        (8, *_money("31"), "reactivation", *_money("31")),
        (9, *_money("31"), "unchanged", *_money("0")),
    ]
    # Each movement lands in its own column, and they add up to the change.
    for row in rows:
        assert sum(row[4:9]) == row[3]
    by_month = {r[0].month: r for r in rows}
    assert by_month[3][5] == 31 and by_month[5][6] == -31 and by_month[6][7] == -31 and by_month[8][8] == 31


def test_an_in_advance_yearly_fee_is_recognised_evenly_over_its_days(billed_home):
    settings = get_settings(billed_home)
    [(mrr, arr)] = _rows(settings, "select mrr, arr from marts.fct_mrr where customer_id = 'c_yearly' "
                                   "and month_start = date '2026-06-01'")
    assert (mrr, arr) == _money("100", "1200")
    rows = {r[0].month: r[1:] for r in _rows(
        settings, "select month_start, billed_amount, recognised_amount, deferred_balance, unbilled_balance "
                  "from marts.fct_revenue_monthly where customer_id = 'c_yearly' order by month_start")}
    assert rows[1] == _money("1200", "101.92", "1098.08", "0")
    assert rows[2] == _money("0", "92.05", "1006.03", "0")
    assert rows[3] == _money("0", "101.92", "904.11", "0")
    assert rows[4] == _money("0", "98.63", "805.48", "0")
    assert rows[9] == _money("0", "49.32", "351.78", "0")  # to the as_of, 15 September
    # The whole schedule: every day of 2026 recognises its share, and the days add up to the fee.
    [(days, total, first, last)] = _rows(settings, "select count(*), sum(amount), min(recognised_on), max(recognised_on) "
                                                  "from marts.fct_revenue_recognition where customer_id = 'c_yearly'")
    assert (days, total, first, last) == (365, Decimal("1200"), date(2026, 1, 1), date(2026, 12, 31))


def test_prepaid_credits_are_revenue_when_consumed_and_breakage_when_they_expire(billed_home):
    settings = get_settings(billed_home)
    items = sorted(_rows(settings, "select revenue_stream, recognition_start, billed_on, amount "
                                   "from intermediate.int_revenue_items where customer_id = 'c_prepaid' and amount <> 0"))
    assert items == [
        ("breakage", date(2026, 3, 31), date(2026, 3, 31), Decimal("70")),
        ("usage", date(2026, 1, 1), date(2026, 2, 1), Decimal("-10")),  # the granted credits, on January's usage
        ("usage", date(2026, 1, 1), date(2026, 2, 1), Decimal("30")),
        ("usage", date(2026, 2, 1), date(2026, 3, 1), Decimal("10")),
    ]
    [(source,)] = _rows(settings, "select source_kind from intermediate.int_revenue_items "
                                  "where customer_id = 'c_prepaid' and amount < 0")
    assert source == "granted_credits"
    # Usage is recognised on the days of its events, 10 calls a day; the free credits with it,
    # in proportion (-10 over January's three days: -3.33, -3.34, -3.33 to date rounded).
    days = _rows(settings, "select recognised_on, sum(amount) from marts.fct_revenue_recognition "
                           "where customer_id = 'c_prepaid' and revenue_stream = 'usage' "
                           "group by recognised_on having sum(amount) <> 0 order by recognised_on")
    assert days == [(date(2026, 1, 10), Decimal("6.67")), (date(2026, 1, 11), Decimal("6.66")),
                    (date(2026, 1, 20), Decimal("6.67")), (date(2026, 2, 5), Decimal("10"))]
    [(recognised,)] = _rows(settings, "select sum(recognised_amount) from marts.fct_revenue_monthly "
                                      "where customer_id = 'c_prepaid'")
    [(purchased,)] = _rows(settings, "select sum(amount) from marts.fct_invoice_lines "
                                     "where customer_id = 'c_prepaid' and fee_kind = 'credit_purchase'")
    assert recognised == purchased == Decimal("100")


def _assert_balances_add_up(settings) -> int:
    """billed to date = recognised to date + deferred - unbilled, per currency and month, to the cent."""
    rows = _rows(settings, "select currency, month_start, sum(billed_amount), sum(recognised_amount), "
                           "sum(deferred_balance), sum(unbilled_balance) from marts.fct_revenue_monthly "
                           "group by currency, month_start order by currency, month_start")
    billed: dict[str, Decimal] = {}
    recognised: dict[str, Decimal] = {}
    for currency, month, month_billed, month_recognised, deferred, unbilled in rows:
        billed[currency] = billed.get(currency, Decimal(0)) + month_billed
        recognised[currency] = recognised.get(currency, Decimal(0)) + month_recognised
        assert billed[currency] == recognised[currency] + deferred - unbilled, (currency, month)
    return len(rows)


def test_recognised_deferred_and_unbilled_add_up_to_billed_every_month(billed_home):
    assert _assert_balances_add_up(get_settings(billed_home)) == 9


def test_a_closed_month_stays_as_locked_and_a_later_correction_is_booked_in_the_open_month(home, tmp_path):
    with pytest.raises(CloseError, match="has not ended"):
        close_month(home, date(2026, 9, 1))
    result = write_report(home, "2026-05", output_dir=tmp_path / "before", now=datetime(2026, 9, 15, 8))
    assert result.state.closed and result.closed_now[0] == date(2026, 1, 1) and result.closed_now[-1] == date(2026, 5, 1)
    april = (tmp_path / "before" / "revenue_by_customer.csv").read_text()

    # Void c_cycle's 1 May invoice (April on Pro, 62.00) after April closed.
    [(number,)] = _rows(home, "select invoice_number from marts.fct_invoices where customer_id = 'c_cycle' "
                              "and invoice_at = timestamp '2026-05-01 00:00:00'")
    void(home, number, "billed in error", now=datetime(2026, 9, 15, 9))
    pipeline.rebuild_from_ledger(home)

    # April and May read as locked...
    again = write_report(home, "2026-05", output_dir=tmp_path / "after", now=datetime(2026, 9, 15, 10))
    assert again.closed_now == [] and again.state.closed
    assert (tmp_path / "after" / "revenue_by_customer.csv").read_text() == april
    [(april_recognised,)] = _rows(home, "select sum(recognised_amount) from marts.fct_revenue_monthly "
                                        "where customer_id = 'c_cycle' and month_start = date '2026-04-01'")
    assert april_recognised == Decimal("62")
    # ... and the correction is booked in June, the first open month, as a prior-period adjustment.
    adjustments = _rows(home, "select month_start, revenue_stream, billed_amount, recognised_amount "
                              "from marts.fct_revenue_monthly where row_kind = 'prior_period_adjustment'")
    assert adjustments == [(date(2026, 6, 1), "subscription", Decimal("-62"), Decimal("-62"))]
    june = write_report(home, "2026-06", output_dir=tmp_path / "june", close=False)
    assert june.tables["prior_period_adjustments"].rows == [["USD", "c_cycle", "subscription", "",
                                                             Decimal("-62"), Decimal("-62")]]
    # The balances still add up: the correction is in the flows of an open month.
    _assert_balances_add_up(home)
    # MRR of the closed months is locked too (April's 62.00 stays).
    [(april_mrr, closed)] = _rows(home, "select mrr, is_closed_month from marts.fct_mrr "
                                        "where customer_id = 'c_cycle' and month_start = date '2026-04-01'")
    assert (april_mrr, closed) == (Decimal("62"), True)


def test_a_month_with_invoices_not_yet_final_gets_a_preliminary_report(home, tmp_path):
    result = write_report(home, "2026-09", output_dir=tmp_path / "september")
    assert not result.state.closed and "not ended" in result.state.reason
    assert "Preliminary" in result.html_path.read_text()
    assert not _rows(home, "select * from ledger.month_closes")


def test_report_command_writes_html_and_csv(home, tmp_path):
    output = tmp_path / "report"
    result = CliRunner().invoke(app, ["report", "--month", "2026-03", "--home", str(home.home),
                                      "--output", str(output)])
    assert result.exit_code == 0, result.output
    assert "Closed 2026-01 .. 2026-03" in result.output and "recognised revenue" in result.output
    assert (output / "revenue-report-2026-03.html").exists()
    summary = (output / "summary.csv").read_text().splitlines()
    assert summary[0].startswith("currency,mrr,arr,")
    # March: c_cycle 62.00 + c_yearly 100.00 of MRR; recognised: Basic 1-9 Mar 9.00 + Pro 10-31 Mar
    # 44.00, the yearly fee's 101.92, and the breakage 70.00.
    values = dict(zip(summary[0].split(","), summary[1].split(",")))
    assert (values["mrr"], values["recognised_revenue"]) == ("162.00", "224.92")
    bad = CliRunner().invoke(app, ["report", "--month", "2026-13", "--home", str(home.home)])
    assert bad.exit_code == 2 and "YYYY-MM" in bad.output


def test_closing_a_month_refuses_while_an_earlier_month_it_would_close_has_invoices_not_final(tmp_path):
    """c_yearly's 1 January invoice has a 300-day grace period: on 15 September it is still not
    final, so January cannot close, and neither can May (closing May closes January too)."""
    settings = make_home(tmp_path, CASE / "catalog")
    customers = settings.catalog_dir / "customers.csv"
    rows = customers.read_text().splitlines()
    rows[0] += ",invoice_grace_period_days"
    rows[1:] = [row + (",300" if row.startswith("c_yearly,") else ",") for row in rows[1:]]
    customers.write_text("\n".join(rows) + "\n")
    shutil.copy(CASE / "events.jsonl", settings.landing_dir)
    pipeline.read_and_load_catalog(settings, settings.catalog_dir)
    pipeline.ingest(settings, pipeline.new_landing_files(settings), loaded_at=LOADED_AT)
    pipeline.build(settings, AS_OF, full_refresh=True)
    pipeline.finalise(settings, accept_usage_cliffs=True)
    with pytest.raises(CloseError, match=r"2026-01 cannot be closed: 1 invoice\(s\) .* not finalised yet "
                                         r"\(closing 2026-05 closes it too\)"):
        close_month(settings, date(2026, 5, 1))
    assert not _rows(settings, "select * from ledger.month_closes")
    # The report is written all the same, marked preliminary.
    result = write_report(settings, "2026-05", output_dir=tmp_path / "may")
    assert not result.state.closed and not result.closed_now
