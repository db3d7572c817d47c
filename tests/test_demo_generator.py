"""Tests of the seeded demo data set (orchestration/demo/generator.py) on a small run."""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections import Counter
from datetime import date, datetime, time, timezone
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from orchestration.catalog import read_catalog
from orchestration.demo.generator import DemoSummary, generate_demo

UTC = timezone.utc
AS_OF = datetime(2025, 3, 15, 12, 30, tzinfo=UTC)
CUSTOMERS = 12
EVENTS = 20_000
CALL_CODES = ("input_tokens", "output_tokens", "api_requests")
ALL_CODES = (*CALL_CODES, "seats", "storage_gb", "marketplace_sales", "hosted_models",
             "provisioned_throughput")
TS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


def _run(out: Path, **kw: object) -> DemoSummary:
    args: dict[str, object] = {"customers": CUSTOMERS, "events": EVENTS, "seed": 7, "as_of": AS_OF}
    args.update(kw)
    return generate_demo(out, **args)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoSummary:
    return _run(tmp_path_factory.mktemp("demo_a"))


@pytest.fixture(scope="module")
def events(demo: DemoSummary) -> pa.Table:
    return pa.concat_tables(pq.read_table(p) for p in demo.event_files)


def _csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
        return list(reader.fieldnames or []), rows


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _midnight(day: str, zone: str) -> datetime:
    return datetime.combine(date.fromisoformat(day), time(0), tzinfo=ZoneInfo(zone)).astimezone(UTC)


def _ts(value: str) -> datetime:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


# ------------------------------------------------------------------------- determinism


def test_deterministic_bytes(demo: DemoSummary, tmp_path: Path) -> None:
    again = _run(tmp_path / "b")
    assert _hashes(demo.out_dir) == _hashes(again.out_dir)
    assert len(_hashes(demo.out_dir)) == len(demo.files)
    assert again.bad_rows == demo.bad_rows
    assert again.events_written == demo.events_written


def test_other_seed_other_events_same_shape(demo: DemoSummary, tmp_path: Path) -> None:
    other = _run(tmp_path / "c", seed=8)
    assert other.events_written == demo.events_written
    assert _hashes(other.out_dir) != _hashes(demo.out_dir)


def test_refuses_non_empty_dir_and_naive_as_of(demo: DemoSummary, tmp_path: Path) -> None:
    with pytest.raises(FileExistsError):
        _run(demo.out_dir)
    with pytest.raises(ValueError):
        _run(tmp_path / "naive", as_of=AS_OF.replace(tzinfo=None))


# ------------------------------------------------------------------------------- files


def test_files_written(demo: DemoSummary) -> None:
    catalog = sorted(p.name for p in demo.catalog_dir.iterdir())
    assert catalog == sorted(
        [
            "accounting.yml",
            "add_ons.yml",
            "applied_add_ons.csv",
            "applied_coupons.csv",
            "billable_metrics.yml",
            "billing_entity.yml",
            "coupons.yml",
            "customers.csv",
            "plans.yml",
            "subscription_overrides.yml",
            "subscriptions.csv",
            "taxes.yml",
            "wallets.yml",
        ]
    )
    landing = sorted(p.name for p in demo.landing_dir.iterdir())
    assert "late-and-malformed.jsonl" in landing
    parquet = [n for n in landing if n.endswith(".parquet")]
    assert len(parquet) + 1 == len(landing)
    assert all(re.fullmatch(r"events-\d{4}-\d{2}-\d{2}\.parquet", n) for n in parquet)
    assert demo.window_start == datetime(2025, 1, 1, tzinfo=UTC)
    assert demo.window_end == AS_OF
    # one file per UTC day of the window that has events: 2 full months + 15 days
    assert 70 <= len(parquet) <= 74


def test_parquet_schema_and_day_partitioning(demo: DemoSummary) -> None:
    for path in demo.event_files:
        table = pq.read_table(path)
        assert table.schema.names == [
            "transaction_id",
            "external_subscription_id",
            "external_customer_id",
            "code",
            "timestamp",
            "properties",
        ]
        assert all(f.type == pa.string() for f in table.schema)
        day = path.name[len("events-") : -len(".parquet")]
        stamps = table.column("timestamp").to_pylist()
        assert all(TS_RE.match(s) and s.startswith(day) for s in stamps)


# --------------------------------------------------------------------------- catalog


