"""The catalog: price book (YAML), customers and subscriptions (CSV). See docs/catalog.md.

`read_catalog` validates everything and raises `CatalogError` naming file, row or key, and
field at the first problem; `write_catalog` then replaces the `catalog.*` tables that dbt
reads. Nothing reaches the warehouse unless the whole catalog is valid.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from orchestration.settings import PROJECT_DIR
from orchestration.warehouse import Warehouse

CODE_PATTERN = re.compile(r"^[a-z0-9_]+$")

# dbt applies a customer's coupons one after another in a fixed number of steps (models/
# intermediate/int_invoice_coupons.sql); the catalog refuses more coupons than steps.
_DBT_VARS = yaml.safe_load((PROJECT_DIR / "dbt_project.yml").read_text(encoding="utf-8"))["vars"]
MAX_COUPONS_PER_CUSTOMER = int(_DBT_VARS["max_coupons_per_customer"])
# Likewise int_invoice_wallet_credits spends a customer's wallets in that many steps.
MAX_WALLETS_PER_CUSTOMER = int(_DBT_VARS["max_wallets_per_customer"])


class CatalogError(ValueError):
    """An invalid catalog. The message names file, row or key, and field."""

    def __init__(self, file: Path | str, location: str, message: str):
        self.file = str(file)
        self.location = location
        super().__init__(f"{file}: {location}: {message}" if location else f"{file}: {message}")


# ---------------------------------------------------------------- field types


MAX_CATALOG_NUMBER = Decimal(10) ** 15


def _decimal_string(value: Any) -> Decimal:
    """Money must arrive as text: a YAML float has already lost exactness."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(f"{value!r} is not a decimal string (write amounts in quotes, e.g. \"0.002\")")
    try:
        parsed = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"{value!r} is not a decimal string") from None
    if not parsed.is_finite():
        raise ValueError(f"{value!r} is not a finite decimal")
    # The warehouse keeps catalog numbers as decimal(38, 12) and multiplies them by quantities:
    # more decimals would be rounded away silently, and very large values would overflow.
    if parsed.as_tuple().exponent < -12:
        raise ValueError(f"{value!r} has more than 12 decimals")
    if abs(parsed) >= MAX_CATALOG_NUMBER:
        raise ValueError(f"{value!r} is too large (at most {MAX_CATALOG_NUMBER - 1:,})")
    return parsed


def _non_negative_amount(value: Any) -> Decimal:
    parsed = _decimal_string(value)
    if parsed < 0:
        raise ValueError(f"{value!r} must not be negative")
    return parsed


def _percent(value: Any) -> Decimal:
    """A rate in percent, 0 to 100, with at most 6 decimals: the models take a percent of an
    amount exactly at that scale (macros/money.sql, percent_of)."""
    rate = _non_negative_amount(value)
    if rate > 100:
        raise ValueError(f"{value!r} is above 100 (a rate is in percent)")
    if rate.as_tuple().exponent < -6:
        raise ValueError(f"{value!r} has more than 6 decimals")
    return rate


def _code(value: Any) -> str:
    if not isinstance(value, str) or not CODE_PATTERN.match(value):
        raise ValueError(f"{value!r} is not a code (lower case letters, digits and _)")
    return value


def _timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r} (expected an IANA name like 'Europe/Paris')") from None
    if value not in _known_timezones():
        raise ValueError(f"unknown time zone {value!r} (expected an IANA name like 'Europe/Paris')")
    return value


_TIMEZONES: set[str] | None = None


def _known_timezones() -> set[str]:
    global _TIMEZONES
    if _TIMEZONES is None:
        _TIMEZONES = available_timezones() | {"UTC"}
    return _TIMEZONES


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------- price book models


class BillingEntity(_Strict):
    code: str
    name: str
    timezone: str = "UTC"
    invoice_prefix: str
    address: str | None = None
    # Days an invoice stays a draft after its date (late events still change it) before it is
    # finalised; customers.csv may give a customer its own (docs/invoice-lifecycle.md).
    invoice_grace_period_days: int = Field(0, ge=0, le=365)
    # An event loaded after its invoice was finalised is corrected on a later invoice, unless it
    # happened more than this many days before it was loaded: then it is excluded, visibly.
    late_events_lookback_days: int | None = Field(None, ge=0, le=3650)
    # Tax codes (taxes.yml) every fee bears unless its customer, plan or charge names its own.
    taxes: list[str] = []

    check_code = field_validator("code")(classmethod(lambda cls, v: _code(v)))
    check_tz = field_validator("timezone")(classmethod(lambda cls, v: _timezone(v)))


NUMERIC_AGGREGATIONS = {"sum", "max", "latest", "weighted_sum"}
RECURRING_AGGREGATIONS = {"sum", "unique_count", "weighted_sum"}


class MetricFilter(_Strict):
    """A property that charges may price separately, and the values it may take."""

    key: str
    values: list[str]

    @model_validator(mode="after")
    def _has_values(self) -> MetricFilter:
        if not self.values or len(set(self.values)) != len(self.values):
            raise ValueError("values: a non-empty list without repeats")
        return self


class BillableMetric(_Strict):
    code: str
    name: str
    aggregation: Literal["count", "sum", "max", "latest", "unique_count", "weighted_sum"]
    field: str | None = None
    filters: list[MetricFilter] = []
    recurring: bool = False
    """Recurring metrics carry their level across the periods of a subscription (seats, storage)."""
    rounding_function: Literal["round", "ceil", "floor"] | None = None
    rounding_precision: int | None = None
    """Decimals kept by the rounding of units; negative rounds to tens, hundreds..."""
    description: str | None = None

    check_code = field_validator("code")(classmethod(lambda cls, v: _code(v)))

    @model_validator(mode="after")
    def _field_matches_aggregation(self) -> BillableMetric:
        if self.aggregation != "count" and not self.field:
            raise ValueError(f"field: a {self.aggregation} metric needs the property it aggregates")
        if self.aggregation == "count" and self.field:
            raise ValueError("field: a count metric counts events and takes no field")
        if self.recurring and self.aggregation not in RECURRING_AGGREGATIONS:
            raise ValueError(f"recurring: only {', '.join(sorted(RECURRING_AGGREGATIONS))} metrics can recur")
        if self.rounding_precision is not None and self.rounding_function is None:
            raise ValueError("rounding_precision: needs a rounding_function (round, ceil or floor)")
        if self.rounding_precision is not None and not -9 <= self.rounding_precision <= 9:
            raise ValueError("rounding_precision: from -9 to 9")
        keys = [f.key for f in self.filters]
        if len(set(keys)) != len(keys):
            raise ValueError("filters: each key once")
        return self

    @property
    def rounding_step(self) -> Decimal | None:
        """10^-precision: units are rounded to a multiple of it."""
        if self.rounding_function is None:
            return None
        return Decimal(1).scaleb(-(self.rounding_precision or 0))


def _check_chain(ranges: list[Any]) -> list[Any]:
    """Ranges chain the established engine's way: the first from 0, each next from the previous
    to_value + 1, only the last open (to_value null)."""
    if not ranges:
        raise ValueError("at least one range is needed")
    if ranges[0].from_value != 0:
        raise ValueError("[0] > from_value: the first range starts at 0")
    for index, (previous, current) in enumerate(zip(ranges, ranges[1:]), start=1):
        if previous.to_value is None:
            raise ValueError(f"[{index - 1}] > to_value: only the last range may be open (null)")
        if current.from_value != previous.to_value + 1:
            raise ValueError(
                f"[{index}] > from_value: {current.from_value} does not chain: expected the previous "
                f"to_value + 1 = {previous.to_value + 1}"
            )
    for index, current in enumerate(ranges):
        if current.to_value is not None and current.to_value < current.from_value:
            raise ValueError(f"[{index}] > to_value: smaller than from_value")
    if ranges[-1].to_value is not None:
        raise ValueError(f"[{len(ranges) - 1}] > to_value: the last range must be open (null)")
    return ranges


_amount = classmethod(lambda cls, v: _non_negative_amount(v))
_optional_amount = classmethod(lambda cls, v: None if v is None else _non_negative_amount(v))


class GraduatedRange(_Strict):
    from_value: Decimal
    to_value: Decimal | None
    per_unit_amount: Decimal
    flat_amount: Decimal

    check_bounds = field_validator("from_value", "to_value", mode="before")(_optional_amount)
    check_amounts = field_validator("per_unit_amount", "flat_amount", mode="before")(_amount)


class PercentageRange(_Strict):
    from_value: Decimal
    to_value: Decimal | None
    rate: Decimal
    flat_amount: Decimal

    check_bounds = field_validator("from_value", "to_value", mode="before")(_optional_amount)
    check_amounts = field_validator("rate", "flat_amount", mode="before")(_amount)


class StandardProperties(_Strict):
    amount: Decimal
    check_amount = field_validator("amount", mode="before")(_amount)


class PackageProperties(_Strict):
    """ceil((units - free_units) / package_size) packages at `amount` each."""

    amount: Decimal
    package_size: Decimal
    free_units: Decimal = Decimal(0)

    check_amounts = field_validator("amount", "package_size", "free_units", mode="before")(_amount)

    @model_validator(mode="after")
    def _positive_size(self) -> PackageProperties:
        if self.package_size <= 0:
            raise ValueError("package_size: must be greater than 0")
        return self


class GraduatedProperties(_Strict):
    graduated_ranges: list[GraduatedRange]
    check_chain = field_validator("graduated_ranges")(classmethod(lambda cls, v: _check_chain(v)))


