"""The command line as a user drives it (Typer's runner, same process): `meterline run` on the
small fixture prints its summary, `invoices` gives the JSON shape, `invoice` one invoice step by
step, `explain` the arithmetic,
and an invalid catalog exits 2 naming file, row and field without building anything."""

from __future__ import annotations

import json
import shutil

from typer.testing import CliRunner

from orchestration.cli import app
from tests.conftest import FIXTURES

AS_OF = "2026-11-21T12:00:00Z"


def test_run_invoices_and_explain(small_home):
    shutil.copy(FIXTURES / "small_events" / "events.jsonl", small_home.landing_dir)
    runner = CliRunner()
    home = ["--home", str(small_home.home)]

    ran = runner.invoke(app, ["run", *home, "--as-of", AS_OF])
    assert ran.exit_code == 0, ran.output
    for heading in ("Ingestion", "Invoices", "Subscriptions by plan", "Issued invoices by charge",
                    "Events (every input"):
        assert heading in ran.output
    assert (small_home.output_dir / "invoices.json").exists()
    assert (small_home.output_dir / "credit_notes.json").exists()
    # `run` finalises what the checks passed on: the small catalog has no grace period.
    assert "Finalised 5 invoice(s) into the ledger: TEST-202609-0001 .. TEST-202611-0002" in " ".join(
        ran.output.split())

    listed = runner.invoke(app, ["invoices", *home, "--format", "json", "--customer", "cus_a"])
    assert listed.exit_code == 0, listed.output
    invoices = json.loads(listed.output)
    october = next(i for i in invoices if i["issuing_date"] == "2026-10-01")
    assert october["total_amount"] == "7.52"
    assert (october["status"], october["invoice_number"]) == ("finalized", "TEST-202610-0002")

    september = next(i for i in invoices if i["discounts"])
    shown = runner.invoke(app, ["invoice", *home, september["invoice_id"][:12]])
    assert shown.exit_code == 0, shown.output
    steps = [step for step in ("Fees", "Coupon Five off", "Subtotal excluding taxes", "Subtotal including taxes",
                               "Total due (USD)") if step in shown.output]
    assert steps == ["Fees", "Coupon Five off", "Subtotal excluding taxes", "Subtotal including taxes",
                     "Total due (USD)"]
    assert shown.output.index("Fees") < shown.output.index("Coupon") < shown.output.index("Total due")
    assert september["total_amount"] in shown.output.split("Total due (USD)")[1]
    unknown = runner.invoke(app, ["invoice", *home, "no-such-invoice"])
    assert unknown.exit_code == 2 and "0 invoices have an id starting with" in unknown.output

    line = next(line for line in october["lines"] if line["fee_kind"] == "charge" and line["event_count"])
    explained = runner.invoke(app, ["explain", *home, line["line_id"]])
    assert explained.exit_code == 0, explained.output
    assert "Arithmetic" in explained.output and line["description"] in explained.output


def test_an_invalid_catalog_exits_2_and_builds_nothing(small_home):
    plans = small_home.catalog_dir / "plans.yml"
    text = plans.read_text()
    assert "interval: monthly" in text
    plans.write_text(text.replace("interval: monthly", "interval: hourly", 1))
    ran = CliRunner().invoke(app, ["run", "--home", str(small_home.home), "--as-of", AS_OF])
    assert ran.exit_code == 2
    assert "invalid catalog, nothing was built" in ran.output
    assert "plans.yml: plans[0]" in ran.output and "> interval" in ran.output
    assert not (small_home.output_dir / "invoices.json").exists()