def test_catalog_csv_columns(demo: DemoSummary) -> None:
    cols, customers = _csv(demo.catalog_dir / "customers.csv")
    assert {"external_customer_id", "name", "currency"} <= set(cols)
    assert cols == ["external_customer_id", "name", "email", "country", "currency", "timezone", "tax_codes",
                    "tax_exempt"]
    # Taxes by location; the enterprise contract's customer is exempt (docs/invoice-amounts.md).
    assert {row["tax_codes"] for row in customers if row["timezone"] == "America/New_York"} <= {"ny_state;nyc_local"}
    assert sum(row["tax_exempt"] == "true" for row in customers) == 1
    cols, subs = _csv(demo.catalog_dir / "subscriptions.csv")
    assert cols == [
        "external_subscription_id",
        "external_customer_id",
        "plan_code",
        "started_at",
        "ended_at",
    ]
    cols, applied = _csv(demo.catalog_dir / "applied_coupons.csv")
    assert cols == ["external_customer_id", "coupon_code", "applied_at"]
    assert len(customers) == demo.customers == CUSTOMERS
    # One row per subscription, plus the upgrade's second row (a plan change, same id).
    assert demo.subscriptions == CUSTOMERS and demo.plan_changes == 1
    assert len(subs) == CUSTOMERS + 1
    assert [c["external_customer_id"] for c in customers] == [
        f"cus_{i:04d}" for i in range(1, CUSTOMERS + 1)
    ]
    assert len({c["name"] for c in customers}) == CUSTOMERS
    assert [s["external_subscription_id"] for s in subs[:CUSTOMERS]] == [
        f"sub_{i:04d}" for i in range(1, CUSTOMERS + 1)
    ]
    upgraded = [s for s in subs if s["external_subscription_id"] == subs[-1]["external_subscription_id"]]
    assert [s["plan_code"] for s in upgraded] == ["developer", "scale"]
    assert upgraded[0]["started_at"] < upgraded[1]["started_at"] and not upgraded[0]["ended_at"]
    for row in subs:
        date.fromisoformat(row["started_at"])
        if row["ended_at"]:
            assert date.fromisoformat(row["ended_at"]) > date.fromisoformat(row["started_at"])
    assert len(applied) >= 2


def test_plan_currency_matches_customer(demo: DemoSummary) -> None:
    plans = yaml.safe_load((demo.catalog_dir / "plans.yml").read_text())["plans"]
    plan_currency = {p["code"]: p["currency"] for p in plans}
    _, customers = _csv(demo.catalog_dir / "customers.csv")
    currency = {c["external_customer_id"]: c["currency"] for c in customers}
    _, subs = _csv(demo.catalog_dir / "subscriptions.csv")
    for s in subs:
        assert plan_currency[s["plan_code"]] == currency[s["external_customer_id"]], s
    assert {"USD", "EUR", "JPY"} <= set(currency.values())
    assert {"free", "developer", "scale", "enterprise"} <= {s["plan_code"] for s in subs}


def test_time_zones_and_countries(demo: DemoSummary) -> None:
    _, customers = _csv(demo.catalog_dir / "customers.csv")
    zones = {c["timezone"] for c in customers if c["timezone"]}
    assert len(zones) >= 6
    assert {
        "Pacific/Auckland",
        "Asia/Tokyo",
        "Europe/Paris",
        "America/New_York",
        "America/Los_Angeles",
        "Pacific/Honolulu",
    } <= zones
    assert any(c["timezone"] == "" for c in customers)
    for zone in zones:
        ZoneInfo(zone)
    expected_country = {
        "Pacific/Auckland": "NZ",
        "Asia/Tokyo": "JP",
        "Europe/Paris": "FR",
        "Europe/Berlin": "DE",
        "Europe/London": "GB",
        "Asia/Singapore": "SG",
    }
    for c in customers:
        zone = c["timezone"]
        assert c["country"] == expected_country.get(zone, "US"), c
        if c["currency"] == "JPY":
            assert zone == "Asia/Tokyo"
        if c["currency"] == "EUR":
            assert zone.startswith("Europe/")


def test_subscription_timing_mix(demo: DemoSummary) -> None:
    _, subs = _csv(demo.catalog_dir / "subscriptions.csv")
    ws = demo.window_start.date()
    starts = [date.fromisoformat(s["started_at"]) for s in subs]
    assert sum(d < ws for d in starts) >= len(subs) // 2
    inside = [d for d in starts if d >= ws]
    assert inside and all(d.day != 1 for d in inside)
    ended = [date.fromisoformat(s["ended_at"]) for s in subs if s["ended_at"]]
    assert ended and all(ws < d <= AS_OF.date() for d in ended)


