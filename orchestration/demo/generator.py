"""Seeded demo data set of an AI API company ("Atlas AI").

``generate_demo`` writes a complete catalog directory (docs/catalog.md) and a landing
directory of event files that follow the event input contract:

    out_dir/catalog/   billing_entity.yml, billable_metrics.yml, plans.yml, coupons.yml,
                       add_ons.yml (copied from orchestration/demo/price_book/), customers.csv,
                       subscriptions.csv (with one plan change), applied_coupons.csv,
                       applied_add_ons.csv, subscription_overrides.yml (an enterprise contract)
    out_dir/landing/   events-YYYY-MM-DD.parquet (one per UTC day of event time) and
                       late-and-malformed.jsonl (bad rows of distinct kinds plus a few good
                       rows whose timestamp is unix seconds)

Everything is a function of (seed, customers, events, as_of): the same arguments give the
same bytes. The catalog depends only on (seed, customers, as_of), so changing the event
volume keeps the same customers. API calls (input/output tokens per model and requests, ~99%
of the events) are generated with numpy and formatted with pyarrow compute kernels, one UTC
day at a time, with no per-event Python loop. Account events (seats, storage, marketplace
sales, hosted models, provisioned throughput: only for metrics the customer's plan charges)
are drawn per customer and their properties formatted in Python.
"""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml

__all__ = ["DemoSummary", "generate_demo", "PRICE_BOOK_DIR", "PRICE_BOOK_FILES"]

UTC = timezone.utc
PRICE_BOOK_DIR = Path(__file__).resolve().parent / "price_book"
PRICE_BOOK_FILES = ("billing_entity.yml", "billable_metrics.yml", "plans.yml", "coupons.yml", "add_ons.yml",
                    "taxes.yml", "accounting.yml")

CUSTOMERS_COLUMNS = ("external_customer_id", "name", "email", "country", "currency", "timezone", "tax_codes",
                     "tax_exempt")
SUBSCRIPTIONS_COLUMNS = (
    "external_subscription_id",
    "external_customer_id",
    "plan_code",
    "started_at",
    "ended_at",
)
APPLIED_COUPONS_COLUMNS = ("external_customer_id", "coupon_code", "applied_at")
APPLIED_ADD_ONS_COLUMNS = ("external_customer_id", "add_on_code", "applied_at", "units", "amount", "description")
UPGRADE_PLAN = ("developer", "scale")  # one running developer customer moves to scale in the window

EVENT_SCHEMA = pa.schema(
    [
        pa.field("transaction_id", pa.string(), nullable=False),
        pa.field("external_subscription_id", pa.string()),
        pa.field("external_customer_id", pa.string()),
        pa.field("code", pa.string(), nullable=False),
        pa.field("timestamp", pa.string(), nullable=False),
        pa.field("properties", pa.string(), nullable=False),
    ]
)
ROW_GROUP_SIZE = 131_072
JSONL_NAME = "late-and-malformed.jsonl"
UNKNOWN_SUBSCRIPTION_ID = "sub_unknown"

# Planted anomalies (absolute counts; duplicates scale with the volume).
UNKNOWN_SUBSCRIPTION_EVENTS = 20
CONFLICTING_DUPLICATES = 10
JSONL_GOOD_ROWS = 10
EXACT_DUPLICATE_RATE = 0.002
CUSTOMER_ID_RATE = 0.005
MIN_CUSTOMERS = 10  # one per guaranteed profile below
MIN_EVENTS = 1_000

# --------------------------------------------------------------------------- customers

# (zone, country, currency, weight for the randomly drawn customers). "" = no time zone
# in customers.csv: the customer falls back to the billing entity's (America/Los_Angeles).
_ZONES: tuple[tuple[str, str, str, float], ...] = (
    ("America/New_York", "US", "USD", 5.0),
    ("America/Los_Angeles", "US", "USD", 5.0),
    ("America/Chicago", "US", "USD", 2.0),
    ("Pacific/Honolulu", "US", "USD", 1.0),
    ("Pacific/Auckland", "NZ", "USD", 1.0),
    ("Asia/Tokyo", "JP", "JPY", 1.5),
    ("Asia/Singapore", "SG", "USD", 1.0),
    ("Europe/Paris", "FR", "EUR", 2.0),
    ("Europe/Berlin", "DE", "EUR", 1.5),
    ("Europe/London", "GB", "USD", 1.5),
    ("", "US", "USD", 2.0),
)
# Taxes by location (price_book/taxes.yml): New York stacks state and city sales tax, EU and
# Japanese customers pay their VAT or consumption tax, services exported outside the US are
# zero-rated; everyone else bears the billing entity's (California) rate.
_TAX_CODES_BY_ZONE = {
    "America/New_York": "ny_state;nyc_local",
    "Europe/Paris": "vat_fr",
    "Europe/Berlin": "vat_de",
    "Asia/Tokyo": "jp_consumption",
    "Europe/London": "export_zero",
    "Pacific/Auckland": "export_zero",
    "Asia/Singapore": "export_zero",
}
# Always present, so that even a small run covers every zone family, currency and plan.
_GUARANTEED: tuple[tuple[str, str], ...] = (
    ("America/New_York", "scale"),
    ("America/New_York", "scale_yearly"),
    ("America/Chicago", "enterprise"),
    ("America/Los_Angeles", "developer"),
    ("Pacific/Honolulu", "free"),
    ("Pacific/Auckland", "developer"),
    ("Asia/Tokyo", "scale_jpy"),
    ("Europe/Paris", "developer_eur"),
    ("Europe/Berlin", "scale_eur"),
    ("", "free"),
)
_PLAN_MIX: dict[str, tuple[tuple[str, ...], tuple[float, ...]]] = {
    "USD": (("free", "developer", "scale", "scale_yearly", "enterprise"), (0.30, 0.40, 0.16, 0.06, 0.08)),
    "EUR": (("developer_eur", "scale_eur"), (0.7, 0.3)),
    "JPY": (("scale_jpy",), (1.0,)),
}
_PLAN_USAGE_FACTOR = {
    "free": 0.03,
    "developer": 1.0,
    "developer_eur": 1.0,
    "scale": 6.0,
    "scale_eur": 6.0,
    "scale_jpy": 6.0,
    "scale_yearly": 6.0,
    "enterprise": 30.0,
}
_NAME_FIRST = (
    "Acme", "Northwind", "Blue Harbor", "Quantum", "Silverline", "Redwood", "Brightpath",
    "Ironclad", "Lumen", "Cobalt", "Evergreen", "Nimbus", "Orbit", "Pioneer", "Summit",
    "Vertex", "Helix", "Meridian", "Sequoia", "Polaris", "Tidewater", "Granite", "Juniper",
    "Aurora", "Falcon", "Keystone", "Lighthouse", "Maple", "Nova", "Onyx", "Paragon",
    "Riverstone", "Sable", "Tandem", "Willow", "Zephyr", "Crescent", "Driftwood", "Ember",
    "Harbor", "Kestrel", "Larkspur", "Mosaic", "Obsidian", "Prism", "Saffron", "Tessellate",
)
_NAME_SECOND = (
    "Labs", "Analytics", "Systems", "Robotics", "Health", "Logistics", "Software", "Data",
    "AI", "Insights", "Media", "Learning", "Security", "Commerce", "Bio", "Energy",
    "Legal", "Finance", "Studio", "Networks",
)
_LEGAL_SUFFIX = {
    "US": ("Inc.", "LLC", "Corp."),
    "FR": ("SAS", "SA"),
    "DE": ("GmbH", "AG"),
    "JP": ("K.K.",),
    "GB": ("Ltd",),
    "NZ": ("Ltd",),
    "SG": ("Pte. Ltd.",),
}
_EMAIL_TLD = {
    "US": "com", "FR": "fr", "DE": "de", "JP": "co.jp", "GB": "co.uk", "NZ": "co.nz",
    "SG": "com.sg",
}

