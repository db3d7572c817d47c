"""Late events (docs/invoice-lifecycle.md): an event loaded after its invoice was finalised
never changes that invoice; the difference becomes a correction line on the customer's next
invoice (or a credit note when it is negative), linked to exactly the events that caused it.

The small fixture, finalised as of 21 November; then events for September and October arrive.
cus_a's plan: api_requests at 0.015 each; input_tokens graduated (first 1,000 free, then 2.00
flat + 0.001 per token).
"""

from __future__ import annotations

import itertools
import json
import shutil
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from orchestration import pipeline
from orchestration.settings import get_settings
from orchestration.warehouse import connect
from tests.conftest import FIXTURES, SMALL_AS_OF, make_home, run_all
from tests.test_ledger import ledger_dump

LATER = datetime(2026, 11, 25)  # the corrections are found; cus_a's November invoice is still a draft
# This file's clock, whatever the real one says: the fixture's events are loaded at its as_of,
# and each late file an hour after the one before (all before LATER).
LOADED_AT = SMALL_AS_OF
_late_hours = itertools.count(1)


@pytest.fixture(scope="module")
def finalised_home(tmp_path_factory) -> Path:
    settings = make_home(tmp_path_factory.mktemp("late"))
    shutil.copy(FIXTURES / "small_events" / "events.jsonl", settings.landing_dir)
    run_all(settings, loaded_at=LOADED_AT)
    assert len(pipeline.finalise(settings).invoices) == 5
    return settings.home


@pytest.fixture
def home(finalised_home: Path, tmp_path: Path):
    copy = tmp_path / "home"
    shutil.copytree(finalised_home, copy)
    return get_settings(copy)


def arrive(settings, name: str, events: list[dict], loaded_at: datetime | None = None) -> datetime:
    """Drop an event file in the landing folder and ingest it (stamped after the cut-off and
    after every file before it)."""
    path = settings.landing_dir / name
    path.write_text("".join(json.dumps(event) + "\n" for event in events))
    loaded_at = loaded_at or LOADED_AT + timedelta(hours=next(_late_hours))
    report = pipeline.ingest(settings, [path], loaded_at=loaded_at)
    assert report.accepted == len(events)
    return loaded_at


def api_requests(count: int, day: str, prefix: str) -> list[dict]:
    return [{"transaction_id": f"{prefix}-{n}", "external_subscription_id": "sub_a", "code": "api_requests",
             "timestamp": f"{day}T10:00:00Z", "properties": {}} for n in range(count)]


def lines(settings, where: str, params=()) -> list[dict]:
    with connect(settings, read_only=True) as warehouse:
        columns = ["invoice_line_id", "invoice_id", "status", "metric_code", "quantity", "amount", "event_count",
                   "corrected_invoice_line_id", "description", "service_period_start"]
        rows = warehouse.query(f"select {', '.join(columns)} from marts.fct_invoice_lines where {where}",
                               list(params))
    return [dict(zip(columns, row)) for row in rows]


def finalised_october_api_line(settings) -> dict:
    [line] = lines(settings, "status = 'finalized' and metric_code = 'api_requests' "
                             "and service_period_start = date '2026-10-01'")
    return line


def test_late_events_become_a_correction_line_on_the_next_invoice_linked_to_them(home):
    october = finalised_october_api_line(home)
    frozen = ledger_dump(home)
    arrive(home, "late-october.jsonl", api_requests(100, "2026-10-15", "late-oct"))
    pipeline.build(home, LATER)

    # The finalised invoice and the ledger are untouched.
    assert finalised_october_api_line(home) == october
    assert ledger_dump(home) == frozen
    # 100 requests x 0.015 = 1.50 on cus_a's next invoice that is not finalised (30 November, a draft).
    [correction] = lines(home, "corrected_invoice_line_id = ?", [october["invoice_line_id"]])
    assert (correction["status"], correction["quantity"], correction["amount"], correction["event_count"]) == (
        "draft", Decimal(100), Decimal("1.50"), 100)
    assert correction["description"].startswith("Correction: ") and "2026-10-01 to 2026-10-31" in correction[
        "description"]
    with connect(home, read_only=True) as warehouse:
        invoice = warehouse.query("select invoice_at, status, fees_amount from marts.fct_invoices "
                                  "where invoice_id = ?", [correction["invoice_id"]])[0]
        linked = warehouse.query(
            "select transaction_id, is_late, rated_on_invoice_line_id from marts.fct_invoice_line_events "
            "where invoice_line_id = ? order by transaction_id", [correction["invoice_line_id"]])
        still_on_october = warehouse.query(
            "select count(*) from marts.fct_invoice_line_events where invoice_line_id = ?",
            [october["invoice_line_id"]])[0][0]
        outcomes = dict(((o, r), n) for o, r, n in warehouse.query(
            "select outcome, reason, event_count from marts.fct_event_reconciliation"))
    assert invoice[:2] == (datetime(2026, 11, 30, 23), "draft")
    assert sorted(t for t, _, _ in linked) == sorted(f"late-oct-{n}" for n in range(100))
    assert {(late, rated) for _, late, rated in linked} == {(True, october["invoice_line_id"])}
    assert still_on_october == october["event_count"]
    assert outcomes[("pending", "late_event_correction")] == 100


