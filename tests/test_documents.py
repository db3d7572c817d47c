"""Invoice and credit note PDFs (orchestration/documents.py), read back by extracting their text.

tests/fixtures/discounts_taxes finalised as of 20 November (tests/test_discounts_taxes.py has
the invoices by hand): c_two_coupons's 1 November invoice is 30.00 + 12.30 + 10.00 = 52.30 of
fees, coupons tokens_half 5.00 and ten_pct 4.73, state tax 2.66 and city tax 0.90: 46.13 due.
"""

from __future__ import annotations

import shutil
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest
from pypdf import PdfReader
from typer.testing import CliRunner

from orchestration import pipeline
from orchestration.cli import app
from orchestration.documents import write_documents
from orchestration.ledger import issue_credit_note, void
from orchestration.settings import get_settings
from orchestration.warehouse import connect
from tests.conftest import FIXTURES, make_home, run_all

CASE = FIXTURES / "discounts_taxes"


@pytest.fixture(scope="module")
def finalised_home(tmp_path_factory) -> Path:
    settings = make_home(tmp_path_factory.mktemp("documents"), CASE / "catalog")
    shutil.copy(CASE / "events.jsonl", settings.landing_dir)
    run_all(settings, as_of=datetime(2026, 11, 20))
    pipeline.finalise(settings)
    with connect(settings, read_only=True) as warehouse:
        [[number]] = warehouse.query("select invoice_number from marts.fct_invoices where customer_id = 'c_recurring' "
                                     "and invoice_at = timestamp '2026-11-01 00:00:00'")
        [[line]] = warehouse.query("select invoice_line_id from marts.fct_invoice_lines where invoice_id = "
                                   "(select invoice_id from ledger.invoices where invoice_number = ?)", [number])
    issue_credit_note(settings, number, reason="order_change", lines={line: Decimal("10.00")},
                      now=datetime(2026, 11, 20, 9))
    pipeline.rebuild_from_ledger(settings)
    return settings.home


@pytest.fixture
def home(finalised_home: Path, tmp_path: Path):
    copy = tmp_path / "home"
    shutil.copytree(finalised_home, copy)
    return get_settings(copy)


def text(path: Path) -> str:
    return " ".join(" ".join(page.extract_text() for page in PdfReader(path).pages).split())


def test_every_finalised_invoice_and_credit_note_has_a_legible_pdf(home):
    result = write_documents(home)
    with connect(home, read_only=True) as warehouse:
        numbers = [row[0] for row in warehouse.query("select invoice_number from ledger.invoices")]
        [[invoice_number, invoice_id]] = warehouse.query(
            "select invoice_number, invoice_id from marts.fct_invoices where customer_id = 'c_two_coupons' "
            "and invoice_at = timestamp '2026-11-01 00:00:00'")
        lines = warehouse.query("select description, amount from marts.fct_invoice_lines where invoice_id = ?",
                                [invoice_id])
        [[note_number, credited]] = warehouse.query(
            "select notes.credit_note_number, invoices.invoice_number from marts.fct_credit_notes as notes "
            "inner join ledger.invoices as invoices on notes.invoice_id = invoices.invoice_id")
    assert sorted(path.stem for path in result.written if path.parent.name == "invoices") == sorted(numbers)
    assert result.unchanged == 0

    invoice = text(home.output_dir / "documents" / "invoices" / f"{invoice_number}.pdf")
    assert f"Invoice {invoice_number}" in invoice
    assert "Tax Co" in invoice and "Two Coupons (c_two_coupons)" in invoice and "Currency USD" in invoice
    assert len(lines) == 3
    for description, amount in lines:
        assert f"{description} " in invoice and f"{amount:.2f}" in invoice
    for step in ("Fees 52.30", "(tokens_half) -5.00", "(ten_pct) -4.73", "Subtotal excluding taxes 42.57",
                 "6.25% on 42.57 2.66", "2.125% on 42.57 0.90", "Subtotal including taxes 46.13",
                 "Total due (USD) 46.13"):
        assert step in invoice, step

    # 10.00 of c_recurring's base fee with its 8.375% tax: 0.8375 -> 0.84.
    note = text(home.output_dir / "documents" / "credit_notes" / f"{note_number}.pdf")
    assert f"Credit note {note_number}" in note and f"Credits invoice {credited}" in note
    assert "Reason order change" in note and "Total credited (USD) 10.84" in note
    assert "deducted from your next invoices" in note


def test_the_flat_line_item_table_adds_up_to_each_invoice(home):
    """invoice_lines.csv: one record per line with its invoice's header fields, quantity, unit
    amount, discount, tax and total; a line's total is exact, so an invoice's lines add up to its
    subtotal including taxes within the rounding of its taxes per rate (42.57 + 3.5652375)."""
    import csv

    with (home.output_dir / "invoice_lines.csv").open() as handle:
        records = [row for row in csv.DictReader(handle) if row["customer_id"] == "c_two_coupons"
                   and row["issuing_date"] == "2026-11-01"]
    assert {"invoice_number", "line_quantity", "line_unit_amount", "line_precise_discount_amount",
            "line_precise_tax_amount", "line_precise_total_amount", "line_service_period_start",
            "line_service_period_end"} <= set(records[0])
    assert sum(Decimal(row["line_precise_total_amount"]) for row in records) == Decimal("46.1352375")
    assert {row["subtotal_including_taxes"] for row in records} == {"46.13"}


def test_documents_are_written_once_and_a_void_stamps_one_again(home):
    first = write_documents(home)
    assert first.written and write_documents(home).written == []
    number = first.written[0].stem
    void(home, number, "issued in error")
    pipeline.rebuild_from_ledger(home)
    result = CliRunner().invoke(app, ["documents", "--home", str(home.home)])
    assert result.exit_code == 0, result.output
    assert "1 PDF(s) written" in " ".join(result.output.split())
    assert text(first.written[0]).startswith("VOID")
