"""End to end: Meterline's closed invoices of the demo customers equal a hand computation.

The demo data set is generated, billed with the real pipeline (catalog, ingestion, dbt,
export), and then billed a second time here, in plain Python and ``decimal.Decimal``, from
the input files only: the catalog YAML/CSV files, the Parquet day files and the JSON-lines
file. Nothing of the dbt models is reused; the semantics are those of docs/catalog.md,
docs/billable-metrics.md, docs/charge-models.md, docs/money.md and docs/ingestion.md:

* events: a row counts if it has a transaction_id, a code that is a billable metric, a
  subscription or a customer, a timestamp (ISO 8601 or unix seconds) not later than as_of, a
  JSON-object ``properties`` holding the metric's field (every aggregation but ``count``;
  absent or null is ``missing_value``), a number there for ``sum``, ``max``, ``latest`` and
  ``weighted_sum``, and no ``operation_type`` other than ``add`` or ``remove``; numbers keep
  their exact text; re-sends are deduplicated by (subscription or customer, transaction_id),
  the first row in ingestion order winning (files sorted by path, rows in file order);
* billing time: calendar months in the customer's time zone (the billing entity's when the
  customer has none), from the subscription's start; an in-advance plan bills its base fee at
  the start and at each period start, an arrears plan at each period end; a partial first
  month is prorated by whole local days; usage is billed at the end of its period; a base fee
  of "0" (the free plan) gives no base fee line;
* prices: a charge prices its metric with its own ``properties`` (the default bucket) and one
  more price per filter; an event counts in the matching filter with the most keys (then the
  first declared), else in the default bucket. Every price of a charge (no pricing groups in
  the demo) has a line in every period, even without events, described by the filter's or the
  charge's ``invoice_display_name`` (else "<charge name> (<values>)" / the metric's name);
* units of a price in a period, by aggregation: ``count`` the events; ``sum`` the field;
  ``max`` the largest value (0 without events); ``latest`` the value of the last event by
  event time (a negative one counts as 0; 0 without events); ``unique_count`` the distinct
  values added in the period, or, recurring, the values active at some instant of the period
  (a value is active from an ``add`` until a ``remove``; those active at the period start are
  carried); ``weighted_sum`` (L0 x S + sum of d_i x (end - t_i)) / S over the S seconds of the
  period's service, divided exactly and kept to 9 decimals (half-up), L0 the level reached
  before the period when recurring, else 0. Then the metric's ``rounding_function``
  (round half away from zero, ceil, floor) to ``rounding_precision`` decimals;
* charge models: ``standard`` units x amount; ``package`` ceil((units - free_units) /
  package_size) x amount, 0 up to the free units; ``graduated`` every reached range prices the
  units above the previous ``to_value`` up to its own and adds its ``flat_amount`` (the first
  range always); ``volume`` the range with from_value <= ceil(units) and units <= to_value
  prices every unit, plus its flat amount; ``percentage`` with a per-transaction minimum or
  maximum prices every event on its own, rate % x value + fixed fee, held between the two
  (without them: rate % of the units plus the fixed fee per event; the demo has no free units);
* spending minimum (``min_amount``): when the invoiced (rounded) fees of all the charge's
  prices in a period stay under the minimum prorated like the base fee (billed days / days in
  the period) and rounded to the currency, a ``true_up`` line "<charge name> (minimum spend)"
  tops them up to exactly it, invoiced with the period's usage;
* each line is rounded once, half-up, to the currency's decimals; an invoice's fees are the
  sum of its rounded lines;
* coupons: applied to the customer's invoices with fees above zero issued at or after the
  coupon's application, in invoice order, never below zero (never to an add-on's invoice);
* taxes (docs/invoice-amounts.md; the demo names them only for the billing entity and for
  customers): a tax-exempt customer bears none; else the customer's ``tax_codes`` if it names
  any, else the billing entity's; each rate is charged on the invoice's fees net of its
  coupons and rounded once per rate, half-up;
* usage to date (docs/invoice-amounts.md): at every local midnight strictly inside a period
  (first day + k, k >= 1), up to as_of, each price's usage of the local days before it is
  priced as the period would be (a weighted sum: level x time so far over the period's time);
  progressive billing and a threshold top-up share it;
* credit notes (an upgrade's unused days, below) pay the customer's invoices after tax and
  before prepaid credits: each invoice, in date order, takes what the credit notes issued up
  to its instant hold, less what earlier invoices took, at most what it owes;
* prepaid credits (the demo's one wallet per customer, worth whole cents, unlimited): credits
  come in as the wallet's transactions and by its top-up rule. An interval rule adds credits
  at every local month's start after the wallet opened; a threshold rule (the demo's: 1,000
  credits whenever the ongoing balance is at or under 500) is checked when the wallet opens,
  at every invoice it pays (before the invoice draws, counting its whole amount due) and at
  every midnight of the usage to date, up to as_of. The ongoing balance there is what was
  credited by then (earlier top-ups included), less what the invoices by then asked, less the
  usage not yet invoiced: each usage line's amount to date, rounded (nothing below zero), less
  what progressive invoices billed of it by then, plus its taxes, rounded per line. At or under
  the threshold, the fewest top-ups that bring it above are added at once, in one purchase. A
  purchase is an invoice of its own (credits x rate, no tax, never paid by credits); the other
  invoices, in order, take from the wallet after tax as much as what was credited up to their
  instant minus what earlier invoices took allows (a threshold wallet never runs short);
* progressive billing (docs/invoice-amounts.md; the developer plan's thresholds): when the
  period's usage to date reaches a threshold not yet reached, an invoice of its own bills each
  price's rounded usage so far minus what earlier ones billed; the period-end invoice deducts
  that from each usage line before coupons;
* the total is fees - billed early - discount + taxes - credit notes - credits;
* trials (docs/billing-calendar.md): ``trial_period: N`` leaves the first N whole local days of
  the subscription (the start day included) without a base fee; an in-advance fee is invoiced
  when its service starts, so the first one at the trial's end (local midnight), prorated over
  the rest of its month, alone on its invoice (header: its service days); usage is billed
  during the trial, at its period's end;
* yearly plans (calendar billing): the base fee's period is the calendar year, in advance at
  its start (1 January, or the subscription's start: start..31 December prorated by days over
  365 or 366); with ``bill_charges_monthly`` usage is invoiced at every calendar month's end;
* plan changes: the subscription's later rows in subscriptions.csv are phases; an upgrade (the
  new plan's yearly base fee at least the old one's) takes effect at the requested instant, the
  switch day being the new plan's. The old phase's usage up to the switch is invoiced at the
  switch instant (header: the old phase's days of the month), its in-advance fee was invoiced
  in full at the period start and its unused days (switch day to period end) become a credit
  note (credit_notes.json: base fee x unused days / days in the period, rounded once), never an
  invoice line; the new phase bills from the switch day (in arrears at the month's end,
  prorated). Recurring levels (seats, stored GB) carry from phase to phase for prices of the
  same metric and filter values (docs/billing-calendar.md, "Plan changes");
* contracts (subscription_overrides.yml): the named fields (base fee, a charge's properties,
  min_amount, model, name, a filter's properties by its values) replace the plan's for that
  subscription, the rest stays the plan's;
* add-ons (add_ons.yml, applied_add_ons.csv): each applied row is a one-off invoice of its own
  at ``applied_at`` (never merged, even at the instant of another invoice; header and service:
  the local day), one ``add_on`` line of units x amount (the row's or the add-on's), described
  by the row's description, else the add-on's invoice_display_name or name.

Every closed invoice of every customer whose subscription runs must match line by line (lines
keyed by fee kind, metric and description: filter lines share their charge's metric), to the
last digit: header, lines (quantity, amount, service days, event count) and totals. Customers
are also chosen by role, and a test checks that the roles hold, so that the comparison cannot
pass vacuously: together their closed invoices use every aggregation and charge model of the
demo price book, with filter lines for atlas-large and embeddings, a seat removed, a storage
level carried into a later month, marketplace sales under the percentage model, and the
enterprise plan's max, latest and volume lines and its spending minimum's true-up; a trial's
first fee, a yearly fee with monthly usage, an upgrade (with its credit note, checked by hand
against credit_notes.json, and at 400k events a seat and stored GB carried across it), a
contract's overridden base fee and filter price with events, and an add-on invoice. The
reference run has 20k events; a second run at 400k events (the catalog, hence the customers,
stay the same) makes usage reach the priced graduated ranges and their flat amounts, requests
beyond the package's free units and true-ups over real usage, which 20k events do not.
"""

from __future__ import annotations

import bisect
import calendar
import copy
import csv
import json
import os
import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal, InvalidOperation, localcontext
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow.parquet as pq
import pytest
import yaml

from orchestration.demo.generator import generate_demo
from orchestration.settings import get_settings
from tests.conftest import run_all

pytestmark = pytest.mark.slow  # end-to-end runs of the whole pipeline

UTC = timezone.utc
AS_OF = datetime(2026, 11, 21, 12, tzinfo=UTC)
CURRENCY_DECIMALS = {"JPY": 0, "USD": 2, "EUR": 2}
NUMERIC_AGGREGATIONS = {"sum", "max", "latest", "weighted_sum"}
PRECISE = Decimal("1e-12")  # precise amounts keep 12 decimals (docs/charge-models.md)
QUANTITY = Decimal("1e-9")  # time-weighted units are kept to 9 decimals (docs/billable-metrics.md)
ROLES = ("developer_usd_non_utc", "scale_prefer_jpy_eur", "started_inside_window", "coupon_holder",
         "entity_timezone", "deepest_graduated_range", "enterprise_minimum", "marketplace_seller",
         "seat_removed", "storage_carried", "package_above_free", "large_and_embed_filters",
         "trial_ended", "yearly_usage_monthly", "upgraded", "contract_override", "add_on_invoice",
         "stacked_taxes", "vat_customer", "tax_exempt", "prepaid_credits", "progressive_billing")


# ------------------------------------------------------------------------------ catalog


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _dec(value: Any) -> Decimal:
    """A catalog amount or bound (YAML integers, or decimal strings) as a Decimal."""
    assert not isinstance(value, float), f"{value!r}: a float where a decimal is expected"
    return Decimal(str(value))


def _local_instant(text: str, zone: ZoneInfo) -> datetime:
    """An ISO date (midnight in `zone`) or an ISO timestamp with offset, as a UTC instant."""
    if len(text) == 10:
        return datetime.combine(date.fromisoformat(text), time(0), zone).astimezone(UTC)
    return datetime.fromisoformat(text).astimezone(UTC)


@dataclass
class Customer:
    customer_id: str
    currency: str
    timezone: str  # as written in customers.csv ("" = the billing entity's)
    zone: ZoneInfo
    subscription_id: str
    plan_code: str  # the current plan (the last phase's)
    start: datetime  # UTC instant
    end: datetime | None
    coupons: list[tuple[str, datetime]] = field(default_factory=list)
    # (plan code, plan with the subscription's overrides applied, UTC instant the phase was requested),
    # one per row of the subscription in subscriptions.csv, in order
    phases: list[tuple[str, dict, datetime]] = field(default_factory=list)
    override: dict | None = None  # the subscription's entry of subscription_overrides.yml
    add_ons: list[tuple[dict, datetime]] = field(default_factory=list)  # (applied_add_ons.csv row, applied_at)
    tax_rates: dict[str, Decimal] = field(default_factory=dict)  # tax code -> percent, the taxes its fees bear
    wallets: list[dict] = field(default_factory=list)  # wallets.yml entries of the customer

    @property
    def start_date(self) -> date:
        return self.start.astimezone(self.zone).date()


