"""End to end: Meterline's invoices for chosen demo customers equal a hand computation.

The demo data set is generated, billed with the real pipeline (catalog, ingestion, dbt,
export), and then billed a second time here, in plain Python and ``decimal.Decimal``, from
the input files only: the catalog YAML/CSV files, the Parquet day files and the JSON-lines
file. Nothing of the dbt models is reused; the semantics are those of docs/catalog.md:

* events: a row counts if it has a transaction_id, a code that is a billable metric, a
  subscription or a customer, a timestamp (ISO 8601 or unix seconds) not later than as_of, a
  JSON-object ``properties`` and, for ``sum`` metrics, a numeric ``properties[field]``;
  re-sends are deduplicated by (subscription or customer, transaction_id), the first row in
  ingestion order winning (files sorted by path, rows in file order);
* billing time: calendar months in the customer's time zone (the billing entity's when the
  customer has none), from the subscription's start; an in-advance plan bills its base fee at
  the start and at each period start, an arrears plan at each period end; a partial first
  month is prorated by whole local days; usage is billed at the end of its period; a base fee
  of "0" (the free plan) gives no base fee line;
* pricing: ``standard`` = units x amount; ``graduated`` = every reached range prices the units
  above the previous ``to_value`` up to its own and adds its ``flat_amount`` (the first range
  always); each line is rounded half-up to the currency's decimals;
* coupons: applied to the customer's invoices with fees above zero issued at or after the
  coupon's application, in invoice order, never below zero.

Every closed invoice of each chosen customer must match line by line, to the last digit.
The reference run has 20k events; a second run at 400k events (the catalog, hence the
customers, stay the same) makes usage reach the priced graduated ranges and their flat amounts,
which 20k events never do.
"""

from __future__ import annotations

import calendar
import csv
import json
import os
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation, localcontext
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
ROLES = ("developer_usd_non_utc", "scale_prefer_jpy_eur", "started_inside_window", "coupon_holder",
         "entity_timezone", "deepest_graduated_range")


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
    value: Decimal  # the summed field for sum metrics, 1 for count metrics


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, (dict, list, bool)):
        return None
    text = str(value).strip()
    return text or None


def _parse_timestamp(value: Any) -> datetime | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, UTC)
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    try:
        return datetime.fromtimestamp(int(text), UTC)  # unix seconds written as text
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _number(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value))
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
            props = json.loads(props)
        except ValueError:
            return None
    if not isinstance(props, dict) or code not in metrics:
        return None
    metric = metrics[code]
    if metric["aggregation"] == "sum":
        value = _number(props.get(metric["field"]))
        if value is None:
            return None
    else:
        value = Decimal(1)
    return Event(tx, sub, cus, code, at, value)


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
                    records.append(json.loads(line))
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


# ------------------------------------------------------------------------------ pricing


def money(value: Decimal, currency: str) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-CURRENCY_DECIMALS[currency]), rounding=ROUND_HALF_UP)


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


def charge_amount(charge: dict, units: Decimal) -> tuple[Decimal, list[tuple]]:
    props = charge["properties"]
    if charge["charge_model"] == "standard":
        unit = _dec(props["amount"])
        return units * unit, [(None, None, units, unit, Decimal(0), units * unit)]
    assert charge["charge_model"] == "graduated", charge
    return graduated(units, props["graduated_ranges"])


# ----------------------------------------------------------------------------- invoices


def _next_month(day: date) -> date:
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


def _last_day(day: date) -> date:
    return _next_month(day) - timedelta(1)


@dataclass
class Line:
    fee_kind: str  # subscription | charge
    metric_code: str | None
    service_start: date
    service_end: date
    quantity: Decimal
    amount: Decimal  # rounded
    precise: Decimal
    event_count: int
    detail: list[tuple] = field(default_factory=list)


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


def base_fee_line(plan: dict, currency: str, first: date, last: date) -> Line:
    """The base fee for whole local days first..last of one calendar month."""
    days, month_days = (last - first).days + 1, calendar.monthrange(first.year, first.month)[1]
    with localcontext() as ctx:
        ctx.prec = 60
        precise = _dec(plan["amount"]) * days / month_days
    return Line("subscription", None, first, last, Decimal(1), money(precise, currency), precise, 0,
                [(days, month_days)])