class VolumeProperties(_Strict):
    """The one range that the total units reach prices all of them, plus its flat amount."""

    volume_ranges: list[GraduatedRange]
    check_chain = field_validator("volume_ranges")(classmethod(lambda cls, v: _check_chain(v)))


class GraduatedPercentageProperties(_Strict):
    graduated_percentage_ranges: list[PercentageRange]
    check_chain = field_validator("graduated_percentage_ranges")(classmethod(lambda cls, v: _check_chain(v)))


class PercentageProperties(_Strict):
    """rate % of the summed amount, + fixed_amount per paying event, after free units."""

    rate: Decimal
    fixed_amount: Decimal | None = None
    free_units_per_events: int | None = None
    free_units_per_total_aggregation: Decimal | None = None
    per_transaction_min_amount: Decimal | None = None
    per_transaction_max_amount: Decimal | None = None

    check_rate = field_validator("rate", mode="before")(_amount)
    check_amounts = field_validator("fixed_amount", "free_units_per_total_aggregation",
                                    "per_transaction_min_amount", "per_transaction_max_amount",
                                    mode="before")(_optional_amount)

    @model_validator(mode="after")
    def _consistent(self) -> PercentageProperties:
        if self.rate > 100:
            raise ValueError("rate: a percentage from 0 to 100")
        if self.free_units_per_events is not None and self.free_units_per_events < 0:
            raise ValueError("free_units_per_events: must not be negative")
        low, high = self.per_transaction_min_amount, self.per_transaction_max_amount
        if low is not None and high is not None and low > high:
            raise ValueError("per_transaction_min_amount: larger than per_transaction_max_amount")
        return self


class DynamicProperties(_Strict):
    """No price: the amount is the sum of the metric's field, a money amount sent on each event."""


CHARGE_PROPERTIES: dict[str, type[_Strict]] = {
    "standard": StandardProperties,
    "package": PackageProperties,
    "graduated": GraduatedProperties,
    "volume": VolumeProperties,
    "percentage": PercentageProperties,
    "graduated_percentage": GraduatedPercentageProperties,
    "dynamic": DynamicProperties,
}

# Which aggregations each charge model can price. Percentages and dynamic amounts need a sum
# of money (a count, a maximum or a latest level has no amount to take a percentage of).
ALL_AGGREGATIONS = {"count", "sum", "max", "latest", "unique_count", "weighted_sum"}
MODEL_AGGREGATIONS: dict[str, set[str]] = {
    "standard": ALL_AGGREGATIONS,
    "package": ALL_AGGREGATIONS,
    "graduated": ALL_AGGREGATIONS,
    "volume": ALL_AGGREGATIONS,
    "percentage": {"sum"},
    "graduated_percentage": {"sum"},
    "dynamic": {"sum"},
}


class ChargeFilter(_Strict):
    """A separately priced bucket of a charge: events whose properties match `values`."""

    values: dict[str, list[str]]
    properties: Any = None
    invoice_display_name: str | None = None


MAX_GROUP_KEYS = 3


class Charge(_Strict):
    metric: str
    charge_model: Literal["standard", "package", "graduated", "volume", "percentage", "graduated_percentage",
                          "dynamic"]
    properties: Any = Field(default=None, validate_default=True)
    min_amount: Decimal | None = None
    """Spending minimum per period: a true-up fee tops the charge's fees up to it (prorated)."""
    pay_in_advance: bool = False
    """Bill each event its marginal amount when it arrives, instead of the period at its end."""
    invoice_display_name: str | None = None
    filters: list[ChargeFilter] = []
    """Buckets priced on their own; `properties` prices the events that match none of them."""
    pricing_group_keys: list[str] = []
    """Properties whose distinct values split the charge: each group priced on its own line."""
    taxes: list[str] = []
    """Tax codes for this charge's fees, instead of the plan's, customer's or billing entity's."""

    check_min = field_validator("min_amount", mode="before")(_optional_amount)

    @field_validator("properties", mode="before")
    @classmethod
    def _properties_fit_model(cls, value: Any, info: ValidationInfo) -> Any:
        model = CHARGE_PROPERTIES.get(info.data.get("charge_model", ""))
        if model is None:
            return value  # the charge_model error is reported on its own
        try:
            return model.model_validate(value if value is not None else {})
        except ValidationError as error:
            first = error.errors()[0]
            where = " > ".join(str(part) for part in first["loc"])
            message = first["msg"].removeprefix("Value error, ")
            raise ValueError(f"{where}: {message}" if where else message) from None

    def ranges(self) -> list[Any]:
        """Price tiers of the tiered models, in order."""
        props = self.properties
        if isinstance(props, GraduatedProperties):
            return props.graduated_ranges
        if isinstance(props, VolumeProperties):
            return props.volume_ranges
        if isinstance(props, GraduatedPercentageProperties):
            return props.graduated_percentage_ranges
        return []


class UsageThreshold(_Strict):
    """Progressive billing: when a period's usage to date reaches `amount`, an invoice is issued
    for the usage so far (docs/invoice-amounts.md). A recurring threshold fires every `amount`
    beyond the largest fixed one."""

    amount: Decimal
    name: str | None = None
    recurring: bool = False

    @field_validator("amount", mode="before")
    @classmethod
    def _positive(cls, value: Any) -> Decimal:
        amount = _decimal_string(value)
        if amount <= 0:
            raise ValueError(f"{value!r} must be above zero")
        return amount


class Plan(_Strict):
    code: str
    name: str
    interval: Literal["weekly", "monthly", "quarterly", "semiannual", "yearly"]
    currency: str
    amount: Decimal
    pay_in_advance: bool
    # Whole local days from the subscription's start without a base fee (usage is billed).
    trial_period: int = Field(default=0, ge=0, strict=True)
    # Quarterly, semiannual and yearly plans may bill their charges every month.
    bill_charges_monthly: bool = False
    # The least a fee period must bill (all its fees); a true-up line covers the gap.
    minimum_commitment: Decimal | None = None
    invoice_display_name: str | None = None
    charges: list[Charge] = []
    # Tax codes for this plan's fees, instead of the customer's or billing entity's.
    taxes: list[str] = []
    # Progressive billing: fixed thresholds and at most one recurring step.
    usage_thresholds: list[UsageThreshold] = []
    # Set on the plans that per-subscription overrides derive (never in plans.yml).
    base_plan_code: str | None = Field(default=None, exclude=True)

    check_code = field_validator("code")(classmethod(lambda cls, v: _code(v)))
    check_amount = field_validator("amount", mode="before")(classmethod(lambda cls, v: _non_negative_amount(v)))
    check_commitment = field_validator("minimum_commitment", mode="before")(
        classmethod(lambda cls, v: None if v is None else _non_negative_amount(v)))

    @field_validator("base_plan_code")
    @classmethod
    def _derived_only(cls, value: str | None) -> str | None:
        if value is not None:
            raise ValueError("is set by subscription_overrides.yml, not written in a plan")
        return value

    @field_validator("usage_thresholds")
    @classmethod
    def _one_recurring_and_distinct(cls, thresholds: list[UsageThreshold]) -> list[UsageThreshold]:
        if sum(t.recurring for t in thresholds) > 1:
            raise ValueError("at most one threshold may be recurring")
        fixed = [t.amount for t in thresholds if not t.recurring]
        if len(set(fixed)) != len(fixed):
            raise ValueError("two fixed thresholds have the same amount")
        return thresholds

    @model_validator(mode="after")
    def _monthly_charges_need_a_longer_interval(self) -> Plan:
        if self.bill_charges_monthly and self.interval in ("weekly", "monthly"):
            raise ValueError(f"bill_charges_monthly: a {self.interval} plan already bills its charges every "
                             f"{'week' if self.interval == 'weekly' else 'month'}")
        return self


class AddOn(_Strict):
    """A one-off charge (onboarding, support hours): invoiced on its own when applied."""

    code: str
    name: str
    amount: Decimal
    currency: str
    invoice_display_name: str | None = None

    check_code = field_validator("code")(classmethod(lambda cls, v: _code(v)))
    check_amount = field_validator("amount", mode="before")(classmethod(lambda cls, v: _non_negative_amount(v)))


class Tax(_Strict):
    """A tax rate, in percent of the fee net of its coupon share (docs/invoice-amounts.md)."""

    code: str
    name: str
    rate: Decimal
    description: str | None = None

    check_code = field_validator("code")(classmethod(lambda cls, v: _code(v)))
    check_rate = field_validator("rate", mode="before")(classmethod(lambda cls, v: _percent(v)))


class Coupon(_Strict):
    code: str
    name: str
    coupon_type: Literal["percentage", "fixed_amount"]
    percentage_rate: Decimal | None = None
    amount: Decimal | None = None
    currency: str | None = None
    frequency: Literal["once", "recurring", "forever"]
    frequency_duration: int | None = None
    # The last day (in the customer's time zone) on whose invoices the coupon discounts.
    expiration_date: date | None = None
    # Limits: the coupon discounts only the fees of these plans, or of these metrics' charges.
    plan_codes: list[str] = []
    metric_codes: list[str] = []

    check_code = field_validator("code")(classmethod(lambda cls, v: _code(v)))
    check_amount = field_validator("amount", mode="before")(
        classmethod(lambda cls, v: None if v is None else _non_negative_amount(v)))
    check_rate = field_validator("percentage_rate", mode="before")(
        classmethod(lambda cls, v: None if v is None else _percent(v)))

    @model_validator(mode="after")
    def _consistent(self) -> Coupon:
        if self.coupon_type == "percentage":
            if self.percentage_rate is None:
                raise ValueError("percentage_rate: a percentage coupon needs a rate from 0 to 100")
            if self.amount is not None or self.currency is not None:
                raise ValueError("amount: a percentage coupon takes no amount or currency")
        else:
            if self.amount is None or not self.currency:
                raise ValueError("amount: a fixed_amount coupon needs amount and currency")
            if self.percentage_rate is not None:
                raise ValueError("percentage_rate: a fixed_amount coupon takes no rate")
        if self.frequency == "recurring" and (self.frequency_duration or 0) < 1:
            raise ValueError("frequency_duration: a recurring coupon needs a number of invoices >= 1")
        if self.frequency != "recurring" and self.frequency_duration is not None:
            raise ValueError("frequency_duration: only recurring coupons take a duration")
        if self.plan_codes and self.metric_codes:
            raise ValueError("plan_codes: a coupon is limited to plans or to metrics, not both")
        return self