def test_a_negative_correction_is_a_credit_note(home):
    # September's input tokens: 1,500 (2.00 flat + 0.50). A late -600 leaves 900: under the free tier.
    [september] = lines(home, "status = 'finalized' and metric_code = 'input_tokens' "
                              "and service_period_start = date '2026-09-01' and invoice_id in "
                              "(select invoice_id from marts.fct_invoices where customer_id = 'cus_a')")
    assert september["amount"] == Decimal("2.50")
    loaded = arrive(home, "late-september.jsonl", [
        {"transaction_id": "late-sep-1", "external_subscription_id": "sub_a", "code": "input_tokens",
         "timestamp": "2026-09-20T10:00:00Z", "properties": {"tokens": -600}}])
    pipeline.build(home, LATER)
    assert lines(home, "corrected_invoice_line_id = ?", [september["invoice_line_id"]]) == []
    with connect(home, read_only=True) as warehouse:
        notes = warehouse.query(
            "select credit_note_id, reason, amount, issued_at, status from marts.fct_credit_notes "
            "where corrected_invoice_line_id = ?", [september["invoice_line_id"]])
        linked = warehouse.query("select transaction_id, billed_on from marts.fct_invoice_line_events "
                                 "where is_late")
    assert [(reason, amount, issued_at, status) for _, reason, amount, issued_at, status in notes] == [
        ("late_event_correction", Decimal("2.50"), loaded, "closed")]
    assert linked == [("late-sep-1", "credit_note")]


def test_a_finalised_correction_keeps_its_events_and_the_next_late_events_open_a_new_one(home):
    october = finalised_october_api_line(home)
    arrive(home, "late-1.jsonl", api_requests(10, "2026-10-20", "first"))
    # Past cus_a's 30 November invoice: it is finalised with the correction on it.
    pipeline.build(home, datetime(2026, 12, 2))
    done = pipeline.finalise(home)
    assert len(done.invoices) == 2
    [first] = lines(home, "corrected_invoice_line_id = ?", [october["invoice_line_id"]])
    assert (first["status"], first["amount"]) == ("finalized", Decimal("0.15"))

    # Rebuilding sees nothing new to correct, a full refresh included.
    pipeline.build(home, datetime(2026, 12, 2), full_refresh=True)
    assert lines(home, "corrected_invoice_line_id = ?", [october["invoice_line_id"]]) == [first]

    arrive(home, "late-2.jsonl", api_requests(20, "2026-10-21", "second"))
    pipeline.build(home, datetime(2026, 12, 2))
    corrections = {row["status"]: row for row in lines(home, "corrected_invoice_line_id = ?",
                                                       [october["invoice_line_id"]])}
    assert corrections["finalized"] == first
    assert (corrections["draft"]["quantity"], corrections["draft"]["amount"]) == (Decimal(20), Decimal("0.30"))
    with connect(home, read_only=True) as warehouse:
        by_line = dict(warehouse.query(
            "select invoice_line_id, count(*) from marts.fct_invoice_line_events where is_late group by 1"))
        totals = warehouse.query("select count(*) from marts.fct_invoices where status = 'finalized'")[0][0]
    assert by_line == {first["invoice_line_id"]: 10, corrections["draft"]["invoice_line_id"]: 20}
    assert totals == 7


def test_events_loaded_beyond_the_look_back_are_excluded_with_that_reason(home, tmp_path):
    with connect(home, read_only=True) as warehouse:
        billed = [row[0] for row in warehouse.query("select event_at from marts.fct_invoice_line_events")]
    fresh = make_home(tmp_path / "look-back")
    entity = fresh.catalog_dir / "billing_entity.yml"
    entity.write_text(entity.read_text().rstrip("\n") + "\n  late_events_lookback_days: 60\n")
    shutil.copy(FIXTURES / "small_events" / "events.jsonl", fresh.landing_dir)
    run_all(fresh, loaded_at=LOADED_AT)
    with connect(fresh, read_only=True) as warehouse:
        loaded_at = warehouse.query("select max(loaded_at) from raw.events")[0][0]
        outcomes = dict(((o, r), n) for o, r, n in warehouse.query(
            "select outcome, reason, event_count from marts.fct_event_reconciliation"))
    too_old = sum(1 for event_at in billed if event_at < loaded_at - timedelta(days=60))
    assert 0 < too_old < len(billed)
    assert outcomes[("excluded", "beyond_lookback")] == too_old


