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
  coupon's application, in invoice order, never below zero.

Every closed invoice of every customer whose subscription runs must match line by line (lines
keyed by fee kind, metric and description: filter lines share their charge's metric), to the
last digit: header, lines (quantity, amount, service days, event count) and totals. Customers
are also chosen by role, and a test checks that the roles hold, so that the comparison cannot
pass vacuously: together their closed invoices use every aggregation and charge model of the
demo price book, with filter lines for atlas-large and embeddings, a seat removed, a storage
level carried into a later month, marketplace sales under the percentage model, and the
enterprise plan's max, latest and volume lines and its spending minimum's true-up. The
reference run has 20k events; a second run at 400k events (the catalog, hence the customers,
stay the same) makes usage reach the priced graduated ranges and their flat amounts, requests
beyond the package's free units and true-ups over real usage, which 20k events do not.
"""

from __future__ import annotations

import calendar
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
         "seat_removed", "storage_carried", "package_above_free", "large_and_embed_filters")


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
    plan_code: str
    start: datetime  # UTC instant
    end: datetime | None
    coupons: list[tuple[str, datetime]] = field(default_factory=list)

    @property
    def start_date(self) -> date:
        return self.start.astimezone(self.zone).date()


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

    entity_zone = yml("billing_entity.yml")["billing_entity"]["timezone"]
    metrics = {m["code"]: m for m in yml("billable_metrics.yml")["billable_metrics"]}
    plans = {p["code"]: p for p in yml("plans.yml")["plans"]}
    coupons = {c["code"]: c for c in (yml("coupons.yml") or {}).get("coupons", [])}
    customers: dict[str, Customer] = {}
    cust_rows = {r["external_customer_id"]: r for r in _csv_rows(catalog_dir / "customers.csv")}
    for sub in _csv_rows(catalog_dir / "subscriptions.csv"):
        row = cust_rows[sub["external_customer_id"]]
        zone = ZoneInfo(row["timezone"] or entity_zone)
        customers[row["external_customer_id"]] = Customer(
            customer_id=row["external_customer_id"],
            currency=row["currency"],
            timezone=row["timezone"],
            zone=zone,
            subscription_id=sub["external_subscription_id"],
            plan_code=sub["plan_code"],
            start=_local_instant(sub["started_at"], zone),
            end=_local_instant(sub["ended_at"], zone) if sub["ended_at"] else None,
        )
    applied = catalog_dir / "applied_coupons.csv"
    for row in _csv_rows(applied) if applied.exists() else []:
        c = customers[row["external_customer_id"]]
        c.coupons.append((row["coupon_code"], _local_instant(row["applied_at"], c.zone)))
    assert len(customers) == len(cust_rows), "one subscription per customer in the demo"
    return SimpleNamespace(entity_zone=entity_zone, metrics=metrics, plans=plans, coupons=coupons,
                           customers=customers)


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
    discount: Decimal = Decimal(0)
    total: Decimal = Decimal(0)


def plan_name(plan: dict) -> str:
    return plan.get("invoice_display_name") or plan["name"]


def base_fee_line(plan: dict, currency: str, first: date, last: date) -> Line:
    """The base fee for whole local days first..last of one calendar month."""
    days, month_days = (last - first).days + 1, calendar.monthrange(first.year, first.month)[1]
    precise = _dec(plan["amount"]) * days / month_days
    return Line("subscription", None, plan_name(plan), first, last, Decimal(1), money(precise, currency), precise,
                0, detail=[(days, month_days)])


def charge_lines(charge: dict, metric: dict, currency: str, periods: list[Period],
                 events: list[tuple[int, Event]]) -> list[list[Line]]:
    """The lines of one charge in every closed period: one per price, then its true-up.
    `events`: (closed period index, event) in time order."""
    prices = charge_prices(charge, metric)
    by_price: list[list[list[Event]]] = [[[] for _ in periods] for _ in prices]
    for k, event in events:
        if event.code == charge["metric"]:
            by_price[price_of(event, prices)][k].append(event)
    result: list[list[Line]] = [[] for _ in periods]
    for p, price in enumerate(prices):
        meter = Meter(metric)
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


def hand_invoices(customer: Customer, plan: dict, metrics: dict[str, dict], events: list[Event],
                  as_of: datetime, coupons: dict[str, dict]) -> list[Invoice]:
    """Every invoice issued up to as_of for the customer (which has no end date)."""
    assert customer.end is None, "ended subscriptions are outside this test's hand computation"
    assert plan["interval"] == "monthly"
    currency, zone = plan["currency"], customer.zone
    assert customer.currency == currency

    def instant(day: date) -> datetime:
        return datetime.combine(day, time(0), zone).astimezone(UTC)

    def base_fee(first: date, last: date) -> list[Line]:
        # A plan whose base fee is "0" (free) has no base fee line at all.
        return [base_fee_line(plan, currency, first, last)] if _dec(plan["amount"]) else []

    start = customer.start_date
    periods: list[Period] = []
    period_start, boundary = start, _next_month(start)
    while instant(boundary) <= as_of:
        periods.append(Period(period_start, boundary - timedelta(1), max(customer.start, instant(period_start)),
                              instant(boundary)))
        period_start, boundary = boundary, _next_month(boundary)

    invoices: list[Invoice] = []
    if plan["pay_in_advance"] and customer.start <= as_of:
        invoices.append(Invoice(customer.start, start, start, _last_day(start), base_fee(start, _last_day(start))))
    with localcontext() as ctx:
        ctx.prec = 60
        usage: list[list[Line]] = [[] for _ in periods]
        # Each event in the closed period of its local month (events of the open one wait), in
        # time order; events at the same instant keep their ingestion order (a stable sort).
        period_of = {period.first.replace(day=1): k for k, period in enumerate(periods)}
        timed = [(period_of[month], e) for e in sorted(events, key=lambda e: e.at)
                 if (month := e.at.astimezone(zone).date().replace(day=1)) in period_of]
        for charge in plan["charges"]:
            for k, lines in enumerate(charge_lines(charge, metrics[charge["metric"]], currency, periods, timed)):
                usage[k].extend(lines)
        for k, period in enumerate(periods):
            boundary = period.last + timedelta(1)
            if plan["pay_in_advance"]:
                lines = base_fee(boundary, _last_day(boundary))
            else:
                lines = base_fee(period.first, period.last)
            invoices.append(Invoice(period.end_at, boundary, period.first, period.last, lines + usage[k]))

    for invoice in invoices:
        invoice.fees = sum((line.amount for line in invoice.lines), Decimal(0))
    invoices.sort(key=lambda inv: inv.at)
    remaining_fees = {id(inv): inv.fees for inv in invoices}
    for code, applied_at in sorted(customer.coupons, key=lambda c: c[1]):
        coupon = coupons[code]
        uses = {"once": 1, "recurring": int(coupon.get("frequency_duration") or 0)}.get(coupon["frequency"])
        for invoice in invoices:
            if uses is not None and uses <= 0:
                break
            if invoice.at < applied_at or invoice.fees <= 0:
                continue
            left = remaining_fees[id(invoice)]
            if coupon["coupon_type"] == "percentage":
                discount = money(invoice.fees * _dec(coupon["percentage_rate"]) / 100, currency)
            else:
                assert coupon["currency"] == currency
                discount = _dec(coupon["amount"])
            discount = min(discount, left)
            invoice.discount += discount
            remaining_fees[id(invoice)] = left - discount
            if uses is not None:
                uses -= 1
    for invoice in invoices:
        invoice.total = max(invoice.fees - invoice.discount, Decimal(0))
    return invoices


# ------------------------------------------------------------------------------- choice


def window_start(as_of: datetime) -> date:
    months = as_of.year * 12 + as_of.month - 1 - 2
    return date(months // 12, months % 12 + 1, 1)


def closed_invoices(customer: Customer, catalog: SimpleNamespace, events: list[Event],
                    as_of: datetime) -> list[Invoice]:
    """The customer's invoices issued up to as_of, by hand."""
    plan = catalog.plans[customer.plan_code]
    return [inv for inv in hand_invoices(customer, plan, catalog.metrics, customer_events(customer, events), as_of,
                                         catalog.coupons) if inv.at <= as_of]


def usage_lines(invoices: list[Invoice]) -> list[Line]:
    return [line for inv in invoices for line in inv.lines if line.fee_kind != "subscription"]


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
        pool.sort(key=lambda c: (-sum(1 for note in ("at_minimum", "at_maximum")
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
    catalog = load_catalog(summary.catalog_dir)
    events, good_rows, bad_rows = read_landing(summary.landing_dir, catalog.metrics, AS_OF)
    invoices = json.loads(Path(outputs["json"]).read_text())
    hand = {c.customer_id: closed_invoices(c, catalog, events, AS_OF)
            for c in catalog.customers.values() if c.end is None}
    chosen = {role: choose(role, catalog, hand, AS_OF) for role in ROLES}
    return SimpleNamespace(events_param=request.param, summary=summary, report=report, catalog=catalog,
                           events=events, good_rows=good_rows, bad_rows=bad_rows, invoices=invoices,
                           hand=hand, chosen=chosen)


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
                   m["service_period_end"], m["event_count"])
            want = (h.quantity, h.amount, h.service_start.isoformat(), h.service_end.isoformat(), h.event_count)
            if got != want:
                problems.append(
                    f"{label} line {key}: (quantity, amount, service start, service end, events) "
                    f"Meterline {tuple(map(str, got))} != hand {tuple(map(str, want))} "
                    f"[hand precise amount {h.precise}, Meterline precise {m['precise_amount']}; "
                    f"hand arithmetic {h.detail}; notes {h.notes}]")
        totals_meter = tuple(Decimal(meter[k]) for k in ("fees_amount", "discount_amount", "total_amount"))
        totals_hand = (hand.fees, hand.discount, hand.total)
        if totals_meter != totals_hand:
            problems.append(f"{label}: (fees, discount, total) Meterline {tuple(map(str, totals_meter))} "
                            f"!= hand {tuple(map(str, totals_hand))}")
    return problems


def customer_differences(billed: SimpleNamespace, customer: Customer) -> list[str]:
    """Every difference between the customer's closed invoices, by Meterline and by hand."""
    plan = billed.catalog.plans[customer.plan_code]
    expected = billed.hand[customer.customer_id]
    actual = sorted((inv for inv in billed.invoices
                     if inv["customer_id"] == customer.customer_id and inv["status"] == "closed"),
                    key=lambda inv: (inv["invoice_at"], inv["invoice_id"]))
    # One invoice per period end passed since the start, plus the start invoice of an in-advance plan.
    boundaries = sum(1 for inv in expected if inv.issuing_date.day == 1 and inv.issuing_date != customer.start_date)
    advance_start = 1 if plan["pay_in_advance"] else 0
    assert len(expected) == boundaries + advance_start
    if len(actual) != len(expected):
        return [f"{len(actual)} closed invoices, expected {len(expected)} ({boundaries} period ends passed + "
                f"{advance_start} start invoice); Meterline issued {[inv['invoice_at'] for inv in actual]}, "
                f"by hand {[_stamp(inv.at) for inv in expected]}"]
    return invoice_differences(expected, actual, plan["currency"])


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
    """Beyond the chosen ones: every customer whose subscription runs (no end date), every closed invoice."""
    report = []
    for customer in sorted(billed.catalog.customers.values(), key=lambda c: c.customer_id):
        if customer.end is None:
            report += [f"{_who(customer)}: {problem}" for problem in customer_differences(billed, customer)]
    assert len(billed.hand) >= billed.summary.customers // 2
    assert not report, f"{len(report)} differences:\n" + "\n".join(report)


# Roles that the 20k-event run may lack: usage too small to reach them.
ROLES_FROM_400K = {"package_above_free"}


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
    # Together the chosen customers' closed invoices use every aggregation and charge model of the price book.
    checked = [line for role in ROLES for line in lines(role) if line.fee_kind == "charge" and line.event_count]
    used_aggregations = {catalog.metrics[ch["metric"]]["aggregation"] for p in catalog.plans.values()
                         for ch in p["charges"]}
    used_models = {ch["charge_model"] for p in catalog.plans.values() for ch in p["charges"]}
    assert {line.aggregation for line in checked} == used_aggregations
    assert {line.charge_model for line in checked} == used_models