# ------------------------------------------------------------------------------ events

# Every API call yields input_tokens, output_tokens (not for embeddings) and api_requests.
# The other metrics are "account" streams, generated only for customers whose plan charges
# them, at rates that follow the customer's expected number of calls (see _account_events).
_CODES = (
    "input_tokens", "output_tokens", "api_requests",
    "seats", "storage_gb", "marketplace_sales", "hosted_models", "provisioned_throughput",
)
_SEATS, _STORAGE, _MARKETPLACE, _HOSTED, _THROUGHPUT = range(3, 8)
_CALL_EVENTS_PER_CALL = 2.7  # about: 2 for embeddings, 3 for chat
_MODELS = ("atlas-large", "atlas-small", "atlas-embed")
_EMBED = 2
_API_PROPERTIES = (
    '{"model":"atlas-large","endpoint":"/v1/chat/completions"}',
    '{"model":"atlas-small","endpoint":"/v1/chat/completions"}',
    '{"model":"atlas-embed","endpoint":"/v1/embeddings"}',
)
# lognormal token sizes: [code][model] -> (median, sigma, min, max)
_TOKEN_DIST = np.array(
    [
        [(2400, 0.9, 100, 20_000), (1100, 0.9, 100, 20_000), (500, 0.8, 100, 8_000)],
        [(450, 0.8, 50, 4_000), (250, 0.8, 50, 4_000), (50, 0.0, 50, 50)],
    ],
    dtype=np.float64,
)
# Relative traffic by local hour of day and by local weekday (Monday = 0).
_HOUR_WEIGHT = np.array(
    [0.12, 0.10, 0.08, 0.08, 0.10, 0.15, 0.25, 0.45, 0.75, 0.95, 1.0, 1.0,
     0.9, 0.95, 1.0, 1.0, 0.95, 0.85, 0.65, 0.5, 0.4, 0.3, 0.22, 0.15]
)
_WEEKDAY_WEIGHT = np.array([1.0, 1.0, 1.0, 1.0, 0.95, 0.4, 0.35])
_TIME_OF_DAY = pa.array(
    [f"T{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}Z" for s in range(86_400)], pa.string()
)


@dataclass(frozen=True)
class DemoSummary:
    """What ``generate_demo`` wrote. Paths are absolute; counts are exact."""

    out_dir: Path
    catalog_dir: Path
    landing_dir: Path
    catalog_files: tuple[Path, ...]
    event_files: tuple[Path, ...]  # the Parquet files, in day order
    jsonl_file: Path
    customers: int
    subscriptions: int  # one per customer
    plan_changes: int  # extra subscriptions.csv rows: the demo's upgrade
    events_written: int  # well-formed event records: Parquet rows + good JSON lines
    parquet_rows: int
    jsonl_good_rows: int  # good rows in the JSON-lines file (unix-seconds timestamps)
    duplicates_planted: int  # rows repeating an earlier transaction_id (exact + conflicting)
    conflicting_duplicates: int  # ... of which carry a different `tokens` value
    unknown_subscription_events: int  # well-formed rows for `sub_unknown`
    customer_id_events: int  # well-formed rows carrying external_customer_id only
    bad_rows_planted: int  # malformed rows in the JSON-lines file
    bad_rows: tuple[tuple[int, str], ...]  # (1-based line in the JSON-lines file, kind)
    window_start: datetime
    window_end: datetime

    @property
    def files(self) -> tuple[Path, ...]:
        return (*self.catalog_files, *self.event_files, self.jsonl_file)


@dataclass(frozen=True)
class _Customer:
    customer_id: str
    name: str
    email: str
    country: str
    currency: str
    timezone: str  # "" = the billing entity's
    zone: str  # resolved IANA zone
    subscription_id: str
    plan_code: str
    started_at: date
    ended_at: date | None
    start_utc: datetime
    end_utc: datetime | None


# --------------------------------------------------------------------------- public API