def test_price_book_follows_catalog_format(demo: DemoSummary) -> None:
    """The generated catalog passes Meterline's own validation and uses every aggregation,
    the charge models an AI API company needs, filters, recurring metrics and a minimum."""
    catalog = read_catalog(demo.catalog_dir)  # raises CatalogError naming file/row/field
    assert {m.aggregation for m in catalog.metrics} == {
        "count", "sum", "max", "latest", "unique_count", "weighted_sum"
    }
    by_code = {m.code: m for m in catalog.metrics}
    assert by_code["seats"].recurring and by_code["seats"].aggregation == "unique_count"
    assert by_code["storage_gb"].recurring and by_code["storage_gb"].aggregation == "weighted_sum"
    assert by_code["storage_gb"].rounding_function == "ceil"
    plans = yaml.safe_load((demo.catalog_dir / "plans.yml").read_text())["plans"]
    assert [p["code"] for p in plans] == [
        "free", "developer", "scale", "scale_yearly", "enterprise", "developer_eur", "scale_eur", "scale_jpy"
    ]
    charges = [(plan, charge) for plan in plans for charge in plan["charges"]]
    assert {c["charge_model"] for _, c in charges} == {
        "standard", "package", "graduated", "volume", "percentage"
    }
    assert any(c["metric"] == "api_requests" and c["charge_model"] == "package" for _, c in charges)
    assert all(c["charge_model"] == "percentage" for _, c in charges if c["metric"] == "marketplace_sales")
    minimums = [(p["code"], c["metric"]) for p, c in charges if c.get("min_amount")]
    assert minimums == [("enterprise", "input_tokens")]
    token_filters = {
        value
        for p, c in charges
        if p["code"] != "free" and c["metric"] == "input_tokens"
        for f in c["filters"]
        for value in f["values"]["model"]
    }
    assert token_filters == {"atlas-large", "atlas-embed"}, "atlas-small stays in the default bucket"
    flat_amounts = sum(
        Decimal(r["flat_amount"]) > 0
        for _, c in charges
        for prices in [c["properties"], *(f["properties"] for f in c.get("filters", []))]
        for r in prices.get("graduated_ranges", [])
    )
    assert flat_amounts >= 1
    coupons = yaml.safe_load((demo.catalog_dir / "coupons.yml").read_text())["coupons"]
    by_coupon = {c["code"]: c for c in coupons}
    assert by_coupon["welcome10"]["percentage_rate"] == "10"
    assert by_coupon["launch50"]["amount"] == "50.00"
    assert by_coupon["launch50"]["frequency_duration"] == 2
    _, applied = _csv(demo.catalog_dir / "applied_coupons.csv")
    _, customers = _csv(demo.catalog_dir / "customers.csv")
    currency = {c["external_customer_id"]: c["currency"] for c in customers}
    for row in applied:
        assert row["coupon_code"] in by_coupon
        if row["coupon_code"] == "launch50":
            assert currency[row["external_customer_id"]] == "USD"
        assert demo.window_start.date() <= date.fromisoformat(row["applied_at"]) < AS_OF.date()


# ---------------------------------------------------------------------------- events


def test_event_count_close_to_requested(demo: DemoSummary, events: pa.Table) -> None:
    assert demo.events_written == demo.parquet_rows + demo.jsonl_good_rows
    assert events.num_rows == demo.parquet_rows
    assert abs(demo.events_written - EVENTS) <= 0.01 * EVENTS
    codes = Counter(events.column("code").to_pylist())
    assert set(codes) == set(ALL_CODES)
    assert min(codes[c] for c in CALL_CODES) > 0.2 * events.num_rows
    assert sum(codes[c] for c in ALL_CODES if c not in CALL_CODES) < 0.1 * events.num_rows


def test_events_inside_window_and_active_time(demo: DemoSummary, events: pa.Table) -> None:
    entity = yaml.safe_load((demo.catalog_dir / "billing_entity.yml").read_text())
    default_zone = entity["billing_entity"]["timezone"]
    _, customers = _csv(demo.catalog_dir / "customers.csv")
    zone = {c["external_customer_id"]: c["timezone"] or default_zone for c in customers}
    _, subs = _csv(demo.catalog_dir / "subscriptions.csv")
    active: dict[str, tuple[datetime, datetime | None]] = {}
    sub_of_customer: dict[str, str] = {}
    for s in subs:  # a plan change's second row keeps the subscription's first start
        z = zone[s["external_customer_id"]]
        end = _midnight(s["ended_at"], z) if s["ended_at"] else None
        first = active.get(s["external_subscription_id"], (_midnight(s["started_at"], z), None))[0]
        active[s["external_subscription_id"]] = (first, end)
        sub_of_customer[s["external_customer_id"]] = s["external_subscription_id"]

    unknown = 0
    for sub, cus, stamp in zip(
        events.column("external_subscription_id").to_pylist(),
        events.column("external_customer_id").to_pylist(),
        events.column("timestamp").to_pylist(),
    ):
        at = _ts(stamp)
        assert demo.window_start <= at < demo.window_end
        assert (sub is None) != (cus is None)
        if sub == "sub_unknown":
            unknown += 1
            continue
        start, end = active[sub if sub is not None else sub_of_customer[cus]]
        assert start <= at and (end is None or at < end), (sub, cus, stamp)
    assert unknown == demo.unknown_subscription_events == 20


