"""The revenue report of a generated demo (the `make run` generator, smaller), as finance reads
it: the balances add up every month, and the HTML renders in a headless browser (Debian's
Chromium) with its charts drawn and its totals equal to the marts'.

`make test` installs Chromium when it is missing (and the machine lets it); CI sets
REQUIRE_BROWSER=1 so the browser test can never be skipped there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections import defaultdict
from datetime import date, datetime, timezone
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path

import pytest

from orchestration import pipeline
from orchestration.demo.generator import generate_demo
from orchestration.reporting import write_report
from orchestration.settings import get_settings
from orchestration.warehouse import connect
from tests.conftest import run_all
from tests.test_revenue import _assert_balances_add_up

AS_OF = datetime(2026, 11, 21, 12)
CHARTS_PER_CURRENCY = 5  # MRR movements, revenue by metric, by plan, top customers, recognised vs deferred


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    home = tmp_path_factory.mktemp("revenue-demo") / "demo"
    generate_demo(home, customers=16, events=20_000, seed=5, as_of=AS_OF.replace(tzinfo=timezone.utc), overwrite=True)
    settings = get_settings(home)
    run_all(settings, as_of=AS_OF)
    # 20,000 events over 16 customers make erratic months: the usage-cliff check would stop it.
    pipeline.finalise(settings, accept_usage_cliffs=True)
    result = write_report(settings, "2026-10", now=AS_OF)
    return settings, result


def test_every_month_of_the_demo_adds_up(demo):
    settings, result = demo
    assert result.state.closed and result.closed_now[-1] == date(2026, 10, 1)
    months = _assert_balances_add_up(settings)
    with connect(settings, read_only=True) as warehouse:
        currencies = {row[0] for row in warehouse.query("select distinct currency from marts.fct_revenue_monthly")}
        streams = {row[0] for row in warehouse.query("select distinct revenue_stream from marts.fct_revenue_monthly")}
    assert currencies >= {"USD", "EUR", "JPY"} and months > 12
    assert {"subscription", "usage"} <= streams


def _browser() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    return None


def _chromium(*args: str) -> subprocess.CompletedProcess:
    browser = _browser()
    if browser is None:
        if os.environ.get("REQUIRE_BROWSER"):
            pytest.fail("REQUIRE_BROWSER is set and no Chromium is installed (Debian package `chromium`)")
        pytest.skip("no headless browser here: install Debian's `chromium` (make test does when it can)")
    # Flags for a closed network: no background connections, no first-run or sync.
    return subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--virtual-time-budget=10000", *args],
        capture_output=True, text=True, timeout=180, check=True)


class _ReportDom(HTMLParser):
    """Collects the rendered DOM's charts (their SVG roots) and its figure tables."""

    def __init__(self):
        super().__init__()
        self.chart_svgs: dict[str, int] = defaultdict(int)
        self.tables: dict[str, list[dict[str, str]]] = defaultdict(list)
        self._chart_stack: list[str] = []
        self._depth = 0
        self._table: str | None = None
        self._row: dict[str, str] | None = None
        self._cell: str | None = None

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        self._depth += 1
        if tag == "div" and "data-chart" in attributes:
            self._chart_stack.append((attributes["data-chart"], self._depth))
        if tag == "svg" and "main-svg" in (attributes.get("class") or "") and self._chart_stack:
            self.chart_svgs[self._chart_stack[-1][0]] += 1
        if tag == "table" and "data-table" in attributes:
            self._table = attributes["data-table"]
        if tag == "tr" and self._table:
            self._row = {}
        if tag == "td" and self._row is not None:
            self._cell = attributes["data-column"]
            self._row[self._cell] = ""

    def handle_endtag(self, tag):
        if self._chart_stack and tag == "div" and self._chart_stack[-1][1] == self._depth:
            self._chart_stack.pop()
        self._depth -= 1
        if tag == "td":
            self._cell = None
        if tag == "tr" and self._row:
            self.tables[self._table].append(self._row)
            self._row = None
        if tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None and self._row is not None:
            self._row[self._cell] += data.strip()


def test_the_html_report_renders_in_a_headless_browser_with_its_charts_and_the_marts_totals(demo, tmp_path):
    settings, result = demo
    url = result.html_path.resolve().as_uri()
    dom = _chromium(f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", url).stdout
    parsed = _ReportDom()
    parsed.feed(dom)

    currencies = sorted(row["currency"] for row in parsed.tables["summary"])
    assert currencies == ["EUR", "JPY", "USD"]
    # plotly.js drew every chart (an SVG root in each chart's div), offline: the file is self-contained.
    assert len(parsed.chart_svgs) == CHARTS_PER_CURRENCY * len(currencies), dict(parsed.chart_svgs)
    assert all(count >= 1 for count in parsed.chart_svgs.values())
    assert 'id="month-status">Closed' in dom

    # The rendered totals are the marts' own.
    with connect(settings, read_only=True) as warehouse:
        mrr = dict(warehouse.query("select currency, sum(mrr) from marts.fct_mrr "
                                   "where month_start = date '2026-10-01' group by 1"))
        recognised = dict(warehouse.query("select currency, sum(recognised_amount) from marts.fct_revenue_monthly "
                                          "where month_start = date '2026-10-01' group by 1"))
        deferred = dict(warehouse.query("select currency, sum(deferred_balance) from marts.fct_revenue_monthly "
                                        "where month_start = date '2026-10-01' group by 1"))
        collected = dict(warehouse.query("select currency, sum(collected_amount) from marts.fct_billed_vs_collected "
                                         "where month_start = date '2026-10-01' group by 1"))
    for row in parsed.tables["summary"]:
        currency = row["currency"]
        assert Decimal(row["mrr"]) == mrr.get(currency, 0)
        assert Decimal(row["recognised_revenue"]) == recognised[currency]
        assert Decimal(row["deferred_balance"]) == deferred[currency]
        assert Decimal(row["collected"]) == collected.get(currency, 0)
    # The customer table adds up to the summary, per currency.
    by_customer = defaultdict(Decimal)
    for row in parsed.tables["revenue_by_customer"]:
        by_customer[row["currency"]] += Decimal(row["recognised_revenue"])
    assert dict(by_customer) == {row["currency"]: Decimal(row["recognised_revenue"])
                                 for row in parsed.tables["summary"]}

    # And it paints: a screenshot of the page.
    screenshot = tmp_path / "report.png"
    _chromium(f"--user-data-dir={tmp_path / 'profile-2'}", "--window-size=1400,2000",
              f"--screenshot={screenshot}", url)
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and screenshot.stat().st_size > 50_000


def test_the_csv_tables_are_the_html_tables(demo):
    _, result = demo
    import csv

    for path in result.csv_paths:
        with path.open(newline="") as handle:
            rows = list(csv.reader(handle))
        table = result.tables[path.stem]
        assert rows[0] == table.columns and len(rows) - 1 == len(table.rows)