def test_a_late_event_behind_a_finalised_progressive_invoice_is_billed_at_period_end(tmp_path):
    """p_twice's 60 calls on 2 November were invoiced early (60.00, finalised). One more call of
    2 November arrives late: the progressive invoice stays as issued, the 1 December draft bills
    61 calls and deducts the 60.00 the ledger holds (not a recomputed 61.00)."""
    settings = make_home(tmp_path, FIXTURES / "progressive_billing" / "catalog")
    shutil.copy(FIXTURES / "progressive_billing" / "events.jsonl", settings.landing_dir)
    as_of = datetime(2026, 11, 20)
    run_all(settings, as_of=as_of, loaded_at=as_of)
    assert pipeline.finalise(settings).invoices
    arrive(settings, "late.jsonl", [{"transaction_id": "late-nov", "external_subscription_id": "s_twice",
                                     "code": "api_calls", "timestamp": "2026-11-02T10:00:00Z", "properties": {}}])
    pipeline.build(settings, as_of)  # the invoice identity holds: the build's tests pass
    with connect(settings, read_only=True) as warehouse:
        early = warehouse.query("select status, fees_amount from marts.fct_invoices where customer_id = 'p_twice' "
                                "and invoice_kind = 'progressive_billing' and invoice_at > '2026-11-01'")
        draft = warehouse.query("select fees_amount, progressive_billing_credit_amount, total_amount "
                                "from marts.fct_invoices where customer_id = 'p_twice' and status = 'draft'")
    assert early == [("finalized", Decimal("60.00"))]
    assert draft == [(Decimal("71.00"), Decimal("60.00"), Decimal("12.10"))]


def test_a_late_event_credit_note_is_frozen_and_the_next_late_events_open_another(home):
    """September's 1,500 input tokens billed 2.50 (2.00 flat + 0.50). -200 arrive late: 1,300
    tokens cost 2.30, a 0.20 credit note, frozen by the next finalisation with a number. Then
    -400 more: 900 tokens are free, so 2.30 more is credited by a second credit note; the first
    keeps its id, number and amount, and each keeps the events it credited."""
    [september] = lines(home, "status = 'finalized' and metric_code = 'input_tokens' "
                              "and service_period_start = date '2026-09-01' and invoice_id in "
                              "(select invoice_id from marts.fct_invoices where customer_id = 'cus_a')")

    def late_tokens(name: str, tokens: int, loaded_at: datetime) -> None:
        arrive(home, f"{name}.jsonl", [{"transaction_id": name, "external_subscription_id": "sub_a",
                                        "code": "input_tokens", "timestamp": "2026-09-20T10:00:00Z",
                                        "properties": {"tokens": tokens}}], loaded_at=loaded_at)

    def credit_notes() -> list[tuple]:
        with connect(home, read_only=True) as warehouse:
            return warehouse.query(
                "select credit_note_id, credit_note_number, status, amount from marts.fct_credit_notes "
                "where corrected_invoice_line_id = ? order by issued_at", [september["invoice_line_id"]])

    # Loaded after the fixture's events, so after its cut-off.
    loaded = LOADED_AT
    late_tokens("late-1", -200, loaded + timedelta(hours=1))
    pipeline.build(home, LATER)
    pipeline.finalise(home)
    [(first_id, number, status, amount)] = credit_notes()
    assert (number, status, amount) == ("TEST-CN-202611-0001", "finalized", Decimal("0.20"))

    late_tokens("late-2", -400, loaded + timedelta(days=1))
    pipeline.build(home, LATER)
    first, second = credit_notes()
    assert first == (first_id, "TEST-CN-202611-0001", "finalized", Decimal("0.20"))
    assert (second[2], second[3]) == ("closed", Decimal("2.30")) and second[0] != first_id
    with connect(home, read_only=True) as warehouse:
        billed = dict(warehouse.query("select transaction_id, invoice_line_id from marts.fct_invoice_line_events "
                                      "where is_late and billed_on = 'credit_note'"))
    assert billed == {"late-1": first_id, "late-2": second[0]}