def apply_override(plan: dict, override: dict | None) -> dict:
    """The plan with a contract's fields replacing the plan's (docs/catalog.md): everything not
    named stays the plan's; charges are found by metric, their filters by values."""
    if override is None:
        return plan
    plan = copy.deepcopy(plan)
    assert override.get("minimum_commitment") is None, "minimum commitments are outside this hand computation"
    for key in ("amount", "trial_period", "invoice_display_name", "usage_thresholds"):
        if key in override:
            plan[key] = override[key]
    for change in override.get("charges") or []:
        [charge] = [ch for ch in plan["charges"] if ch["metric"] == change["metric"]]
        for key in ("properties", "min_amount", "charge_model", "invoice_display_name"):
            if key in change:
                charge[key] = change[key]
        for bucket_change in change.get("filters") or []:
            wanted = {k: sorted(map(str, vs)) for k, vs in bucket_change["values"].items()}
            [bucket] = [b for b in charge.get("filters") or []
                        if {k: sorted(map(str, vs)) for k, vs in b["values"].items()} == wanted]
            for key in ("properties", "invoice_display_name"):
                if key in bucket_change:
                    bucket[key] = bucket_change[key]
    return plan


@dataclass(frozen=True)
class Price:
    """One price of a charge: its default (values None) or one of its filters."""

    description: str  # the invoice line's description
    properties: dict
    values: dict[str, list[str]] | None  # filter key -> values the event's property must take


def charge_prices(charge: dict, metric: dict) -> list[Price]:
    """The charge's default price, then its filters in declaration order (docs/catalog.md)."""
    assert not charge.get("pricing_group_keys"), "pricing groups are outside this hand computation"
    assert not charge.get("pay_in_advance"), "charges paid in advance are outside this hand computation"
    name = charge.get("invoice_display_name") or metric["name"]
    prices = [Price(name, charge.get("properties") or {}, None)]
    for bucket in charge.get("filters") or []:
        shown = ", ".join(v for values in bucket["values"].values() for v in values)
        prices.append(Price(bucket.get("invoice_display_name") or f"{name} ({shown})",
                            bucket.get("properties") or {}, {k: [str(v) for v in vs]
                                                             for k, vs in bucket["values"].items()}))
    return prices


def load_catalog(catalog_dir: Path) -> SimpleNamespace:
    def yml(name: str) -> Any:
        return yaml.safe_load((catalog_dir / name).read_text("utf-8"))

    entity = yml("billing_entity.yml")["billing_entity"]
    entity_zone = entity["timezone"]
    tax_rates = {t["code"]: _dec(t["rate"]) for t in ((yml("taxes.yml") if (catalog_dir / "taxes.yml").exists()
                                                        else None) or {}).get("taxes", [])}
    metrics = {m["code"]: m for m in yml("billable_metrics.yml")["billable_metrics"]}
    plans = {p["code"]: p for p in yml("plans.yml")["plans"]}
    assert not any(p.get("taxes") or any(c.get("taxes") for c in p.get("charges", [])) for p in plans.values()), (
        "the hand computation knows taxes of the billing entity and customers only")
    coupons = {c["code"]: c for c in (yml("coupons.yml") or {}).get("coupons", [])}
    add_ons = {a["code"]: a for a in ((yml("add_ons.yml") if (catalog_dir / "add_ons.yml").exists() else None)
                                      or {}).get("add_ons", [])}
    overrides = {o["subscription"]: o for o in ((yml("subscription_overrides.yml")
                                                if (catalog_dir / "subscription_overrides.yml").exists() else None)
                                               or {}).get("subscription_overrides", [])}
    customers: dict[str, Customer] = {}
    cust_rows = {r["external_customer_id"]: r for r in _csv_rows(catalog_dir / "customers.csv")}
    for sub in _csv_rows(catalog_dir / "subscriptions.csv"):
        assert not sub.get("billing_time") or sub["billing_time"] == "calendar", "calendar billing only"
        row = cust_rows[sub["external_customer_id"]]
        zone = ZoneInfo(row["timezone"] or entity_zone)
        override = overrides.get(sub["external_subscription_id"])
        phase = (sub["plan_code"], apply_override(plans[sub["plan_code"]], override),
                 _local_instant(sub["started_at"], zone))
        known = customers.get(row["external_customer_id"])
        if known is not None:  # a plan change: a later row of the same subscription (docs/catalog.md)
            assert known.subscription_id == sub["external_subscription_id"], "one subscription per customer"
            assert known.end is None, "only the last row of a subscription may end it"
            known.phases.append(phase)
            known.plan_code = sub["plan_code"]
            known.end = _local_instant(sub["ended_at"], zone) if sub["ended_at"] else None
            continue
        customers[row["external_customer_id"]] = Customer(
            customer_id=row["external_customer_id"],
            currency=row["currency"],
            timezone=row["timezone"],
            zone=zone,
            subscription_id=sub["external_subscription_id"],
            plan_code=sub["plan_code"],
            start=phase[2],
            end=_local_instant(sub["ended_at"], zone) if sub["ended_at"] else None,
            phases=[phase],
            override=override,
            tax_rates={} if row.get("tax_exempt") == "true" else {
                code: tax_rates[code]
                for code in ([c for c in row.get("tax_codes", "").split(";") if c] or entity.get("taxes", []))},
        )
    applied = catalog_dir / "applied_coupons.csv"
    for row in _csv_rows(applied) if applied.exists() else []:
        c = customers[row["external_customer_id"]]
        c.coupons.append((row["coupon_code"], _local_instant(row["applied_at"], c.zone)))
    for wallet in ((yml("wallets.yml") if (catalog_dir / "wallets.yml").exists() else None) or {}).get("wallets", []):
        assert not wallet.get("applies_to") and not wallet.get("expiration_date"), "demo wallets are unlimited"
        customers[wallet["customer"]].wallets.append(wallet)
    applied = catalog_dir / "applied_add_ons.csv"
    for row in _csv_rows(applied) if applied.exists() else []:
        c = customers[row["external_customer_id"]]
        c.add_ons.append((row, _local_instant(row["applied_at"], c.zone)))
    assert len(customers) == len(cust_rows), "one subscription per customer in the demo"
    return SimpleNamespace(entity_zone=entity_zone, metrics=metrics, plans=plans, coupons=coupons,
                           add_ons=add_ons, overrides=overrides, customers=customers)


# ------------------------------------------------------------------------------- events


@dataclass(frozen=True)
class Event:
    transaction_id: str
    subscription_id: str | None
    customer_id: str | None
    code: str
    at: datetime  # UTC
    value: Decimal  # the field's number for sum, max, latest, weighted_sum; 1 for count, unique_count
    properties: dict = field(compare=False, hash=False)

    def text(self, key: str) -> str | None:
        """A property as the text filters and unique counts compare."""
        return _scalar_text(self.properties.get(key))


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, (dict, list, bool)):
        return None
    text = str(value).strip()
    return text or None


def _scalar_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def _loads(text: str) -> Any:
    """JSON with numbers kept as their exact text (docs/ingestion.md): never a float."""
    return json.loads(text, parse_float=Decimal)


def _parse_timestamp(value: Any) -> datetime | None:
    """Unix seconds (9 to 11 digits, up to 6 decimals; a JSON number or text) or ISO 8601 (no
    offset means UTC)."""
    if value is None or isinstance(value, (bool, float, dict, list)):
        return None
    text = str(value).strip()
    if not text:
        return None
    if re.fullmatch(r"[0-9]{9,11}(\.[0-9]{1,6})?", text):
        return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=int(Decimal(text) * 1_000_000))
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _number(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, Decimal)):
        return Decimal(value)
    if isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            return None
        return number if number.is_finite() else None
    return None


def _event(record: Any, metrics: dict[str, dict], as_of: datetime, props_are_text: bool) -> Event | None:
    """The event a raw record stands for, or None when the event contract rejects it."""
    if not isinstance(record, dict):
        return None
    tx, code = _text(record.get("transaction_id")), _text(record.get("code"))
    sub, cus = _text(record.get("external_subscription_id")), _text(record.get("external_customer_id"))
    if tx is None or code is None or (sub is None and cus is None):
        return None
    at = _parse_timestamp(record.get("timestamp"))
    if at is None or at > as_of:
        return None
    props = record.get("properties")
    if props_are_text and isinstance(props, str):
        try:
            props = _loads(props)
        except ValueError:
            return None
    if not isinstance(props, dict) or code not in metrics:
        return None
    metric = metrics[code]
    value = Decimal(1)
    if metric["aggregation"] != "count":
        raw = props.get(metric["field"])
        if raw is None:
            return None  # missing_value
        if metric["aggregation"] in NUMERIC_AGGREGATIONS:
            value = _number(raw)
            if value is None:
                return None  # non_numeric_value
    if props.get("operation_type") is not None and props["operation_type"] not in ("add", "remove"):
        return None  # invalid_operation_type
    return Event(tx, sub, cus, code, at, value, props)


def read_landing(landing_dir: Path, metrics: dict[str, dict], as_of: datetime) -> tuple[list[Event], int, int]:
    """Good events, deduplicated, in ingestion order; plus (good rows, bad rows) counts."""
    good: list[Event] = []
    bad = 0
    for path in sorted(p for p in landing_dir.iterdir() if p.suffix in (".parquet", ".jsonl")):
        if path.suffix == ".parquet":
            records: list[Any] = pq.read_table(path).to_pylist()
            props_are_text = True
        else:
            records = []
            for line in path.read_text("utf-8").splitlines():
                if not line.strip():
                    continue
                try:
                    records.append(_loads(line))
                except ValueError:
                    records.append(None)
            props_are_text = False
        for record in records:
            event = _event(record, metrics, as_of, props_are_text)
            if event is None:
                bad += 1
            else:
                good.append(event)
    seen: set[tuple[str, str, str]] = set()
    unique: list[Event] = []
    for event in good:
        key = ("sub", event.subscription_id, event.transaction_id) if event.subscription_id else (
            "cus", event.customer_id, event.transaction_id)
        if key not in seen:
            seen.add(key)
            unique.append(event)
    return unique, len(good), bad


def customer_events(customer: Customer, events: list[Event]) -> list[Event]:
    return [
        e for e in events
        if (e.subscription_id == customer.subscription_id
            or (e.subscription_id is None and e.customer_id == customer.customer_id))
        and customer.start <= e.at and (customer.end is None or e.at < customer.end)
    ]


def price_of(event: Event, prices: list[Price]) -> int:
    """The index of the price an event counts in: the matching filter with the most keys, then
    the first declared; else the default (0)."""
    best: tuple[int, int] | None = None
    for index, price in enumerate(prices[1:], start=1):
        if all(event.text(key) in values for key, values in price.values.items()):
            rank = (-len(price.values), index)
            best = rank if best is None or rank < best else best
    return 0 if best is None else best[1]


# ------------------------------------------------------------------------------ pricing


def money(value: Decimal, currency: str) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-CURRENCY_DECIMALS[currency]), rounding=ROUND_HALF_UP)


@dataclass
class Period:
    """A closed billing period: local days first..last, service from start_at to end_at (UTC)."""

    first: date
    last: date
    start_at: datetime
    end_at: datetime

    @property
    def seconds(self) -> int:
        return int((self.end_at - self.start_at).total_seconds())

    @property
    def proration(self) -> tuple[int, int]:
        """(billed days, days in the period), as for the base fee (docs/money.md)."""
        return (self.last - self.first).days + 1, calendar.monthrange(self.first.year, self.first.month)[1]


