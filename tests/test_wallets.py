"""Prepaid credits (wallets) by hand (tests/fixtures/wallets), billed as of 2026-11-20.

Plan Usage: 10.00 a month in arrears, calls 1.00, tokens 0.01; GST 10% on everything. Credits
are spent after tax, on invoices issued while a wallet is open, in priority order.

| customer | wallets | by hand |
|---|---|---|
| w_runs_out | 30 credits at 1.00 granted on 1 Sep | 1 Oct: 15.00 + 1.50 = 16.50, all paid by credits (13.50 left). 1 Nov: 18.00 + 1.80 = 19.80, credits pay the 13.50 left, 6.30 due. 1 Dec (draft): 13.20 due |
| w_expired | `expired_promo`: 50 credits at 0.50 (25.00), expires 15 Oct; `expired_main` (priority 2): 20 credits purchased on 20 Oct | 1 Oct: 11.00 paid by the promo, 14.00 (28 credits) expire at the end of 15 Oct. 20 Oct: a purchase invoice of 20.00, no tax. 1 Nov: 11.00 paid by `expired_main` (9.00 left). 1 Dec (draft): 9.00 pending, 2.00 due; no usage yet, so no ongoing usage: ongoing balance 9.00 |
| w_threshold | `threshold_prepaid`: 20 credits purchased on 1 Oct; when the ongoing balance (balance less the usage not yet invoiced, with its tax) is at or under 14.5 credits, 25 more are purchased | 5 calls on 3 Oct: at the 4 Oct midnight the ongoing balance is 20 - 5.50 = 14.50 (at the threshold): one top-up, an invoice of 25.00 (balance 45). 17 more calls on 10 Oct: 45 - 24.20 = 20.80 at 11 Oct, nothing. 1 Nov: the invoice asks 10.00 + 22.00 + 3.20 tax = 35.20 of the wallet; checked before it draws, 45 - 35.20 = 9.80: one top-up at that instant (70), the invoice is paid in full (34.80 left). 20 calls on 5 Nov: at 6 Nov 34.80 - 22.00 = 12.80, one top-up (59.80). The December draft would take 33.00; its usage, 20.00 + 2.00 tax, is the ongoing usage: ongoing balance 37.80 |
| w_priority | `priority_tokens` (5 credits, tokens only, priority 1); `priority_general` (100 credits, plus 10 granted at every month's start) | 1 Nov: 10.00 + 3 calls 3.00 + 700 tokens 7.00 = 20.00 + 2.00 tax = 22.00; the token wallet pays 5.00 of the tokens line (7.70 with its tax), the general wallet the other 17.00 (100 + the 1 Nov top-up of 10 = 110 credited). Balance 93.00; the December draft would take 11.00 (pending) but has no usage yet: ongoing balance 93.00 |
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest

from orchestration import pipeline
from orchestration.warehouse import connect
from tests.conftest import FIXTURES, catalog_error_after_edit, make_home, run_all

CASE = FIXTURES / "wallets"
AS_OF = datetime(2026, 11, 20)


@pytest.fixture(scope="module")
def billed_home(tmp_path_factory):
    """The fixture billed through the warehouse: its settings."""
    home_dir = tmp_path_factory.mktemp("wallets")
    settings = make_home(home_dir, CASE / "catalog")
    for source in (CASE / "events.jsonl",):
        (settings.landing_dir / source.name).write_bytes(source.read_bytes())
    run_all(settings, as_of=AS_OF)
    return settings


@pytest.fixture(scope="module")
def billed(billed_home):
    """Its invoices and wallet marts."""
    with connect(billed_home, read_only=True) as warehouse:
        from orchestration.exports import fetch_invoices

        invoices = fetch_invoices(warehouse)
        wallets = {row[0]: dict(zip(WALLET_COLUMNS, row)) for row in warehouse.query(
            f"select {', '.join(WALLET_COLUMNS)} from marts.fct_wallets")}
        history = warehouse.query(
            "select wallet_id, transaction_type, status, amount, credits, balance_after_amount "
            "from marts.fct_wallet_transactions order by wallet_id, transaction_at, balance_after_amount desc")
    return invoices, wallets, history


WALLET_COLUMNS = ["wallet_id", "status", "credited_amount", "spent_amount", "expired_amount", "balance_amount",
                  "balance_credits", "pending_spending_amount", "ongoing_usage_amount", "ongoing_balance_amount"]


def _invoices(billed, customer: str) -> list[tuple]:
    invoices, _, _ = billed
    return [(i["invoice_at"][:10], i["status"], i["fees_amount"], i["tax_amount"], i["subtotal_including_taxes"],
             i["prepaid_credit_amount"], i["total_amount"])
            for i in invoices if i["customer_id"] == customer]


def test_a_wallet_that_runs_out_mid_invoice(billed):
    assert _invoices(billed, "w_runs_out") == [
        ("2026-10-01", "closed", "15.00", "1.50", "16.50", "16.50", "0.00"),
        ("2026-11-01", "closed", "18.00", "1.80", "19.80", "13.50", "6.30"),
        ("2026-12-01", "draft", "12.00", "1.20", "13.20", "0.00", "13.20"),
    ]
    _, wallets, history = billed
    assert [(t, s, str(a), str(b)) for w, t, s, a, _, b in history if w == "runs_out_prepaid"] == [
        ("granted", "settled", "30.000", "30.000"), ("spent", "settled", "-16.500", "13.500"),
        ("spent", "settled", "-13.500", "0.000")]
    assert wallets["runs_out_prepaid"]["balance_amount"] == 0


def test_an_expired_wallet_and_a_purchase(billed):
    assert _invoices(billed, "w_expired") == [
        ("2026-10-01", "closed", "10.00", "1.00", "11.00", "11.00", "0.00"),
        ("2026-10-20", "closed", "20.00", "0.00", "20.00", "0.00", "20.00"),  # the purchase: no tax, no credits
        ("2026-11-01", "closed", "10.00", "1.00", "11.00", "11.00", "0.00"),
        ("2026-12-01", "draft", "10.00", "1.00", "11.00", "9.00", "2.00"),
    ]
    invoices, wallets, history = billed
    [purchase] = [i for i in invoices if i["customer_id"] == "w_expired" and i["invoice_at"].startswith("2026-10-20")]
    assert [(line["fee_kind"], line["quantity"], line["amount"]) for line in purchase["lines"]] == [
        ("credit_purchase", "20", "20.00")]
    promo = wallets["expired_promo"]
    assert (promo["status"], promo["credited_amount"], promo["spent_amount"], promo["expired_amount"],
            promo["balance_amount"]) == ("expired", Decimal("25.00"), Decimal("11.00"), Decimal("14.00"), 0)
    assert [(t, str(c)) for w, t, _, _, c, _ in history if w == "expired_promo"] == [
        ("granted", "50.000000000000"), ("spent", "-22.000000000000"), ("expired", "-28.000000000000")]
    main = wallets["expired_main"]
    assert (main["balance_amount"], main["pending_spending_amount"], main["ongoing_usage_amount"],
            main["ongoing_balance_amount"]) == (Decimal("9.00"), Decimal("9.00"), 0, Decimal("9.00"))


def test_wallets_pay_in_priority_order_within_their_limits(billed):
    assert _invoices(billed, "w_priority") == [
        ("2026-11-01", "closed", "20.00", "2.00", "22.00", "22.00", "0.00"),
        ("2026-12-01", "draft", "10.00", "1.00", "11.00", "11.00", "0.00"),
    ]
    invoices, wallets, _ = billed
    november = next(i for i in invoices if i["customer_id"] == "w_priority" and i["status"] == "closed")
    assert [(c["wallet_id"], c["amount"]) for c in november["credits"]] == [
        ("priority_tokens", "5.00"), ("priority_general", "17.00")]
    general = wallets["priority_general"]
    assert (general["credited_amount"], general["spent_amount"], general["balance_amount"],
            general["pending_spending_amount"], general["ongoing_usage_amount"], general["ongoing_balance_amount"]) == (
        Decimal("110.00"), Decimal("17.00"), Decimal("93.00"), Decimal("11.00"), 0, Decimal("93.00"))


def test_a_threshold_top_up_keeps_the_ongoing_balance_above_its_threshold(billed):
    invoices, wallets, history = billed
    assert sorted(_invoices(billed, "w_threshold")) == [
        ("2026-10-01", "closed", "20.00", "0.00", "20.00", "0.00", "20.00"),  # the first purchase
        ("2026-10-04", "closed", "25.00", "0.00", "25.00", "0.00", "25.00"),  # at the threshold: a top-up
        ("2026-11-01", "closed", "25.00", "0.00", "25.00", "0.00", "25.00"),  # before the invoice draws
        ("2026-11-01", "closed", "32.00", "3.20", "35.20", "35.20", "0.00"),
        ("2026-11-06", "closed", "25.00", "0.00", "25.00", "0.00", "25.00"),
        ("2026-12-01", "draft", "30.00", "3.00", "33.00", "33.00", "0.00"),
    ]
    assert [(t, str(a), str(b)) for w, t, _, a, _, b in history if w == "threshold_prepaid"] == [
        ("purchased", "20.000", "20.000"), ("purchased", "25.000", "45.000"), ("purchased", "25.000", "70.000"),
        ("spent", "-35.200", "34.800"), ("purchased", "25.000", "59.800"), ("spent", "-33.000", "59.800")]
    wallet = wallets["threshold_prepaid"]
    assert (wallet["balance_amount"], wallet["pending_spending_amount"], wallet["ongoing_usage_amount"],
            wallet["ongoing_balance_amount"]) == (Decimal("59.80"), Decimal("33.00"), Decimal("22.00"), Decimal("37.80"))


def test_a_threshold_top_up_records_the_balance_that_triggered_it(billed_home):
    with connect(billed_home, read_only=True) as warehouse:
        top_ups = warehouse.query(
            "select credited_at, top_up_count, ongoing_balance_before_amount, amount "
            "from intermediate.int_wallet_threshold_top_ups order by credited_at")
    assert [(at.isoformat(), n, str(before.normalize()), str(amount.normalize())) for at, n, before, amount in top_ups] == [
        ("2026-10-04T00:00:00", 1, "14.5", "25"), ("2026-11-01T00:00:00", 1, "9.8", "25"),
        ("2026-11-06T00:00:00", 1, "12.8", "25")]


def test_every_wallet_history_sums_to_its_balance(billed):
    _, wallets, history = billed
    for wallet_id, wallet in wallets.items():
        settled = [a for w, _, s, a, _, _ in history if w == wallet_id and s == "settled"]
        assert sum(settled, Decimal(0)) == wallet["balance_amount"], wallet_id


@pytest.mark.parametrize(("old", "new", "where", "message"), [
    ("customer: w_runs_out", "customer: w_nobody", "wallets[0] (code 'runs_out_prepaid') > customer",
     "unknown customer 'w_nobody'"),
    ('rate_amount: "0.50"', 'rate_amount: "0.3333"', "wallets[1] (code 'expired_promo') > transactions[0] > "
     "granted_credits", "50 credits x 0.3333 is not a whole amount of USD: credits must be worth whole minor units"),
    ('{at: "2026-10-20", purchased_credits: "20"}', '{at: "2026-10-19", purchased_credits: "20"}',
     "wallets[2] (code 'expired_main') > transactions[0] > at",
     "outside the wallet's life (started_at to expiration_date)"),
    ("applies_to: {metric_codes: [tokens]}", "applies_to: {metric_codes: [words]}",
     "wallets[3] (code 'priority_tokens') > applies_to > metric_codes[0]", "unknown billable metric 'words'"),
    ('{at: "2026-10-01", granted_credits: "5"}', '{at: "2026-10-01", granted_credits: "5", purchased_credits: "5"}',
     "wallets[3] (code 'priority_tokens') > transactions[0] > granted_credits",
     "credits are granted or purchased (one of the two)"),
    ('{threshold_credits: "14.5", purchased_credits: "25"}', '{threshold_credits: "14.5", purchased_credits: "0"}',
     "wallets[5] (code 'threshold_prepaid') > top_ups[0] > purchased_credits",
     "a threshold top-up must add credits (above 0)"),
    ('{threshold_credits: "14.5", purchased_credits: "25"}',
     '{threshold_credits: "14.5", interval: monthly, purchased_credits: "25"}', "wallets[5] (code 'threshold_prepaid') > "
     "top_ups[0] > interval", "a top-up happens on an interval or under a threshold_credits (one of the two)"),
    ('{threshold_credits: "14.5", purchased_credits: "25"}',
     '{threshold_credits: "14.5", purchased_credits: "25"}\n      - {threshold_credits: "5", granted_credits: "5"}',
     "wallets[5] (code 'threshold_prepaid') > top_ups[1] > threshold_credits", "a wallet has at most one threshold top-up"),
    ('{threshold_credits: "14.5", purchased_credits: "25"}', '{threshold_credits: "14.555", purchased_credits: "25"}',
     "wallets[5] (code 'threshold_prepaid') > top_ups[0] > threshold_credits",
     "14.555 credits x 1.00 is not a whole amount of USD: credits must be worth whole minor units"),
    ('{threshold_credits: "14.5", purchased_credits: "25"}', '{threshold_credits: "1E+30", purchased_credits: "25"}',
     "wallets[5] (code 'threshold_prepaid') > top_ups[0] > threshold_credits",
     "'1E+30' is too large (at most 999,999,999,999,999)"),
    ('{interval: monthly, granted_credits: "10"}', '{threshold_credits: "10", granted_credits: "10"}',
     "wallets[4] (code 'priority_general') > priority", "a wallet with a threshold top-up pays first: its priority must "
     "be below that of the customer's other wallets ('priority_tokens' has 1)"),
])
def test_invalid_wallets_are_located(tmp_path, old, new, where, message):
    error = catalog_error_after_edit(CASE / "catalog", tmp_path, old, new, file="wallets.yml")
    assert str(error) == f"{error.file}: {where}: {message}"


def test_finalised_invoices_keep_what_they_took_from_a_wallet(billed_home, tmp_path):
    """w_runs_out's 1 October (16.50) and 1 November (13.50 of 19.80) invoices are finalised.
    Granting 40 credits instead of 30 afterwards does not re-spend them: the issued invoices keep
    what the ledger says they took, and the 1 December draft (13.20) finds 40 - 16.50 - 13.50 =
    10.00 (a recomputation of November would have taken 19.80, leaving 3.70). Voiding the
    November invoice gives its 13.50 back: the draft is paid in full."""
    import shutil

    from orchestration.ledger import void
    from orchestration.settings import get_settings

    shutil.copytree(billed_home.home, tmp_path / "home")
    settings = get_settings(tmp_path / "home")
    assert pipeline.finalise(settings).invoices
    wallets = settings.catalog_dir / "wallets.yml"
    wallets.write_text(wallets.read_text().replace('granted_credits: "30"', 'granted_credits: "40"'))
    run_all(settings, as_of=AS_OF)

    def amounts() -> list[tuple]:
        with connect(settings, read_only=True) as warehouse:
            return warehouse.query("select invoice_number, status, prepaid_credit_amount, total_amount "
                                   "from marts.fct_invoices where customer_id = 'w_runs_out' order by invoice_at")

    october, november, december = amounts()
    assert october[1:] == ("finalized", Decimal("16.50"), Decimal("0.00"))
    assert november[1:] == ("finalized", Decimal("13.50"), Decimal("6.30"))
    assert december[1:] == ("draft", Decimal("10.00"), Decimal("3.20"))

    void(settings, november[0], "billed by mistake")
    pipeline.rebuild_from_ledger(settings)
    assert amounts()[2][1:] == ("draft", Decimal("13.20"), Decimal("0.00"))
