"""What-if (`meterline simulate --diff`): a past window priced with a proposed price book,
against the current one, per customer and line, with totals; usable as a check."""

from __future__ import annotations

import csv
import io
import json
import shutil
from decimal import ROUND_HALF_UP, Decimal

from typer.testing import CliRunner

from orchestration.cli import app
from orchestration.warehouse import connect
from tests.conftest import FIXTURES, make_home, run_all


def test_a_price_change_is_reported_per_line_with_totals(tmp_path):
    settings = make_home(tmp_path)
    shutil.copy(FIXTURES / "small_events" / "events.jsonl", settings.landing_dir)
    run_all(settings)
    with connect(settings, read_only=True) as warehouse:
        before = warehouse.query("select count(*), sum(total_amount) from marts.fct_invoices")[0]
        requests = dict(warehouse.query(
            "select cast(invoice_at as varchar), quantity from marts.fct_invoice_lines "
            "where metric_code = 'api_requests' and invoice_at >= '2026-09-01' and invoice_at < '2026-11-15'"))
    proposed = tmp_path / "proposed"
    shutil.copytree(settings.catalog_dir, proposed)
    plans = proposed / "plans.yml"
    text = plans.read_text()
    assert 'properties: {amount: "0.015"}' in text and 'amount: "3000"' in text
    plans.write_text(text.replace('properties: {amount: "0.015"}', 'properties: {amount: "0.02"}')
                     .replace('amount: "3000"', 'amount: "3300"'))

    runner = CliRunner()
    args = ["simulate", "--home", str(settings.home), "--catalog", str(proposed), "--diff",
            "--from", "2026-09-01", "--to", "2026-11-15"]
    ran = runner.invoke(app, [*args, "--format", "json"])
    assert ran.exit_code == 0, ran.output
    report = json.loads(ran.output)
    by_line = {(line["customer_id"], line["metric_code"], line["invoice_at"]): line for line in report["lines"]}
    # cus_b: the JPY base fee, 3000 -> 3300: half of it for September (from the 16th), then October.
    base = [line for key, line in by_line.items() if key[0] == "cus_b" and key[1] == ""]
    assert sorted((line["amount_current"], line["amount_proposed"], line["amount_change"]) for line in base) == [
        ("1500", "1650", "150"), ("3000", "3300", "300")]
    # cus_a: each month's requests at 0.02 instead of 0.015, each amount rounded half-up to cents.
    cents = lambda value: value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)  # noqa: E731
    expected = sorted(str(cents(q * Decimal("0.02")) - cents(q * Decimal("0.015")))
                      for q in requests.values() if cents(q * Decimal("0.02")) != cents(q * Decimal("0.015")))
    changed_requests = [line for key, line in by_line.items() if key[1] == "api_requests"]
    assert sorted(line["amount_change"] for line in changed_requests) == expected
    assert all(line["quantity_change"] == "0" for line in changed_requests)
    jpy = next(total for total in report["totals"] if total["currency"] == "JPY")
    assert jpy["fees_change"] == "450" and Decimal(jpy["fees_change_percent"]) == Decimal("10.00")
    # Only lines that change are listed; unchanged ones (input tokens, USD base fees) are not.
    assert all(line["metric_code"] in ("", "api_requests") for line in report["lines"])

    as_csv = runner.invoke(app, [*args, "--format", "csv"])
    rows = list(csv.reader(io.StringIO(as_csv.output)))
    assert rows[0][:2] == ["customer_id", "currency"] and len(rows) == 1 + len(report["lines"]) + len(
        report["totals"])
    table = runner.invoke(app, args)
    assert "Totals per currency" in table.output and "line(s) change" in table.output

    # As a check before merging: a 10% JPY rise fails a 5% limit and passes a 20% one.
    assert runner.invoke(app, [*args, "--max-change-percent", "5"]).exit_code == 1
    assert runner.invoke(app, [*args, "--max-change-percent", "20"]).exit_code == 0
    # The configured warehouse is only read.
    with connect(settings, read_only=True) as warehouse:
        assert warehouse.query("select count(*), sum(total_amount) from marts.fct_invoices")[0] == before
