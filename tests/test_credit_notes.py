"""Credit notes (docs/invoice-lifecycle.md, "Credit notes"): manual ones issued on finalised
invoices, credited to later invoices (after tax, before prepaid credits) or refunded; automatic
ones frozen in the ledger by finalisation.

tests/fixtures/discounts_taxes, finalised as of 20 November (see tests/test_discounts_taxes.py
for the invoices by hand). US customers pay state 6.25% + city 2.125% tax.
- c_recurring's 1 November invoice: Basic 20.00 - 5.00 (save5x2) = 15.00, taxes 0.94 + 0.32,
  16.26 due. Its 1 December draft: 20.00 + 1.25 + 0.43 = 21.68.
- c_two_coupons's 1 November invoice: 123 calls 12.30, less its 1.23 share of ten_pct = 11.07
  billed for the line.
"""

from __future__ import annotations

import re
import shutil
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchestration import pipeline
from orchestration.cli import app
from orchestration.ledger import FinalisationError, issue_credit_note, void
from orchestration.settings import get_settings
from orchestration.warehouse import connect
from tests.conftest import FIXTURES, make_home, run_all
from tests.test_ledger import ledger_dump

CASE = FIXTURES / "discounts_taxes"
AS_OF = datetime(2026, 11, 20)
ISSUED_AT = datetime(2026, 11, 20, 9, 30)


@pytest.fixture(scope="module")
def finalised_home(tmp_path_factory) -> Path:
    settings = make_home(tmp_path_factory.mktemp("credit-notes"), CASE / "catalog")
    shutil.copy(CASE / "events.jsonl", settings.landing_dir)
    run_all(settings, as_of=AS_OF)
    assert pipeline.finalise(settings).invoices
    return settings.home


@pytest.fixture
def home(finalised_home: Path, tmp_path: Path):
    copy = tmp_path / "home"
    shutil.copytree(finalised_home, copy)
    return get_settings(copy)


def invoice(settings, customer: str, day: str) -> dict:
    columns = ["invoice_id", "invoice_number", "status", "subtotal_including_taxes", "credit_note_credit_amount",
               "prepaid_credit_amount", "total_amount"]
    with connect(settings, read_only=True) as warehouse:
        rows = warehouse.query(f"select {', '.join(columns)} from marts.fct_invoices "
                               f"where customer_id = ? and cast(invoice_at as date) = date '{day}'", [customer])
    [row] = rows
    return dict(zip(columns, row))


def credit_note(settings, credit_note_id: str) -> dict:
    columns = ["credit_note_number", "status", "origin", "reason", "credit_method", "amount", "tax_amount",
               "total_amount", "credited_amount", "refunded_amount", "applied_amount", "balance_amount"]
    with connect(settings, read_only=True) as warehouse:
        [row] = warehouse.query(f"select {', '.join(columns)} from marts.fct_credit_notes where credit_note_id = ?",
                                [credit_note_id])
    return dict(zip(columns, row))


def line_id(settings, invoice_id: str, metric: str | None) -> str:
    with connect(settings, read_only=True) as warehouse:
        [[found]] = warehouse.query(
            "select invoice_line_id from ledger.invoice_lines where invoice_id = ? and "
            + ("metric_code = ?" if metric else "metric_code is null"), [invoice_id] + ([metric] if metric else []))
    return found


def test_a_credited_note_gives_back_tax_and_pays_the_next_invoice_before_wallets(home):
    november = invoice(home, "c_recurring", "2026-11-01")
    assert (november["status"], november["total_amount"]) == ("finalized", Decimal("16.26"))
    issued = issue_credit_note(home, november["invoice_number"], reason="product_unsatisfactory", now=ISSUED_AT)
    pipeline.rebuild_from_ledger(home)

    # The whole base line, 15.00 after its coupon, with its 8.375% tax: 1.25625 -> 1.26.
    assert issued.credit_note_number == "TAX-CN-202611-0001"
    note = credit_note(home, issued.credit_note_id)
    assert (note["status"], note["origin"], note["credit_method"]) == ("finalized", "manual", "credit")
    assert (note["amount"], note["tax_amount"], note["total_amount"]) == (
        Decimal("15.00"), Decimal("1.26"), Decimal("16.26"))
    # It pays the 1 December draft (21.68) before anything else; nothing of it is left.
    december = invoice(home, "c_recurring", "2026-12-01")
    assert (december["subtotal_including_taxes"], december["credit_note_credit_amount"], december["total_amount"]) == (
        Decimal("21.68"), Decimal("16.26"), Decimal("5.42"))
    assert (note["applied_amount"], note["balance_amount"]) == (Decimal("16.26"), Decimal("0.00"))
    # The finalised invoice it credits is unchanged, and cannot be voided while the note stands.
    assert invoice(home, "c_recurring", "2026-11-01") == november
    with pytest.raises(FinalisationError, match="void them first"):
        void(home, november["invoice_number"], "changed our mind")

    # Voiding it (no finalised invoice drew on it yet) gives the draft its amount due back.
    void(home, issued.credit_note_number, "issued by mistake")
    pipeline.rebuild_from_ledger(home)
    assert credit_note(home, issued.credit_note_id)["status"] == "voided"
    assert invoice(home, "c_recurring", "2026-12-01")["total_amount"] == Decimal("21.68")