FEE_KINDS = ("subscription", "charge", "true_up", "commitment", "add_on")


class WalletLimits(_Strict):
    """What a wallet may pay for: fees of these kinds, and/or usage fees of these metrics."""

    fee_kinds: list[Literal["subscription", "charge", "true_up", "commitment", "add_on"]] = []
    metric_codes: list[str] = []


class _Credits(_Strict):
    """Credits added to a wallet: granted (free) or purchased (invoiced), one of the two."""

    granted_credits: Decimal | None = None
    purchased_credits: Decimal | None = None

    check_credits = field_validator("granted_credits", "purchased_credits", mode="before")(
        classmethod(lambda cls, v: None if v is None else _non_negative_amount(v)))

    @model_validator(mode="after")
    def _one_kind(self) -> _Credits:
        if (self.granted_credits is None) == (self.purchased_credits is None):
            raise ValueError("granted_credits: credits are granted or purchased (one of the two)")
        return self

    @property
    def kind_and_credits(self) -> tuple[str, Decimal]:
        if self.granted_credits is not None:
            return "granted", self.granted_credits
        return "purchased", self.purchased_credits


class WalletTransaction(_Credits):
    """Credits added at a date or instant."""

    at: str

    @field_validator("at", mode="before")
    @classmethod
    def _text(cls, value: Any) -> str:
        return value.isoformat() if isinstance(value, (date, datetime)) else str(value)


class WalletTopUp(_Credits):
    """A top-up rule: credits added at the start of every interval (calendar, the customer's
    time zone) after the wallet opens, or whenever its ongoing balance is at or under
    `threshold_credits` (docs/invoice-amounts.md); one of the two."""

    interval: Literal["weekly", "monthly", "quarterly", "yearly"] | None = None
    threshold_credits: Decimal | None = None

    check_threshold = field_validator("threshold_credits", mode="before")(
        classmethod(lambda cls, v: None if v is None else _non_negative_amount(v)))

    @model_validator(mode="after")
    def _one_trigger(self) -> WalletTopUp:
        if (self.interval is None) == (self.threshold_credits is None):
            raise ValueError("interval: a top-up happens on an interval or under a threshold_credits (one of the two)")
        kind, credits = self.kind_and_credits
        if self.threshold_credits is not None and credits == 0:
            raise ValueError(f"{kind}_credits: a threshold top-up must add credits (above 0)")
        return self


class Wallet(_Strict):
    """Prepaid credits of one customer (docs/invoice-amounts.md): spent on its invoices after tax."""

    code: str
    customer: str
    name: str
    rate_amount: Decimal
    """What one credit is worth, in the customer's currency."""
    priority: int = Field(default=1, ge=1, strict=True)
    started_at: str
    expiration_date: date | None = None
    """The last local day its credits pay invoices; what is left expires at its end."""
    applies_to: WalletLimits = WalletLimits()
    transactions: list[WalletTransaction] = []
    top_ups: list[WalletTopUp] = []

    check_code = field_validator("code")(classmethod(lambda cls, v: _code(v)))

    @field_validator("rate_amount", mode="before")
    @classmethod
    def _positive_rate(cls, value: Any) -> Decimal:
        rate = _non_negative_amount(value)
        if rate == 0:
            raise ValueError(f"{value!r} must be above 0")
        if rate.as_tuple().exponent < -9:
            raise ValueError(f"{value!r} has more than 9 decimals")
        return rate

    @field_validator("started_at", mode="before")
    @classmethod
    def _text(cls, value: Any) -> str:
        return value.isoformat() if isinstance(value, (date, datetime)) else str(value)


# ---------------------------------------------------------------- CSV rows


@dataclass(frozen=True)
class Customer:
    external_customer_id: str
    name: str
    email: str | None
    country: str | None
    currency: str
    timezone: str | None
    tax_codes: tuple[str, ...] = ()  # taxes for this customer's fees, instead of the billing entity's
    tax_exempt: bool = False  # no tax on any of its invoices
    invoice_grace_period_days: int | None = None  # instead of the billing entity's


# Calendar periods start on a Monday / the 1st / 1 January; anniversary periods on the
# subscription's start day.
BILLING_TIMES = ("calendar", "anniversary")


@dataclass(frozen=True)
class Subscription:
    external_subscription_id: str
    external_customer_id: str
    plan_code: str
    started_at: datetime  # naive UTC; for a later phase, when the plan change was requested
    ended_at: datetime | None
    billing_time: str = "calendar"  # calendar | anniversary (docs/billing-calendar.md)
    phase: int = 1  # 2, 3...: the subscription's plan changes, in order (docs/billing-calendar.md)

    @property
    def subscription_id(self) -> str:
        """The phase's own id: the external id for the first phase, "<id>#<phase>" after."""
        return self.external_subscription_id if self.phase == 1 else f"{self.external_subscription_id}#{self.phase}"


@dataclass(frozen=True)
class AppliedCoupon:
    external_customer_id: str
    coupon_code: str
    applied_at: datetime  # naive UTC
    row: int = 0  # the row in applied_coupons.csv: breaks ties between coupons applied at once


@dataclass(frozen=True)
class ResolvedWallet:
    """A wallet with its instants in naive UTC (the customer's time zone applied)."""

    wallet: Wallet
    started_at: datetime
    expires_at: datetime | None  # the end of expiration_date, local
    transactions: tuple[tuple[datetime, str, Decimal], ...]  # (at, granted | purchased, credits)


@dataclass(frozen=True)
class AppliedAddOn:
    row: int  # the row in applied_add_ons.csv: each row is a one-off invoice line
    external_customer_id: str
    add_on_code: str
    applied_at: datetime  # naive UTC
    units: Decimal
    unit_amount: Decimal  # the add-on's amount, or the row's own
    description: str | None


@dataclass(frozen=True)
class Catalog:
    directory: Path
    billing_entity: BillingEntity
    metrics: tuple[BillableMetric, ...]
    plans: tuple[Plan, ...]
    coupons: tuple[Coupon, ...]
    customers: tuple[Customer, ...]
    subscriptions: tuple[Subscription, ...]
    applied_coupons: tuple[AppliedCoupon, ...]
    fingerprint: str
    """sha256 of the files' bytes, in a fixed order: the price-book version."""
    add_ons: tuple[AddOn, ...] = ()
    applied_add_ons: tuple[AppliedAddOn, ...] = ()
    taxes: tuple[Tax, ...] = ()
    wallets: tuple[ResolvedWallet, ...] = ()

    @property
    def metrics_by_code(self) -> dict[str, BillableMetric]:
        return {m.code: m for m in self.metrics}


# ---------------------------------------------------------------- reading


def _read_yaml(path: Path, top_key: str, required: bool = True) -> Any:
    if not path.exists():
        if required:
            raise CatalogError(path, "", "file is missing (see docs/catalog.md)")
        return []
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise CatalogError(path, "", f"not valid YAML: {error}") from None
    if not isinstance(document, dict) or top_key not in document:
        raise CatalogError(path, "", f"expected a top-level key '{top_key}'")
    return document[top_key]


def _format_location(top_key: str, items: list[Any], loc: tuple[Any, ...]) -> str:
    """('plans', 1, 'charges', 0, 'amount') -> "plans[1] (code 'developer') > charges[0] > amount"."""
    parts: list[str] = [top_key]
    for index, step in enumerate(loc):
        if isinstance(step, int):
            parts[-1] += f"[{step}]"
            if index == 0 and isinstance(items, list) and step < len(items) and isinstance(items[step], dict):
                code = items[step].get("code")
                if code is not None:
                    parts[-1] += f" (code '{code}')"
        else:
            parts.append(str(step))
    return " > ".join(parts)


def _validate_list(path: Path, top_key: str, items: Any, model: type[BaseModel]) -> list[Any]:
    if not isinstance(items, list):
        raise CatalogError(path, top_key, "expected a list")
    parsed = []
    for index, item in enumerate(items):
        try:
            parsed.append(model.model_validate(item))
        except ValidationError as error:
            first = error.errors()[0]
            location = _format_location(top_key, items, (index, *first["loc"]))
            message = first["msg"].removeprefix("Value error, ")
            field, _, rest = message.partition(": ")
            if ((first["loc"] and first["loc"][-1] == "properties" and rest)
                    or (rest and re.fullmatch(r"[a-z_]+", field))):
                # A charge's properties are checked by their own model, and a check across
                # fields by the model itself; both put the field path first in the message
                # ("graduated_ranges: [1] > from_value: ...", "plan_codes: ...").
                location, message = f"{location} > {field}", rest
            raise CatalogError(path, location, message) from None
    codes = [p.code for p in parsed]
    for index, code in enumerate(codes):
        if codes.index(code) != index:
            raise CatalogError(path, f"{top_key}[{index}] > code", f"duplicate code {code!r}")
    return parsed


