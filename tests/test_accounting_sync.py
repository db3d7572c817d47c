"""Accounting sync to Xero and NetSuite, against a fake Xero (tests/fakes/xero.py) that
validates every request and response against Xero's OpenAPI contract and keeps state, and a
fake NetSuite (tests/fakes/netsuite.py) following its REST record API.

The books: tests/fixtures/discounts_taxes finalised as of 20 November, a manual credit note of
10.00 (+ 0.84 tax) on c_recurring's November invoice, then finalised again as of 2 December, when
c_recurring's December invoice (21.68) drew the whole 10.84 of the note (10.84 due). US lines bear
state 6.25% + city 2.125% tax; c_fr pays TVA 20% in EUR; c_ca HST 13% in CAD. c_exempt's
November invoice is voided after finalisation.

Each test scripts its faults; afterwards every invoice must exist in Xero exactly once, with
Xero's Total and TotalTax equal to the invoice's and, after the credit notes' allocations, its
AmountDue equal to what the customer owes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchestration import pipeline
from orchestration.accounting import sync
from orchestration.accounting.http import CredentialsError, RetryPolicy
from orchestration.accounting.sync import SyncEngine
from orchestration.cli import app
from orchestration.ledger import FinalisationError, issue_credit_note, record_payment, void
from orchestration.settings import get_settings
from orchestration.warehouse import connect
from tests.conftest import FIXTURES, make_home, run_all
from tests.fakes.netsuite import FakeNetSuite
from tests.fakes.faults import Fault
from tests.fakes.xero import CONTRACT, CONTRACT_SHA256, FakeXero, load_contract

CASE = FIXTURES / "discounts_taxes"
NOW = datetime(2026, 12, 2, 10, 0)

MAPPINGS = """
payment_terms_days: 14
xero:
  items:
    fee:subscription: {code: SUBSCRIPTION, name: Subscriptions, account_code: "200"}
    default: {code: USAGE, name: Usage, account_code: "210"}
  tax_types:
    us_city+us_state: TAX004
    vat_fr: TAX001
    vat_fr_reduced: TAX006
    ca_hst: TAX005
    ca_gst+ca_qst: TAX007
    none: NONE
  prepaid_credits: {code: PREPAID, name: Prepaid credits applied, account_code: "820"}
  payments_account: "090"
netsuite:
  subsidiary_id: 1
  items:
    fee:subscription: {id: "101"}
    default: {id: "102"}
  tax_types:
    us_city+us_state: "11"
    vat_fr: "12"
    vat_fr_reduced: "13"
    ca_gst+ca_qst: "14"
    none: "-7"
  prepaid_credits: {id: "190"}