def test_a_refund_leaves_later_invoices_alone_and_a_line_is_never_credited_twice(home):
    november = invoice(home, "c_two_coupons", "2026-11-01")
    calls = line_id(home, november["invoice_id"], "api_calls")
    december_before = invoice(home, "c_two_coupons", "2026-12-01")
    issued = issue_credit_note(home, november["invoice_number"], reason="duplicated_charge", method="refund",
                               lines={calls[:10]: Decimal("5.00")}, now=ISSUED_AT)
    pipeline.rebuild_from_ledger(home)
    note = credit_note(home, issued.credit_note_id)
    # 5.00 x 8.375% = 0.41875 -> 0.42, paid back.
    assert (note["total_amount"], note["refunded_amount"], note["credited_amount"], note["balance_amount"]) == (
        Decimal("5.42"), Decimal("5.42"), Decimal("0.00"), Decimal("0.00"))
    assert invoice(home, "c_two_coupons", "2026-12-01") == december_before

    # 11.07 was billed for the line: 6.07 is left to credit.
    with pytest.raises(FinalisationError, match="7.00 USD is more than the 6.07 USD left"):
        issue_credit_note(home, november["invoice_number"], reason="other", lines={calls: Decimal("7.00")})
    with pytest.raises(FinalisationError, match="more than 2 decimal"):
        issue_credit_note(home, november["invoice_number"], reason="other", lines={calls: Decimal("1.005")})
    with pytest.raises(FinalisationError, match="unknown credit note reason"):
        issue_credit_note(home, november["invoice_number"], reason="because")
    # c_big_coupon's November invoice was all coupon: nothing was billed, nothing can be credited.
    with pytest.raises(FinalisationError, match="nothing left to credit"):
        issue_credit_note(home, invoice(home, "c_big_coupon", "2026-11-01")["invoice_number"], reason="other")
    with pytest.raises(FinalisationError, match="no finalised invoice"):
        issue_credit_note(home, "TAX-209901-0001", reason="other")
    # The second credit note takes the rest; numbers follow each other.
    second = issue_credit_note(home, november["invoice_number"], reason="other", lines={calls: None},
                               now=ISSUED_AT)
    assert (second.credit_note_number, second.amount) == ("TAX-CN-202611-0002", Decimal("6.07"))


def test_a_credit_note_an_issued_invoice_drew_on_is_frozen_with_it(home):
    november = invoice(home, "c_recurring", "2026-11-01")
    base = line_id(home, november["invoice_id"], None)
    issued = issue_credit_note(home, november["invoice_number"], reason="order_change",
                               lines={base: Decimal("10.00")}, now=ISSUED_AT)
    before = ledger_dump(home)
    # Past 1 December: the December invoice is finalised with the credit it took.
    run_all(home, as_of=datetime(2026, 12, 2))
    pipeline.finalise(home)
    december = invoice(home, "c_recurring", "2026-12-01")
    # 10.00 + 0.8375 -> 0.84 tax = 10.84 off 21.68.
    assert (december["status"], december["credit_note_credit_amount"], december["total_amount"]) == (
        "finalized", Decimal("10.84"), Decimal("10.84"))
    with connect(home, read_only=True) as warehouse:
        frozen = warehouse.query("select credit_note_id, credit_amount from ledger.invoice_credit_note_credits "
                                 "where invoice_id = ?", [december["invoice_id"]])
    assert frozen == [(issued.credit_note_id, Decimal("10.84"))]
    # The ledger only grew; a full refresh changes none of it.
    after = ledger_dump(home)
    assert set(before.splitlines()) <= set(after.splitlines())
    pipeline.build(home, datetime(2026, 12, 2), full_refresh=True)
    assert ledger_dump(home) == after
    with pytest.raises(FinalisationError, match="paid part of finalised invoice"):
        void(home, issued.credit_note_number, "too late")


def test_the_credit_note_command(home):
    november = invoice(home, "c_recurring", "2026-11-01")
    result = CliRunner().invoke(app, ["credit-note", november["invoice_number"], "--reason", "order_cancellation",
                                      "--line", f"{line_id(home, november['invoice_id'], None)[:8]}=2.00",
                                      "--home", str(home.home)])
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    # Numbered in the month it is issued (today): TAX-CN-YYYYMM-0001.
    assert re.search(r"Issued credit note TAX-CN-\d{6}-0001 ", output) and "2.00 + tax 0.17 = 2.17 USD" in output
    refused = CliRunner().invoke(app, ["credit-note", november["invoice_number"], "--reason", "other",
                                       "--line", "nope=1", "--home", str(home.home)])
    assert refused.exit_code == 2 and "has no line 'nope'" in " ".join(refused.output.split())


def test_what_an_automatic_credit_note_gave_back_cannot_be_credited_again(tmp_path):
    """tests/fixtures/plan_changes: c_upgrade_advance paid Basic's October (31.00) in advance on
    1 October and upgraded on 11 October; the unused 21 days came back as a 21.00 credit note.
    A manual credit note on the 1 October invoice can only take the other 10.00 of that line."""
    case = FIXTURES / "plan_changes"
    settings = make_home(tmp_path, case / "catalog")
    shutil.copy(case / "events.jsonl", settings.landing_dir)
    run_all(settings, as_of=AS_OF)
    pipeline.finalise(settings, accept_usage_cliffs=True)
    october = invoice(settings, "c_upgrade_advance", "2026-10-01")
    base = line_id(settings, october["invoice_id"], None)
    with pytest.raises(FinalisationError, match="the 10.00 USD left"):
        issue_credit_note(settings, october["invoice_number"], reason="other", lines={base: Decimal("31.00")})
    assert issue_credit_note(settings, october["invoice_number"], reason="other", lines={base: None},
                             now=ISSUED_AT).amount == Decimal("10.00")