class Meter:
    """The units of one price, period after period, by the metric's aggregation
    (docs/billable-metrics.md). Carries the recurring state from one period to the next."""

    def __init__(self, metric: dict) -> None:
        self.metric = metric
        self.aggregation = metric["aggregation"]
        self.recurring = bool(metric.get("recurring"))
        self.level = Decimal(0)  # recurring sum and weighted_sum: the level reached so far
        self.active: set[str] = set()  # recurring unique_count: the values active so far

    def units(self, events: list[Event], period: Period) -> tuple[Decimal, dict]:
        """(units before the metric's rounding, notes) for the period's events in time order."""
        aggregation, notes = self.aggregation, {}
        if aggregation == "count":
            units = Decimal(len(events))
        elif aggregation == "sum":
            units = sum((e.value for e in events), Decimal(0))
            if self.recurring:
                notes["level_before"] = self.level
                self.level += units
                units = self.level
        elif aggregation == "max":
            units = max((e.value for e in events), default=Decimal(0))
        elif aggregation == "latest":
            if events:
                last_at = max(e.at for e in events)
                values = {e.value for e in events if e.at == last_at}
                assert len(values) == 1, (
                    f"{self.metric['code']}: events at the same last instant {last_at} disagree {values}: "
                    "'latest' is ambiguous (the demo never does this)")
                units = max(values.pop(), Decimal(0))
            else:
                units = Decimal(0)
        elif aggregation == "unique_count":
            field_name = self.metric["field"]
            adds = [e.text(field_name) for e in events if (e.text("operation_type") or "add") == "add"]
            removes = [e for e in events if e.text("operation_type") == "remove"]
            notes["removes"] = len(removes)
            if not self.recurring:
                units = Decimal(len(set(adds)))
            else:
                counted = set(adds)
                # Values active when the period starts count, unless their first operation of the
                # period is a remove at that very instant (then they are active at no instant of it).
                first_ops: dict[str, Event] = {}
                for e in events:
                    first_ops.setdefault(e.text(field_name), e)
                carried = {v for v in self.active
                           if not (v in first_ops and first_ops[v].text("operation_type") == "remove"
                                   and first_ops[v].at == period.start_at)}
                notes["carried_values"] = len(carried)
                notes["removed_values"] = len({e.text(field_name) for e in removes})
                counted |= carried
                for e in events:
                    if (e.text("operation_type") or "add") == "add":
                        self.active.add(e.text(field_name))
                    else:
                        self.active.discard(e.text(field_name))
                units = Decimal(len(counted))
        elif aggregation == "weighted_sum":
            seconds = period.seconds
            start_level = self.level if self.recurring else Decimal(0)
            weighted = start_level * seconds + sum(
                (e.value * int((period.end_at - e.at).total_seconds()) for e in events), Decimal(0))
            units = (weighted / seconds).quantize(QUANTITY, rounding=ROUND_HALF_UP) if seconds else Decimal(0)
            notes["level_before"] = start_level
            if self.recurring:
                self.level += sum((e.value for e in events), Decimal(0))
        else:
            raise AssertionError(f"unknown aggregation {aggregation}")
        return units, notes

    def rounded(self, units: Decimal) -> Decimal:
        """The metric's rounding of the period's units (round is half away from zero)."""
        function = self.metric.get("rounding_function")
        if function is None:
            return units
        step = Decimal(1).scaleb(-int(self.metric.get("rounding_precision") or 0))
        mode = {"round": ROUND_HALF_UP, "ceil": ROUND_CEILING, "floor": ROUND_FLOOR}[function]
        return (units / step).quantize(Decimal(1), rounding=mode) * step


def graduated(units: Decimal, ranges: list[dict]) -> tuple[Decimal, list[tuple]]:
    """Total and (from, to, units in range, per unit, flat, range amount) per reached range."""
    total, previous_to, rows = Decimal(0), Decimal(0), []
    for k, rng in enumerate(ranges):
        if k > 0 and units <= previous_to:
            break  # not reached: neither units nor flat amount
        to = None if rng["to_value"] is None else _dec(rng["to_value"])
        in_range = (units if to is None else min(units, to)) - previous_to
        per_unit, flat = _dec(rng["per_unit_amount"]), _dec(rng["flat_amount"])
        amount = in_range * per_unit + flat
        rows.append((_dec(rng["from_value"]), to, in_range, per_unit, flat, amount))
        total += amount
        if to is None:
            break
        previous_to = to
    return total, rows


def volume(units: Decimal, ranges: list[dict]) -> tuple[Decimal, list[tuple]]:
    """The one range holding the total prices every unit, plus its flat amount."""
    whole = units.to_integral_value(rounding=ROUND_CEILING)
    for rng in ranges:
        to = None if rng["to_value"] is None else _dec(rng["to_value"])
        if _dec(rng["from_value"]) <= whole and (to is None or units <= to):
            per_unit, flat = _dec(rng["per_unit_amount"]), _dec(rng["flat_amount"])
            amount = units * per_unit + flat
            return amount, [(_dec(rng["from_value"]), to, units, per_unit, flat, amount)]
    raise AssertionError(f"no volume range holds {units}")


def percentage(props: dict, events: list[Event]) -> tuple[Decimal, list[tuple], dict]:
    """Rate % of the amounts plus a fixed fee per event; with a per-transaction minimum or
    maximum, each event priced on its own and held between them."""
    for unsupported in ("free_units_per_events", "free_units_per_total_aggregation"):
        assert props.get(unsupported) is None, f"{unsupported}: outside this hand computation"
    rate = _dec(props["rate"])
    fixed = _dec(props.get("fixed_amount") or 0)
    low, high = props.get("per_transaction_min_amount"), props.get("per_transaction_max_amount")
    units = sum((e.value for e in events), Decimal(0))
    if low is None and high is None:
        amount = units * rate / 100 + fixed * len(events)
        return amount, [(units, rate, len(events), fixed, amount)], {}
    low, high = (None if low is None else _dec(low)), (None if high is None else _dec(high))
    total, notes = Decimal(0), {"at_minimum": 0, "at_maximum": 0}
    for e in events:
        amount = e.value * rate / 100 + fixed
        if low is not None and amount < low:
            amount, notes["at_minimum"] = low, notes["at_minimum"] + 1
        elif high is not None and amount > high:
            amount, notes["at_maximum"] = high, notes["at_maximum"] + 1
        total += amount
    return total, [(units, rate, len(events), fixed, low, high, total)], notes


def price_amount(model: str, props: dict, units: Decimal, events: list[Event]) -> tuple[Decimal, list[tuple], dict]:
    """(precise amount, arithmetic rows, notes) of one price for the period's units."""
    if model == "standard":
        unit = _dec(props["amount"])
        return units * unit, [(None, None, units, unit, Decimal(0), units * unit)], {}
    if model == "package":
        free, size, unit = _dec(props.get("free_units") or 0), _dec(props["package_size"]), _dec(props["amount"])
        packages = ((units - free) / size).to_integral_value(rounding=ROUND_CEILING) if units > free else Decimal(0)
        return packages * unit, [(free, size, packages, unit)], {"packages": packages}
    if model == "graduated":
        total, rows = graduated(units, props["graduated_ranges"])
        return total, rows, {}
    if model == "volume":
        total, rows = volume(units, props["volume_ranges"])
        return total, rows, {}
    if model == "percentage":
        return percentage(props, events)
    raise AssertionError(f"charge model {model} is outside this hand computation")


# ----------------------------------------------------------------------------- invoices


def _next_month(day: date) -> date:
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


def _last_day(day: date) -> date:
    return _next_month(day) - timedelta(1)


@dataclass
class Line:
    fee_kind: str  # subscription | charge | true_up
    metric_code: str | None
    description: str
    service_start: date
    service_end: date
    quantity: Decimal
    amount: Decimal  # rounded
    precise: Decimal
    event_count: int
    charge_model: str | None = None
    aggregation: str | None = None
    filter_values: dict[str, list[str]] | None = None  # None: a charge's default price
    detail: list[tuple] = field(default_factory=list)
    notes: dict = field(default_factory=dict)  # what the roles look for (carried levels, removes...)
    billed_early: Decimal = Decimal(0)  # deducted: what the period's progressive invoices billed of it

    @property
    def key(self) -> tuple[str, str, str]:
        return self.fee_kind, self.metric_code or "", self.description


@dataclass
class Invoice:
    at: datetime  # UTC invoicing instant
    issuing_date: date
    period_start: date
    period_end: date
    lines: list[Line]
    fees: Decimal = Decimal(0)
    billed_early: Decimal = Decimal(0)  # progressive billing already invoiced, deducted before coupons
    discount: Decimal = Decimal(0)
    taxes: dict[str, Decimal] = field(default_factory=dict)  # tax code -> tax, rounded
    credit_note_credits: Decimal = Decimal(0)  # paid by credit notes
    credits: Decimal = Decimal(0)  # paid by prepaid credits
    total: Decimal = Decimal(0)
    one_off: bool = False  # an add-on's invoice of its own
    progressive: bool = False  # a progressive billing invoice: usage so far, a threshold reached


def plan_name(plan: dict) -> str:
    return plan.get("invoice_display_name") or plan["name"]


def _fee_period_start(day: date, interval: str) -> date:
    """The calendar period of the plan's interval that holds the day: its month or its year."""
    return {"monthly": day.replace(day=1), "yearly": date(day.year, 1, 1)}[interval]


def _next_fee_period(day: date, interval: str) -> date:
    return {"monthly": _next_month(day), "yearly": date(day.year + 1, 1, 1)}[interval]


@dataclass
class FeeService:
    """One base fee of a phase: whole local days first..last of the fee period period_first..period_last
    (a calendar month or year), invoiced at `at`; `unused` days credited when an upgrade cuts it."""

    plan_code: str
    plan: dict
    at: datetime
    first: date
    last: date
    period_first: date
    period_last: date
    after_trial: bool
    switch_day: date | None = None  # the upgrade's day, when it cuts a fee paid in advance

    @property
    def days(self) -> tuple[int, int]:
        return (self.last - self.first).days + 1, (self.period_last - self.period_first).days + 1


def yearly_base_fee(plan: dict) -> Decimal:
    return _dec(plan["amount"]) * {"monthly": 12, "yearly": 1}[plan["interval"]]


def fee_services(customer: Customer, index: int, as_of: datetime) -> list[FeeService]:
    """The base fees of the customer's phase `index` whose service starts by as_of
    (docs/billing-calendar.md): the fee period is the plan's calendar interval; the trial's first
    N local days of the subscription carry no fee; in advance, a fee is invoiced when its service
    starts (after any trial) and runs to the fee period's end even if an upgrade cuts it (the
    unused days become a credit note); in arrears, at the end of its service (the period's end or
    the switch)."""
    code, plan, start = customer.phases[index]
    end = customer.phases[index + 1][2] if index + 1 < len(customer.phases) else customer.end
    assert end is None or index + 1 < len(customer.phases), "ended subscriptions are outside this computation"
    if not _dec(plan["amount"]):
        return []  # a base fee of "0" (free) has no base fee line
    zone, interval, advance = customer.zone, plan["interval"], bool(plan["pay_in_advance"])

    def instant(day: date) -> datetime:
        return datetime.combine(day, time(0), zone).astimezone(UTC)

    start_day = start.astimezone(zone).date()
    end_day = None if end is None else end.astimezone(zone).date()
    trial_end = customer.start_date + timedelta(days=int(plan.get("trial_period") or 0))
    result: list[FeeService] = []
    period_first = _fee_period_start(start_day, interval)
    while instant(period_first) <= as_of and (end_day is None or period_first < end_day):
        period_last = _next_fee_period(period_first, interval) - timedelta(1)
        first = max(period_first, start_day, trial_end)
        last = period_last if advance or end_day is None or end_day > period_last else end_day - timedelta(1)
        if first <= last and (end_day is None or first < end_day):
            result.append(FeeService(
                code, plan, instant(first) if advance else instant(last + timedelta(1)), first, last, period_first,
                period_last, first == trial_end > max(period_first, start_day),
                end_day if advance and end_day is not None and end_day <= period_last else None))
        period_first = period_last + timedelta(1)
    return result