def _parse_instant(value: str, zone: str) -> datetime:
    """An ISO date (midnight in `zone`) or an ISO timestamp (with offset, else in `zone`) -> naive UTC."""
    text = value.strip()
    try:
        if len(text) == 10:
            local = datetime.combine(date.fromisoformat(text), time())
        else:
            local = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{value!r} is not an ISO date or timestamp") from None
    if local.tzinfo is None:
        local = local.replace(tzinfo=ZoneInfo(zone))
    return local.astimezone(timezone.utc).replace(tzinfo=None)


def _read_csv(path: Path, required_columns: list[str], required: bool = True) -> list[tuple[int, dict[str, str]]]:
    if not path.exists():
        if required:
            raise CatalogError(path, "", "file is missing (see docs/catalog.md)")
        return []
    # utf-8-sig: spreadsheets often write a byte-order mark before the header.
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        missing = [c for c in required_columns if c not in header]
        if missing:
            raise CatalogError(path, "header", f"missing column(s) {', '.join(missing)}")
        # Row numbers as a spreadsheet shows them: the header is row 1, blank lines count.
        rows = []
        for row in reader:
            rows.append((reader.line_num, {k: (v or "").strip() for k, v in row.items() if k is not None}))
        return rows


def _row_error(path: Path, number: int, key: str, field: str, message: str) -> CatalogError:
    return CatalogError(path, f"row {number} ({key}) > {field}", message)


def known_currencies() -> dict[str, int]:
    """Currency code -> ISO 4217 exponent, from the dbt seed (one source of truth)."""
    with (PROJECT_DIR / "seeds" / "currencies.csv").open(newline="") as handle:
        return {row["currency_code"]: int(row["minor_unit"]) for row in csv.DictReader(handle)}


def read_catalog(
    directory: Path,
    *,
    customers_file: Path | None = None,
    subscriptions_file: Path | None = None,
    applied_coupons_file: Path | None = None,
) -> Catalog:
    """Read and validate a catalog directory; raise CatalogError at the first problem."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CatalogError(directory, "", "catalog directory not found")
    currencies = known_currencies()

    entity_path = directory / "billing_entity.yml"
    entity_doc = _read_yaml(entity_path, "billing_entity")
    try:
        entity = BillingEntity.model_validate(entity_doc)
    except ValidationError as error:
        first = error.errors()[0]
        raise CatalogError(
            entity_path, _format_location("billing_entity", [], first["loc"]), first["msg"].removeprefix("Value error, ")
        ) from None

    taxes_path = directory / "taxes.yml"
    taxes = _validate_list(taxes_path, "taxes", _read_yaml(taxes_path, "taxes", required=False), Tax)
    tax_codes = {t.code for t in taxes}
    _check_tax_codes(entity_path, "billing_entity > taxes", entity.taxes, tax_codes)

    metrics_path = directory / "billable_metrics.yml"
    metrics = _validate_list(metrics_path, "billable_metrics", _read_yaml(metrics_path, "billable_metrics"), BillableMetric)
    metric_codes = {m.code for m in metrics}
    metrics_by_code = {m.code: m for m in metrics}

    plans_path = directory / "plans.yml"
    raw_plans = _read_yaml(plans_path, "plans")
    plans = _validate_list(plans_path, "plans", raw_plans, Plan)
    for plan_index, plan in enumerate(plans):
        _check_plan(plans_path, f"plans[{plan_index}] (code '{plan.code}')", plan, metrics_by_code, currencies,
                    tax_codes)
    plans_by_code = {p.code: p for p in plans}

    coupons_path = directory / "coupons.yml"
    coupons = _validate_list(coupons_path, "coupons", _read_yaml(coupons_path, "coupons", required=False), Coupon)
    for index, coupon in enumerate(coupons):
        where = f"coupons[{index}] (code '{coupon.code}')"
        if coupon.currency is not None and coupon.currency not in currencies:
            raise CatalogError(coupons_path, f"{where} > currency", "unknown currency")
        if coupon.amount is not None and coupon.amount.as_tuple().exponent < -currencies[coupon.currency]:
            raise CatalogError(coupons_path, f"{where} > amount", f"{coupon.amount} has more decimals than "
                                                                 f"{coupon.currency} ({currencies[coupon.currency]})")
        for field, codes, known, kind in (("plan_codes", coupon.plan_codes, plans_by_code, "plan"),
                                          ("metric_codes", coupon.metric_codes, metrics_by_code, "billable metric")):
            for position, code in enumerate(codes):
                if code not in known:
                    raise CatalogError(coupons_path, f"{where} > {field}[{position}]", f"unknown {kind} {code!r}")
    coupon_codes = {c.code for c in coupons}

    customers_path = customers_file or directory / "customers.csv"
    customers: list[Customer] = []
    seen_customers: set[str] = set()
    for number, row in _read_csv(customers_path, ["external_customer_id", "name", "currency"]):
        key = f"external_customer_id '{row['external_customer_id']}'"
        for field in ("external_customer_id", "name", "currency"):
            if not row.get(field):
                raise _row_error(customers_path, number, key, field, "required")
        if row["external_customer_id"] in seen_customers:
            raise _row_error(customers_path, number, key, "external_customer_id", "duplicate id")
        seen_customers.add(row["external_customer_id"])
        if row["currency"] not in currencies:
            raise _row_error(customers_path, number, key, "currency", f"unknown currency {row['currency']!r}")
        zone = row.get("timezone") or None
        if zone:
            try:
                _timezone(zone)
            except ValueError as error:
                raise _row_error(customers_path, number, key, "timezone", str(error)) from None
        customer_taxes = tuple(code.strip() for code in (row.get("tax_codes") or "").split(";") if code.strip())
        for code in customer_taxes:
            if code not in tax_codes:
                raise _row_error(customers_path, number, key, "tax_codes", f"unknown tax {code!r} (taxes.yml)")
        exempt = (row.get("tax_exempt") or "false").lower()
        if exempt not in ("true", "false"):
            raise _row_error(customers_path, number, key, "tax_exempt", f"{row['tax_exempt']!r} is not true or false")
        if exempt == "true" and customer_taxes:
            raise _row_error(customers_path, number, key, "tax_codes", "a tax-exempt customer takes no tax codes")
        grace = (row.get("invoice_grace_period_days") or "").strip()
        if grace and not (grace.isdigit() and int(grace) <= 365):
            raise _row_error(customers_path, number, key, "invoice_grace_period_days",
                             f"{grace!r} is not a whole number of days from 0 to 365")
        customers.append(
            Customer(row["external_customer_id"], row["name"], row.get("email") or None,
                     row.get("country") or None, row["currency"], zone, customer_taxes, exempt == "true",
                     int(grace) if grace else None)
        )
    customers_by_id = {c.external_customer_id: c for c in customers}

    subscriptions_path = subscriptions_file or directory / "subscriptions.csv"
    subscriptions: list[Subscription] = []
    subscription_rows: dict[str, int] = {}  # "<id>|<started_at>" -> row number
    for number, row in _read_csv(
        subscriptions_path, ["external_subscription_id", "external_customer_id", "plan_code", "started_at"]
    ):
        key = f"external_subscription_id '{row['external_subscription_id']}'"
        for field in ("external_subscription_id", "external_customer_id", "plan_code", "started_at"):
            if not row.get(field):
                raise _row_error(subscriptions_path, number, key, field, "required")
        customer = customers_by_id.get(row["external_customer_id"])
        if customer is None:
            raise _row_error(subscriptions_path, number, key, "external_customer_id",
                             f"unknown customer {row['external_customer_id']!r}")
        plan = plans_by_code.get(row["plan_code"])
        if plan is None:
            raise _row_error(subscriptions_path, number, key, "plan_code", f"unknown plan {row['plan_code']!r}")
        if plan.currency != customer.currency:
            raise _row_error(subscriptions_path, number, key, "plan_code",
                             f"plan {plan.code!r} is priced in {plan.currency}, customer pays in {customer.currency}")
        zone = customer.timezone or entity.timezone
        instants: dict[str, datetime | None] = {}
        for field in ("started_at", "ended_at"):
            value = row.get(field)
            try:
                instants[field] = _parse_instant(value, zone) if value else None
            except ValueError as error:
                raise _row_error(subscriptions_path, number, key, field, str(error)) from None
        if instants["ended_at"] is not None and instants["ended_at"] <= instants["started_at"]:
            raise _row_error(subscriptions_path, number, key, "ended_at", "must be after started_at")
        billing_time = row.get("billing_time") or "calendar"
        if billing_time not in BILLING_TIMES:
            raise _row_error(subscriptions_path, number, key, "billing_time",
                             f"{billing_time!r} is not one of {', '.join(BILLING_TIMES)}")
        subscriptions.append(Subscription(row["external_subscription_id"], customer.external_customer_id,
                                          plan.code, instants["started_at"], instants["ended_at"], billing_time))
        subscription_rows[f"{row['external_subscription_id']}|{instants['started_at']}"] = number
    subscriptions = _number_phases(subscriptions_path, subscriptions, subscription_rows)
    _check_one_active_subscription(subscriptions_path, subscriptions, subscription_rows)

    overrides_path = directory / "subscription_overrides.yml"
    contract_plans, subscriptions = _apply_overrides(
        overrides_path, _read_yaml(overrides_path, "subscription_overrides", required=False) or [],
        raw_plans, plans_by_code, subscriptions, metrics_by_code, currencies, tax_codes)
    plans = [*plans, *contract_plans]

    applied_path = applied_coupons_file or directory / "applied_coupons.csv"
    applied: list[AppliedCoupon] = []
    for number, row in _read_csv(applied_path, ["external_customer_id", "coupon_code", "applied_at"], required=False):
        key = f"external_customer_id '{row['external_customer_id']}'"
        customer = customers_by_id.get(row["external_customer_id"])
        if customer is None:
            raise _row_error(applied_path, number, key, "external_customer_id", "unknown customer")
        if row["coupon_code"] not in coupon_codes:
            raise _row_error(applied_path, number, key, "coupon_code", f"unknown coupon {row['coupon_code']!r}")
        coupon = next(c for c in coupons if c.code == row["coupon_code"])
        if coupon.currency is not None and coupon.currency != customer.currency:
            raise _row_error(applied_path, number, key, "coupon_code",
                             f"coupon is in {coupon.currency}, customer pays in {customer.currency}")
        zone = customer.timezone or entity.timezone
        try:
            applied_at = _parse_instant(row["applied_at"], zone)
        except ValueError as error:
            raise _row_error(applied_path, number, key, "applied_at", str(error)) from None
        if coupon.expiration_date is not None and applied_at >= _parse_instant(
                (coupon.expiration_date + timedelta(days=1)).isoformat(), zone):
            raise _row_error(applied_path, number, key, "applied_at",
                             f"coupon {coupon.code!r} expired on {coupon.expiration_date.isoformat()}")
        applied.append(AppliedCoupon(customer.external_customer_id, coupon.code, applied_at, number))
    per_customer = Counter(a.external_customer_id for a in applied)
    crowded = [c for c, n in per_customer.items() if n > MAX_COUPONS_PER_CUSTOMER]
    if crowded:
        raise CatalogError(applied_path, f"external_customer_id '{crowded[0]}'",
                           f"{per_customer[crowded[0]]} coupons applied; a customer holds at most "
                           f"{MAX_COUPONS_PER_CUSTOMER} (dbt var max_coupons_per_customer)")

    add_ons_path = directory / "add_ons.yml"
    add_ons = _validate_list(add_ons_path, "add_ons", _read_yaml(add_ons_path, "add_ons", required=False), AddOn)
    for index, add_on in enumerate(add_ons):
        if add_on.currency not in currencies:
            raise CatalogError(add_ons_path, f"add_ons[{index}] (code '{add_on.code}') > currency", "unknown currency")
    add_ons_by_code = {a.code: a for a in add_ons}
    applied_add_ons_path = directory / "applied_add_ons.csv"
    applied_add_ons: list[AppliedAddOn] = []
    for number, row in _read_csv(applied_add_ons_path, ["external_customer_id", "add_on_code", "applied_at"],
                                 required=False):
        key = f"external_customer_id '{row['external_customer_id']}'"
        customer = customers_by_id.get(row["external_customer_id"])
        if customer is None:
            raise _row_error(applied_add_ons_path, number, key, "external_customer_id", "unknown customer")
        add_on = add_ons_by_code.get(row["add_on_code"])
        if add_on is None:
            raise _row_error(applied_add_ons_path, number, key, "add_on_code", f"unknown add-on {row['add_on_code']!r}")
        if add_on.currency != customer.currency:
            raise _row_error(applied_add_ons_path, number, key, "add_on_code",
                             f"add-on is in {add_on.currency}, customer pays in {customer.currency}")
        values: dict[str, Decimal] = {}
        for field, default in (("units", Decimal(1)), ("amount", add_on.amount)):
            try:
                values[field] = _non_negative_amount(row[field]) if row.get(field) else default
            except ValueError as error:
                raise _row_error(applied_add_ons_path, number, key, field, str(error)) from None
        try:
            applied_at = _parse_instant(row["applied_at"], customer.timezone or entity.timezone)
        except ValueError as error:
            raise _row_error(applied_add_ons_path, number, key, "applied_at", str(error)) from None
        applied_add_ons.append(AppliedAddOn(number, customer.external_customer_id, add_on.code, applied_at,
                                            values["units"], values["amount"], row.get("description") or None))

    wallets_path = directory / "wallets.yml"
    wallets = _read_wallets(wallets_path, customers_by_id, metrics_by_code, currencies, entity.timezone)

    fingerprint = price_book_fingerprint(
        (path.name, path.read_bytes() if path.exists() else b"")
        for path in (entity_path, metrics_path, plans_path, coupons_path, customers_path, subscriptions_path,
                     applied_path, overrides_path, add_ons_path, applied_add_ons_path, taxes_path, wallets_path))
    return Catalog(directory, entity, tuple(metrics), tuple(plans), tuple(coupons), tuple(customers),
                   tuple(subscriptions), tuple(applied), fingerprint, tuple(add_ons), tuple(applied_add_ons),
                   tuple(taxes), tuple(wallets))


PRICE_BOOK_FILES = ("billing_entity.yml", "billable_metrics.yml", "plans.yml", "coupons.yml", "customers.csv",
                    "subscriptions.csv", "applied_coupons.csv", "subscription_overrides.yml", "add_ons.yml",
                    "applied_add_ons.csv", "taxes.yml", "wallets.yml")
"""A catalog folder's files, in the order of the price-book fingerprint."""


