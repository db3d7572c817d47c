"""What-if: price a past window with a proposed price book, against the current one.

Both price books bill the same events (the configured warehouse's raw events, read only) in two
scratch DuckDB warehouses, as of the window's end, with an empty ledger: this is pricing, not
issuing. Lines are matched by their deterministic ids within each customer, so a changed price
shows as a changed amount on the same line, and a new or removed charge as a line only one
side has. `meterline simulate --diff` prints the result; `--max-change-percent` turns it into a
check a price change must pass before it is merged.
"""

from __future__ import annotations

import tempfile
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path

from orchestration.settings import Settings
from orchestration.warehouse import connect

LINE_COLUMNS = ["customer_id", "invoice_line_id", "currency", "invoice_at", "description", "metric_code", "fee_kind",
                "quantity", "amount"]


@dataclass(frozen=True)
class LineChange:
    customer_id: str
    currency: str
    invoice_at: datetime
    invoice_line_id: str
    description: str
    metric_code: str | None
    quantity_current: Decimal
    quantity_proposed: Decimal
    amount_current: Decimal
    amount_proposed: Decimal

    @property
    def quantity_change(self) -> Decimal:
        return self.quantity_proposed - self.quantity_current

    @property
    def amount_change(self) -> Decimal:
        return self.amount_proposed - self.amount_current


@dataclass(frozen=True)
class CurrencyTotal:
    currency: str
    fees_current: Decimal
    fees_proposed: Decimal
    due_current: Decimal  # invoice totals: after coupons, taxes and credits
    due_proposed: Decimal

    @property
    def change_percent(self) -> Decimal | None:
        if not self.fees_current:
            return None
        return ((self.fees_proposed - self.fees_current) / self.fees_current * 100).quantize(Decimal("0.01"))


@dataclass(frozen=True)
class PriceDiff:
    start: datetime
    end: datetime
    lines: list[LineChange]  # every line in the window, changed or not
    totals: list[CurrencyTotal]

    @property
    def changed(self) -> list[LineChange]:
        return [line for line in self.lines if line.amount_change or line.quantity_change]


def _price(source: Settings, catalog_dir: Path, scratch: Path, start: datetime, end: datetime):
    """Bill the source's raw events (those that happened before `end`) with `catalog_dir`."""
    from orchestration import pipeline
    from orchestration.catalog import read_catalog
    from orchestration.ingest import ensure_raw_tables

    settings = Settings(home=scratch, target="duckdb", warehouse_path=scratch / "warehouse.duckdb",
                        duckdb_memory_limit=source.duckdb_memory_limit)
    pipeline.load_catalog(settings, read_catalog(catalog_dir))
    with connect(source, read_only=source.target == "duckdb") as events_from, connect(settings) as target:
        ensure_raw_tables(target)
        events = events_from.query_arrow(f"select * from raw.events where event_at < '{pipeline.format_as_of(end)}'")
        if events.num_rows:
            target.append_arrow("raw.events", events)
    pipeline.build(settings, end, full_refresh=True)
    with connect(settings, read_only=True) as warehouse:
        window = [start, end]
        lines = warehouse.query(f"select {', '.join(LINE_COLUMNS)} from marts.fct_invoice_lines "
                                "where invoice_at >= ? and invoice_at < ?", window)
        due = warehouse.query("select currency, sum(fees_amount), sum(total_amount) from marts.fct_invoices "
                              "where invoice_at >= ? and invoice_at < ? group by 1", window)
    return [dict(zip(LINE_COLUMNS, row)) for row in lines], {c: (fees, total) for c, fees, total in due}


def current_catalog_dir(settings: Settings) -> Path:
    """The folder of the price book the warehouse was last built with, else <home>/catalog."""
    with connect(settings, read_only=settings.target == "duckdb") as warehouse:
        if warehouse.table_exists("catalog", "price_book_versions"):
            rows = warehouse.query("select source_directory from catalog.price_book_versions")
            if rows and Path(rows[0][0]).is_dir():
                return Path(rows[0][0])
    return settings.catalog_dir


def price_diff(settings: Settings, proposed_dir: Path, start: datetime, end: datetime,
               current_dir: Path | None = None) -> PriceDiff:
    """Lines and totals of the invoices dated in [start, end), current vs proposed price book."""
    from orchestration.catalog import read_catalog

    read_catalog(proposed_dir)  # an invalid proposal stops here, naming file, row and field
    current_dir = current_dir or current_catalog_dir(settings)
    with tempfile.TemporaryDirectory(prefix="meterline-whatif-") as folder:
        current_lines, current_due = _price(settings, current_dir, Path(folder) / "current", start, end)
        proposed_lines, proposed_due = _price(settings, proposed_dir, Path(folder) / "proposed", start, end)
    by_key: dict[tuple[str, str], dict[str, dict]] = defaultdict(dict)
    for side, rows in (("current", current_lines), ("proposed", proposed_lines)):
        for row in rows:
            by_key[(row["customer_id"], row["invoice_line_id"])][side] = row
    zero = Decimal(0)
    changes = []
    for (customer, line_id), sides in by_key.items():
        any_side = sides.get("proposed") or sides["current"]
        current, proposed = sides.get("current", {}), sides.get("proposed", {})
        changes.append(LineChange(customer, any_side["currency"], any_side["invoice_at"], line_id,
                                  any_side["description"], any_side["metric_code"],
                                  current.get("quantity", zero), proposed.get("quantity", zero),
                                  current.get("amount", zero), proposed.get("amount", zero)))
    changes.sort(key=lambda c: (c.customer_id, c.invoice_at, c.description, c.invoice_line_id))
    totals = []
    for currency in sorted(set(current_due) | set(proposed_due)):
        fees_now, due_now = current_due.get(currency, (zero, zero))
        fees_new, due_new = proposed_due.get(currency, (zero, zero))
        totals.append(CurrencyTotal(currency, fees_now, fees_new, due_now, due_new))
    return PriceDiff(start, end, changes, totals)