def base_fee_line(fee: FeeService, currency: str) -> Line:
    """The base fee for whole local days first..last of its fee period (a month, or a 365/366-day year)."""
    days, period_days = fee.days
    precise = _dec(fee.plan["amount"]) * days / period_days
    return Line("subscription", None, plan_name(fee.plan), fee.first, fee.last, Decimal(1), money(precise, currency),
                precise, 0, detail=[(fee.plan["amount"], days, period_days)],
                notes={"after_trial": fee.after_trial, "interval": fee.plan["interval"], "plan_code": fee.plan_code})


@dataclass
class CreditNote:
    reason: str
    plan_code: str
    issued_at: datetime
    issuing_date: date
    service_start: date
    service_end: date
    unused_days: int
    days_in_period: int
    precise: Decimal
    amount: Decimal
    description: str
    tax: Decimal = Decimal(0)  # the base fee's tax rates on the precise amount, rounded once

    @property
    def total(self) -> Decimal:
        return self.amount + self.tax


def credit_notes_by_hand(customer: Customer, as_of: datetime) -> list[CreditNote]:
    """An upgrade cutting a base fee paid in advance credits its unused days, from the switch day to the
    fee period's end: base fee x unused days / days in the period, rounded once (docs/billing-calendar.md), and
    gives back the fee's tax: that precise amount at the customer's rates, rounded once."""
    notes = []
    for index in range(len(customer.phases)):
        for fee in fee_services(customer, index, as_of):
            if fee.switch_day is None:
                continue
            unused, period_days = (fee.period_last - fee.switch_day).days + 1, fee.days[1]
            with localcontext() as ctx:
                ctx.prec = 60
                precise = _dec(fee.plan["amount"]) * unused / period_days
            at = customer.phases[index + 1][2]
            rate = sum(customer.tax_rates.values(), Decimal(0))
            notes.append(CreditNote("upgrade", fee.plan_code, at, at.astimezone(customer.zone).date(), fee.switch_day,
                                    fee.period_last, unused, period_days, precise,
                                    money(precise, customer.currency), f"{plan_name(fee.plan)} (unused days)",
                                    money(precise.quantize(PRECISE, rounding=ROUND_HALF_UP) * rate / 100,
                                          customer.currency)))
    return notes


def charge_lines(charge: dict, metric: dict, currency: str, periods: list[Period],
                 events: list[tuple[int, Event]],
                 meters: dict[tuple[str, str], Meter] | None = None) -> list[list[Line]]:
    """The lines of one charge in every closed period: one per price, then its true-up.
    `events`: (closed period index, event) in time order. `meters`: the subscription's meters by
    (metric, filter values), so that recurring levels carry across a plan change."""
    prices = charge_prices(charge, metric)
    by_price: list[list[list[Event]]] = [[[] for _ in periods] for _ in prices]
    for k, event in events:
        if event.code == charge["metric"]:
            by_price[price_of(event, prices)][k].append(event)
    result: list[list[Line]] = [[] for _ in periods]
    for p, price in enumerate(prices):
        key = (charge["metric"], json.dumps(price.values, sort_keys=True))
        meter = Meter(metric) if meters is None else meters.setdefault(key, Meter(metric))
        for k, period in enumerate(periods):
            period_events = by_price[p][k]
            raw_units, notes = meter.units(period_events, period)
            units = meter.rounded(raw_units)
            precise, detail, price_notes = price_amount(charge["charge_model"], price.properties, units, period_events)
            result[k].append(Line(
                "charge", charge["metric"], price.description, period.first, period.last, units,
                money(precise, currency), precise, len(period_events), charge["charge_model"],
                metric["aggregation"], price.values, detail,
                {**notes, **price_notes, "raw_units": raw_units}))
    if charge.get("min_amount") is not None:
        name = charge.get("invoice_display_name") or metric["name"]
        for k, period in enumerate(periods):
            days, month_days = period.proration
            with localcontext() as ctx:
                ctx.prec = 60
                minimum = money(_dec(charge["min_amount"]) * days / month_days, currency)
            charged = sum((line.amount for line in result[k]), Decimal(0))
            if charged < minimum:
                result[k].append(Line(
                    "true_up", charge["metric"], f"{name} (minimum spend)", period.first, period.last, Decimal(1),
                    money(minimum - charged, currency), minimum - charged, 0, charge["charge_model"],
                    metric["aggregation"], None, [(charge["min_amount"], days, month_days, minimum, charged)]))
    return result