"""
TAX_RATES = {"TAX004": Decimal("8.375"), "TAX001": Decimal("20"), "TAX005": Decimal("13"), "TAX006": Decimal("5.5"),
             "TAX007": Decimal("14.975"), "NONE": Decimal(0)}


@pytest.fixture(scope="session")
def xero_contract():
    return load_contract()


@pytest.fixture(scope="module")
def books_home(tmp_path_factory) -> Path:
    settings = make_home(tmp_path_factory.mktemp("xero"), CASE / "catalog")
    shutil.copy(CASE / "events.jsonl", settings.landing_dir)
    (settings.catalog_dir / "accounting.yml").write_text(MAPPINGS)
    run_all(settings, as_of=datetime(2026, 11, 20))
    pipeline.finalise(settings, accept_usage_cliffs=True)
    with connect(settings, read_only=True) as warehouse:
        [[november, exempt]] = warehouse.query(
            "select max(case when customer_id = 'c_recurring' then invoice_number end), "
            "max(case when customer_id = 'c_exempt' then invoice_number end) from ledger.invoices")
        [[base]] = warehouse.query("select invoice_line_id from ledger.invoice_lines where metric_code is null "
                                   "and invoice_id = (select invoice_id from ledger.invoices where invoice_number = ?)",
                                   [november])
    issue_credit_note(settings, november, reason="order_change", lines={base: Decimal("10.00")},
                      now=datetime(2026, 11, 20, 9, 30))
    void(settings, exempt, "issued to the wrong entity", now=datetime(2026, 11, 20, 9, 45))
    run_all(settings, as_of=datetime(2026, 12, 2))
    pipeline.finalise(settings, accept_usage_cliffs=True)
    pipeline.rebuild_from_ledger(settings)
    # c_two_coupons paid 20.00 of its November invoice (46.13).
    with connect(settings, read_only=True) as warehouse:
        [[two_coupons]] = warehouse.query("select invoice_number from ledger.invoices where customer_id = 'c_two_coupons' "
                                          "and invoice_at = timestamp '2026-11-01 00:00:00'")
    record_payment(settings, two_coupons, Decimal("20.00"), paid_on=date(2026, 11, 25), reference="WIRE-778",
                   now=datetime(2026, 11, 25, 12))
    return settings.home


@pytest.fixture
def home(books_home: Path, tmp_path: Path):
    copy = tmp_path / "home"
    shutil.copytree(books_home, copy)
    return get_settings(copy)


@pytest.fixture
def xero(xero_contract):
    fake = FakeXero(xero_contract, currencies=("USD", "EUR", "CAD", "JPY"), tax_rates=dict(TAX_RATES)).start()
    yield fake
    fake.stop()
    assert fake.violations == [], "requests or responses broke Xero's contract"


class Clock:
    def __init__(self, start: datetime = NOW):
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def run_sync(home, xero, *, clock=None, waits=None, retry_failed_now=False, policy=None):
    waits = [] if waits is None else waits
    return sync(home, "xero", now=clock or Clock(), env=xero.env(), sleep=waits.append,
                policy=policy or RetryPolicy(timeout=1.0), retry_failed_now=retry_failed_now)


def issued(home) -> dict[str, dict]:
    """Finalised and voided invoices, with `paid`: the payments recorded against each."""
    columns = ["invoice_number", "status", "subtotal_including_taxes", "tax_amount", "prepaid_credit_amount",
               "total_amount", "customer_id", "currency"]
    with connect(home, read_only=True) as warehouse:
        rows = warehouse.query(f"select {', '.join(columns)} from marts.fct_invoices "
                               "where status in ('finalized', 'voided') order by invoice_number")
        paid = dict(warehouse.query("select invoices.invoice_number, sum(payments.amount) from ledger.payments as "
                                    "payments inner join ledger.invoices as invoices on payments.invoice_id = "
                                    "invoices.invoice_id group by 1"))
    return {row[0]: {**dict(zip(columns, row)), "paid": paid.get(row[0], Decimal(0))} for row in rows}


def assert_each_invoice_once_with_its_totals(home, xero):
    invoices = issued(home)
    numbers = [i["InvoiceNumber"] for i in xero.invoices.values()]
    assert sorted(numbers) == sorted(invoices), "every finalised invoice exists exactly once"
    for number, invoice in invoices.items():
        remote = xero.invoice_by_number(number)
        assert remote["Total"] == invoice["subtotal_including_taxes"] - invoice["prepaid_credit_amount"], number
        assert remote["TotalTax"] == invoice["tax_amount"], number
        if invoice["status"] == "voided":
            assert remote["Status"] == "VOIDED", number
        else:
            assert remote["AmountDue"] == invoice["total_amount"] - invoice["paid"], number
            assert remote["AmountPaid"] == invoice["paid"], number
            assert remote["CurrencyCode"] == invoice["currency"]
            contact = xero.contacts[remote["Contact"]["ContactID"]]
            assert contact["ContactNumber"] == invoice["customer_id"]


def ledger_rows(home) -> list[tuple]:
    with connect(home, read_only=True) as warehouse:
        return warehouse.query("select object_type, local_number, status, error_kind, attempts, last_error "
                               "from accounting.sync_ledger order by object_type, local_number")


def writes(xero) -> list[tuple[str, str, int]]:
    return [call for call in xero.calls if call[0] in ("PUT", "POST")]


def test_the_contract_is_xeros_unchanged():
    assert hashlib.sha256(CONTRACT.read_bytes()).hexdigest() == CONTRACT_SHA256


def test_everything_reaches_xero_once_with_the_right_totals(home, xero):
    report = run_sync(home, xero)
    assert report.ok, report.failures
    invoices = issued(home)
    assert len(invoices) == 13 and sum(i["status"] == "voided" for i in invoices.values()) == 1
    assert report.counts[("invoice", "created")] == 13
    assert report.counts[("credit_note", "created")] == 1
    assert report.counts[("allocation", "created")] == 1
    assert report.counts[("invoice_void", "created")] == 1
    assert report.counts[("payment", "created")] == 1
    assert_each_invoice_once_with_its_totals(home, xero)

    # c_recurring's December invoice: 21.68, of which the credit note paid 10.84.
    [note] = xero.credit_notes.values()
    assert (note["Total"], note["TotalTax"], note["RemainingCredit"], note["Status"]) == (
        Decimal("10.84"), Decimal("0.84"), Decimal("0"), "PAID")
    december = xero.invoices[note["Allocations"][0]["Invoice"]["InvoiceID"]]
    assert (december["Total"], december["AmountCredited"], december["AmountDue"]) == (
        Decimal("21.68"), Decimal("10.84"), Decimal("10.84"))
    # Lines post to the mapped items, accounts and tax types; coupons are line discounts.
    two_coupons = next(i for n, i in xero.invoices.items()
                       if xero.contacts[i["Contact"]["ContactID"]]["ContactNumber"] == "c_two_coupons"
                       and i["Date"] == "2026-11-01")
    assert {(line["ItemCode"], line["AccountCode"], line["TaxType"]) for line in two_coupons["LineItems"]} == {
        ("SUBSCRIPTION", "200", "TAX004"), ("USAGE", "210", "TAX004")}
    assert sum(line.get("DiscountAmount", 0) for line in two_coupons["LineItems"]) == Decimal("9.73")
    assert (two_coupons["SubTotal"], two_coupons["TotalTax"], two_coupons["Total"]) == (
        Decimal("42.57"), Decimal("3.56"), Decimal("46.13"))
    assert two_coupons["DueDate"] == "2026-11-15"
    # Its recorded payment went into the bank account, with its reference.
    [payment] = xero.payments.values()
    assert (payment["Amount"], payment["Account"]["Code"], payment["Invoice"]["InvoiceID"]) == (
        Decimal("20.00"), "090", two_coupons["InvoiceID"])
    assert payment["Reference"].startswith("WIRE-778 [")
    assert (two_coupons["AmountPaid"], two_coupons["AmountDue"]) == (Decimal("20.00"), Decimal("26.13"))
    # The euro customer is a contact of its own, invoiced in EUR at 20%.
    [france] = [c for c in xero.contacts.values() if c["ContactNumber"] == "c_fr"]
    assert france["Name"] == "Client France"

    # A second run sends nothing: every object is in the ledger as synced.
    before = len(writes(xero))
    again = run_sync(home, xero)
    assert again.ok and len(writes(xero)) == before
    assert set(again.counts) == {(t, "unchanged") for t, _ in again.counts}
    assert {row[2] for row in ledger_rows(home)} == {"synced"}


def test_rate_limits_outages_an_expired_token_and_a_lost_answer(home, xero):
    xero.script(
        Fault("rate_limit", "PUT", "/Contacts", retry_after=3),
        Fault("unavailable", "PUT", "/Items", times=2),
        Fault("expired_token", "PUT", "/Invoices"),
        # Xero saves the credit note but the answer comes after the client gave up (1 s).
        Fault("timeout_after_save", "PUT", "/CreditNotes", delay=2.0),
    )
    waits: list[float] = []
    report = run_sync(home, xero, waits=waits)
    assert report.ok, report.failures
    assert waits == [3.0, 0.5, 1.0]  # Retry-After, then the back-off after each 503
    assert xero.tokens_issued == 2  # the first, and one after the 401
    # The credit note was looked up after the timeout and adopted, never created twice.
    assert report.counts[("credit_note", "adopted")] == 1
    assert len(xero.credit_notes) == 1
    assert [c for c in xero.calls if c[0] == "GET" and c[1] == "/CreditNotes"]
    assert_each_invoice_once_with_its_totals(home, xero)
    with connect(home, read_only=True) as warehouse:
        [[attempts]] = warehouse.query("select attempts from accounting.sync_ledger where object_type = 'credit_note'")
        outcomes = warehouse.query("select operation, outcome from accounting.sync_attempts "
                                   "where object_type = 'credit_note' order by attempted_at, operation")
    assert attempts == 1 and ("lookup", "found") in outcomes


def test_a_rejected_element_fails_alone_and_is_sent_by_a_later_run(home, xero):
    invoices = issued(home)
    refused = sorted(invoices)[3]
    xero.script(Fault("reject_element", "PUT", "/Invoices", match=refused,
                      message="Invoice not of valid status for creation"))
    clock = Clock()
    report = run_sync(home, xero, clock=clock)
    assert not report.ok
    [failure] = report.failures
    assert (failure.object_type, failure.local_number, failure.error_kind) == ("invoice", refused, "permanent")
    assert "Invoice not of valid status for creation" in failure.message
    # The others of its batch are in Xero.
    assert sorted(i["InvoiceNumber"] for i in xero.invoices.values()) == sorted(set(invoices) - {refused})
    [row] = [r for r in ledger_rows(home) if r[1] == refused]
    assert row[2:4] == ("failed", "permanent")

    # The next run does not send the same refused request again...
    before = len(writes(xero))
    again = run_sync(home, xero, clock=clock)
    assert [f.local_number for f in again.failures] == [refused] and len(writes(xero)) == before
    # ...until asked to, once the cause is fixed (here the fault is spent).
    fixed = run_sync(home, xero, clock=clock, retry_failed_now=True)
    assert fixed.ok, fixed.failures
    assert_each_invoice_once_with_its_totals(home, xero)


def test_an_outage_longer_than_a_run_is_retried_by_a_later_run(home, xero):
    xero.script(Fault("unavailable", "PUT", "/Invoices", times=5))
    clock = Clock()
    report = run_sync(home, xero, clock=clock, policy=RetryPolicy(max_attempts=5, timeout=1.0))
    assert {f.error_kind for f in report.failures} == {"transient"}
    assert {f.object_type for f in report.failures} == {"invoice"}
    # Allocations and voids wait for their invoices.
    assert report.counts[("allocation", "blocked")] == 1 and report.counts[("invoice_void", "blocked")] == 1
    assert not xero.invoices
    # Too early: the failed invoices wait for their next attempt time.
    waiting = run_sync(home, xero, clock=clock)
    assert waiting.counts[("invoice", "waiting")] == 13 and not xero.invoices
    clock.now += timedelta(minutes=6)
    later = run_sync(home, xero, clock=clock)
    assert later.ok, later.failures
    assert_each_invoice_once_with_its_totals(home, xero)


def test_a_crash_after_xero_saved_and_a_duplicate_submission_create_nothing_twice(home, xero, monkeypatch):
    # The process dies right after Xero answered the invoices: the ledger still says `sending`.
    original = SyncEngine._synced

    def crash(self, item, outcome, remote, how):
        if item.operation.object_type == "invoice":
            raise KeyboardInterrupt("power cut")
        return original(self, item, outcome, remote, how)

    monkeypatch.setattr(SyncEngine, "_synced", crash)
    with pytest.raises(KeyboardInterrupt):
        run_sync(home, xero)
    monkeypatch.setattr(SyncEngine, "_synced", original)
    assert {row[2] for row in ledger_rows(home) if row[0] == "invoice"} == {"sending"}
    created = len(xero.invoices)
    assert created == 13

    report = run_sync(home, xero)
    assert report.ok, report.failures
    assert report.counts[("invoice", "adopted")] == 13 and len(xero.invoices) == 13

    # A duplicate submission: the sync ledger is lost (restored from an old backup) and the
    # whole run is sent again. The repeated idempotency keys and Xero's unique numbers make
    # every object found, not created again.
    with connect(home) as warehouse:
        warehouse.execute("delete from accounting.sync_ledger")
    duplicate = run_sync(home, xero)
    assert duplicate.ok, duplicate.failures
    assert len(xero.invoices) == 13 and len(xero.credit_notes) == 1 and len(xero.contacts) == 6
    assert_each_invoice_once_with_its_totals(home, xero)


def test_a_missing_mapping_is_a_permanent_error_and_no_request(home, xero):
    (home.catalog_dir / "accounting.yml").write_text(MAPPINGS.replace("    vat_fr: TAX001\n", ""))
    report = run_sync(home, xero)
    failed = {f.local_number: f for f in report.failures}
    france = [n for n, i in issued(home).items() if i["customer_id"] == "c_fr"]
    assert sorted(failed) == sorted(france)
    assert all(f.error_kind == "permanent" and f.http_status is None for f in failed.values())
    assert "no xero tax type for a line taxed vat_fr: add vat_fr (or default) under xero.tax_types" in \
        next(iter(failed.values())).message
    assert not any(i["InvoiceNumber"] in failed for i in xero.invoices.values())

    (home.catalog_dir / "accounting.yml").write_text(MAPPINGS)
    fixed = run_sync(home, xero)
    assert fixed.ok, fixed.failures
    assert_each_invoice_once_with_its_totals(home, xero)


def test_a_tax_type_xero_does_not_know_is_xeros_validation_error(home, xero):
    (home.catalog_dir / "accounting.yml").write_text(MAPPINGS.replace("ca_gst+ca_qst: TAX007", "ca_gst+ca_qst: TAX999"))
    report = run_sync(home, xero)
    assert report.failures
    assert all(f.error_kind == "permanent" and f.http_status == 200 for f in report.failures)
    assert all("The TaxType code 'TAX999' does not exist" in f.message for f in report.failures)


def test_credentials_never_reach_the_logs_or_the_ledger(home, xero, caplog):
    xero.script(Fault("expired_token", "PUT", "/Invoices"))
    with caplog.at_level(logging.DEBUG):
        assert run_sync(home, xero).ok
    tokens_seen = {h.get("Authorization", "")[7:] for h in xero.seen_headers}
    with connect(home, read_only=True) as warehouse:
        stored = json.dumps([warehouse.query("select * from accounting.sync_ledger"),
                             warehouse.query("select * from accounting.sync_attempts")], default=str)
    for secret in [xero.client_secret, *tokens_seen]:
        assert secret and secret not in caplog.text and secret not in stored


def test_refused_credentials_stop_the_run_before_anything_is_marked(home, xero):
    with pytest.raises(CredentialsError, match="refused the credentials"):
        sync(home, "xero", now=Clock(), env={**xero.env(), "METERLINE_XERO_CLIENT_SECRET": "wrong"})
    assert not xero.calls
    with connect(home, read_only=True) as warehouse:
        assert not warehouse.table_exists("accounting", "sync_ledger") or not warehouse.query(
            "select * from accounting.sync_ledger")


def test_a_renamed_customer_updates_its_contact_and_a_name_clash_is_for_a_person(home, xero):
    assert run_sync(home, xero).ok
    customers = home.catalog_dir / "customers.csv"
    customers.write_text(customers.read_text().replace("Client France", "Client France SAS"))
    pipeline.read_and_load_catalog(home, home.catalog_dir)
    renamed = run_sync(home, xero)
    assert renamed.ok and renamed.counts[("contact", "updated")] == 1
    [france] = [c for c in xero.contacts.values() if c["ContactNumber"] == "c_fr"]
    assert france["Name"] == "Client France SAS" and len(xero.contacts) == 6

    # Renamed to the name of a contact someone made by hand in Xero: Xero refuses it, and it is
    # not mistaken for a repeat. (Two customers of the same name get their ids after it.)
    xero.contacts["hand-made"] = {"ContactID": "0d7c1d9e-9b3c-4a55-8f3e-2c1f4b6a7e10", "Name": "Hand Made Ltd",
                                  "ContactStatus": "ACTIVE"}
    customers.write_text(customers.read_text().replace("Client France SAS", "Hand Made Ltd"))
    pipeline.read_and_load_catalog(home, home.catalog_dir)
    clash = run_sync(home, xero)
    [failure] = clash.failures
    assert (failure.object_type, failure.local_id, failure.error_kind) == ("contact", "c_fr", "permanent")
    assert "must be unique" in failure.message
    # The contact still exists: c_fr's documents stay synced, nothing else is blocked.
    assert not any(outcome == "blocked" for _, outcome in clash.counts)


def test_the_sync_command_dry_run_and_for_real(home, xero, monkeypatch):
    for name, value in xero.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("METERLINE_HOME", str(home.home))
    runner = CliRunner()
    dry = runner.invoke(app, ["sync", "xero", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "would send" in dry.output and "TAX-202611-0001" in dry.output
    assert not xero.calls
    with connect(home, read_only=True) as warehouse:
        assert not warehouse.table_exists("accounting", "sync_ledger")

    real = runner.invoke(app, ["sync", "xero"])
    assert real.exit_code == 0, real.output
    assert "13" in real.output and xero.client_secret not in real.output
    assert_each_invoice_once_with_its_totals(home, xero)

    # A failure makes the command fail, for scripts and schedulers.
    (home.catalog_dir / "accounting.yml").write_text(MAPPINGS.replace("    default: {code: USAGE", "    x: {code: USAGE"))
    broken = runner.invoke(app, ["sync", "xero"])
    assert broken.exit_code != 0 and "accounting.yml" in broken.output


# -- NetSuite -------------------------------------------------------------------------------------


@pytest.fixture
def netsuite():
    fake = FakeNetSuite().start()
    yield fake
    fake.stop()


def run_netsuite(home, netsuite, *, clock=None, waits=None, retry_failed_now=False):
    waits = [] if waits is None else waits
    return sync(home, "netsuite", now=clock or Clock(), env=netsuite.env(), sleep=waits.append,
                policy=RetryPolicy(timeout=1.0), retry_failed_now=retry_failed_now)


def assert_each_netsuite_document_once(home, netsuite):
    invoices = {n: i for n, i in issued(home).items() if i["status"] == "finalized"}
    assert sorted(r["tranId"] for r in netsuite.records["invoice"].values()) == sorted(invoices)
    for number, invoice in invoices.items():
        record = netsuite.by_tran_id("invoice", number)
        assert record["total"] == invoice["subtotal_including_taxes"] - invoice["prepaid_credit_amount"], number
        assert record["taxTotal"] == invoice["tax_amount"], number
        assert record["amountRemaining"] == invoice["total_amount"], number
        customer = next(c for c in netsuite.records["customer"].values() if c["id"] == record["entity"]["id"])
        assert customer["entityId"] == invoice["customer_id"]


def test_netsuite_upserts_each_document_once_by_external_id(home, netsuite):
    report = run_netsuite(home, netsuite)
    assert report.ok, report.failures
    assert report.counts[("customer", "created")] == 6 and report.counts[("invoice", "created")] == 12
    # The invoice voided before it was sent is not sent at all.
    assert report.counts[("void", "not_supported")] == 0
    assert_each_netsuite_document_once(home, netsuite)
    [memo] = netsuite.records["creditMemo"].values()
    assert (memo["total"], memo["unapplied"]) == (Decimal("10.84"), Decimal("0"))
    assert [a["amount"] for a in memo["apply"]["items"]] == [Decimal("10.84")]
    assert set(netsuite.records["customer"]) == {f"meterline-{c}" for c in
                                                 ("c_big_coupon", "c_two_coupons", "c_fr", "c_exempt", "c_ca",
                                                  "c_recurring")}
    before = len(netsuite.calls)
    again = run_netsuite(home, netsuite)
    assert again.ok and len(netsuite.calls) == before

    # NetSuite's record API cannot void: an invoice voided after it was sent is left for a person.
    fr = next(n for n, i in issued(home).items() if i["customer_id"] == "c_fr" and i["status"] == "finalized")
    void(home, fr, "sent to the wrong address", now=datetime(2026, 12, 2, 11))
    pipeline.rebuild_from_ledger(home)
    after_void = run_netsuite(home, netsuite)
    assert after_void.counts[("void", "not_supported")] == 1 and len(netsuite.calls) == before


def test_netsuite_faults_and_a_refused_record(home, netsuite):
    (home.catalog_dir / "accounting.yml").write_text(MAPPINGS.replace('vat_fr: "12"', 'vat_fr: "99"'))
    netsuite.script(
        Fault("rate_limit", "PUT", "/customer", retry_after=2),
        Fault("unavailable", "PUT", "/invoice"),
        Fault("expired_token", "PUT", "/invoice"),
        Fault("timeout_after_save", "PUT", "/invoice", delay=2.0),
    )
    waits: list[float] = []
    report = run_netsuite(home, netsuite, waits=waits)
    assert waits == [2.0, 0.5]
    assert netsuite.tokens_issued == 2
    assert report.counts[("invoice", "adopted")] == 1  # the invoice whose answer was lost
    france = sorted(n for n, i in issued(home).items() if i["customer_id"] == "c_fr")
    assert sorted(f.local_number for f in report.failures) == france
    assert all("invalid taxCode reference key" in f.message and f.http_status == 400 for f in report.failures)

    (home.catalog_dir / "accounting.yml").write_text(MAPPINGS)
    fixed = run_netsuite(home, netsuite, retry_failed_now=True)
    assert fixed.ok, fixed.failures
    assert_each_netsuite_document_once(home, netsuite)


def test_the_dagster_sync_asset_shows_counts_and_failures_and_a_rerun_retries(home, xero, monkeypatch):
    from dagster import DagsterInstance, materialize

    from orchestration.assets.accounting import xero_sync
    from orchestration.resources import MeterlineSettings

    resources = {"meterline": MeterlineSettings(home=str(home.home))}
    with DagsterInstance.ephemeral() as instance:
        # No credentials: skipped, and the metadata says so.
        skipped = materialize([xero_sync], resources=resources, instance=instance)
        [event] = skipped.get_asset_materialization_events()
        assert event.materialization.metadata["configured"].value is False

        for name, value in xero.env().items():
            monkeypatch.setenv(name, value)
        (home.catalog_dir / "accounting.yml").write_text(MAPPINGS.replace("    vat_fr: TAX001\n", ""))
        failed = materialize([xero_sync], resources=resources, instance=instance, raise_on_error=False)
        assert not failed.success
        [failure] = [e for e in failed.all_events if e.event_type_value == "STEP_FAILURE"]
        metadata = failure.step_failure_data.user_failure_data.metadata
        assert metadata["failures"].value == 2 and "no xero tax type for a line taxed vat_fr" in metadata["failed"].value
        assert metadata["invoice/created"].value == 11

        (home.catalog_dir / "accounting.yml").write_text(MAPPINGS)
        retried = materialize([xero_sync], resources=resources, instance=instance)
        [event] = retried.get_asset_materialization_events()
        metadata = event.materialization.metadata
        assert metadata["invoice/created"].value == 2 and metadata["invoice/unchanged"].value == 11
        assert metadata["failures"].value == 0 and metadata["synced_total/invoice/EUR"].value
    assert_each_invoice_once_with_its_totals(home, xero)


def test_recording_payments(home):
    invoices = issued(home)
    two_coupons = next(n for n, i in invoices.items() if i["paid"])
    voided = next(n for n, i in invoices.items() if i["status"] == "voided")
    with pytest.raises(FinalisationError, match="26.14 USD is more than the 26.13 USD still due"):
        record_payment(home, two_coupons, Decimal("26.14"), paid_on=date(2026, 12, 1))
    with pytest.raises(FinalisationError, match="at most 2 decimals"):
        record_payment(home, two_coupons, Decimal("1.001"), paid_on=date(2026, 12, 1))
    with pytest.raises(FinalisationError, match="is voided"):
        record_payment(home, voided, Decimal("1.00"), paid_on=date(2026, 12, 1))
    with pytest.raises(FinalisationError, match="recorded already"):
        record_payment(home, two_coupons, Decimal("20.00"), paid_on=date(2026, 11, 25), reference="WIRE-778")
    with pytest.raises(FinalisationError, match="has recorded payments"):
        void(home, two_coupons, "paid by mistake")
    result = CliRunner().invoke(app, ["payment", two_coupons, "26.13", "--date", "2026-12-01", "--home",
                                      str(home.home)])
    assert result.exit_code == 0, result.output
    assert "0.00 USD still due" in result.output
    assert CliRunner().invoke(app, ["payment", two_coupons, "lots", "--home", str(home.home)]).exit_code == 2