def hand_invoices(customer: Customer, plan: dict, events: list[Event], as_of: datetime,
                  coupons: dict[str, dict]) -> list[Invoice]:
    """Every invoice issued up to as_of for the customer (which has no end date)."""
    assert customer.end is None, "ended subscriptions are outside this test's hand computation"
    assert plan["interval"] == "monthly"
    currency, zone = plan["currency"], customer.zone
    assert customer.currency == currency

    def instant(day: date) -> datetime:
        return datetime.combine(day, time(0), zone).astimezone(UTC)

    usage: dict[tuple[date, str], list[Decimal]] = defaultdict(list)
    for event in events:
        usage[(event.at.astimezone(zone).date().replace(day=1), event.code)].append(event.value)

    def base_fee(first: date, last: date) -> list[Line]:
        # A plan whose base fee is "0" (free) has no base fee line at all.
        return [base_fee_line(plan, currency, first, last)] if _dec(plan["amount"]) else []

    invoices: list[Invoice] = []
    start = customer.start_date
    if plan["pay_in_advance"] and customer.start <= as_of:
        invoices.append(Invoice(customer.start, start, start, _last_day(start), base_fee(start, _last_day(start))))
    period_start, boundary = start, _next_month(start)
    while instant(boundary) <= as_of:
        period_end = boundary - timedelta(1)
        if plan["pay_in_advance"]:
            lines = base_fee(boundary, _last_day(boundary))
        else:
            lines = base_fee(period_start, period_end)
        for charge in plan["charges"]:
            values = usage.get((period_start.replace(day=1), charge["metric"]), [])
            units = sum(values, Decimal(0))
            precise, detail = charge_amount(charge, units)
            lines.append(Line("charge", charge["metric"], period_start, period_end, units,
                              money(precise, currency), precise, len(values), detail))
        invoices.append(Invoice(instant(boundary), boundary, period_start, period_end, lines))
        period_start, boundary = boundary, _next_month(boundary)

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


def ranges_reached(customer: Customer, catalog: SimpleNamespace, events: list[Event], as_of: datetime) -> int:
    """The most graduated ranges any closed usage line of the customer reaches (by hand)."""
    plan = catalog.plans[customer.plan_code]
    graduated_metrics = {c["metric"] for c in plan["charges"] if c["charge_model"] == "graduated"}
    return max((len(line.detail) for inv in hand_invoices(customer, plan, customer_events(customer, events),
                                                          as_of, catalog.coupons)
                if inv.at <= as_of for line in inv.lines if line.metric_code in graduated_metrics), default=0)


def choose(role: str, catalog: SimpleNamespace, events: list[Event], as_of: datetime) -> Customer | None:
    """The customer that plays `role`, picked by its properties in the generated catalog."""
    running = [c for c in sorted(catalog.customers.values(), key=lambda c: c.customer_id) if c.end is None]
    inside = window_start(as_of)

    def offset_hours(c: Customer) -> float:
        return abs(as_of.astimezone(c.zone).utcoffset().total_seconds()) / 3600

    def closed(c: Customer) -> list[Invoice]:
        plan = catalog.plans[c.plan_code]
        return [inv for inv in hand_invoices(c, plan, [], as_of, catalog.coupons) if inv.at <= as_of]

    def paid(c: Customer) -> bool:
        return bool(_dec(catalog.plans[c.plan_code]["amount"]))

    if role == "developer_usd_non_utc":  # (a) prefer a full history and the largest UTC offset
        pool = [c for c in running if c.plan_code == "developer" and c.currency == "USD"
                and c.timezone and offset_hours(c) > 0]
        pool.sort(key=lambda c: (c.start_date >= inside, -offset_hours(c), c.customer_id))
    elif role == "scale_prefer_jpy_eur":  # (b) arrears
        pool = [c for c in running if c.plan_code.startswith("scale") and closed(c)]
        pool.sort(key=lambda c: ({"JPY": 0, "EUR": 1}.get(c.currency, 2), c.customer_id))
    elif role == "started_inside_window":  # (c) proration of the first month
        pool = [c for c in running if c.start_date >= inside and closed(c)]
    elif role == "coupon_holder":  # a coupon that meets a closed invoice
        pool = [c for c in running if c.coupons and paid(c)
                and any(inv.at >= min(a for _, a in c.coupons) for inv in closed(c))]
    elif role == "entity_timezone":  # no time zone in customers.csv: the billing entity's
        pool = [c for c in running if not c.timezone and paid(c)]
    elif role == "deepest_graduated_range":  # the usage that reaches the most priced ranges
        reached = {c.customer_id: ranges_reached(c, catalog, events, as_of) for c in running}
        pool = sorted(running, key=lambda c: (-reached[c.customer_id], c.customer_id))
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
    chosen = {role: choose(role, catalog, events, AS_OF) for role in ROLES}
    return SimpleNamespace(events_param=request.param, summary=summary, report=report, catalog=catalog,
                           events=events, good_rows=good_rows, bad_rows=bad_rows, invoices=invoices,
                           chosen=chosen)


# -------------------------------------------------------------------------------- tests


def test_hand_parsing_agrees_with_ingestion_counts(billed: SimpleNamespace) -> None:
    """The hand reading of the event contract accepts exactly what ingestion accepted."""
    assert billed.good_rows == billed.report.accepted == billed.summary.events_written, (
        f"hand-accepted rows {billed.good_rows}, ingested {billed.report.accepted}, "
        f"generated {billed.summary.events_written}")
    assert billed.bad_rows == billed.report.rejected == billed.summary.bad_rows_planted


def _line_key(line: dict | Line) -> tuple[str, str]:
    if isinstance(line, Line):
        return line.fee_kind, line.metric_code or ""
    return line["fee_kind"], line["metric_code"] or ""


def _stamp(instant: datetime) -> str:
    return instant.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize("role", ROLES)