def thresholds_reached(plan: dict, usage: Decimal) -> int:
    """How many of the plan's usage thresholds `usage` reaches: its fixed amounts, then the
    recurring step every `amount` beyond the largest of them (docs/invoice-amounts.md)."""
    thresholds = plan.get("usage_thresholds") or []
    fixed = [_dec(t["amount"]) for t in thresholds if not t.get("recurring")]
    steps = [_dec(t["amount"]) for t in thresholds if t.get("recurring")]
    reached = sum(1 for amount in fixed if amount <= usage)
    base = max(fixed, default=Decimal(0))
    if steps and usage >= base + steps[0]:
        reached += int((usage - base) // steps[0])
    return reached


@dataclass
class PriceToDate:
    """One price's usage to date at a checkpoint, priced as its period would be."""

    metric_code: str
    description: str  # the price's line description
    units: Decimal
    precise: Decimal
    event_count: int


@dataclass
class Checkpoint:
    """A local midnight strictly inside a period, up to as_of: the usage of the local days before it,
    price by price in the order of the period's lines (docs/invoice-amounts.md)."""

    at: datetime
    day: date  # the local day it starts
    prices: list[PriceToDate]


def usage_to_date(plan: dict, metrics: dict[str, dict], zone: ZoneInfo, periods: list[Period], events: list[Event],
                  as_of: datetime, meters: dict[tuple[str, str], Meter],
                  measure: bool = True) -> list[list[Checkpoint]]:
    """The checkpoints of each period of one phase (progressive billing's, and a threshold top-up
    wallet's ongoing usage): local midnights first + k, k >= 1, before the period's end and up to as_of,
    each price's events of the local days before it aggregated, rounded and priced as the period would
    be (a weighted sum: level x time so far over the period's whole time). `measure` False skips the
    measures (none are needed) but still moves the meters on. `meters` hold the recurring levels at
    the first period's start and are moved on through the closed periods. `events` in time order."""
    result: list[list[Checkpoint]] = []
    for period in periods:
        by_price = []
        for charge in plan["charges"]:
            metric = metrics[charge["metric"]]
            prices = charge_prices(charge, metric)
            for p, price in enumerate(prices):
                key = (charge["metric"], json.dumps(price.values, sort_keys=True))
                price_events = [e for e in events if e.code == charge["metric"] and period.start_at <= e.at
                                < period.end_at and price_of(e, prices) == p]
                by_price.append((charge, metric, price, meters.setdefault(key, Meter(metric)), price_events,
                                 [e.at for e in price_events]))
        checkpoints: list[Checkpoint] = []
        day = period.first + timedelta(1)
        while measure and (at := datetime.combine(day, time(0), zone).astimezone(UTC)) < period.end_at \
                and at <= as_of:
            to_date = []
            for charge, metric, price, meter, price_events, times in by_price:
                before = price_events[:bisect.bisect_left(times, at)]
                snapshot = copy.deepcopy(meter)
                if metric["aggregation"] == "weighted_sum":  # level x time accrued, over the whole period's time
                    level = snapshot.level if snapshot.recurring else Decimal(0)
                    elapsed = int((at - period.start_at).total_seconds())
                    weighted = level * elapsed + sum((e.value * int((at - e.at).total_seconds()) for e in before),
                                                     Decimal(0))
                    raw = (weighted / period.seconds).quantize(QUANTITY, rounding=ROUND_HALF_UP)
                else:
                    raw, _ = snapshot.units(before, period)
                units = snapshot.rounded(raw)
                precise, _, _ = price_amount(charge["charge_model"], price.properties, units, before)
                to_date.append(PriceToDate(charge["metric"], price.description, units, precise, len(before)))
            checkpoints.append(Checkpoint(at, day, to_date))
            day += timedelta(1)
        result.append(checkpoints)
        if period.end_at <= as_of:  # a closed period moves the recurring levels on
            for _, _, _, meter, price_events, _ in by_price:
                meter.units(price_events, period)
    return result


def progressive_billing(plan: dict, currency: str, periods: list[Period], checkpoints: list[list[Checkpoint]]
                        ) -> tuple[list[Invoice], dict[tuple[int, str, str], list[tuple[datetime, Decimal]]]]:
    """Progressive billing of one phase, from its usage to date (`usage_to_date`): an invoice of the
    usage not yet billed whenever the period's usage reaches a threshold it had not reached. Returns
    those invoices and, per (period index, metric, price description), what they had billed in all
    after each of them: [(invoice instant, billed to date)]."""
    invoices: list[Invoice] = []
    billed: dict[tuple[int, str, str], list[tuple[datetime, Decimal]]] = {}
    if not plan.get("usage_thresholds"):
        return invoices, billed
    for k, period in enumerate(periods):
        reached = 0
        previous: dict[str, tuple[Decimal, Decimal, int]] = {}  # price -> (billed, units, events) at the last invoice
        for checkpoint in checkpoints[k]:
            at, day, to_date = checkpoint.at, checkpoint.day, checkpoint.prices
            now = max(reached, thresholds_reached(plan, sum((t.precise for t in to_date), Decimal(0))))
            if now <= reached:
                continue
            reached = now
            lines = []
            for t in to_date:
                last_billed, last_units, last_count = previous.get(t.description, (Decimal(0), Decimal(0), 0))
                billed_to_date = max(last_billed, money(t.precise, currency))
                previous[t.description] = (billed_to_date, t.units, t.event_count)
                billed.setdefault((k, t.metric_code, t.description), []).append((at, billed_to_date))
                if billed_to_date > last_billed:
                    lines.append(Line("charge", t.metric_code, f"{t.description} (usage to {day - timedelta(1)})",
                                      period.first, day - timedelta(1), max(t.units - last_units, Decimal(0)),
                                      billed_to_date - last_billed, billed_to_date - last_billed,
                                      max(t.event_count - last_count, 0), notes={"usage_to_date": t.precise}))
            if lines:
                invoices.append(Invoice(at, day, period.first, day - timedelta(1), lines, progressive=True))
    return invoices, billed


def ongoing_usage(customer: Customer, periods: list[Period], checkpoints: list[list[Checkpoint]],
                  billed: dict[tuple[int, str, str], list[tuple[datetime, Decimal]]]
                  ) -> list[tuple[datetime, datetime, Decimal]]:
    """The usage that a threshold top-up wallet counts against its ongoing balance
    (docs/invoice-amounts.md): for each usage line (price) of each period, from each checkpoint until
    the next one or the line's invoice (the period's end), its usage to date rounded (nothing while
    below zero) less what progressive invoices issued by then billed of it, plus the taxes it bears,
    rounded once: [(valid from, valid until, amount)]."""
    result = []
    for k, period in enumerate(periods):
        for j, checkpoint in enumerate(checkpoints[k]):
            until = checkpoints[k][j + 1].at if j + 1 < len(checkpoints[k]) else period.end_at
            for t in checkpoint.prices:
                to_date = money(t.precise, customer.currency) if t.precise > 0 else Decimal(0)
                early = [amount for at, amount in billed.get((k, t.metric_code, t.description), [])
                         if at <= checkpoint.at]
                usage = max(to_date - (early[-1] if early else Decimal(0)), Decimal(0))
                taxes = sum((usage * rate / 100 for rate in customer.tax_rates.values()), Decimal(0))
                result.append((checkpoint.at, until, money(usage + taxes, customer.currency)))
    return result


def hand_invoices(customer: Customer, metrics: dict[str, dict], events: list[Event], as_of: datetime,
                  coupons: dict[str, dict], add_ons: dict[str, dict]) -> list[Invoice]:
    """Every invoice issued up to as_of for the customer (which has no end date)."""
    assert customer.end is None, "ended subscriptions are outside this test's hand computation"
    currency, zone = customer.currency, customer.zone

    def instant(day: date) -> datetime:
        return datetime.combine(day, time(0), zone).astimezone(UTC)

    def local(at: datetime) -> date:
        return at.astimezone(zone).date()

    # Invoices are keyed by instant: every fee invoiced at the same instant forms one invoice.
    usage_at: dict[datetime, tuple[date, date]] = {}  # the usage period an invoice closes
    fees_at: dict[datetime, list[FeeService]] = {}
    lines_at: dict[datetime, list[Line]] = {}
    meters: dict[tuple[str, str], Meter] = {}  # carried across phases (recurring levels)
    progressive_meters: dict[tuple[str, str], Meter] = {}  # the same, replayed day by day
    early_invoices: list[Invoice] = []  # progressive billing
    # A wallet with a threshold top-up watches the usage priced so far: [(valid from, valid until, amount)].
    watches_usage = any(rule.get("threshold_credits") is not None
                        for wallet in customer.wallets for rule in wallet.get("top_ups", []))
    ongoing: list[tuple[datetime, datetime, Decimal]] = []
    events = sorted(events, key=lambda e: e.at)  # stable: same instant keeps the ingestion order
    with localcontext() as ctx:
        ctx.prec = 60
        for index, (code, plan, start) in enumerate(customer.phases):
            end = customer.phases[index + 1][2] if index + 1 < len(customer.phases) else None
            assert plan["currency"] == currency
            assert plan["interval"] == "monthly" or (
                plan["interval"] == "yearly" and plan.get("bill_charges_monthly")), (
                f"{code}: usage is invoiced monthly in this hand computation")
            assert plan.get("minimum_commitment") is None, "minimum commitments are outside this hand computation"
            if index:  # an upgrade takes effect at once; downgrades are outside this hand computation
                assert yearly_base_fee(plan) >= yearly_base_fee(customer.phases[index - 1][1]), "a downgrade"
            for at in (start, end):
                assert at is None or at == instant(local(at)), "phases start at local midnights in the demo"
            # Usage periods: calendar months (of a monthly plan, or billed monthly by a yearly one),
            # cut at the phase's start and at the switch (the switch day is the next phase's).
            periods: list[Period] = []
            first = local(start)
            end_day = None if end is None else local(end)
            while True:
                boundary = _next_month(first)
                last_one = end_day is not None and end_day <= boundary
                boundary = end_day if last_one else boundary
                if instant(boundary) > as_of:
                    break
                periods.append(Period(first, boundary - timedelta(1), instant(first), instant(boundary)))
                if last_one:
                    break
                first = boundary
            # Each event in the closed period of the phase that holds its instant (the open one waits).
            starts = [period.start_at for period in periods]
            timed = []
            for e in events:
                k = bisect.bisect_right(starts, e.at) - 1
                if k >= 0 and e.at < periods[k].end_at:
                    timed.append((k, e))
            usage: list[list[Line]] = [[] for _ in periods]
            for charge in plan["charges"]:
                for k, lines in enumerate(charge_lines(charge, metrics[charge["metric"]], currency, periods, timed,
                                                       meters)):
                    usage[k].extend(lines)
            # The open period of the last phase has progressive invoices too (issued before as_of).
            open_period = [] if end is not None else [
                Period(first, _next_month(first) - timedelta(1), instant(first), instant(_next_month(first)))]
            # The usage to date at every local midnight, for progressive billing and a threshold wallet.
            checkpoints = usage_to_date(plan, metrics, zone, periods + open_period, events, as_of, progressive_meters,
                                        measure=bool(plan.get("usage_thresholds")) or watches_usage)
            early, billed_early = progressive_billing(plan, currency, periods + open_period, checkpoints)
            early_invoices += early
            if watches_usage:
                ongoing += ongoing_usage(customer, periods + open_period, checkpoints, billed_early)
            for k, period in enumerate(periods):
                assert period.end_at not in usage_at
                usage_at[period.end_at] = (period.first, period.last)
                for line in usage[k]:
                    if line.fee_kind == "charge":
                        history = billed_early.get((k, line.metric_code, line.description))
                        billed = history[-1][1] if history else Decimal(0)
                        assert billed <= line.amount, "usage billed early beyond the period's amount (a credit note)"
                        line.billed_early = billed
                lines_at.setdefault(period.end_at, []).extend(usage[k])
            for fee in fee_services(customer, index, as_of):
                fees_at.setdefault(fee.at, []).append(fee)
                lines_at.setdefault(fee.at, []).insert(0, base_fee_line(fee, currency))

    invoices: list[Invoice] = []
    for at, lines in lines_at.items():
        # The header is the usage period the invoice closes, else the service of its (in-advance) fee.
        first, last = usage_at[at] if at in usage_at else (fees_at[at][0].first, fees_at[at][0].last)
        invoices.append(Invoice(at, local(at), first, last, lines))
    for row, at in customer.add_ons:  # one-off invoices, each on its own (docs/catalog.md)
        add_on = add_ons[row["add_on_code"]]
        assert add_on["currency"] == currency
        units = Decimal(row.get("units") or 1)
        unit = _dec(row["amount"]) if row.get("amount") else _dec(add_on["amount"])
        precise = units * unit
        line = Line("add_on", None, row.get("description") or add_on.get("invoice_display_name") or add_on["name"],
                    local(at), local(at), units, money(precise, currency), precise, 0, detail=[(units, unit)])
        invoices.append(Invoice(at, local(at), local(at), local(at), [line], one_off=True))
    invoices += early_invoices

    for invoice in invoices:
        invoice.fees = sum((line.amount for line in invoice.lines), Decimal(0))
        invoice.billed_early = sum((line.billed_early for line in invoice.lines), Decimal(0))
    invoices.sort(key=lambda inv: (inv.at, inv.one_off, inv.progressive))
    remaining_fees = {id(inv): inv.fees - inv.billed_early for inv in invoices}
    for code, applied_at in sorted(customer.coupons, key=lambda c: c[1]):
        coupon = coupons[code]
        uses = {"once": 1, "recurring": int(coupon.get("frequency_duration") or 0)}.get(coupon["frequency"])
        for invoice in invoices:
            if uses is not None and uses <= 0:
                break
            if invoice.at < applied_at or invoice.fees - invoice.billed_early <= 0 or invoice.one_off:
                continue  # coupons never apply to an add-on's invoice
            left = remaining_fees[id(invoice)]
            if coupon["coupon_type"] == "percentage":
                discount = money((invoice.fees - invoice.billed_early) * _dec(coupon["percentage_rate"]) / 100, currency)
            else:
                assert coupon["currency"] == currency
                discount = _dec(coupon["amount"])
            discount = min(discount, left)
            invoice.discount += discount
            remaining_fees[id(invoice)] = left - discount
            if uses is not None:
                uses -= 1
    for invoice in invoices:
        net = invoice.fees - invoice.billed_early - invoice.discount
        invoice.taxes = {code: money(net * rate / 100, currency) for code, rate in customer.tax_rates.items()}
        invoice.total = net + sum(invoice.taxes.values(), Decimal(0))
    # Credit notes (an upgrade's unused days) pay later invoices after tax and before wallets:
    # all that was issued up to an invoice's instant, less what earlier invoices took.
    notes = credit_notes_by_hand(customer, as_of)
    used = Decimal(0)
    for invoice in sorted(invoices, key=lambda inv: inv.at):
        available = sum((note.total for note in notes if note.issued_at <= invoice.at), Decimal(0)) - used
        paid = min(available, max(invoice.total, Decimal(0)))
        invoice.credit_note_credits += paid
        invoice.total -= paid
        used += paid
    wallets = sorted(customer.wallets, key=lambda w: (w.get("priority", 1), w["code"]))
    for position, wallet in enumerate(wallets):
        rate, opened = _dec(wallet["rate_amount"]), _local_instant(wallet["started_at"], zone)
        # (credited at, granted | purchased, credits, notes of a threshold top-up)
        credited = [(_local_instant(t["at"], zone), "granted" if "granted_credits" in t else "purchased",
                     _dec(t.get("granted_credits", t.get("purchased_credits"))), {})
                    for t in wallet.get("transactions", [])]
        thresholds = []
        for top_up in wallet.get("top_ups", []):
            kind = "granted" if "granted_credits" in top_up else "purchased"
            credits = _dec(top_up.get("granted_credits", top_up.get("purchased_credits")))
            if top_up.get("threshold_credits") is not None:
                thresholds.append((_dec(top_up["threshold_credits"]), kind, credits))
                continue
            assert top_up["interval"] == "monthly"
            month = _next_month(opened.astimezone(zone).date().replace(day=1))
            while (at := datetime.combine(month, time(0), zone).astimezone(UTC)) <= as_of:
                credited.append((at, kind, credits, {}))
                month = _next_month(month)
        if thresholds:
            # Threshold top-ups (docs/invoice-amounts.md): one rule, on the customer's first wallet, so
            # what each invoice asks of it is its whole amount due (the wallet is unlimited). The rule is
            # checked when the wallet opens, at every invoice it pays (counting what the invoice asks) and
            # at every checkpoint of the usage to date, up to as_of; whenever the ongoing balance is at or
            # under the threshold, k top-ups bring it back above, k the fewest that do.
            assert len(thresholds) == 1 and position == 0, "one threshold rule, on the first wallet"
            [(threshold_credits, kind, credits)] = thresholds
            threshold, step = threshold_credits * rate, credits * rate
            asked = [(inv.at, inv.total) for inv in invoices if inv.at >= opened]  # no purchase invoice yet
            checks = sorted({opened} | {at for at, _, _, _ in credited} | {at for at, _ in asked}
                            | {at for valid_from, valid_until, _ in ongoing for at in (valid_from, valid_until)})
            for check in (at for at in checks if opened <= at <= as_of):
                balance = (sum((added * rate for at, _, added, _ in credited if at <= check), Decimal(0))
                           - sum((total for at, total in asked if at <= check), Decimal(0))
                           - sum((amount for valid_from, valid_until, amount in ongoing
                                  if valid_from <= check < valid_until), Decimal(0)))
                count = 0
                while balance + count * step <= threshold:
                    count += 1
                if count:  # the ongoing balance that triggered it, earlier threshold top-ups included
                    credited.append((check, kind, count * credits,
                                     {"threshold_top_ups": count, "ongoing_balance_before": balance}))
        for at, kind, credits, notes in credited:
            if kind == "purchased":
                amount = credits * rate
                invoices.append(Invoice(at, local(at), local(at), local(at), [Line(
                    "credit_purchase", None, f"{wallet['name']} top-up", local(at), local(at), credits,
                    money(amount, currency), amount, 0, notes=notes)],
                    fees=money(amount, currency), total=money(amount, currency), one_off=True))
        spent = Decimal(0)
        for invoice in sorted(invoices, key=lambda inv: inv.at):
            if invoice.lines[0].fee_kind == "credit_purchase" or invoice.at < opened:
                continue
            balance = sum((added * rate for at, _, added, _ in credited if at <= invoice.at), Decimal(0)) - spent
            paid = min(balance, invoice.total)
            invoice.credits += paid
            invoice.total -= paid
            spent += paid
    invoices.sort(key=lambda inv: (inv.at, inv.one_off, inv.progressive))
    return invoices


# ------------------------------------------------------------------------------- choice


def window_start(as_of: datetime) -> date:
    months = as_of.year * 12 + as_of.month - 1 - 2
    return date(months // 12, months % 12 + 1, 1)


def closed_invoices(customer: Customer, catalog: SimpleNamespace, events: list[Event],
                    as_of: datetime) -> list[Invoice]:
    """The customer's invoices issued up to as_of, by hand."""
    return [inv for inv in hand_invoices(customer, catalog.metrics, customer_events(customer, events), as_of,
                                         catalog.coupons, catalog.add_ons) if inv.at <= as_of]


def usage_lines(invoices: list[Invoice]) -> list[Line]:
    """The period's usage lines (not the usage billed early by progressive invoices)."""
    return [line for inv in invoices if not inv.progressive for line in inv.lines if line.fee_kind != "subscription"]


def ranges_reached(invoices: list[Invoice]) -> int:
    """The most graduated ranges any closed usage line reaches (by hand)."""
    return max((len(line.detail) for line in usage_lines(invoices) if line.charge_model == "graduated"), default=0)


def flat_amount_reached(invoices: list[Invoice]) -> bool:
    """Whether a closed graduated line reaches a range beyond the first that has a flat amount."""
    return any(row[4] > 0 for line in usage_lines(invoices) if line.charge_model == "graduated"
               for row in line.detail[1:])


def true_ups_over_usage(invoices: list[Invoice]) -> list[Line]:
    """True-up lines of periods in which their charge has events: a minimum topping real fees up."""
    return [line for inv in invoices for line in inv.lines if line.fee_kind == "true_up"
            and any(other.fee_kind == "charge" and other.metric_code == line.metric_code and other.event_count
                    for other in inv.lines)]


def _has_filter_value(line: Line, value: str) -> bool:
    return line.filter_values is not None and any(value in values for values in line.filter_values.values())


def choose(role: str, catalog: SimpleNamespace, hand: dict[str, list[Invoice]], as_of: datetime) -> Customer | None:
    """The customer that plays `role`, picked by its properties in the generated catalog and by
    what its closed invoices contain (computed by hand: `hand`, per running customer)."""
    running = [c for c in sorted(catalog.customers.values(), key=lambda c: c.customer_id) if c.end is None]
    inside = window_start(as_of)

    def offset_hours(c: Customer) -> float:
        return abs(as_of.astimezone(c.zone).utcoffset().total_seconds()) / 3600

    def paid(c: Customer) -> bool:
        return bool(_dec(catalog.plans[c.plan_code]["amount"]))

    def lines(c: Customer) -> list[Line]:
        return usage_lines(hand[c.customer_id])

    def with_events(c: Customer, **wanted: Any) -> list[Line]:
        return [line for line in lines(c) if line.event_count
                and all(getattr(line, name) == value for name, value in wanted.items())]

    if role == "developer_usd_non_utc":  # (a) prefer a full history and the largest UTC offset
        pool = [c for c in running if c.plan_code == "developer" and c.currency == "USD"
                and c.timezone and offset_hours(c) > 0]
        pool.sort(key=lambda c: (c.start_date >= inside, -offset_hours(c), c.customer_id))
    elif role == "scale_prefer_jpy_eur":  # (b) arrears
        pool = [c for c in running if c.plan_code.startswith("scale") and hand[c.customer_id]]
        pool.sort(key=lambda c: ({"JPY": 0, "EUR": 1}.get(c.currency, 2), c.customer_id))
    elif role == "started_inside_window":  # (c) proration of the first month
        pool = [c for c in running if c.start_date >= inside and hand[c.customer_id]]
    elif role == "coupon_holder":  # a coupon that meets a closed invoice
        pool = [c for c in running if c.coupons and paid(c)
                and any(inv.at >= min(a for _, a in c.coupons) for inv in hand[c.customer_id])]
    elif role == "entity_timezone":  # no time zone in customers.csv: the billing entity's; prefer a base fee
        pool = [c for c in running if not c.timezone and hand[c.customer_id]]
        pool.sort(key=lambda c: (not paid(c), c.customer_id))
    elif role == "deepest_graduated_range":  # the usage that reaches the most priced ranges
        pool = sorted(running, key=lambda c: (-ranges_reached(hand[c.customer_id]),
                                              not flat_amount_reached(hand[c.customer_id]), c.customer_id))
    elif role == "enterprise_minimum":  # a spending minimum; prefer a true-up over usage, then max and latest
        pool = [c for c in running if lines(c)
                and any(ch.get("min_amount") is not None for ch in catalog.plans[c.plan_code]["charges"])]
        pool.sort(key=lambda c: (not true_ups_over_usage(hand[c.customer_id]),
                                 not any(line.fee_kind == "true_up" for line in lines(c)),
                                 not (with_events(c, aggregation="max") and with_events(c, aggregation="latest")),
                                 c.customer_id))
    elif role == "marketplace_seller":  # percentage; prefer sales held at the minimum and at the maximum
        pool = [c for c in running if with_events(c, charge_model="percentage")]
        pool.sort(key=lambda c: (not any(line.notes.get("at_minimum") for line in lines(c)),
                                 -sum(1 for note in ("at_minimum", "at_maximum")
                                      if any(line.notes.get(note) for line in lines(c))),
                                 -sum(line.event_count for line in with_events(c, charge_model="percentage")),
                                 c.customer_id))
    elif role == "seat_removed":  # recurring unique count: a value removed in a closed period
        pool = [c for c in running if any(line.notes.get("removed_values") for line in lines(c))]
        pool.sort(key=lambda c: (-sum(line.notes.get("removed_values", 0) for line in lines(c)), c.customer_id))
    elif role == "storage_carried":  # recurring weighted sum: a level carried into a later period
        pool = [c for c in running
                if any(line.aggregation == "weighted_sum" and line.notes.get("level_before", 0) > 0
                       for line in lines(c))]
        pool.sort(key=lambda c: (not any(line.aggregation == "weighted_sum" and line.event_count
                                         and line.notes["level_before"] > 0 for line in lines(c)), c.customer_id))
    elif role == "package_above_free":  # packages beyond the free units
        pool = [c for c in running if any(line.notes.get("packages", 0) > 0 for line in lines(c))]
    elif role == "large_and_embed_filters":  # filter lines with events: atlas-large and atlas-embed
        pool = [c for c in running
                if any(_has_filter_value(line, "atlas-large") for line in with_events(c))
                and any(_has_filter_value(line, "atlas-embed") for line in with_events(c))]
    elif role == "trial_ended":  # an in-advance base fee invoiced at the end of a trial, prorated
        pool = [c for c in running if any(line.notes.get("after_trial") for inv in hand[c.customer_id]
                                          for line in inv.lines if line.fee_kind == "subscription")]
    elif role == "yearly_usage_monthly":  # a yearly base fee in advance, usage invoiced every month
        pool = [c for c in running if any(line.fee_kind == "subscription" and line.notes.get("interval") == "yearly"
                                          for inv in hand[c.customer_id] for line in inv.lines)]
    elif role == "upgraded":  # a plan change (a second row of the subscription) in a closed period
        pool = [c for c in running
                if len(c.phases) > 1 and any(inv.at == c.phases[1][2] for inv in hand[c.customer_id])]
    elif role == "contract_override":  # a subscription billed on its contract (subscription_overrides.yml)
        pool = [c for c in running if c.override is not None and lines(c)]
    elif role == "add_on_invoice":  # an add-on's one-off invoice
        pool = [c for c in running if any(inv.one_off for inv in hand[c.customer_id])]
    elif role == "stacked_taxes":  # two rates on one invoice, each rounded on its own
        pool = [c for c in running if len(c.tax_rates) > 1
                and any(all(inv.taxes.values()) for inv in hand[c.customer_id] if inv.taxes)]
    elif role == "vat_customer":  # the other regime: a VAT rate named by the customer, on fees in euros
        pool = [c for c in running if c.currency == "EUR" and any(
            sum(inv.taxes.values()) for inv in hand[c.customer_id])]
    elif role == "prepaid_credits":  # a wallet's purchases invoiced, its credits paying invoices
        pool = [c for c in running if c.wallets and any(inv.credits for inv in hand[c.customer_id])
                and any(inv.lines[0].fee_kind == "credit_purchase" for inv in hand[c.customer_id])]
    elif role == "progressive_billing":  # usage invoiced early (thresholds), deducted at the period's end
        pool = [c for c in running if any(inv.progressive for inv in hand[c.customer_id])]
        pool.sort(key=lambda c: (not any(inv.billed_early for inv in hand[c.customer_id]),
                                 -sum(1 for inv in hand[c.customer_id] if inv.progressive), c.customer_id))
    elif role == "tax_exempt":  # fees but no tax
        pool = [c for c in running if not c.tax_rates and any(inv.fees for inv in hand[c.customer_id])]
    else:
        raise AssertionError(role)
    return pool[0] if pool else None


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module", params=[20_000, 400_000], ids=["20k_events", "400k_events"])
def billed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """The demo billed by Meterline. 20k events is the reference run; at 400k events (same
    catalog: it depends only on seed, customers and as_of) usage reaches the priced ranges."""
    home = tmp_path_factory.mktemp(f"hand_{request.param}") / "home"
    with pytest.MonkeyPatch.context() as mp:  # never bill into the developer's METERLINE_* setup
        for name in [n for n in os.environ if n.startswith("METERLINE_")]:
            mp.delenv(name)
        summary = generate_demo(home, customers=12, events=request.param, seed=11, as_of=AS_OF, overwrite=True)
        settings = get_settings(home)
        _, report, _, outputs = run_all(settings, as_of=AS_OF.replace(tzinfo=None))
    return SimpleNamespace(events_param=request.param, summary=summary, report=report,
                           **vars(bill_by_hand(summary.catalog_dir, summary.landing_dir, outputs)))


def bill_by_hand(catalog_dir: Path, landing_dir: Path, outputs: dict) -> SimpleNamespace:
    """The hand bill of every running customer, beside Meterline's exported invoices and credit notes."""
    catalog = load_catalog(catalog_dir)
    events, good_rows, bad_rows = read_landing(landing_dir, catalog.metrics, AS_OF)
    invoices = json.loads(Path(outputs["json"]).read_text())
    credit_notes = json.loads((Path(outputs["json"]).parent / "credit_notes.json").read_text())
    running = [c for c in catalog.customers.values() if c.end is None]
    hand = {c.customer_id: closed_invoices(c, catalog, events, AS_OF) for c in running}
    hand_credit_notes = {c.customer_id: credit_notes_by_hand(c, AS_OF) for c in running}
    chosen = {role: choose(role, catalog, hand, AS_OF) for role in ROLES}
    return SimpleNamespace(catalog=catalog, events=events, good_rows=good_rows, bad_rows=bad_rows, invoices=invoices,
                           credit_notes=credit_notes, hand=hand, hand_credit_notes=hand_credit_notes, chosen=chosen)


# -------------------------------------------------------------------------------- tests


def test_hand_parsing_agrees_with_ingestion_counts(billed: SimpleNamespace) -> None:
    """The hand reading of the event contract accepts exactly what ingestion accepted."""
    assert billed.good_rows == billed.report.accepted == billed.summary.events_written, (
        f"hand-accepted rows {billed.good_rows}, ingested {billed.report.accepted}, "
        f"generated {billed.summary.events_written}")
    assert billed.bad_rows == billed.report.rejected == billed.summary.bad_rows_planted


def _line_key(line: dict | Line) -> tuple[str, str, str]:
    if isinstance(line, Line):
        return line.key
    return line["fee_kind"], line["metric_code"] or "", line["description"]


def _stamp(instant: datetime) -> str:
    return instant.strftime("%Y-%m-%dT%H:%M:%SZ")


def invoice_differences(expected: list[Invoice], actual: list[dict], currency: str) -> list[str]:
    """Every difference between hand invoices and Meterline's exported ones, paired in order."""
    problems: list[str] = []
    for hand, meter in zip(expected, actual):
        label = f"invoice at {_stamp(hand.at)} (issued {hand.issuing_date})"
        header_hand = (_stamp(hand.at), hand.issuing_date.isoformat(), hand.period_start.isoformat(),
                       hand.period_end.isoformat(), currency)
        header_meter = (meter["invoice_at"], meter["issuing_date"], meter["period_start"], meter["period_end"],
                        meter["currency"])
        if header_hand != header_meter:
            problems.append(f"{label}: (invoice_at, issuing_date, period_start, period_end, currency) "
                            f"Meterline {header_meter} != hand {header_hand}")
        hand_lines = {_line_key(line): line for line in hand.lines}
        meter_lines = {_line_key(line): line for line in meter["lines"]}
        assert len(hand_lines) == len(hand.lines), f"{label}: two hand lines share a key: {sorted(hand_lines)}"
        if len(meter_lines) != len(meter["lines"]):
            problems.append(f"{label}: two Meterline lines share a (fee_kind, metric, description): "
                            f"{sorted(_line_key(line) for line in meter['lines'])}")
        for key in sorted(set(meter_lines) - set(hand_lines)):
            problems.append(f"{label}: line {key} only in Meterline: amount {meter_lines[key]['amount']}, "
                            f"quantity {meter_lines[key]['quantity']}, events {meter_lines[key]['event_count']}")
        for key in sorted(set(hand_lines) - set(meter_lines)):
            problems.append(f"{label}: line {key} only by hand: amount {hand_lines[key].amount}, "
                            f"quantity {hand_lines[key].quantity}, events {hand_lines[key].event_count}")
        for key in sorted(set(hand_lines) & set(meter_lines)):
            h, m = hand_lines[key], meter_lines[key]
            got = (Decimal(m["quantity"]), Decimal(m["amount"]), m["service_period_start"],
                   m["service_period_end"], m["event_count"], Decimal(m["progressive_billing_credit_amount"]))
            want = (h.quantity, h.amount, h.service_start.isoformat(), h.service_end.isoformat(), h.event_count,
                    h.billed_early)
            if got != want:
                problems.append(
                    f"{label} line {key}: (quantity, amount, service start, service end, events, billed early) "
                    f"Meterline {tuple(map(str, got))} != hand {tuple(map(str, want))} "
                    f"[hand precise amount {h.precise}, Meterline precise {m['precise_amount']}; "
                    f"hand arithmetic {h.detail}; notes {h.notes}]")
        totals_meter = tuple(Decimal(meter[k]) for k in ("fees_amount", "progressive_billing_credit_amount",
                                                         "discount_amount", "tax_amount", "credit_note_credit_amount",
                                                         "prepaid_credit_amount", "total_amount"))
        totals_hand = (hand.fees, hand.billed_early, hand.discount, sum(hand.taxes.values(), Decimal(0)),
                       hand.credit_note_credits, hand.credits, hand.total)
        if totals_meter != totals_hand:
            problems.append(f"{label}: (fees, billed early, discount, tax, credit notes, credits, total) "
                            f"Meterline {tuple(map(str, totals_meter))} "
                            f"!= hand {tuple(map(str, totals_hand))}")
        taxes_meter = {t["tax_code"]: Decimal(t["amount"]) for t in meter["taxes"]}
        if taxes_meter != hand.taxes:
            problems.append(f"{label}: taxes per rate Meterline {taxes_meter} != hand {hand.taxes}")
    return problems


def _is_one_off(invoice: dict) -> bool:
    return any(line["fee_kind"] in ("add_on", "credit_purchase") for line in invoice["lines"])


def customer_differences(billed: SimpleNamespace, customer: Customer) -> list[str]:
    """Every difference between the customer's closed invoices, by Meterline and by hand."""
    # At one instant the subscription's invoice comes before the one-off invoices (an add-on's, a purchase
    # of credits: as by hand); one-offs at one instant (a wallet's opening purchase and a threshold top-up)
    # are paired by their line's kind, description and amount.
    expected = sorted(billed.hand[customer.customer_id], key=lambda inv: (
        inv.at, inv.one_off, inv.progressive,
        (inv.lines[0].fee_kind, inv.lines[0].description, inv.fees) if inv.one_off else ()))
    actual = sorted((inv for inv in billed.invoices
                     if inv["customer_id"] == customer.customer_id and inv["status"] == "closed"),
                    key=lambda inv: (inv["invoice_at"], _is_one_off(inv), inv["invoice_kind"] == "progressive_billing",
                                     (inv["lines"][0]["fee_kind"], inv["lines"][0]["description"],
                                      Decimal(inv["fees_amount"])) if _is_one_off(inv) else (), inv["invoice_id"]))
    # One invoice per instant at which something is invoiced: a usage period's end (with the in-advance
    # fee starting then), an in-advance fee's start (subscription, trial end), plus each add-on's own.
    # A progressive billing invoice is one of its own too.
    assert len({inv.at for inv in expected if not inv.one_off and not inv.progressive}) == sum(
        1 for inv in expected if not inv.one_off and not inv.progressive)
    assert sum(1 for inv in expected if inv.one_off and inv.lines[0].fee_kind == "add_on") == sum(
        1 for _, at in customer.add_ons if at <= AS_OF)
    if len(actual) != len(expected):
        return [f"{len(actual)} closed invoices, expected {len(expected)}; Meterline issued "
                f"{[inv['invoice_at'] for inv in actual]}, by hand {[_stamp(inv.at) for inv in expected]}"]
    return invoice_differences(expected, actual, customer.currency)


def credit_note_differences(billed: SimpleNamespace, customer: Customer) -> list[str]:
    """Every difference between the customer's credit notes (credit_notes.json) and the hand ones."""
    def row(note: dict) -> tuple:
        return (note["reason"], note["subscription_id"], note["plan_code"], note["currency"], note["issued_at"],
                note["issuing_date"], note["service_period_start"], note["service_period_end"], note["unused_days"],
                note["days_in_period"], Decimal(note["amount"]), Decimal(note["precise_amount"]), note["description"],
                note["status"], Decimal(note["tax_amount"]))

    actual = sorted(row(n) for n in billed.credit_notes if n["customer_id"] == customer.customer_id)
    expected = sorted((n.reason, customer.subscription_id, n.plan_code, customer.currency, _stamp(n.issued_at),
                       n.issuing_date.isoformat(), n.service_start.isoformat(), n.service_end.isoformat(),
                       n.unused_days, n.days_in_period, n.amount, n.precise.quantize(PRECISE, rounding=ROUND_HALF_UP),
                       n.description, "closed" if n.issued_at <= AS_OF else "draft", n.tax)
                      for n in billed.hand_credit_notes[customer.customer_id])
    problems = [f"credit note only in Meterline: {tuple(map(str, n))}" for n in actual if n not in expected]
    problems += [f"credit note only by hand: {tuple(map(str, n))}" for n in expected if n not in actual]
    return problems


def _who(customer: Customer, role: str = "") -> str:
    return (f"{customer.customer_id} ({role + ': ' if role else ''}plan {customer.plan_code}, {customer.currency}, "
            f"zone {customer.zone.key}, started {customer.start_date})")


@pytest.mark.parametrize("role", ROLES)
def test_closed_invoices_equal_the_hand_computation(billed: SimpleNamespace, role: str) -> None:
    customer = billed.chosen[role]
    if customer is None:
        pytest.skip(f"no customer fits {role} in this demo catalog")
    problems = customer_differences(billed, customer)
    assert not problems, f"{_who(customer, role)}: {len(problems)} differences:\n" + "\n".join(problems)


def test_every_running_customer_equals_the_hand_computation(billed: SimpleNamespace) -> None:
    """Beyond the chosen ones: every customer whose subscription runs (no end date), every closed invoice
    and every credit note."""
    report = []
    for customer in sorted(billed.catalog.customers.values(), key=lambda c: c.customer_id):
        if customer.end is None:
            report += [f"{_who(customer)}: {problem}" for problem in customer_differences(billed, customer)]
            report += [f"{_who(customer)}: {problem}" for problem in credit_note_differences(billed, customer)]
    assert len(billed.hand) >= billed.summary.customers // 2
    assert not report, f"{len(report)} differences:\n" + "\n".join(report)


def test_the_upgrade_credits_the_unused_days_of_its_in_advance_fee(billed: SimpleNamespace) -> None:
    """The upgraded customer's credit note, by hand: the developer fee paid in advance for the
    switch's month, from the switch day (the new plan's) to the month's end."""
    customer = billed.chosen["upgraded"]
    assert customer is not None, "no upgraded customer in the demo"
    [note] = billed.hand_credit_notes[customer.customer_id]
    old_plan, switch = customer.phases[0][1], customer.phases[1][2]
    switch_day = switch.astimezone(customer.zone).date()
    month_days = calendar.monthrange(switch_day.year, switch_day.month)[1]
    unused = month_days - switch_day.day + 1
    assert (note.reason, note.issued_at, note.service_start, note.service_end, note.unused_days,
            note.days_in_period) == ("upgrade", switch, switch_day, _last_day(switch_day), unused, month_days)
    assert note.amount == money(_dec(old_plan["amount"]) * unused / month_days, customer.currency)
    problems = credit_note_differences(billed, customer)
    assert not problems, f"{_who(customer, 'upgraded')}:\n" + "\n".join(problems)
    # Credit notes are no invoice lines: no closed invoice carries a negative or credit line.
    assert all(line.fee_kind != "credit" and Decimal(line.amount) >= 0 for inv in billed.hand[customer.customer_id]
               for line in inv.lines)


# Roles that the 20k-event run may lack: usage too small to reach them.
ROLES_FROM_400K = {"package_above_free", "progressive_billing"}  # usage large enough to be priced


def test_the_chosen_customers_exercise_what_they_are_chosen_for(billed: SimpleNamespace) -> None:
    catalog, chosen, hand = billed.catalog, billed.chosen, billed.hand
    large = billed.events_param >= 400_000
    a, b, c = chosen["developer_usd_non_utc"], chosen["scale_prefer_jpy_eur"], chosen["started_inside_window"]
    assert a is not None and catalog.plans[a.plan_code]["pay_in_advance"] is True
    assert b is not None and catalog.plans[b.plan_code]["pay_in_advance"] is False
    assert c is not None and c.start_date > window_start(AS_OF), "the demo always starts some subscriptions inside"
    for role, customer in chosen.items():
        if customer is None and role in ROLES_FROM_400K and not large:
            continue
        assert customer is not None, f"no customer for {role}"
        if role != "started_inside_window":
            assert customer_events(customer, billed.events), f"{role}: {customer.customer_id} has no events"
    # Events that name only the customer reach the chosen customers' bills.
    ids = {customer.customer_id for customer in chosen.values() if customer is not None}
    assert any(e.subscription_id is None and e.customer_id in ids for e in billed.events)

    def lines(role: str) -> list[Line]:
        return [] if chosen[role] is None else usage_lines(hand[chosen[role].customer_id])

    def who(role: str) -> str:
        return f"{role}: {chosen[role].customer_id} (plan {chosen[role].plan_code})"

    # Graduated pricing: at 400k events the deepest usage crosses a range bound whose range has a flat amount.
    deepest = hand[chosen["deepest_graduated_range"].customer_id]
    assert ranges_reached(deepest) >= (2 if large else 1), (
        f"{who('deepest_graduated_range')} reaches only {ranges_reached(deepest)} graduated range(s)")
    assert flat_amount_reached(deepest) or not large, f"{who('deepest_graduated_range')}: no flat amount reached"
    # Spending minimum plan (enterprise): its peak (max), last reported (latest) and volume-priced lines, and a
    # true-up (at 400k events, one that tops up fees of real usage).
    enterprise = lines("enterprise_minimum")
    assert any(line.aggregation == "max" and line.event_count and line.quantity > 0 for line in enterprise), (
        f"{who('enterprise_minimum')}: no max line with events")
    assert any(line.aggregation == "latest" and line.event_count and line.quantity > 0 for line in enterprise), (
        f"{who('enterprise_minimum')}: no latest line with events")
    assert any(line.charge_model == "volume" and line.quantity > 0 for line in enterprise), (
        f"{who('enterprise_minimum')}: no volume line with units")
    assert any(line.fee_kind == "true_up" for line in enterprise), f"{who('enterprise_minimum')}: no true-up line"
    assert true_ups_over_usage(hand[chosen["enterprise_minimum"].customer_id]) or not large, (
        f"{who('enterprise_minimum')}: no true-up in a period with usage")
    # Percentage (marketplace commission): sales priced one by one.
    assert any(line.charge_model == "percentage" and line.event_count and line.amount > 0
               for line in lines("marketplace_seller")), f"{who('marketplace_seller')}: no marketplace sales"
    # The demo's micro-sales (0.99 to 1.99) pay the per-sale minimum commission.
    assert any(line.notes.get("at_minimum") for line in lines("marketplace_seller")), (
        f"{who('marketplace_seller')}: no sale held at the per-sale minimum")
    # Recurring unique count: a seat removed in a closed period.
    assert any(line.notes.get("removed_values") for line in lines("seat_removed")), (
        f"{who('seat_removed')}: no seat removed")
    # Recurring weighted sum: a storage level carried into a later closed period.
    assert any(line.aggregation == "weighted_sum" and line.notes["level_before"] > 0
               for line in lines("storage_carried")), f"{who('storage_carried')}: no storage level carried"
    # Package: requests beyond the free units (400k events).
    assert any(line.charge_model == "package" and line.notes["packages"] > 0 and line.amount > 0
               for line in lines("package_above_free")) or not large, (
        "package_above_free: no package beyond the free units")
    # Filters: atlas-large and embedding tokens on lines of their own.
    for model in ("atlas-large", "atlas-embed"):
        assert any(_has_filter_value(line, model) and line.event_count for line in lines("large_and_embed_filters")), (
            f"{who('large_and_embed_filters')}: no {model} filter line with events")
    # Trial: no base fee for the first trial_period local days; the first in-advance fee at the trial's end,
    # prorated over the month, alone on its invoice (usage of the trial days waits for the period's end).
    t = chosen["trial_ended"]
    t_plan = t.phases[0][1]
    trial_end = t.start_date + timedelta(days=int(t_plan["trial_period"]))
    t_fees = [(inv, line) for inv in hand[t.customer_id] for line in inv.lines if line.fee_kind == "subscription"]
    inv, first_fee = t_fees[0]
    month_days = calendar.monthrange(trial_end.year, trial_end.month)[1]
    assert (inv.at, first_fee.service_start, first_fee.service_end, [line.key for line in inv.lines]) == (
        datetime.combine(trial_end, time(0), t.zone).astimezone(UTC), trial_end, _last_day(trial_end),
        [first_fee.key]), f"{who('trial_ended')}: first base fee {first_fee} at {inv.at}"
    assert first_fee.amount == money(_dec(t_plan["amount"]) * (_last_day(trial_end).day - trial_end.day + 1)
                                     / month_days, t.currency) > 0
    assert not any(inv.at == t.start for inv in hand[t.customer_id]), "an invoice at the start of a trial"
    # Yearly plan: the base fee once, at the start, prorated over the 365/366-day calendar year; usage every month.
    y = chosen["yearly_usage_monthly"]
    y_plan = y.phases[0][1]
    [(inv, y_fee)] = [(inv, line) for inv in hand[y.customer_id] for line in inv.lines
                      if line.fee_kind == "subscription"]
    year_days = 366 if calendar.isleap(y.start_date.year) else 365
    assert (inv.at, y_fee.service_start, y_fee.service_end) == (y.start, y.start_date, date(y.start_date.year, 12, 31))
    assert y_fee.amount == money(_dec(y_plan["amount"]) * ((date(y.start_date.year, 12, 31) - y.start_date).days + 1)
                                 / year_days, y.currency)
    monthly = [inv for inv in hand[y.customer_id]
               if inv.lines and all(line.fee_kind != "subscription" for line in inv.lines)]
    assert len(monthly) >= 2 and all(inv.issuing_date.day == 1 for inv in monthly), f"{who('yearly_usage_monthly')}"
    assert any(line.event_count for inv in monthly for line in inv.lines), f"{who('yearly_usage_monthly')}: no usage"
    # Upgrade: the old phase's usage invoiced at the switch; the new plan's fee (in arrears) from the switch day;
    # recurring levels carried across the change (at 400k events a seat and stored GB cross it).
    u = chosen["upgraded"]
    switch = u.phases[1][2]
    switch_day = switch.astimezone(u.zone).date()
    [at_switch] = [inv for inv in hand[u.customer_id] if inv.at == switch]
    assert at_switch.lines and all(line.fee_kind == "charge" and line.service_end == switch_day - timedelta(1)
                                   for line in at_switch.lines), f"{who('upgraded')}: invoice at the switch"
    assert {line.description for line in at_switch.lines} == {
        p.description for ch in u.phases[0][1]["charges"] for p in charge_prices(ch, catalog.metrics[ch["metric"]])}
    new_fees = [line for inv in hand[u.customer_id] for line in inv.lines
                if line.fee_kind == "subscription" and line.notes["plan_code"] == u.phases[1][0]]
    assert new_fees and new_fees[0].service_start == switch_day, f"{who('upgraded')}: no fee of the new plan"
    after = [line for inv in hand[u.customer_id] for line in inv.lines if inv.at > switch]
    assert any(line.notes.get("carried_values") or line.notes.get("level_before") for line in after) or not large, (
        f"{who('upgraded')}: no recurring level carried across the change")
    # Contract: the overridden base fee and atlas-large input-token price replace the plan's.
    o = chosen["contract_override"]
    base_plan, o_plan = catalog.plans[o.phases[0][0]], o.phases[0][1]
    assert o_plan != base_plan
    assert any(line.fee_kind == "subscription" and line.detail[0][1] == line.detail[0][2]
               and line.amount == _dec(o.override["amount"]) != _dec(base_plan["amount"])
               for inv in hand[o.customer_id] for line in inv.lines), f"{who('contract_override')}: base fee"
    for ch_over in o.override.get("charges") or []:
        for f_over in ch_over.get("filters") or []:
            priced = [line for line in lines("contract_override") if line.metric_code == ch_over["metric"]
                      and line.filter_values == {k: [str(v) for v in vs] for k, vs in f_over["values"].items()}
                      and line.event_count]
            assert priced and all(row[3] == _dec(f_over["properties"]["amount"]) for line in priced
                                  for row in line.detail), f"{who('contract_override')}: {f_over} not exercised"
    # Progressive billing: usage invoiced early when a threshold is reached, deducted at the period's end
    # (reached by the demo's developer customers once usage is large enough).
    pb = chosen["progressive_billing"]
    assert pb is not None or not large, "no customer reached a usage threshold"
    if pb is not None:
        early = [inv for inv in hand[pb.customer_id] if inv.progressive]
        assert early and all(line.fee_kind == "charge" and line.amount > 0 for inv in early for line in inv.lines)
        actual_early = [inv for inv in billed.invoices if inv["customer_id"] == pb.customer_id
                        and inv["status"] == "closed" and inv["invoice_kind"] == "progressive_billing"]
        assert len(actual_early) == len(early), who("progressive_billing")
    # Add-on: a one-off invoice of its own at applied_at, one line, no coupon.
    a_on = chosen["add_on_invoice"]
    one_offs = [inv for inv in hand[a_on.customer_id] if inv.one_off]
    assert one_offs and all(len(inv.lines) == 1 and inv.lines[0].fee_kind == "add_on" and inv.discount == 0
                            and inv.at in {at for _, at in a_on.add_ons} for inv in one_offs)
    actual_one_offs = [inv for inv in billed.invoices if inv["customer_id"] == a_on.customer_id
                       and inv["status"] == "closed" and _is_one_off(inv)]
    assert len(actual_one_offs) == len(one_offs) and all(len(inv["lines"]) == 1 for inv in actual_one_offs)
    # Prepaid credits: the wallet tops up under a threshold (docs/invoice-amounts.md, "Threshold top-ups"), so
    # it pays every invoice from its opening in full; each check that adds top-ups buys the fewest that bring
    # the ongoing balance above the threshold, in one purchase invoice (its notes: the balance before, by hand).
    pc = chosen["prepaid_credits"]
    [wallet] = pc.wallets
    [rule] = [rule for rule in wallet.get("top_ups", []) if rule.get("threshold_credits") is not None]
    opened, rate = _local_instant(wallet["started_at"], pc.zone), _dec(wallet["rate_amount"])
    threshold, step = _dec(rule["threshold_credits"]) * rate, _dec(rule["purchased_credits"]) * rate
    paid = [inv for inv in hand[pc.customer_id] if inv.at >= opened and inv.lines[0].fee_kind != "credit_purchase"]
    assert paid and all(inv.total == 0 for inv in paid) and any(inv.credits for inv in paid), (
        f"{who('prepaid_credits')}: an invoice the threshold wallet did not pay in full")
    purchases = [inv for inv in hand[pc.customer_id] if inv.lines[0].fee_kind == "credit_purchase"]
    top_ups = [inv.lines[0] for inv in purchases if inv.lines[0].notes.get("threshold_top_ups")]
    for line in top_ups:
        count, before = line.notes["threshold_top_ups"], line.notes["ongoing_balance_before"]
        assert line.amount == count * step and before + (count - 1) * step <= threshold < before + count * step, (
            f"{who('prepaid_credits')}: threshold top-up {line}")
    assert len(purchases) == len(wallet["transactions"]) - sum(
        1 for t in wallet["transactions"] if "granted_credits" in t) + len(top_ups)
    actual_purchases = [inv for inv in billed.invoices if inv["customer_id"] == pc.customer_id
                        and inv["status"] == "closed" and inv["invoice_kind"] == "credit_purchase"]
    assert len(actual_purchases) == len(purchases), who("prepaid_credits")
    # The demo sizes the wallet on the plan's monthly fee (orchestration/demo/generator.py), so it tops up
    # within the window at every demo size.
    assert top_ups, f"{who('prepaid_credits')}: no threshold top-up"
    # Together the chosen customers' closed invoices use every aggregation and charge model of the price book.
    checked = [line for role in ROLES for line in lines(role) if line.fee_kind == "charge" and line.event_count]
    used_aggregations = {catalog.metrics[ch["metric"]]["aggregation"] for p in catalog.plans.values()
                         for ch in p["charges"]}
    used_models = {ch["charge_model"] for p in catalog.plans.values() for ch in p["charges"]}
    assert {line.aggregation for line in checked} == used_aggregations
    assert {line.charge_model for line in checked} == used_models