def generate_demo(
    out_dir: Path,
    *,
    customers: int = 60,
    events: int = 1_000_000,
    seed: int = 7,
    as_of: datetime,
    overwrite: bool = False,
) -> DemoSummary:
    """Write the demo catalog and landing files under ``out_dir``; see the module doc.

    ``as_of`` is a timezone-aware datetime (converted to UTC): the end of the event
    window, which starts on the 1st (UTC) of the month two months before as_of's month.
    ``events`` is the exact number of well-formed event records written (Parquet rows,
    duplicates included, plus the good JSON lines). ``out_dir/catalog`` and
    ``out_dir/landing`` must be absent or empty unless ``overwrite`` is true, in which case
    the files this function writes (and older events-*.parquet) are replaced.
    """
    if as_of.tzinfo is None or as_of.utcoffset() is None:
        raise ValueError("as_of must be timezone-aware (UTC)")
    if customers < MIN_CUSTOMERS:
        raise ValueError(f"customers must be at least {MIN_CUSTOMERS}, got {customers}")
    if events < MIN_EVENTS:
        raise ValueError(f"events must be at least {MIN_EVENTS}, got {events}")
    as_of = as_of.astimezone(UTC)
    window_start = _window_start(as_of)

    out_dir = Path(out_dir).resolve()
    catalog_dir = out_dir / "catalog"
    landing_dir = out_dir / "landing"
    _prepare_dir(catalog_dir, overwrite, ("*.yml", "*.csv"))
    _prepare_dir(landing_dir, overwrite, ("events-*.parquet", JSONL_NAME))

    entity = yaml.safe_load((PRICE_BOOK_DIR / "billing_entity.yml").read_text("utf-8"))
    default_zone = str(entity["billing_entity"]["timezone"])

    catalog_rng = np.random.default_rng([seed, customers, 1])
    custs = _make_customers(catalog_rng, customers, window_start, as_of, default_zone)
    coupons = _make_applied_coupons(catalog_rng, custs, window_start, as_of)
    contracts = _contracts(custs, window_start)
    catalog_files = _write_catalog(catalog_dir, custs, coupons, contracts)

    event_rng = np.random.default_rng([seed, customers, events, 2])
    plans = yaml.safe_load((PRICE_BOOK_DIR / "plans.yml").read_text("utf-8"))["plans"]
    plan_metrics = {p["code"]: frozenset(ch["metric"] for ch in p["charges"]) for p in plans}
    event_files, counts, tx_tail = _write_events(
        event_rng, landing_dir, custs, plan_metrics, seed, events, window_start, as_of
    )
    jsonl_file, bad_rows, jsonl_cust_rows = _write_jsonl(
        event_rng, landing_dir, custs, seed, tx_tail, window_start, as_of
    )

    parquet_rows = counts["rows"]
    return DemoSummary(
        out_dir=out_dir,
        catalog_dir=catalog_dir,
        landing_dir=landing_dir,
        catalog_files=catalog_files,
        event_files=event_files,
        jsonl_file=jsonl_file,
        customers=len(custs),
        subscriptions=len(custs),
        plan_changes=1 if contracts["upgrade"] else 0,
        events_written=parquet_rows + JSONL_GOOD_ROWS,
        parquet_rows=parquet_rows,
        jsonl_good_rows=JSONL_GOOD_ROWS,
        duplicates_planted=counts["exact_duplicates"] + counts["conflicts"],
        conflicting_duplicates=counts["conflicts"],
        unknown_subscription_events=counts["unknown"],
        customer_id_events=counts["customer_id"] + jsonl_cust_rows,
        bad_rows_planted=len(bad_rows),
        bad_rows=bad_rows,
        window_start=window_start,
        window_end=as_of,
    )


# ------------------------------------------------------------------------------ helpers