def price_book_fingerprint(files) -> str:
    """sha256 over (file name, bytes) pairs in PRICE_BOOK_FILES order; a missing file counts as
    empty. The ledger records it per invoice; `meterline reproduce` checks it again."""
    digest = hashlib.sha256()
    for name, content in files:
        digest.update(name.encode())
        digest.update(content)
    return digest.hexdigest()


def _read_wallets(path: Path, customers_by_id: dict[str, Customer], metrics_by_code: dict[str, BillableMetric],
                  currencies: dict[str, int], default_zone: str) -> list[ResolvedWallet]:
    """wallets.yml: each wallet's customer, limits and credits checked; instants resolved in the
    customer's time zone. Every credit amount must be a whole number of the currency's minor
    units (credits x rate_amount), so balances stay exact."""
    wallets = _validate_list(path, "wallets", _read_yaml(path, "wallets", required=False), Wallet)
    resolved: list[ResolvedWallet] = []
    for index, wallet in enumerate(wallets):
        where = f"wallets[{index}] (code '{wallet.code}')"
        customer = customers_by_id.get(wallet.customer)
        if customer is None:
            raise CatalogError(path, f"{where} > customer", f"unknown customer {wallet.customer!r}")
        minor_unit = Decimal(1).scaleb(-currencies[customer.currency])
        for position, code in enumerate(wallet.applies_to.metric_codes):
            if code not in metrics_by_code:
                raise CatalogError(path, f"{where} > applies_to > metric_codes[{position}]",
                                   f"unknown billable metric {code!r}")
        zone = customer.timezone or default_zone
        try:
            started_at = _parse_instant(wallet.started_at, zone)
        except ValueError as error:
            raise CatalogError(path, f"{where} > started_at", str(error)) from None
        expires_at = (None if wallet.expiration_date is None
                      else _parse_instant((wallet.expiration_date + timedelta(days=1)).isoformat(), zone))
        if expires_at is not None and expires_at <= started_at:
            raise CatalogError(path, f"{where} > expiration_date", "must not be before started_at")
        credits: list[tuple[str, Decimal]] = []
        transactions = []
        for position, transaction in enumerate(wallet.transactions):
            at_where = f"{where} > transactions[{position}]"
            try:
                at = _parse_instant(transaction.at, zone)
            except ValueError as error:
                raise CatalogError(path, f"{at_where} > at", str(error)) from None
            if at < started_at or (expires_at is not None and at >= expires_at):
                raise CatalogError(path, f"{at_where} > at", "outside the wallet's life (started_at to expiration_date)")
            kind, amount = transaction.kind_and_credits
            credits.append((f"{at_where} > {kind}_credits", amount))
            transactions.append((at, kind, amount))
        for position, top_up in enumerate(wallet.top_ups):
            kind, amount = top_up.kind_and_credits
            credits.append((f"{where} > top_ups[{position}] > {kind}_credits", amount))
            if top_up.threshold_credits is not None:
                credits.append((f"{where} > top_ups[{position}] > threshold_credits", top_up.threshold_credits))
        threshold_rules = [p for p, t in enumerate(wallet.top_ups) if t.threshold_credits is not None]
        if len(threshold_rules) > 1:
            raise CatalogError(path, f"{where} > top_ups[{threshold_rules[1]}] > threshold_credits",
                               "a wallet has at most one threshold top-up")
        for at_where, amount in credits:
            if (amount * wallet.rate_amount) % minor_unit:
                raise CatalogError(path, at_where, f"{amount} credits x {wallet.rate_amount} is not a whole amount of "
                                                   f"{customer.currency}: credits must be worth whole minor units")
        resolved.append(ResolvedWallet(wallet, started_at, expires_at, tuple(transactions)))
    # A threshold top-up keeps its wallet from running out, so it must be the customer's first
    # wallet: what it pays then never depends on what another wallet paid before it.
    for index, wallet in enumerate(wallets):
        if any(t.threshold_credits is not None for t in wallet.top_ups):
            first = [w for w in wallets if w.customer == wallet.customer and w.code != wallet.code
                     and w.priority <= wallet.priority]
            if first:
                raise CatalogError(path, f"wallets[{index}] (code '{wallet.code}') > priority",
                                   f"a wallet with a threshold top-up pays first: its priority must be below that of "
                                   f"the customer's other wallets ('{first[0].code}' has {first[0].priority})")
    per_customer = Counter(w.wallet.customer for w in resolved)
    crowded = [c for c, n in per_customer.items() if n > MAX_WALLETS_PER_CUSTOMER]
    if crowded:
        raise CatalogError(path, f"customer '{crowded[0]}'", f"{per_customer[crowded[0]]} wallets; a customer holds at "
                                                             f"most {MAX_WALLETS_PER_CUSTOMER} (dbt var max_wallets_per_customer)")
    return resolved