def test_closed_invoices_equal_the_hand_computation(billed: SimpleNamespace, role: str) -> None:
    catalog = billed.catalog
    customer = billed.chosen[role]
    if customer is None:
        pytest.skip(f"no customer fits {role} in this demo catalog")
    plan = catalog.plans[customer.plan_code]
    currency = plan["currency"]
    expected = [inv for inv in hand_invoices(customer, plan, customer_events(customer, billed.events), AS_OF,
                                             catalog.coupons) if inv.at <= AS_OF]
    actual = sorted((inv for inv in billed.invoices
                     if inv["customer_id"] == customer.customer_id and inv["status"] == "closed"),
                    key=lambda inv: (inv["invoice_at"], inv["invoice_id"]))
    who = (f"{customer.customer_id} ({role}: plan {customer.plan_code}, {currency}, "
           f"zone {customer.zone.key}, started {customer.start_date})")

    # One invoice per period end passed since the start, plus the start invoice of an in-advance plan.
    boundaries = sum(1 for inv in expected if inv.issuing_date.day == 1 and inv.issuing_date != customer.start_date)
    advance_start = 1 if plan["pay_in_advance"] else 0
    assert len(expected) == boundaries + advance_start
    assert len(actual) == len(expected), (
        f"{who}: {len(actual)} closed invoices, expected {len(expected)} "
        f"({boundaries} period ends passed + {advance_start} start invoice); Meterline issued "
        f"{[inv['invoice_at'] for inv in actual]}, by hand {[_stamp(inv.at) for inv in expected]}")

    problems: list[str] = []
    for hand, meter in zip(expected, actual):
        label = f"invoice at {_stamp(hand.at)} (issued {hand.issuing_date})"
        header_hand = (_stamp(hand.at), hand.issuing_date.isoformat(), hand.period_start.isoformat(),
                       hand.period_end.isoformat())
        header_meter = (meter["invoice_at"], meter["issuing_date"], meter["period_start"], meter["period_end"])
        if header_hand != header_meter:
            problems.append(f"{label}: (invoice_at, issuing_date, period_start, period_end) "
                            f"Meterline {header_meter} != hand {header_hand}")
        assert meter["currency"] == currency
        hand_lines = {_line_key(line): line for line in hand.lines}
        meter_lines = {_line_key(line): line for line in meter["lines"]}
        assert len(meter_lines) == len(meter["lines"]), f"{label}: two lines for one fee: {meter['lines']}"
        if set(hand_lines) != set(meter_lines):
            problems.append(f"{label}: lines {sorted(meter_lines)} != hand {sorted(hand_lines)}")
        for key in sorted(set(hand_lines) & set(meter_lines)):
            h, m = hand_lines[key], meter_lines[key]
            got = (Decimal(m["quantity"]), Decimal(m["amount"]), m["service_period_start"],
                   m["service_period_end"], m["event_count"])
            want = (h.quantity, h.amount, h.service_start.isoformat(), h.service_end.isoformat(), h.event_count)
            if got != want:
                problems.append(
                    f"{label} line {key}: (quantity, amount, service start, service end, events) "
                    f"Meterline {tuple(map(str, got))} != hand {tuple(map(str, want))} "
                    f"[hand precise amount {h.precise}, Meterline precise {m['precise_amount']}]")
        totals_meter = tuple(Decimal(meter[k]) for k in ("fees_amount", "discount_amount", "total_amount"))
        totals_hand = (hand.fees, hand.discount, hand.total)
        if totals_meter != totals_hand:
            problems.append(f"{label}: (fees, discount, total) Meterline {tuple(map(str, totals_meter))} "
                            f"!= hand {tuple(map(str, totals_hand))}")
    assert not problems, f"{who}: {len(problems)} differences:\n" + "\n".join(problems)


def test_the_chosen_customers_exercise_what_they_are_chosen_for(billed: SimpleNamespace) -> None:
    catalog, chosen = billed.catalog, billed.chosen
    a, b, c = chosen["developer_usd_non_utc"], chosen["scale_prefer_jpy_eur"], chosen["started_inside_window"]
    assert a is not None and catalog.plans[a.plan_code]["pay_in_advance"] is True
    assert b is not None and catalog.plans[b.plan_code]["pay_in_advance"] is False
    assert c is not None and c.start_date > window_start(AS_OF), "the demo always starts some subscriptions inside"
    for role, customer in chosen.items():
        assert customer is not None, f"no customer for {role}"
        if role != "started_inside_window":
            assert customer_events(customer, billed.events), f"{role}: {customer.customer_id} has no events"
    # Events that name only the customer reach the chosen customers' bills.
    ids = {customer.customer_id for customer in chosen.values()}
    assert any(e.subscription_id is None and e.customer_id in ids for e in billed.events)
    # Graduated pricing: at 400k events the deepest usage crosses two range bounds (a flat amount included).
    deepest = ranges_reached(chosen["deepest_graduated_range"], catalog, billed.events, AS_OF)
    assert deepest >= (3 if billed.events_param >= 400_000 else 1), (
        f"{chosen['deepest_graduated_range'].customer_id} reaches only {deepest} graduated range(s)")
