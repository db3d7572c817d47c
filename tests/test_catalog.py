"""The catalog (price book, customers, subscriptions) is validated before anything is built.

Each test copies tests/fixtures/small_catalog, breaks exactly one thing, and checks that
read_catalog stops with a CatalogError whose message names the file, the row (CSV) or key
(YAML), and the field (docs/catalog.md). The last test checks the same through the CLI.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from orchestration.catalog import CatalogError, read_catalog
from tests.conftest import SMALL_AS_OF, SMALL_CATALOG

PLAN_STARTER = "plans[0] (code 'starter')"
PLAN_JPY = "plans[1] (code 'pro_jpy')"


@pytest.fixture
def catalog_dir(tmp_path: Path) -> Path:
    target = tmp_path / "catalog"
    shutil.copytree(SMALL_CATALOG, target)
    return target


def edit(path: Path, old: str, new: str) -> None:
    """Replace exactly one occurrence of `old` (fails loudly if the fixture changed)."""
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} must occur once in {path.name}"
    path.write_text(text.replace(old, new), encoding="utf-8")


def catalog_error(directory: Path) -> CatalogError:
    with pytest.raises(CatalogError) as caught:
        read_catalog(directory)
    return caught.value


def assert_names(error: CatalogError, file: Path, location: str, field_and_message: str) -> None:
    """The message is '<file>: <location> > <field>: <message>' (docs/catalog.md)."""
    text = str(error)
    assert error.file == str(file), text
    assert text.startswith(f"{file}: "), text
    assert f"{location} > {field_and_message}" in text, text


# ---------------------------------------------------------------- the valid fixture


def test_valid_fixture_reads_exactly(catalog_dir: Path) -> None:
    catalog = read_catalog(catalog_dir)

    assert catalog.billing_entity.code == "test_co"
    assert [m.code for m in catalog.metrics] == ["api_requests", "input_tokens"]
    assert catalog.metrics_by_code["input_tokens"].field == "tokens"
    assert [p.code for p in catalog.plans] == ["starter", "pro_jpy"]
    assert [len(p.charges) for p in catalog.plans] == [2, 1]
    assert [c.code for c in catalog.coupons] == ["five_off"]
    assert [c.external_customer_id for c in catalog.customers] == ["cus_a", "cus_b"]
    assert [s.external_subscription_id for s in catalog.subscriptions] == ["sub_a", "sub_b"]
    assert len(catalog.applied_coupons) == 1

    starter = catalog.plans[0]
    assert starter.amount == Decimal("10.00") and isinstance(starter.amount, Decimal)
    standard = starter.charges[0].properties.amount
    assert isinstance(standard, Decimal)
    assert standard == Decimal("0.015") and str(standard) == "0.015"  # exact, not 0.01499999...
    ranges = starter.charges[1].properties.graduated_ranges
    assert [(r.from_value, r.to_value) for r in ranges] == [(0, 1000), (1001, None)]
    assert str(ranges[1].per_unit_amount) == "0.001" and str(ranges[1].flat_amount) == "2.00"
    assert catalog.coupons[0].amount == Decimal("5.00")

    # Dates are midnight in the customer's time zone, stored as naive UTC.
    sub_a, sub_b = catalog.subscriptions
    assert sub_a.started_at.isoformat() == "2026-08-31T22:00:00"  # Europe/Paris, CEST
    assert sub_b.started_at.isoformat() == "2026-09-15T15:00:00"  # Asia/Tokyo
    assert sub_a.ended_at is None
    assert catalog.applied_coupons[0].applied_at.isoformat() == "2026-09-19T22:00:00"


def test_fingerprint_is_stable_and_follows_the_files(catalog_dir: Path) -> None:
    first = read_catalog(catalog_dir).fingerprint
    assert len(first) == 64
    assert read_catalog(catalog_dir).fingerprint == first

    edit(catalog_dir / "plans.yml", 'amount: "0.015"', 'amount: "0.016"')
    changed = read_catalog(catalog_dir).fingerprint
    assert changed != first

    edit(catalog_dir / "plans.yml", 'amount: "0.016"', 'amount: "0.015"')
    assert read_catalog(catalog_dir).fingerprint == first

    edit(catalog_dir / "customers.csv", "Beta KK", "Beta KK2")
    assert read_catalog(catalog_dir).fingerprint not in (first, changed)


# ---------------------------------------------------------------- amounts


def test_yaml_float_amount_is_rejected(catalog_dir: Path) -> None:
    plans = catalog_dir / "plans.yml"
    edit(plans, 'amount: "0.015"', "amount: 0.1")
    error = catalog_error(catalog_dir)
    assert_names(error, plans, f"{PLAN_STARTER} > charges[0] > properties", "amount: 0.1 is not a decimal string")
    assert "quotes" in str(error)


def test_yaml_float_base_fee_is_rejected(catalog_dir: Path) -> None:
    plans = catalog_dir / "plans.yml"
    edit(plans, 'amount: "3000"', "amount: 3000.5")
    error = catalog_error(catalog_dir)
    assert_names(error, plans, PLAN_JPY, "amount: 3000.5 is not a decimal string")


def test_non_decimal_amount_string_is_rejected(catalog_dir: Path) -> None:
    plans = catalog_dir / "plans.yml"
    edit(plans, 'amount: "0.15"', 'amount: "1,5"')
    error = catalog_error(catalog_dir)
    assert_names(error, plans, f"{PLAN_JPY} > charges[0] > properties", "amount: '1,5' is not a decimal string")


# ---------------------------------------------------------------- graduated ranges


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        pytest.param("from_value: 1001", "from_value: 1002",
                     "[1] > from_value: 1002 does not chain: expected the previous to_value + 1 = 1001", id="gap"),
        pytest.param("from_value: 1001", "from_value: 900",
                     "[1] > from_value: 900 does not chain", id="overlap"),
        pytest.param("to_value: 1000,", "to_value: null,",
                     "[0] > to_value: only the last range may be open", id="open-range-not-last"),
        pytest.param("{from_value: 0,", "{from_value: 1,",
                     "[0] > from_value: the first range starts at 0", id="first-not-at-zero"),
        pytest.param("to_value: null,", "to_value: 5000,",
                     "[1] > to_value: the last range must be open", id="last-range-closed"),
    ],
)
def test_graduated_ranges_must_chain(catalog_dir: Path, old: str, new: str, expected: str) -> None:
    plans = catalog_dir / "plans.yml"
    edit(plans, old, new)
    error = catalog_error(catalog_dir)
    text = str(error)
    assert error.file == str(plans)
    assert f"{plans}: {PLAN_STARTER} > charges[1] > properties > graduated_ranges: " in text, text
    assert expected in text, text


# ---------------------------------------------------------------- plans and metrics


def test_charge_on_unknown_metric(catalog_dir: Path) -> None:
    plans = catalog_dir / "plans.yml"
    edit(plans, "metric: api_requests", "metric: api_request")
    assert_names(catalog_error(catalog_dir), plans, f"{PLAN_STARTER} > charges[0]",
                 "metric: unknown billable metric 'api_request'")


def test_two_charges_on_the_same_metric(catalog_dir: Path) -> None:
    plans = catalog_dir / "plans.yml"
    edit(plans, "metric: api_requests", "metric: input_tokens")
    assert_names(catalog_error(catalog_dir), plans, f"{PLAN_STARTER} > charges[1]",
                 "metric: a second charge on 'input_tokens'")


def test_sum_metric_without_field(catalog_dir: Path) -> None:
    metrics = catalog_dir / "billable_metrics.yml"
    edit(metrics, "    field: tokens\n", "")
    error = catalog_error(catalog_dir)
    text = str(error)
    assert error.file == str(metrics)
    assert f"{metrics}: billable_metrics[1] (code 'input_tokens')" in text, text
    assert "field: a sum metric needs the property it aggregates" in text, text


def test_unknown_plan_currency(catalog_dir: Path) -> None:
    plans = catalog_dir / "plans.yml"
    edit(plans, "currency: JPY", "currency: XYZ")
    assert_names(catalog_error(catalog_dir), plans, PLAN_JPY, "currency: unknown currency 'XYZ'")


def test_unknown_key_in_a_plan(catalog_dir: Path) -> None:
    plans = catalog_dir / "plans.yml"
    edit(plans, "pay_in_advance: false", "pay_in_advance: false\n    pay_in_advence: true")
    assert_names(catalog_error(catalog_dir), plans, PLAN_JPY, "pay_in_advence: Extra inputs are not permitted")


def test_misspelt_required_key_in_a_plan(catalog_dir: Path) -> None:
    # The typo replaces the real key: the first problem reported is the missing real key.
    plans = catalog_dir / "plans.yml"
    edit(plans, "pay_in_advance: true", "pay_in_advence: true")
    error = catalog_error(catalog_dir)
    assert_names(error, plans, PLAN_STARTER, "pay_in_advance: Field required")


# ---------------------------------------------------------------- customers.csv


def test_unknown_time_zone_names_the_row(catalog_dir: Path) -> None:
    customers = catalog_dir / "customers.csv"
    edit(customers, "Asia/Tokyo", "Asia/Tokio")
    assert_names(catalog_error(catalog_dir), customers, "row 3 (external_customer_id 'cus_b')",
                 "timezone: unknown time zone 'Asia/Tokio'")


def test_row_number_counts_blank_lines_as_a_spreadsheet_does(catalog_dir: Path) -> None:
    # "Row numbers as a spreadsheet shows them: the header is row 1" (orchestration/catalog.py).
    # With a blank line 3, cus_b is on row 4 of the file and of any spreadsheet.
    customers = catalog_dir / "customers.csv"
    edit(customers, "cus_b,Beta KK,,JP,JPY,Asia/Tokyo", "\ncus_b,Beta KK,,JP,JPY,Asia/Tokio")
    assert customers.read_text().splitlines()[3].startswith("cus_b,")
    assert_names(catalog_error(catalog_dir), customers, "row 4 (external_customer_id 'cus_b')",
                 "timezone: unknown time zone 'Asia/Tokio'")


def test_duplicate_customer_id(catalog_dir: Path) -> None:
    customers = catalog_dir / "customers.csv"
    edit(customers, "cus_b,Beta KK", "cus_a,Beta KK")
    assert_names(catalog_error(catalog_dir), customers, "row 3 (external_customer_id 'cus_a')",
                 "external_customer_id: duplicate id")


# ---------------------------------------------------------------- subscriptions.csv


def test_subscription_on_unknown_plan(catalog_dir: Path) -> None:
    subscriptions = catalog_dir / "subscriptions.csv"
    edit(subscriptions, "cus_b,pro_jpy", "cus_b,pro_eur")
    assert_names(catalog_error(catalog_dir), subscriptions, "row 3 (external_subscription_id 'sub_b')",
                 "plan_code: unknown plan 'pro_eur'")


def test_plan_currency_differs_from_customer(catalog_dir: Path) -> None:
    subscriptions = catalog_dir / "subscriptions.csv"
    edit(subscriptions, "cus_b,pro_jpy", "cus_b,starter")
    error = catalog_error(catalog_dir)
    assert_names(error, subscriptions, "row 3 (external_subscription_id 'sub_b')", "plan_code: plan 'starter'")
    assert "USD" in str(error) and "JPY" in str(error)


@pytest.mark.parametrize("value", ["2026-13-16", "16/09/2026", "soon"])
def test_malformed_started_at(catalog_dir: Path, value: str) -> None:
    subscriptions = catalog_dir / "subscriptions.csv"
    edit(subscriptions, "sub_a,cus_a,starter,2026-09-01,", f"sub_a,cus_a,starter,{value},")
    assert_names(catalog_error(catalog_dir), subscriptions, "row 2 (external_subscription_id 'sub_a')",
                 f"started_at: '{value}' is not an ISO date or timestamp")


@pytest.mark.parametrize("ended_at", ["2026-09-10", "2026-09-16"])
def test_ended_at_not_after_started_at(catalog_dir: Path, ended_at: str) -> None:
    subscriptions = catalog_dir / "subscriptions.csv"
    edit(subscriptions, "pro_jpy,2026-09-16,", f"pro_jpy,2026-09-16,{ended_at}")
    assert_names(catalog_error(catalog_dir), subscriptions, "row 3 (external_subscription_id 'sub_b')",
                 "ended_at: must be after started_at")


def test_overlapping_subscriptions_name_the_row(catalog_dir: Path) -> None:
    # A CSV error names the row (docs/catalog.md): sub_a2 is inserted before sub_b, on row 3.
    subscriptions = catalog_dir / "subscriptions.csv"
    edit(subscriptions, "sub_b,", "sub_a2,cus_a,starter,2026-10-01,\nsub_b,")
    error = catalog_error(catalog_dir)
    assert "already has subscription 'sub_a' active" in str(error), str(error)
    assert_names(error, subscriptions, "row 3 (external_subscription_id 'sub_a2')", "started_at: customer 'cus_a'")


# ---------------------------------------------------------------- applied_coupons.csv


def test_applied_coupon_with_unknown_code(catalog_dir: Path) -> None:
    applied = catalog_dir / "applied_coupons.csv"
    edit(applied, "cus_a,five_off", "cus_a,five_of")
    assert_names(catalog_error(catalog_dir), applied, "row 2 (external_customer_id 'cus_a')",
                 "coupon_code: unknown coupon 'five_of'")


# ---------------------------------------------------------------- files


@pytest.mark.parametrize("name", ["billing_entity.yml", "billable_metrics.yml", "plans.yml", "customers.csv",
                                  "subscriptions.csv"])
def test_missing_required_file(catalog_dir: Path, name: str) -> None:
    (catalog_dir / name).unlink()
    error = catalog_error(catalog_dir)
    assert error.file == str(catalog_dir / name)
    assert str(error) == f"{catalog_dir / name}: file is missing (see docs/catalog.md)"


def test_optional_files_may_be_absent(catalog_dir: Path) -> None:
    (catalog_dir / "applied_coupons.csv").unlink()
    (catalog_dir / "coupons.yml").unlink()
    catalog = read_catalog(catalog_dir)
    assert catalog.coupons == () and catalog.applied_coupons == ()


def test_yaml_that_does_not_parse(catalog_dir: Path) -> None:
    plans = catalog_dir / "plans.yml"
    edit(plans, "    charges:\n      - metric: input_tokens", "    charges:\n      - metric: [input_tokens")
    error = catalog_error(catalog_dir)
    text = str(error)
    assert error.file == str(plans)
    assert text.startswith(f"{plans}: not valid YAML"), text
    assert "line 25" in text, text  # where the parser gave up


# ---------------------------------------------------------------- through the CLI


def test_cli_run_with_broken_plans_exits_2_and_builds_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    shutil.copytree(SMALL_CATALOG, home / "catalog")
    (home / "landing").mkdir()
    (home / "landing" / "events.jsonl").write_text(
        '{"transaction_id": "t1", "external_subscription_id": "sub_a", "code": "api_requests", '
        '"timestamp": "2026-10-05T10:00:00Z"}\n')
    edit(home / "catalog" / "plans.yml", 'amount: "0.015"', "amount: 0.1")

    env = {k: v for k, v in os.environ.items() if not k.startswith("METERLINE_")}
    meterline = Path(sys.executable).parent / "meterline"
    result = subprocess.run(
        [str(meterline), "run", "--home", str(home), "--as-of", SMALL_AS_OF.strftime("%Y-%m-%dT%H:%M:%SZ")],
        env=env, capture_output=True, text=True, timeout=120,
    )

    assert result.returncode == 2, (result.stdout, result.stderr)
    # rich wraps stderr at the console width (80 when not a terminal), keeping the trailing
    # space of a wrapped line: joining the lines gives the message back.
    stderr = result.stderr.replace("\n", "")
    plans = home / "catalog" / "plans.yml"
    assert f"{plans}: {PLAN_STARTER} > charges[0] > properties > amount: 0.1 is not a decimal string" in stderr, \
        result.stderr

    warehouse = home / "warehouse.duckdb"
    if warehouse.exists():
        con = duckdb.connect(str(warehouse), read_only=True)
        try:
            schemas = {row[0] for row in con.execute("select schema_name from information_schema.schemata").fetchall()}
            events = (con.execute("select count(*) from raw.events").fetchone()[0]
                      if "raw" in schemas else 0)
        finally:
            con.close()
        assert "marts" not in schemas
        assert events == 0
    assert not (home / "output").exists() or not any((home / "output").iterdir())