def _check_charge_filters(path: Path, where: str, charge: Charge, metric: BillableMetric) -> None:
    """Filters use the metric's declared keys and values, are distinct, and are priced by the
    charge's model; group keys are few and distinct."""
    allowed = {f.key: set(f.values) for f in metric.filters}
    seen: list[dict[str, frozenset[str]]] = []
    for index, bucket in enumerate(charge.filters):
        here = f"{where} > filters[{index}]"
        if not bucket.values:
            raise CatalogError(path, f"{here} > values", "at least one key")
        for key, values in bucket.values.items():
            if key not in allowed:
                raise CatalogError(path, f"{here} > values > {key}",
                                   f"metric {metric.code!r} declares no filter {key!r}")
            unknown = [v for v in values if v not in allowed[key]]
            if not values or unknown:
                raise CatalogError(path, f"{here} > values > {key}",
                                   f"{unknown or values!r} not among the metric's values {sorted(allowed[key])}")
        signature = {k: frozenset(v) for k, v in bucket.values.items()}
        if signature in seen:
            raise CatalogError(path, f"{here} > values", "the same values as an earlier filter")
        seen.append(signature)
        try:
            CHARGE_PROPERTIES[charge.charge_model].model_validate(bucket.properties or {})
        except ValidationError as error:
            first = error.errors()[0]
            field = " > ".join(str(part) for part in first["loc"])
            raise CatalogError(path, f"{here} > properties" + (f" > {field}" if field else ""),
                               first["msg"].removeprefix("Value error, ")) from None
    keys = charge.pricing_group_keys
    if len(keys) > MAX_GROUP_KEYS or len(set(keys)) != len(keys):
        raise CatalogError(path, f"{where} > pricing_group_keys", f"at most {MAX_GROUP_KEYS} distinct keys")


IN_ADVANCE_MODELS = {"standard", "package", "graduated", "dynamic"}
IN_ADVANCE_AGGREGATIONS = {"count", "sum", "unique_count"}


def _check_in_advance(path: Path, where: str, charge: Charge, metric: BillableMetric) -> None:
    """In advance, each event pays what it adds to the period's amount. A volume price would
    re-price every earlier unit (refunds), and a max, latest or time-weighted level has no
    per-event increment, so those cannot be billed in advance; percentage models and recurring
    metrics in advance are not supported yet."""
    if charge.charge_model not in IN_ADVANCE_MODELS:
        raise CatalogError(path, f"{where} > pay_in_advance",
                           f"a {charge.charge_model} charge cannot be billed in advance "
                           f"(in advance: {', '.join(sorted(IN_ADVANCE_MODELS))})")
    if metric.aggregation not in IN_ADVANCE_AGGREGATIONS or metric.recurring:
        kind = f"recurring {metric.aggregation}" if metric.recurring else metric.aggregation
        raise CatalogError(path, f"{where} > pay_in_advance",
                           f"metric {metric.code!r} ({kind}) cannot be billed in advance "
                           f"(in advance: metered {', '.join(sorted(IN_ADVANCE_AGGREGATIONS))})")
    if charge.min_amount is not None:
        raise CatalogError(path, f"{where} > min_amount", "a spending minimum needs a charge billed in arrears")


def _check_tax_codes(path: Path, where: str, codes: list[str], known: set[str]) -> None:
    for position, code in enumerate(codes):
        if code not in known:
            raise CatalogError(path, f"{where}[{position}]", f"unknown tax {code!r} (taxes.yml)")
        if codes.index(code) != position:
            raise CatalogError(path, f"{where}[{position}]", f"tax {code!r} is listed twice")


def _check_plan(plans_path: Path, where: str, plan: Plan, metrics_by_code: dict[str, BillableMetric],
                currencies: dict[str, int], tax_codes: set[str]) -> None:
    """The checks of one plan that need more than its own fields (metrics, currencies, taxes)."""
    metric_codes = set(metrics_by_code)
    if plan.currency not in currencies:
        raise CatalogError(plans_path, f"{where} > currency", f"unknown currency {plan.currency!r}")
    _check_tax_codes(plans_path, f"{where} > taxes", plan.taxes, tax_codes)
    seen: set[str] = set()
    for charge_index, charge in enumerate(plan.charges):
        _check_tax_codes(plans_path, f"{where} > charges[{charge_index}] > taxes", charge.taxes, tax_codes)
        if charge.metric not in metric_codes:
            raise CatalogError(
                plans_path, f"{where} > charges[{charge_index}] > metric", f"unknown billable metric {charge.metric!r}"
            )
        if charge.metric in seen:
            raise CatalogError(
                plans_path,
                f"{where} > charges[{charge_index}] > metric",
                f"a second charge on {charge.metric!r}: a plan prices each metric once",
            )
        seen.add(charge.metric)
        aggregation = metrics_by_code[charge.metric].aggregation
        if aggregation not in MODEL_AGGREGATIONS[charge.charge_model]:
            raise CatalogError(
                plans_path, f"{where} > charges[{charge_index}] > charge_model",
                f"{charge.charge_model} cannot price metric {charge.metric!r} ({aggregation} aggregation); "
                f"it needs: {', '.join(sorted(MODEL_AGGREGATIONS[charge.charge_model]))}",
            )
        _check_charge_filters(plans_path, f"{where} > charges[{charge_index}]", charge,
                              metrics_by_code[charge.metric])
        if charge.pay_in_advance:
            _check_in_advance(plans_path, f"{where} > charges[{charge_index}]", charge,
                              metrics_by_code[charge.metric])


OVERRIDABLE_PLAN_FIELDS = {"amount", "minimum_commitment", "trial_period", "invoice_display_name", "charges", "taxes",
                           "usage_thresholds"}
OVERRIDABLE_CHARGE_FIELDS = {"metric", "charge_model", "properties", "min_amount", "invoice_display_name", "filters",
                             "taxes"}


def _apply_overrides(path: Path, items: Any, raw_plans: list[Any], plans_by_code: dict[str, Plan],
                     subscriptions: list[Subscription], metrics_by_code: dict[str, BillableMetric],
                     currencies: dict[str, int], tax_codes: set[str]) -> tuple[list[Plan], list[Subscription]]:
    """Per-subscription prices (an enterprise contract) on top of the subscription's plan.

    Each override names a subscription and replaces some of its plan's fields: the base fee,
    commitment, trial, and per charge (matched by metric) its model, properties, minimum or
    display name, and per filter (matched by its values) its properties. Everything else is
    the plan's. The result is a plan of its own, coded "<plan>@<subscription>", on which the
    subscription is billed; `base_plan_code` keeps the plan it came from.
    """
    if not isinstance(items, list):
        raise CatalogError(path, "subscription_overrides", "expected a list")
    raw_by_code = {raw.get("code"): raw for raw in raw_plans if isinstance(raw, dict)}
    by_id = {s.external_subscription_id: s for s in subscriptions if s.phase == 1}
    derived: list[Plan] = []
    replaced: dict[str, Subscription] = {}
    overridden: set[str] = set()
    for index, item in enumerate(items):
        where = f"subscription_overrides[{index}]"
        if not isinstance(item, dict):
            raise CatalogError(path, where, "expected a mapping")
        subscription_id = item.get("subscription")
        subscription = by_id.get(str(subscription_id))
        if subscription is None:
            raise CatalogError(path, f"{where} > subscription", f"unknown subscription {subscription_id!r}")
        where = f"{where} (subscription '{subscription_id}')"
        if str(subscription_id) in overridden:
            raise CatalogError(path, f"{where} > subscription", "a second override for the same subscription")
        overridden.add(str(subscription_id))
        unknown = sorted(set(item) - OVERRIDABLE_PLAN_FIELDS - {"subscription"})
        if unknown:
            raise CatalogError(path, f"{where} > {unknown[0]}",
                               f"cannot be overridden (fields: {', '.join(sorted(OVERRIDABLE_PLAN_FIELDS))})")
        # Every phase of the subscription (each plan it moves to) gets the contract's prices.
        for phase in [s for s in subscriptions if s.external_subscription_id == subscription_id]:
            subscription = phase
            merged = copy.deepcopy(raw_by_code[subscription.plan_code])
            merged.update({k: copy.deepcopy(v) for k, v in item.items() if k not in ("subscription", "charges")})
            for charge_index, charge_override in enumerate(item.get("charges") or []):
                at = f"{where} > charges[{charge_index}]"
                if not isinstance(charge_override, dict):
                    raise CatalogError(path, at, "expected a mapping")
                target = next((c for c in merged.get("charges", []) if c.get("metric") == charge_override.get("metric")), None)
                if target is None:
                    raise CatalogError(path, f"{at} > metric", f"plan {subscription.plan_code!r} has no charge on "
                                                                f"{charge_override.get('metric')!r}")
                unknown = sorted(set(charge_override) - OVERRIDABLE_CHARGE_FIELDS)
                if unknown:
                    raise CatalogError(path, f"{at} > {unknown[0]}", f"cannot be overridden (fields: "
                                                                       f"{', '.join(sorted(OVERRIDABLE_CHARGE_FIELDS))})")
                for key, value in charge_override.items():
                    if key != "filters":
                        target[key] = copy.deepcopy(value)
                for filter_index, filter_override in enumerate(charge_override.get("filters") or []):
                    values = filter_override.get("values") if isinstance(filter_override, dict) else None
                    match = next((f for f in target.get("filters") or [] if f.get("values") == values), None)
                    if match is None:
                        raise CatalogError(path, f"{at} > filters[{filter_index}] > values",
                                           f"the plan's charge has no filter with values {values!r}")
                    match.update(copy.deepcopy({k: v for k, v in filter_override.items() if k != "values"}))
            try:
                plan = Plan.model_validate(merged)
            except ValidationError as error:
                first = error.errors()[0]
                location = _format_location("plan", [], first["loc"]).removeprefix("plan > ").removeprefix("plan")
                message = first["msg"].removeprefix("Value error, ")
                if first["loc"] and first["loc"][-1] == "properties" and ": " in message:
                    field, message = message.split(": ", 1)  # as in _validate_list
                    location = f"{location} > {field}"
                raise CatalogError(path, f"{where} > {location}" if location else where, message) from None
            _check_plan(path, where, plan, metrics_by_code, currencies, tax_codes)
            contract = plan.model_copy(update={"code": f"{plan.code}@{subscription.subscription_id}",
                                               "base_plan_code": plan.code})
            derived.append(contract)
            replaced[subscription.subscription_id] = dataclasses.replace(subscription, plan_code=contract.code)
    return derived, [replaced.get(s.subscription_id, s) for s in subscriptions]