def _window_start(as_of: datetime) -> datetime:
    months = as_of.year * 12 + (as_of.month - 1) - 2
    return datetime(months // 12, months % 12 + 1, 1, tzinfo=UTC)


def _prepare_dir(path: Path, overwrite: bool, patterns: tuple[str, ...]) -> None:
    if path.exists() and any(path.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{path} is not empty (pass overwrite=True to replace)")
        for pattern in patterns:
            for old in path.glob(pattern):
                old.unlink()
    path.mkdir(parents=True, exist_ok=True)


def _local_midnight_utc(day: date, zone: str) -> datetime:
    return datetime.combine(day, time(0), tzinfo=ZoneInfo(zone)).astimezone(UTC)


def _make_customers(
    rng: np.random.Generator,
    n: int,
    window_start: datetime,
    as_of: datetime,
    default_zone: str,
) -> list[_Customer]:
    zone_info = {z[0]: z for z in _ZONES}
    weights = np.array([z[3] for z in _ZONES])
    drawn = rng.choice(len(_ZONES), size=n - len(_GUARANTEED), p=weights / weights.sum())
    profiles: list[tuple[str, str]] = list(_GUARANTEED)
    for zi in drawn:
        zone, _, currency, _ = _ZONES[int(zi)]
        plans, probs = _PLAN_MIX[currency]
        profiles.append((zone, plans[int(rng.choice(len(plans), p=probs))]))
    order = rng.permutation(n)
    profiles = [profiles[int(i)] for i in order]

    # Names: first words distinct within each round of len(_NAME_FIRST) customers, the
    # (first, second) pair distinct overall; a numeral only beyond every pair.
    n_first, n_second = len(_NAME_FIRST), len(_NAME_SECOND)
    first_order = rng.permutation(n_first)
    second_start = rng.integers(0, n_second, n_first)
    has_email = rng.random(n) < 0.88

    # Subscription timing: most before the window, some start mid-month inside it, a few
    # end inside it (disjoint groups).
    n_inside = max(1, round(0.15 * n))
    n_ended = max(1, round(0.07 * n))
    roles = rng.choice(n, size=n_inside + n_ended, replace=False)
    started_inside = {int(i) for i in roles[:n_inside]}
    ended_inside = {int(i) for i in roles[n_inside:]}
    ws_day, last_day = window_start.date(), as_of.date()
    window_days = [ws_day + timedelta(d) for d in range((last_day - ws_day).days + 1)]
    start_choices = [d for d in window_days if 8 <= d.day <= 22 and d <= last_day - timedelta(3)]
    end_choices = [
        d
        for d in window_days
        if d.day != 1 and ws_day + timedelta(5) <= d <= last_day - timedelta(2)
    ]
    before_offsets = rng.integers(1, 420, size=n)
    start_picks = rng.integers(0, len(start_choices), size=n)
    end_picks = rng.integers(0, len(end_choices), size=n)

    result: list[_Customer] = []
    for i, (zone, plan) in enumerate(profiles):
        _, country, currency, _ = zone_info[zone]
        f = int(first_order[i % n_first])
        rounds = i // n_first
        first = _NAME_FIRST[f]
        second = _NAME_SECOND[(int(second_start[f]) + rounds) % n_second]
        base = f"{first} {second}"
        if rounds >= n_second:
            base += f" {rounds // n_second + 1}"
        suffixes = _LEGAL_SUFFIX[country]
        name = f"{base} {suffixes[(f + i) % len(suffixes)]}"
        slug = "".join(ch for ch in base.lower() if ch.isalnum())
        email = f"billing@{slug}.{_EMAIL_TLD[country]}" if has_email[i] else ""
        resolved = zone or default_zone

        ended: date | None = None
        if i in started_inside:
            started = start_choices[int(start_picks[i])]
        else:
            started = ws_day - timedelta(int(before_offsets[i]))
        if i in ended_inside:
            ended = end_choices[int(end_picks[i])]
        start_utc = _local_midnight_utc(started, resolved)
        end_utc = _local_midnight_utc(ended, resolved) if ended else None
        result.append(
            _Customer(
                customer_id=f"cus_{i + 1:04d}",
                name=name,
                email=email,
                country=country,
                currency=currency,
                timezone=zone,
                zone=resolved,
                subscription_id=f"sub_{i + 1:04d}",
                plan_code=plan,
                started_at=started,
                ended_at=ended,
                start_utc=start_utc,
                end_utc=end_utc,
            )
        )
    return result


def _active_interval(c: _Customer, window_start: datetime, as_of: datetime) -> tuple[int, int]:
    """[lo, hi) in unix seconds: the subscription's active time inside the window."""
    lo = max(window_start, c.start_utc)
    hi = min(as_of, c.end_utc) if c.end_utc else as_of
    return math.ceil(lo.timestamp()), math.ceil(hi.timestamp())


def _make_applied_coupons(
    rng: np.random.Generator, custs: list[_Customer], window_start: datetime, as_of: datetime
) -> list[tuple[str, str, str]]:
    n = max(2, round(0.1 * len(custs)))
    paid = [i for i, c in enumerate(custs) if c.plan_code != "free"]
    pool = [paid[int(i)] for i in rng.permutation(len(paid))]
    usd = [i for i in pool if custs[i].currency == "USD"]
    chosen: list[tuple[int, str]] = []
    if usd:
        chosen.append((usd[0], "launch50"))
    for i in pool:
        if len(chosen) >= n:
            break
        if any(i == j for j, _ in chosen):
            continue
        coupon = "launch50" if custs[i].currency == "USD" and len(chosen) % 2 == 0 else "welcome10"
        chosen.append((i, coupon))
    rows = []
    earliest = chosen[0][0] if chosen else None  # applied early: it meets closed invoices
    for i, coupon in sorted(chosen):
        c = custs[i]
        first = max(window_start.date(), c.started_at)
        last = (c.ended_at - timedelta(1)) if c.ended_at else as_of.date() - timedelta(1)
        span = max(0, (last - first).days)
        if i == earliest:
            span = min(span, 20)
        applied = first + timedelta(int(rng.integers(0, span + 1)))
        rows.append((c.customer_id, coupon, applied.isoformat()))
    return rows


def _csv_bytes(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue().encode("utf-8")


# The monthly fee of the plans a prepaid customer may be on (price_book/plans.yml), in credits.
PREPAID_MONTHLY_FEE = {"scale": 500, "developer": 20}


def _contracts(custs: list[_Customer], window_start: datetime) -> dict[str, Any]:
    """The demo's subscription-level events in the catalog (deterministic, no randomness):
    - an upgrade: the first running developer customer (started before the window) moves to
      scale on the 10th of the window's second month (a second subscriptions.csv row);
    - an enterprise contract: the first enterprise customer pays 2,000.00 a month instead of
      2,500.00 and 0.0000015 per atlas-large input token (subscription_overrides.yml);
    - an add-on: that customer's onboarding workshop, on the 3rd of the window's first month;
    - prepaid credits: the first running scale customer in USD (else developer, not the
      upgraded one) opened a wallet on the window's first day (1 credit = 1.00 USD) with a
      month's fee of credits granted and one purchased, and buys two months' worth whenever
      its ongoing balance is at or under a month's fee (wallets.yml, a threshold top-up)."""
    ws = window_start.date()
    second_month = (ws.replace(day=28) + timedelta(days=4)).replace(day=10)
    running = [c for c in custs if c.ended_at is None and c.started_at < ws]
    upgrade = next((c for c in running if c.plan_code == UPGRADE_PLAN[0]), None)
    enterprise = next((c for c in running if c.plan_code == "enterprise"), None)
    prepaid = next(iter(sorted((c for c in running if c.currency == "USD" and c.plan_code in ("scale", "developer")
                                and c is not upgrade), key=lambda c: c.plan_code != "scale")), None)
    return {
        "prepaid": (prepaid, ws) if prepaid else None,
        "upgrade": (upgrade, second_month) if upgrade else None,
        "enterprise": enterprise,
        "add_on": (enterprise, ws + timedelta(days=2)) if enterprise else None,
    }


def _write_catalog(
    catalog_dir: Path, custs: list[_Customer], coupons: list[tuple[str, str, str]], contracts: dict[str, Any]
) -> tuple[Path, ...]:
    written: list[Path] = []
    for name in PRICE_BOOK_FILES:
        target = catalog_dir / name
        shutil.copyfile(PRICE_BOOK_DIR / name, target)
        written.append(target)
    tables = {
        "customers.csv": _csv_bytes(
            CUSTOMERS_COLUMNS,
            # The enterprise contract's customer (a university lab) is tax exempt.
            [(c.customer_id, c.name, c.email, c.country, c.currency, c.timezone,
              "" if c is contracts["enterprise"] else _TAX_CODES_BY_ZONE.get(c.timezone, ""),
              "true" if c is contracts["enterprise"] else "") for c in custs],
        ),
        "subscriptions.csv": _csv_bytes(
            SUBSCRIPTIONS_COLUMNS,
            [
                (
                    c.subscription_id,
                    c.customer_id,
                    c.plan_code,
                    c.started_at.isoformat(),
                    c.ended_at.isoformat() if c.ended_at else "",
                )
                for c in custs
            ]
            + (
                [(contracts["upgrade"][0].subscription_id, contracts["upgrade"][0].customer_id,
                  UPGRADE_PLAN[1], contracts["upgrade"][1].isoformat(), "")]
                if contracts["upgrade"] else []
            ),
        ),
        "applied_coupons.csv": _csv_bytes(APPLIED_COUPONS_COLUMNS, coupons),
        "applied_add_ons.csv": _csv_bytes(
            APPLIED_ADD_ONS_COLUMNS,
            [(contracts["add_on"][0].customer_id, "onboarding", contracts["add_on"][1].isoformat(), "1", "", "")]
            if contracts["add_on"] else [],
        ),
    }
    if contracts["prepaid"]:
        customer, opened = contracts["prepaid"]
        # Sized on the plan's monthly fee (scale 500.00, developer 20.00), so that the wallet
        # tops up within the window: a month's fee granted and one bought on opening; when the
        # ongoing balance is at or under a month's fee, two months' worth are bought.
        fee = PREPAID_MONTHLY_FEE[customer.plan_code]
        tables["wallets.yml"] = (
            "# Prepaid credits (docs/invoice-amounts.md): spent after tax on the customer's invoices.\n"
            "wallets:\n"
            f"  - code: {customer.customer_id}_prepaid\n"
            f"    customer: {customer.customer_id}\n"
            "    name: Prepaid credits\n"
            '    rate_amount: "1.00"\n'
            f'    started_at: "{opened.isoformat()}"\n'
            "    transactions:\n"
            f'      - {{at: "{opened.isoformat()}", granted_credits: "{fee}"}}\n'
            f'      - {{at: "{opened.isoformat()}", purchased_credits: "{fee}"}}\n'
            f"    top_ups:  # whenever the ongoing balance is at or under {fee} credits, buy {2 * fee}\n"
            f'      - {{threshold_credits: "{fee}", purchased_credits: "{2 * fee}"}}\n'
        ).encode("utf-8")
    if contracts["enterprise"]:
        tables["subscription_overrides.yml"] = (
            "# An enterprise contract on top of the enterprise plan (docs/catalog.md).\n"
            "subscription_overrides:\n"
            f"  - subscription: {contracts['enterprise'].subscription_id}\n"
            '    amount: "2000.00"\n'
            "    charges:\n"
            "      - metric: input_tokens\n"
            "        filters:\n"
            "          - values: {model: [atlas-large]}\n"
            '            properties: {amount: "0.0000015"}\n'
        ).encode("utf-8")
    for name, data in tables.items():
        target = catalog_dir / name
        target.write_bytes(data)
        written.append(target)
    return tuple(written)


def _offset_table(zones: list[str], start_s: int, n_hours: int) -> np.ndarray:
    """UTC offset in seconds of each zone at the start of each hour from start_s."""
    table = np.zeros((len(zones), n_hours), dtype=np.int64)
    for zi, zone in enumerate(zones):
        tz = ZoneInfo(zone)
        for h in range(n_hours):
            offset = datetime.fromtimestamp(start_s + 3600 * h, tz).utcoffset()
            table[zi, h] = int(offset.total_seconds()) if offset else 0
    return table


def _sample_times(
    rng: np.random.Generator,
    lo: np.ndarray,
    hi: np.ndarray,
    zone_idx: np.ndarray,
    offsets: np.ndarray,
    origin: int,
) -> np.ndarray:
    """Unix seconds in [lo, hi), thinned by local hour-of-day and weekday traffic."""
    out = np.empty(lo.shape[0], dtype=np.int64)
    todo = np.arange(lo.shape[0])
    for _ in range(200):
        if todo.size == 0:
            return out
        start, span = lo[todo], hi[todo] - lo[todo]
        cand = start + (rng.random(todo.size) * span).astype(np.int64)
        local = cand + offsets[zone_idx[todo], (cand - origin) // 3600]
        weekday = (local // 86_400 + 3) % 7  # 1970-01-01 was a Thursday
        weight = _HOUR_WEIGHT[(local // 3600) % 24] * _WEEKDAY_WEIGHT[weekday]
        accept = rng.random(todo.size) < weight
        out[todo[accept]] = cand[accept]
        todo = todo[~accept]
    out[todo] = lo[todo]  # unreachable in practice: every weight is well above zero
    return out


def _token_counts(
    rng: np.random.Generator, code: np.ndarray, model: np.ndarray, mult: np.ndarray
) -> np.ndarray:
    tokens = np.zeros(code.shape[0], dtype=np.int64)
    is_tok = code < 2
    params = _TOKEN_DIST[code[is_tok], model[is_tok]]
    raw = params[:, 0] * np.exp(params[:, 1] * rng.standard_normal(params.shape[0])) * mult[is_tok]
    tokens[is_tok] = np.clip(np.rint(raw), params[:, 2], params[:, 3]).astype(np.int64)
    return tokens


def _gb(milli_gb: int) -> str:
    sign = "-" if milli_gb < 0 else ""
    return f"{sign}{abs(milli_gb) // 1000}.{abs(milli_gb) % 1000:03d}"


def _money_text(minor_units: int, decimals: int) -> str:
    if decimals == 0:
        return str(minor_units)
    return f"{minor_units // 10**decimals}.{minor_units % 10**decimals:0{decimals}d}"


def _account_events(
    rng: np.random.Generator,
    custs: list[_Customer],
    plan_metrics: dict[str, frozenset[str]],
    expected_calls: np.ndarray,
    lo_c: np.ndarray,
    hi_c: np.ndarray,
    zone_idx_c: np.ndarray,
    offsets: np.ndarray,
    origin: int,
) -> dict[str, Any]:
    """Seats, storage, marketplace sales, hosted models and provisioned throughput.

    Only for metrics the customer's plan charges, inside the subscription's active time:
    - seats (unique_count, recurring): a few users added in the first days, more later; a
      quarter of them removed after at least an hour; the count grows with usage, capped;
    - storage_gb (weighted_sum of deltas, recurring): uploads of 1 MB to 200 GB, 30% deleted
      later (a deletion removes an earlier upload, so the level never falls below zero);
    - marketplace_sales (sum of amounts in the plan's currency, priced by a percentage),
      one in six a micro-sale of 0.99 to 1.99 that pays the per-sale minimum commission;
    - hosted_models (latest): a walk of the number of deployed models, one report at a time
      (never two in the same second, so "the last one" is always defined);
    - provisioned_throughput (max): a walk of reserved units between 1 and 16.
    Returns cust, code, ts (unix seconds) arrays and the JSON property string of each event.
    """
    parts: dict[str, list[Any]] = {"cust": [], "code": [], "ts": []}
    properties: list[str] = []

    def add(c: int, code: int, ts: np.ndarray, props: list[str]) -> None:
        parts["cust"].append(np.full(ts.shape[0], c, np.int64))
        parts["code"].append(np.full(ts.shape[0], code, np.int64))
        parts["ts"].append(ts.astype(np.int64))
        properties.extend(props)

    def business_times(c: int, n: int) -> np.ndarray:
        return _sample_times(rng, np.full(n, lo_c[c]), np.full(n, hi_c[c]),
                             np.full(n, zone_idx_c[c]), offsets, origin)

    for c, cust in enumerate(custs):
        lo, hi = int(lo_c[c]), int(hi_c[c])
        metrics = plan_metrics[cust.plan_code]
        calls = float(expected_calls[c])
        if hi - lo < 4 * 3600:
            continue
        decimals = 0 if cust.currency == "JPY" else 2
        number = cust.customer_id.removeprefix("cus_")

        if "seats" in metrics:
            n_first = 1 + int(rng.poisson(min(4.0, calls / 1500)))
            n_later = int(rng.poisson(min(6.0, calls / 2500)))
            first_span = max(1, min(2 * 86_400, (hi - lo) // 4))
            added = np.concatenate([
                lo + rng.integers(0, first_span, n_first),
                business_times(c, n_later),
            ])
            users = [f"usr_{number}_{j + 1:03d}" for j in range(added.shape[0])]
            removed = added + rng.integers(3600, 45 * 86_400, added.shape[0])
            is_removed = (rng.random(added.shape[0]) < 0.25) & (removed < hi)
            add(c, _SEATS, added, [f'{{"user_id":"{u}","operation_type":"add"}}' for u in users])
            add(c, _SEATS, removed[is_removed],
                [f'{{"user_id":"{u}","operation_type":"remove"}}'
                 for u, r in zip(users, is_removed) if r])

        if "storage_gb" in metrics:
            n_up = 1 + int(rng.poisson(calls * 0.01))
            uploaded = business_times(c, n_up)
            size = np.clip(np.rint(800 * rng.lognormal(0.0, 1.2, n_up)), 1, 200_000).astype(np.int64)
            deleted = uploaded + rng.integers(3600, 40 * 86_400, n_up)
            is_deleted = (rng.random(n_up) < 0.3) & (deleted < hi)
            add(c, _STORAGE, uploaded, [f'{{"gb":{_gb(int(m))}}}' for m in size])
            add(c, _STORAGE, deleted[is_deleted],
                [f'{{"gb":{_gb(-int(m))}}}' for m in size[is_deleted]])

        if "marketplace_sales" in metrics:
            n_sales = int(rng.poisson(calls * 0.006))
            median = 2500 if decimals else 3800  # 25.00 USD/EUR, 3,800 JPY
            amount = np.clip(np.rint(median * rng.lognormal(0.0, 1.0, n_sales)),
                             median // 25, median * 200).astype(np.int64)
            # One sale in six is a micro-sale (a single prompt pack), which the per-sale
            # minimum commission catches: 0.99 to 1.99 (99 to 199 yen).
            micro = rng.random(n_sales) < 1 / 6
            amount[micro] = rng.integers(99, 200, int(micro.sum()))
            listing = rng.integers(1, 6, n_sales)
            add(c, _MARKETPLACE, business_times(c, n_sales),
                [f'{{"amount":{_money_text(int(a), decimals)},"listing":"lst_{number}_{int(k)}"}}'
                 for a, k in zip(amount, listing)])

        if "hosted_models" in metrics:
            reported = np.unique(business_times(c, 1 + int(rng.poisson(min(calls * 0.002, 90.0)))))
            steps = rng.choice(np.array([-1, 0, 0, 1]), reported.shape[0])
            models = np.maximum(0, int(rng.poisson(1.5)) + np.cumsum(steps))
            add(c, _HOSTED, reported, [f'{{"models":{int(m)}}}' for m in models])

        if "provisioned_throughput" in metrics:
            changed = np.sort(business_times(c, 1 + int(rng.poisson(min(calls * 0.001, 30.0)))))
            steps = rng.choice(np.array([-1, 1, 2]), changed.shape[0])
            units = np.clip(1 + int(rng.integers(0, 4)) + np.cumsum(steps), 1, 16)
            add(c, _THROUGHPUT, changed, [f'{{"units":{int(u)}}}' for u in units])

    def joined(key: str) -> np.ndarray:
        return np.concatenate(parts[key]) if parts[key] else np.zeros(0, np.int64)

    return {"cust": joined("cust"), "code": joined("code"), "ts": joined("ts"),
            "properties": properties}


def _write_events(
    rng: np.random.Generator,
    landing_dir: Path,
    custs: list[_Customer],
    plan_metrics: dict[str, frozenset[str]],
    seed: int,
    events: int,
    window_start: datetime,
    as_of: datetime,
) -> tuple[tuple[Path, ...], dict[str, int], list[str]]:
    n_cust = len(custs)
    n_exact = round(EXACT_DUPLICATE_RATE * events)
    n_conf = CONFLICTING_DUPLICATES
    n_unknown = UNKNOWN_SUBSCRIPTION_EVENTS
    n_base = events - JSONL_GOOD_ROWS - n_exact - n_conf - n_unknown

    origin = int(window_start.timestamp())
    end_s = math.ceil(as_of.timestamp())
    zones = sorted({c.zone for c in custs})
    zone_idx_c = np.array([zones.index(c.zone) for c in custs], dtype=np.int64)
    offsets = _offset_table(zones, origin, (end_s - origin) // 3600 + 2)
    intervals = np.array([_active_interval(c, window_start, as_of) for c in custs], dtype=np.int64)
    lo_c, hi_c = intervals[:, 0], intervals[:, 1]
    active = np.maximum(hi_c - lo_c, 0).astype(np.float64)

    # Per-customer traits: heavy-tailed volume, model mix, prompt-size multiplier.
    volume = rng.lognormal(0.0, 1.3, n_cust)
    volume *= np.array([_PLAN_USAGE_FACTOR[c.plan_code] for c in custs]) * active
    p_cust = volume / volume.sum()
    model_mix = rng.dirichlet([3.0, 3.0, 1.2], size=n_cust)
    token_mult = rng.lognormal(0.0, 0.35, n_cust)

    # Account streams first (seats, storage, marketplace, hosted models, throughput): their
    # size follows each customer's expected number of calls; the calls fill the rest.
    expected_calls = n_base / _CALL_EVENTS_PER_CALL * p_cust
    acct = _account_events(
        rng, custs, plan_metrics, expected_calls, lo_c, hi_c, zone_idx_c, offsets, origin
    )
    n_acct = acct["cust"].shape[0]
    if n_acct > n_base // 2:
        raise ValueError(
            f"{events} events are too few for {n_cust} customers: their seats, storage and "
            f"other account events alone need {n_acct}"
        )
    n_base_total, n_base = n_base, n_base - n_acct

    # Calls: each yields input_tokens, output_tokens (not for embeddings) and api_requests.
    # Draw enough calls (each has >= 2 events), then keep a random subset summing to n_base.
    n_calls = n_base // 2 + 1
    call_cust = np.repeat(np.arange(n_cust), rng.multinomial(n_calls, p_cust))
    u = rng.random(n_calls)
    call_model = (u[:, None] > np.cumsum(model_mix, axis=1)[call_cust][:, :2]).sum(axis=1)
    per_call = 2 + (call_model != _EMBED)
    perm = rng.permutation(n_calls)
    cum = np.cumsum(per_call[perm])
    n_take = int(np.searchsorted(cum, n_base)) + 1
    keep = np.sort(perm[:n_take])
    overshoot = int(cum[n_take - 1]) - n_base  # 0 or 1: drop the last call's api event
    call_cust, call_model = call_cust[keep], call_model[keep]
    call_ts = _sample_times(
        rng, lo_c[call_cust], hi_c[call_cust], zone_idx_c[call_cust], offsets, origin
    )
    calls = np.arange(n_take)
    chat = calls[call_model != _EMBED]
    api_calls = calls[: n_take - overshoot]
    ev_call = np.concatenate([calls, chat, api_calls])
    code = np.concatenate(
        [
            np.zeros(n_take, np.int8),
            np.ones(chat.size, np.int8),
            np.full(api_calls.size, 2, np.int8),
        ]
    )
    cust = call_cust[ev_call].astype(np.int32)
    model = call_model[ev_call].astype(np.int8)
    ts = call_ts[ev_call]
    tokens = _token_counts(rng, code, model, token_mult[cust])
    assert cust.shape[0] == n_base

    # Append the account events: `acct` indexes their property strings (-1 for calls).
    cust = np.concatenate([cust, acct["cust"].astype(np.int32)])
    code = np.concatenate([code, acct["code"].astype(np.int8)])
    model = np.concatenate([model, np.zeros(n_acct, np.int8)])
    ts = np.concatenate([ts, acct["ts"]])
    tokens = np.concatenate([tokens, np.zeros(n_acct, np.int64)])
    acct_idx = np.concatenate([np.full(n_base, -1, np.int64), np.arange(n_acct)])
    n_base = n_base_total
    assert cust.shape[0] == n_base

    # Transaction ids: one shuffled pool of distinct numbers for every well-formed record.
    tx_pool = rng.permutation(n_base + n_unknown + JSONL_GOOD_ROWS)
    tx = tx_pool[:n_base]
    use_cust = np.zeros(n_base, dtype=bool)
    use_cust[rng.choice(n_base, size=round(CUSTOMER_ID_RATE * n_base), replace=False)] = True
    unknown = np.zeros(n_base, dtype=bool)
    arrival = ts + rng.integers(0, 5, n_base)

    # Unknown subscription: well-formed events for `sub_unknown`.
    u_model = rng.integers(0, 2, n_unknown).astype(np.int8)
    u_code = rng.integers(0, 3, n_unknown).astype(np.int8)
    u_ts = rng.integers(origin, end_s, n_unknown)
    u_tokens = _token_counts(rng, u_code, u_model, np.ones(n_unknown))

    # Re-sends: exact copies, and conflicts (same transaction_id, different tokens).
    token_rows = np.flatnonzero(code < 2)
    conf_idx = rng.choice(token_rows, size=n_conf, replace=False)
    eligible = np.ones(n_base, dtype=bool)
    eligible[conf_idx] = False
    dup_idx = rng.choice(np.flatnonzero(eligible), size=n_exact, replace=False)
    conf_delta = rng.integers(1, 500, n_conf)  # stays inside the realistic token ranges
    conf_tokens = np.where(
        tokens[conf_idx] < 2000, tokens[conf_idx] + conf_delta, tokens[conf_idx] - conf_delta
    )

    def cat(base: np.ndarray, unk: np.ndarray, conf: np.ndarray | None = None) -> np.ndarray:
        return np.concatenate([base, unk, base[dup_idx], base[conf_idx] if conf is None else conf])

    n_dup_rows = n_exact + n_conf
    dup_lag = rng.integers(1, 3600, n_dup_rows)
    all_ts = cat(ts, u_ts)
    all_arrival = np.concatenate(
        [arrival, u_ts + 1, ts[dup_idx] + dup_lag[:n_exact], ts[conf_idx] + dup_lag[n_exact:]]
    )
    cols = {
        "tx": cat(tx, tx_pool[n_base : n_base + n_unknown]),
        "cust": cat(cust, rng.integers(0, n_cust, n_unknown).astype(np.int32)),
        "use_cust": cat(use_cust, np.zeros(n_unknown, dtype=bool)),
        "unknown": cat(unknown, np.ones(n_unknown, dtype=bool)),
        "code": cat(code, u_code),
        "model": cat(model, u_model),
        "tokens": cat(tokens, u_tokens, conf_tokens),
        "acct": cat(acct_idx, np.full(n_unknown, -1, np.int64)),
        "ts": all_ts,
    }
    day = all_ts // 86_400
    order = np.lexsort((all_arrival, day))
    cols = {k: v[order] for k, v in cols.items()}
    day = day[order]

    tx_width = max(9, len(str(n_base + n_unknown + JSONL_GOOD_ROWS - 1)))
    names = _EventNames(custs, seed, tx_width, acct["properties"])
    files: list[Path] = []
    days, starts = np.unique(day, return_index=True)
    bounds = list(starts) + [day.shape[0]]
    for d, a, b in zip(days, bounds[:-1], bounds[1:]):
        chunk = {k: v[a:b] for k, v in cols.items()}
        day_str = (date(1970, 1, 1) + timedelta(int(d))).isoformat()
        path = landing_dir / f"events-{day_str}.parquet"
        pq.write_table(
            names.table(chunk, day_str),
            path,
            row_group_size=ROW_GROUP_SIZE,
            compression="zstd",
        )
        files.append(path)
    counts = {
        "rows": int(day.shape[0]),
        "exact_duplicates": n_exact,
        "conflicts": n_conf,
        "unknown": n_unknown,
        "customer_id": int(cols["use_cust"].sum()),
    }
    # The good JSON lines take the last numbers of the same transaction-id pool.
    tx_tail = [f"tx_{seed}_{int(t):0{tx_width}d}" for t in tx_pool[n_base + n_unknown :]]
    return tuple(files), counts, tx_tail


class _EventNames:
    """Turns integer-coded event columns into the string columns of EVENT_SCHEMA."""

    def __init__(
        self, custs: list[_Customer], seed: int, tx_width: int, account_properties: list[str]
    ) -> None:
        self.sub_ids = pa.array([c.subscription_id for c in custs] + [UNKNOWN_SUBSCRIPTION_ID])
        self.cust_ids = pa.array([c.customer_id for c in custs])
        self.codes = pa.array(_CODES)
        self.models = pa.array(_MODELS)
        self.api_props = pa.array(_API_PROPERTIES)
        self.tx_prefix = f"tx_{seed}_"
        self.tx_width = tx_width
        self.account_props = pa.array(account_properties or [""], pa.string())

    def table(self, chunk: dict[str, np.ndarray], day_str: str) -> pa.Table:
        n = chunk["ts"].shape[0]
        tx = pc.binary_join_element_wise(
            self.tx_prefix,
            pc.utf8_lpad(pc.cast(pa.array(chunk["tx"]), pa.string()), self.tx_width, "0"),
            "",
        )
        n_cust = len(self.cust_ids)
        sub_index = np.where(chunk["unknown"], n_cust, chunk["cust"])
        sub = self.sub_ids.take(pa.array(sub_index, mask=chunk["use_cust"]))
        cus = self.cust_ids.take(pa.array(chunk["cust"], mask=~chunk["use_cust"]))
        code = self.codes.take(pa.array(chunk["code"]))
        stamp = pc.binary_join_element_wise(
            day_str, _TIME_OF_DAY.take(pa.array(chunk["ts"] % 86_400)), ""
        )
        model = pa.array(chunk["model"])
        token_props = pc.binary_join_element_wise(
            '{"model":"',
            self.models.take(model),
            '","tokens":',
            pc.cast(pa.array(chunk["tokens"]), pa.string()),
            "}",
            "",
        )
        props = pc.if_else(
            pa.array(chunk["code"] == 2), self.api_props.take(model), token_props
        )
        is_account = chunk["acct"] >= 0
        if is_account.any():
            account = self.account_props.take(pa.array(np.maximum(chunk["acct"], 0)))
            props = pc.if_else(pa.array(is_account), account, props)
        table = pa.Table.from_arrays([tx, sub, cus, code, stamp, props], schema=EVENT_SCHEMA)
        assert table.num_rows == n
        return table


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _write_jsonl(
    rng: np.random.Generator,
    landing_dir: Path,
    custs: list[_Customer],
    seed: int,
    tx_tail: list[str],
    window_start: datetime,
    as_of: datetime,
) -> tuple[Path, tuple[tuple[int, str], ...], int]:
    """late-and-malformed.jsonl: good rows with unix-seconds timestamps, and bad rows that
    each have exactly one defect (otherwise valid: real subscription, time in the window)."""
    intervals = [_active_interval(c, window_start, as_of) for c in custs]
    usable = [i for i, (lo, hi) in enumerate(intervals) if hi - lo > 3600]
    picks = rng.choice(len(usable), size=len(tx_tail) + 32)
    offs = rng.random(len(picks))
    token_draw = rng.integers(200, 6000, len(picks))
    out_draw = rng.integers(50, 4000, len(picks))

    def subject(k: int) -> tuple[_Customer, int]:
        c = custs[usable[int(picks[k])]]
        lo, hi = intervals[usable[int(picks[k])]]
        return c, lo + int(offs[k] * (hi - lo))

    good: list[str] = []
    n_good_cust = 0
    for k, tx in enumerate(tx_tail):
        c, ts = subject(k)
        code = _CODES[k % 3]  # a call's metrics only
        record: dict[str, object] = {"transaction_id": tx}
        if k % 5 == 4:  # a couple identify the customer instead of the subscription
            record["external_customer_id"] = c.customer_id
            n_good_cust += 1
        else:
            record["external_subscription_id"] = c.subscription_id
        record["code"] = code
        record["timestamp"] = ts  # unix seconds (an integer)
        record["properties"] = (
            {"model": "atlas-small", "endpoint": "/v1/chat/completions"}
            if code == "api_requests"
            else {
                "model": "atlas-large",
                "tokens": int((token_draw if code == "input_tokens" else out_draw)[k]),
            }
        )
        good.append(json.dumps(record))

    future = as_of + timedelta(days=365)
    bad: list[tuple[str, str]] = []  # (kind, line)
    base_k = len(tx_tail)

    def rec(n: int, **changes: object) -> dict[str, object]:
        c, ts = subject(base_k + n)
        r: dict[str, object] = {
            "transaction_id": f"tx_{seed}_bad_{n:03d}",
            "external_subscription_id": c.subscription_id,
            "code": "input_tokens",
            "timestamp": _iso(ts),
            "properties": {"model": "atlas-large", "tokens": int(token_draw[base_k + n])},
        }
        for key, value in changes.items():
            if value is _DROP:
                r.pop(key, None)
            else:
                r[key] = value
        return r

    def add(kind: str, value: object) -> None:
        bad.append((kind, value if isinstance(value, str) else json.dumps(value)))

    add("not_json", "this is not json")
    add("not_json", f"transaction_id=tx_{seed}_bad_001,code=input_tokens,tokens=1200")
    add("not_json", json.dumps(rec(2))[:-25])  # truncated mid-record
    add("json_not_object", json.dumps(["input_tokens", 1200]))
    add("json_not_object", json.dumps("input_tokens"))
    add("missing_transaction_id", rec(5, transaction_id=_DROP))
    add("missing_transaction_id", rec(6, transaction_id=None))
    add("missing_code", rec(7, code=_DROP))
    add("missing_code", rec(8, code=None))
    add("missing_timestamp", rec(9, timestamp=_DROP))
    add("unparseable_timestamp", rec(10, timestamp=f"{as_of.year}-13-45T25:61:00Z"))
    add("unparseable_timestamp", rec(11, timestamp="last tuesday"))
    add("future_timestamp", rec(12, timestamp=_iso(int(future.timestamp()))))
    add("future_timestamp", rec(13, timestamp=int(future.timestamp()) + 86_400))
    add("properties_not_object", rec(14, properties=[{"model": "atlas-large", "tokens": 1200}]))
    add("properties_not_object", rec(15, properties=42))
    add("properties_not_object", rec(16, properties="tokens=1200"))
    add("unknown_metric", rec(17, code="gpu_seconds", properties={"seconds": 42}))
    add("unknown_metric", rec(18, code="gpu_seconds", properties={"tokens": 42}))
    add("non_numeric_value", rec(19, properties={"model": "atlas-large", "tokens": "abc"}))
    add(
        "non_numeric_value",
        rec(20, code="output_tokens", properties={"model": "atlas-large", "tokens": {"n": 5}}),
    )
    add("non_numeric_value", rec(21, properties={"model": "atlas-small", "tokens": True}))
    add("missing_value", rec(22, properties={"model": "atlas-large"}))
    add("missing_subject", rec(23, external_subscription_id=_DROP))
    add(
        "missing_subject",
        rec(24, external_subscription_id=None, external_customer_id=None),
    )

    lines: list[str | tuple[str, str]] = [*good, *bad]
    order = rng.permutation(len(lines))
    out: list[str] = []
    bad_rows: list[tuple[int, str]] = []
    for line_no, idx in enumerate(order, start=1):
        item = lines[int(idx)]
        if isinstance(item, tuple):
            bad_rows.append((line_no, item[0]))
            out.append(item[1])
        else:
            out.append(item)
    path = landing_dir / JSONL_NAME
    path.write_bytes(("\n".join(out) + "\n").encode("utf-8"))
    return path, tuple(bad_rows), n_good_cust


class _Drop:
    def __repr__(self) -> str:
        return "<drop>"


_DROP = _Drop()


if __name__ == "__main__":  # python -m orchestration.demo.generator OUT_DIR --as-of ...
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--customers", type=int, default=60)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--as-of", required=True, help="e.g. 2025-03-15T12:00:00Z")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args()
    summary = generate_demo(
        args.out_dir,
        customers=args.customers,
        events=args.events,
        seed=args.seed,
        as_of=datetime.fromisoformat(args.as_of.replace("Z", "+00:00")),
        overwrite=args.overwrite,
    )
    for field, value in vars(summary).items():
        if field not in ("catalog_files", "event_files", "bad_rows"):
            print(f"{field}: {value}")
    print(f"event_files: {len(summary.event_files)}")