def test_properties_are_json_objects_with_realistic_tokens(events: pa.Table) -> None:
    models = Counter()
    for code, props in zip(
        events.column("code").to_pylist(), events.column("properties").to_pylist()
    ):
        obj = json.loads(props)
        assert isinstance(obj, dict)
        if code not in CALL_CODES:
            continue
        models[obj["model"]] += 1
        if code == "input_tokens":
            assert isinstance(obj["tokens"], int) and 100 <= obj["tokens"] <= 20_000
        elif code == "output_tokens":
            assert isinstance(obj["tokens"], int) and 50 <= obj["tokens"] <= 4_000
        else:
            assert "tokens" not in obj
    assert set(models) == {"atlas-large", "atlas-small", "atlas-embed"}


def _account_events(demo: DemoSummary, events: pa.Table) -> dict[str, list[tuple]]:
    """(subscription, plan, timestamp, properties) of the non-call events, per code, in time
    order (the first arrival of each transaction id)."""
    _, subs = _csv(demo.catalog_dir / "subscriptions.csv")
    plan_of = {s["external_subscription_id"]: s["plan_code"] for s in subs}
    sub_of_customer = {s["external_customer_id"]: s["external_subscription_id"] for s in subs}
    seen: set[str] = set()
    out: dict[str, list[tuple]] = {}
    for tx, sub, cus, code, stamp, props in zip(*(events.column(c).to_pylist() for c in (
            "transaction_id", "external_subscription_id", "external_customer_id", "code", "timestamp",
            "properties"))):
        if code in CALL_CODES or tx in seen:
            continue
        seen.add(tx)
        sub = sub or sub_of_customer[cus]
        out.setdefault(code, []).append((sub, plan_of[sub], _ts(stamp), json.loads(props)))
    return {code: sorted(rows, key=lambda r: (r[0], r[2])) for code, rows in out.items()}


def test_account_events_only_for_charged_metrics_and_consistent(demo: DemoSummary, events: pa.Table) -> None:
    plans = yaml.safe_load((demo.catalog_dir / "plans.yml").read_text())["plans"]
    charged = {p["code"]: {c["metric"] for c in p["charges"]} for p in plans}
    currency = {p["code"]: p["currency"] for p in plans}
    account = _account_events(demo, events)
    for code, rows in account.items():
        assert all(code in charged[plan] for _, plan, _, _ in rows), f"{code} on a plan that does not charge it"

    # Seats: every remove follows the add of the same user on the same subscription.
    added: dict[tuple[str, str], datetime] = {}
    removes = 0
    for sub, _, at, props in account["seats"]:
        key = (sub, props["user_id"])
        if props["operation_type"] == "add":
            assert key not in added
            added[key] = at
        else:
            assert props["operation_type"] == "remove" and key in added and added[key] < at
            removes += 1
    assert removes >= 1

    # Storage: deltas in GB with at most 3 decimals; the level never falls below zero.
    level: dict[str, Decimal] = {}
    deletions = 0
    for sub, _, _, props in account["storage_gb"]:
        gb = Decimal(str(props["gb"]))
        assert gb == gb.quantize(Decimal("0.001")) and gb != 0
        level[sub] = level.get(sub, Decimal(0)) + gb
        assert level[sub] >= 0, sub
        deletions += gb < 0
    assert deletions >= 1

    # Marketplace amounts in the plan's currency; hosted-model reports never share a second.
    for _, plan, _, props in account["marketplace_sales"]:
        amount = Decimal(str(props["amount"]))
        assert amount > 0 and -amount.as_tuple().exponent <= (0 if currency[plan] == "JPY" else 2)
    stamps = [(sub, at) for sub, _, at, _ in account["hosted_models"]]
    assert len(stamps) == len(set(stamps))
    assert all(isinstance(p["models"], int) and p["models"] >= 0 for *_, p in account["hosted_models"])
    assert all(1 <= p["units"] <= 16 for *_, p in account["provisioned_throughput"])