def _number_phases(path: Path, subscriptions: list[Subscription], rows: dict[str, int]) -> list[Subscription]:
    """Rows sharing an external_subscription_id are the phases of one subscription: each later
    row is a plan change requested at its started_at. Same customer; only the last may end."""
    by_id: dict[str, list[Subscription]] = {}
    for subscription in subscriptions:
        by_id.setdefault(subscription.external_subscription_id, []).append(subscription)
    numbered: list[Subscription] = []
    for items in by_id.values():
        items.sort(key=lambda s: s.started_at)
        for index, item in enumerate(items):
            where = f"row {rows[f'{item.external_subscription_id}|{item.started_at}']} " \
                    f"(external_subscription_id '{item.external_subscription_id}')"
            if index and item.started_at == items[index - 1].started_at:
                raise CatalogError(path, f"{where} > started_at", "two rows of one subscription start at the same time")
            if index and item.external_customer_id != items[0].external_customer_id:
                raise CatalogError(path, f"{where} > external_customer_id",
                                   "a plan change keeps the subscription's customer")
            if item.ended_at is not None and index < len(items) - 1:
                raise CatalogError(path, f"{where} > ended_at",
                                   "only the last row of a subscription (its current plan) may end it")
            numbered.append(dataclasses.replace(item, phase=index + 1))
    return numbered


def _check_one_active_subscription(path: Path, subscriptions: list[Subscription], rows: dict[str, int]) -> None:
    """Events may name only a customer; that must resolve to one subscription at any instant."""
    by_customer: dict[str, list[Subscription]] = {}
    for subscription in subscriptions:
        if subscription.phase == 1:  # a subscription's span: its first start to its last end
            last = max((s for s in subscriptions if s.external_subscription_id == subscription.external_subscription_id),
                       key=lambda s: s.phase)
            by_customer.setdefault(subscription.external_customer_id, []).append(
                dataclasses.replace(subscription, ended_at=last.ended_at))
    for customer, items in by_customer.items():
        items.sort(key=lambda s: s.started_at)
        for earlier, later in zip(items, items[1:]):
            if earlier.ended_at is None or earlier.ended_at > later.started_at:
                raise CatalogError(
                    path,
                    f"row {rows[f'{later.external_subscription_id}|{later.started_at}']} "
                    f"(external_subscription_id '{later.external_subscription_id}') > started_at",
                    f"customer {customer!r} already has subscription {earlier.external_subscription_id!r} "
                    "active then (one active subscription per customer in this version)",
                )


# ---------------------------------------------------------------- writing

MONEY = "decimal(38, 12)"
QUANTITY = "decimal(38, 9)"

CATALOG_TABLES: dict[str, list[tuple[str, str]]] = {
    "catalog.billing_entities": [
        ("billing_entity_code", "varchar"), ("name", "varchar"), ("timezone", "varchar"),
        ("invoice_prefix", "varchar"), ("address", "varchar"), ("invoice_grace_period_days", "integer"),
        ("late_events_lookback_days", "integer"),
    ],
    "catalog.billable_metrics": [
        ("metric_code", "varchar"), ("name", "varchar"), ("aggregation", "varchar"),
        ("field_name", "varchar"), ("description", "varchar"), ("is_recurring", "boolean"),
        ("rounding_function", "varchar"), ("rounding_step", QUANTITY),
    ],
    "catalog.plans": [
        ("plan_code", "varchar"), ("name", "varchar"), ("billing_interval", "varchar"), ("currency", "varchar"),
        ("amount", MONEY), ("is_pay_in_advance", "boolean"), ("invoice_display_name", "varchar"),
        ("trial_period_days", "integer"), ("bill_charges_monthly", "boolean"), ("minimum_commitment", MONEY),
        ("base_plan_code", "varchar"),
    ],
    # Progressive billing thresholds of a plan (docs/invoice-amounts.md).
    "catalog.usage_thresholds": [
        ("plan_code", "varchar"), ("position", "integer"), ("threshold_amount", MONEY), ("is_recurring", "boolean"),
        ("threshold_name", "varchar"),
    ],
    "catalog.charges": [
        ("charge_id", "varchar"), ("plan_code", "varchar"), ("metric_code", "varchar"),
        ("charge_model", "varchar"), ("charge_position", "integer"), ("invoice_display_name", "varchar"),
        ("properties", "varchar"), ("min_amount", MONEY),
        # package
        ("package_size", QUANTITY), ("free_units", QUANTITY),
        # percentage
        ("rate", MONEY), ("fixed_amount", MONEY), ("free_units_per_events", "integer"),
        ("free_units_per_total_aggregation", MONEY), ("per_transaction_min_amount", MONEY),
        ("per_transaction_max_amount", MONEY),
        # filters: a filter is a price row of its own under the charge it belongs to
        ("parent_charge_id", "varchar"), ("filter_position", "integer"),
        # pricing groups
        ("group_key_1", "varchar"), ("group_key_2", "varchar"), ("group_key_3", "varchar"),
        ("is_pay_in_advance", "boolean"),
        # the price's identity across plans (metric + filter values): recurring levels carry
        # across a plan change between prices with the same key
        ("price_key", "varchar"),
    ],
    "catalog.charge_filter_values": [
        ("charge_id", "varchar"), ("filter_key", "varchar"), ("filter_value", "varchar"),
    ],
    "catalog.charge_tiers": [
        ("charge_id", "varchar"), ("tier_index", "integer"), ("from_value", QUANTITY), ("to_value", QUANTITY),
        ("per_unit_amount", MONEY), ("flat_amount", MONEY),
    ],
    "catalog.coupons": [
        ("coupon_code", "varchar"), ("name", "varchar"), ("coupon_type", "varchar"), ("percentage_rate", MONEY),
        ("amount", MONEY), ("currency", "varchar"), ("frequency", "varchar"), ("frequency_duration", "integer"),
        ("expiration_date", "date"),
    ],
    # A limited coupon's plans or metrics; a coupon without rows here discounts every fee.
    "catalog.coupon_limits": [
        ("coupon_code", "varchar"), ("limited_to", "varchar"), ("target_code", "varchar"),
    ],
    "catalog.taxes": [
        ("tax_code", "varchar"), ("name", "varchar"), ("rate", MONEY), ("description", "varchar"),
    ],
    # Which taxes a billing entity, customer, plan or charge names; the most specific wins.
    "catalog.tax_assignments": [
        ("assigned_to", "varchar"), ("target_code", "varchar"), ("tax_code", "varchar"),
    ],
    "catalog.customers": [
        ("external_customer_id", "varchar"), ("name", "varchar"), ("email", "varchar"), ("country", "varchar"),
        ("currency", "varchar"), ("timezone", "varchar"), ("billing_entity_code", "varchar"),
        ("is_tax_exempt", "boolean"), ("invoice_grace_period_days", "integer"),
    ],
    "catalog.subscriptions": [
        ("external_subscription_id", "varchar"), ("external_customer_id", "varchar"), ("plan_code", "varchar"),
        ("started_at", "timestamp"), ("ended_at", "timestamp"), ("billing_time", "varchar"),
        ("subscription_id", "varchar"), ("phase", "integer"),
    ],
    "catalog.applied_coupons": [
        ("applied_coupon_id", "varchar"), ("external_customer_id", "varchar"), ("coupon_code", "varchar"),
        ("applied_at", "timestamp"), ("file_row", "integer"),
    ],
    "catalog.add_ons": [
        ("add_on_code", "varchar"), ("name", "varchar"), ("amount", MONEY), ("currency", "varchar"),
        ("invoice_display_name", "varchar"),
    ],
    "catalog.applied_add_ons": [
        ("applied_add_on_id", "varchar"), ("external_customer_id", "varchar"), ("add_on_code", "varchar"),
        ("applied_at", "timestamp"), ("units", QUANTITY), ("unit_amount", MONEY), ("description", "varchar"),
    ],
    "catalog.wallets": [
        ("wallet_code", "varchar"), ("external_customer_id", "varchar"), ("name", "varchar"), ("rate_amount", MONEY),
        ("priority", "integer"), ("started_at", "timestamp"), ("expiration_date", "date"), ("expires_at", "timestamp"),
    ],
    # A limited wallet's fee kinds or metrics; a wallet without rows here pays every fee.
    "catalog.wallet_limits": [
        ("wallet_code", "varchar"), ("limited_to", "varchar"), ("target_code", "varchar"),
    ],
    "catalog.wallet_transactions": [
        ("wallet_code", "varchar"), ("position", "integer"), ("transaction_at", "timestamp"),
        ("credit_kind", "varchar"), ("credits", MONEY),
    ],
    "catalog.wallet_top_ups": [
        ("wallet_code", "varchar"), ("position", "integer"), ("top_up_interval", "varchar"),
        ("threshold_credits", MONEY), ("credit_kind", "varchar"), ("credits", MONEY),
    ],
    "catalog.price_book_versions": [
        ("fingerprint", "varchar"), ("source_directory", "varchar"), ("loaded_at", "timestamp"),
    ],
}


def _charge_tiers(charge_id: str, charge: Charge) -> list[tuple]:
    """Price tiers of a charge. Tiered models keep their ranges (a graduated percentage's rate
    becomes a per-unit amount, rate / 100, exactly); standard is one open tier at its price,
    package one tier at its package price, dynamic one tier at 1 (the units are the amount).
    Percentage is priced from its own columns (it needs the events one by one)."""
    props = charge.properties
    if isinstance(props, (StandardProperties, PackageProperties)):
        return [(charge_id, 0, Decimal(0), None, props.amount, Decimal(0))]
    if isinstance(props, DynamicProperties):
        return [(charge_id, 0, Decimal(0), None, Decimal(1), Decimal(0))]
    if isinstance(props, GraduatedPercentageProperties):
        return [(charge_id, i, r.from_value, r.to_value, r.rate * Decimal("0.01"), r.flat_amount)
                for i, r in enumerate(props.graduated_percentage_ranges)]
    return [(charge_id, i, r.from_value, r.to_value, r.per_unit_amount, r.flat_amount)
            for i, r in enumerate(charge.ranges())]


def _charge_row(charge_id: str, plan: Plan, position: int, charge: Charge, *, props: Any = None,
                display_name: str | None = None, parent_charge_id: str | None = None,
                filter_position: int | None = None, filter_values: dict[str, list[str]] | None = None) -> tuple:
    props = props if props is not None else charge.properties
    package = props if isinstance(props, PackageProperties) else None
    percentage = props if isinstance(props, PercentageProperties) else None
    groups = (charge.pricing_group_keys + [None] * MAX_GROUP_KEYS)[:MAX_GROUP_KEYS]
    return (
        charge_id, plan.code, charge.metric, charge.charge_model, position,
        display_name if filter_position is not None else charge.invoice_display_name,
        props.model_dump_json(), charge.min_amount if filter_position is None else None,
        package.package_size if package else None, package.free_units if package else None,
        percentage.rate if percentage else None, percentage.fixed_amount if percentage else None,
        percentage.free_units_per_events if percentage else None,
        percentage.free_units_per_total_aggregation if percentage else None,
        percentage.per_transaction_min_amount if percentage else None,
        percentage.per_transaction_max_amount if percentage else None,
        parent_charge_id or charge_id, filter_position, *groups, charge.pay_in_advance,
        charge.metric + ("" if filter_values is None else "|" + json.dumps(
            {key: sorted(values) for key, values in sorted(filter_values.items())}, separators=(",", ":"))),
    )


def catalog_rows(catalog: Catalog, loaded_at: datetime) -> dict[str, list[tuple]]:
    entity = catalog.billing_entity
    metric_names = {m.code: m.name for m in catalog.metrics}
    charges, tiers, filter_values = [], [], []
    for plan in catalog.plans:
        for position, charge in enumerate(plan.charges):
            charge_id = f"{plan.code}:{charge.metric}"
            charges.append(_charge_row(charge_id, plan, position, charge))
            tiers.extend(_charge_tiers(charge_id, charge))
            for filter_position, bucket in enumerate(charge.filters, start=1):
                filter_id = f"{charge_id}#{filter_position}"
                props = CHARGE_PROPERTIES[charge.charge_model].model_validate(bucket.properties or {})
                shown = ", ".join(v for values in bucket.values.values() for v in values)
                name = bucket.invoice_display_name or (
                    f"{charge.invoice_display_name or metric_names[charge.metric]} ({shown})")
                charges.append(_charge_row(filter_id, plan, position, charge, props=props, display_name=name,
                                           parent_charge_id=charge_id, filter_position=filter_position,
                                           filter_values=bucket.values))
                tiers.extend(_charge_tiers(filter_id, charge.model_copy(update={"properties": props})))
                filter_values.extend((filter_id, key, value)
                                     for key, values in bucket.values.items() for value in values)
    return {
        "catalog.billing_entities": [(entity.code, entity.name, entity.timezone, entity.invoice_prefix, entity.address,
                                        entity.invoice_grace_period_days, entity.late_events_lookback_days)],
        "catalog.billable_metrics": [(m.code, m.name, m.aggregation, m.field, m.description, m.recurring,
                                      m.rounding_function, m.rounding_step) for m in catalog.metrics],
        "catalog.plans": [(p.code, p.name, p.interval, p.currency, p.amount, p.pay_in_advance, p.invoice_display_name,
                           p.trial_period, p.bill_charges_monthly, p.minimum_commitment, p.base_plan_code)
                          for p in catalog.plans],
        "catalog.usage_thresholds": [(p.code, position, t.amount, t.recurring, t.name)
                                     for p in catalog.plans for position, t in enumerate(p.usage_thresholds)],
        "catalog.charges": charges,
        "catalog.charge_tiers": tiers,
        "catalog.charge_filter_values": filter_values,
        "catalog.coupons": [(c.code, c.name, c.coupon_type, c.percentage_rate, c.amount, c.currency, c.frequency,
                             c.frequency_duration, c.expiration_date) for c in catalog.coupons],
        "catalog.coupon_limits": [
            *((c.code, "plan", code) for c in catalog.coupons for code in c.plan_codes),
            *((c.code, "metric", code) for c in catalog.coupons for code in c.metric_codes),
        ],
        "catalog.taxes": [(t.code, t.name, t.rate, t.description) for t in catalog.taxes],
        "catalog.tax_assignments": [
            *(("billing_entity", entity.code, code) for code in entity.taxes),
            *(("customer", c.external_customer_id, code) for c in catalog.customers for code in c.tax_codes),
            *(("plan", p.code, code) for p in catalog.plans for code in p.taxes),
            *(("charge", f"{p.code}:{charge.metric}", code)
              for p in catalog.plans for charge in p.charges for code in charge.taxes),
        ],
        "catalog.customers": [(c.external_customer_id, c.name, c.email, c.country, c.currency, c.timezone, entity.code,
                               c.tax_exempt, c.invoice_grace_period_days) for c in catalog.customers],
        "catalog.subscriptions": [(s.external_subscription_id, s.external_customer_id, s.plan_code, s.started_at,
                                   s.ended_at, s.billing_time, s.subscription_id, s.phase)
                                  for s in catalog.subscriptions],
        "catalog.applied_coupons": [
            (f"{a.external_customer_id}:{a.coupon_code}:{a.applied_at.isoformat()}", a.external_customer_id,
             a.coupon_code, a.applied_at, a.row) for a in catalog.applied_coupons
        ],
        "catalog.add_ons": [(a.code, a.name, a.amount, a.currency, a.invoice_display_name) for a in catalog.add_ons],
        "catalog.applied_add_ons": [
            (f"{a.external_customer_id}:{a.add_on_code}:{a.applied_at.isoformat()}:row{a.row}", a.external_customer_id,
             a.add_on_code, a.applied_at, a.units, a.unit_amount, a.description) for a in catalog.applied_add_ons
        ],
        "catalog.wallets": [(w.wallet.code, w.wallet.customer, w.wallet.name, w.wallet.rate_amount, w.wallet.priority,
                             w.started_at, w.wallet.expiration_date, w.expires_at) for w in catalog.wallets],
        "catalog.wallet_limits": [
            *((w.wallet.code, "fee_kind", kind) for w in catalog.wallets for kind in w.wallet.applies_to.fee_kinds),
            *((w.wallet.code, "metric", code) for w in catalog.wallets for code in w.wallet.applies_to.metric_codes),
        ],
        "catalog.wallet_transactions": [(w.wallet.code, position, at, kind, credits)
                                        for w in catalog.wallets
                                        for position, (at, kind, credits) in enumerate(w.transactions)],
        "catalog.wallet_top_ups": [
            (w.wallet.code, position, t.interval, t.threshold_credits, *t.kind_and_credits)
            for w in catalog.wallets for position, t in enumerate(w.wallet.top_ups)],
        "catalog.price_book_versions": [(catalog.fingerprint, str(catalog.directory), loaded_at)],
    }


def write_catalog(warehouse: Warehouse, catalog: Catalog, loaded_at: datetime) -> None:
    """Replace every catalog.* table with this (already validated) catalog."""
    rows = catalog_rows(catalog, loaded_at)
    for table, columns in CATALOG_TABLES.items():
        warehouse.replace_table(table, columns, rows[table])


def loaded_fingerprint(warehouse: Warehouse) -> str | None:
    """The fingerprint of the catalog currently in the warehouse, if any."""
    if not warehouse.table_exists("catalog", "price_book_versions"):
        return None
    rows = warehouse.query("select fingerprint from catalog.price_book_versions")
    return rows[0][0] if rows else None