def test_customer_id_events(demo: DemoSummary, events: pa.Table) -> None:
    by_customer = events.filter(events.column("external_subscription_id").is_null())
    share = by_customer.num_rows / events.num_rows
    assert 0.002 < share < 0.01
    jsonl_customer_rows = demo.customer_id_events - by_customer.num_rows
    assert jsonl_customer_rows >= 1


def test_planted_duplicates(demo: DemoSummary, events: pa.Table) -> None:
    rows = events.to_pylist()
    by_tx: dict[str, list[dict[str, object]]] = {}
    for row in rows:
        by_tx.setdefault(str(row["transaction_id"]), []).append(row)
    repeated = {tx: rs for tx, rs in by_tx.items() if len(rs) > 1}
    assert all(len(rs) == 2 for rs in repeated.values())
    assert len(repeated) == demo.duplicates_planted
    assert abs(demo.duplicates_planted - 10 - 0.002 * EVENTS) <= 1
    conflicts = [rs for rs in repeated.values() if rs[0] != rs[1]]
    assert len(conflicts) == demo.conflicting_duplicates == 10
    for a, b in conflicts:
        pa_, pb = json.loads(str(a["properties"])), json.loads(str(b["properties"]))
        assert pa_["tokens"] != pb["tokens"]
        assert {**a, "properties": None} == {**b, "properties": None}
        assert {**pa_, "tokens": 0} == {**pb, "tokens": 0}


def test_planted_bad_rows(demo: DemoSummary, events: pa.Table) -> None:
    lines = demo.jsonl_file.read_text(encoding="utf-8").splitlines()
    assert len(lines) == demo.bad_rows_planted + demo.jsonl_good_rows
    assert 20 <= demo.bad_rows_planted <= 30
    bad_lines = {n for n, _ in demo.bad_rows}
    parsed: dict[int, object] = {}
    for n, line in enumerate(lines, start=1):
        try:
            parsed[n] = json.loads(line)
        except json.JSONDecodeError:
            assert n in bad_lines
    records = [(n, r) for n, r in parsed.items() if isinstance(r, dict)]

    # Good rows: unix-seconds timestamps inside the window, fresh transaction ids.
    good = [r for n, r in records if n not in bad_lines]
    assert len(good) == demo.jsonl_good_rows == 10
    parquet_tx = set(events.column("transaction_id").to_pylist())
    window = (demo.window_start.timestamp(), demo.window_end.timestamp())
    for r in good:
        assert isinstance(r["timestamp"], int)
        assert window[0] <= r["timestamp"] < window[1]
        assert r["transaction_id"] not in parquet_tx
        assert isinstance(r["properties"], dict)

    bad = [r for n, r in records if n in bad_lines]
    now_plus_year = demo.window_end.replace(year=demo.window_end.year + 1).timestamp()

    def future(r: dict) -> bool:
        ts = r.get("timestamp")
        if isinstance(ts, int):
            return ts >= now_plus_year
        try:
            return _ts(str(ts)).timestamp() >= now_plus_year
        except ValueError:
            return False

    def unparseable(r: dict) -> bool:
        if "timestamp" not in r or isinstance(r["timestamp"], int):
            return False
        try:
            _ts(str(r["timestamp"]))
            return False
        except ValueError:
            return True

    checks = {
        "not JSON": len(lines) - len(parsed) >= 1,
        "JSON but not an object": any(not isinstance(r, dict) for r in parsed.values()),
        "missing transaction_id": any(not r.get("transaction_id") for r in bad),
        "missing code": any(not r.get("code") for r in bad),
        "unparseable timestamp": any(unparseable(r) for r in bad),
        "timestamp a year ahead": any(future(r) for r in bad),
        "properties is a list": any(isinstance(r.get("properties"), list) for r in bad),
        "unknown metric gpu_seconds": any(r.get("code") == "gpu_seconds" for r in bad),
        "tokens 'abc'": any(
            r.get("code") == "input_tokens"
            and isinstance(r.get("properties"), dict)
            and r["properties"].get("tokens") == "abc"
            for r in bad
        ),
        "no subscription or customer id": any(
            not r.get("external_subscription_id") and not r.get("external_customer_id")
            for r in bad
        ),
    }
    assert all(checks.values()), [k for k, v in checks.items() if not v]
    kinds = Counter(kind for _, kind in demo.bad_rows)
    assert len(kinds) >= 9
