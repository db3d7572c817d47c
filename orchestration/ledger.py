"""The invoice ledger: finalised invoices, numbered and frozen (docs/invoice-lifecycle.md).

dbt recomputes every draft on every run; finalisation copies the invoices whose grace period
has ended, with their lines, taxes, discounts and wallet credits, into the `ledger` schema.
Only this module writes there, and only by appending: no dbt run, full refresh or re-run
changes a ledger row (dbt reads the ledger as a source). A void is a row of its own.

One finalisation is one database transaction: numbers are assigned and every ledger row is
written, or nothing is. A crash between two steps leaves no trace, so the next finalisation
hands out the same numbers and the sequence stays gapless.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from importlib import metadata

from orchestration.settings import Settings
from orchestration.warehouse import Warehouse, connect

log = logging.getLogger(__name__)

ROUNDED = "decimal(38, 3)"
PRECISE = "decimal(38, 12)"
QUANTITY = "decimal(38, 9)"

# The marts' contracted columns, in their order (models/marts/_marts.yml), without `status`:
# a ledger row's status is finalized, or voided when ledger.invoice_voids names it.
INVOICE_COLUMNS = [
    ("invoice_id", "varchar"), ("invoice_kind", "varchar"), ("customer_id", "varchar"),
    ("customer_name", "varchar"), ("billing_entity_code", "varchar"), ("currency", "varchar"),
    ("invoice_at", "timestamp"), ("issuing_date", "date"), ("period_start", "date"), ("period_end", "date"),
    ("fees_amount", ROUNDED), ("progressive_billing_credit_amount", ROUNDED), ("discount_amount", ROUNDED),
    ("subtotal_excluding_taxes", ROUNDED), ("tax_amount", ROUNDED), ("subtotal_including_taxes", ROUNDED),
    ("credit_note_credit_amount", ROUNDED), ("prepaid_credit_amount", ROUNDED), ("total_amount", ROUNDED), ("line_count", "bigint"),
    ("event_count", "bigint"), ("computed_as_of", "timestamp"), ("grace_period_ends_at", "timestamp"),
]
INVOICE_LINE_COLUMNS = [
    ("invoice_line_id", "varchar"), ("invoice_id", "varchar"), ("fee_kind", "varchar"), ("customer_id", "varchar"),
    ("subscription_id", "varchar"), ("plan_code", "varchar"), ("base_plan_code", "varchar"),
    ("billing_period_id", "varchar"), ("charge_id", "varchar"), ("metric_code", "varchar"),
    ("charge_model", "varchar"), ("description", "varchar"), ("group_key", "varchar"), ("currency", "varchar"),
    ("service_period_start", "date"), ("service_period_end", "date"), ("service_start_at", "timestamp"),
    ("service_end_at", "timestamp"), ("invoice_at", "timestamp"), ("quantity", QUANTITY), ("unit_amount", PRECISE),
    ("proration_factor", PRECISE), ("precise_amount", PRECISE), ("amount", ROUNDED),
    ("is_progressive_billing", "boolean"), ("progressive_billed_amount", ROUNDED),
    ("progressive_billing_credit_amount", ROUNDED), ("precise_discount_amount", PRECISE),
    ("taxable_amount", PRECISE), ("tax_rate", PRECISE), ("tax_codes", "varchar"), ("precise_tax_amount", PRECISE),
    ("precise_credit_amount", PRECISE), ("event_count", "bigint"), ("corrected_invoice_line_id", "varchar"),
    ("period_invoice_line_id", "varchar"),
]
INVOICE_TAX_COLUMNS = [
    ("invoice_tax_id", "varchar"), ("invoice_id", "varchar"), ("tax_code", "varchar"), ("tax_name", "varchar"),
    ("tax_rate", PRECISE), ("currency", "varchar"), ("taxable_amount", ROUNDED), ("precise_tax_amount", PRECISE),
    ("tax_amount", ROUNDED), ("line_count", "bigint"),
]
INVOICE_DISCOUNT_COLUMNS = [
    ("invoice_discount_id", "varchar"), ("invoice_id", "varchar"), ("applied_coupon_id", "varchar"),
    ("coupon_code", "varchar"), ("coupon_name", "varchar"), ("coupon_type", "varchar"), ("coupon_rank", "bigint"),
    ("use_number", "bigint"), ("eligible_amount", PRECISE), ("requested_amount", ROUNDED),
    ("discount_amount", ROUNDED), ("carried_amount", ROUNDED), ("line_count", "bigint"),
]
INVOICE_WALLET_CREDIT_COLUMNS = [
    ("invoice_wallet_credit_id", "varchar"), ("invoice_id", "varchar"), ("wallet_id", "varchar"),
    ("wallet_name", "varchar"), ("wallet_rank", "bigint"), ("balance_before_amount", ROUNDED),
    ("credit_amount", ROUNDED), ("credits", PRECISE), ("line_count", "bigint"),
]

INVOICE_CREDIT_NOTE_CREDIT_COLUMNS = [
    ("invoice_credit_note_credit_id", "varchar"), ("invoice_id", "varchar"), ("credit_note_id", "varchar"),
    ("customer_id", "varchar"), ("currency", "varchar"), ("invoice_at", "timestamp"), ("credit_amount", ROUNDED),
]
# fct_credit_notes' columns that a credit note is issued with (status, number and the balance
# are not: the ledger adds the number, the marts derive the rest).
CREDIT_NOTE_COLUMNS = [
    ("credit_note_id", "varchar"), ("origin", "varchar"), ("reason", "varchar"), ("credit_method", "varchar"),
    ("customer_id", "varchar"), ("billing_entity_code", "varchar"), ("invoice_id", "varchar"),
    ("subscription_id", "varchar"), ("billing_period_id", "varchar"), ("plan_code", "varchar"),
    ("currency", "varchar"), ("issued_at", "timestamp"), ("issuing_date", "date"),
    ("service_period_start", "date"), ("service_period_end", "date"), ("unused_days", "integer"),
    ("days_in_period", "integer"), ("description", "varchar"), ("quantity", QUANTITY), ("precise_amount", PRECISE),
    ("amount", ROUNDED), ("tax_amount", ROUNDED), ("total_amount", ROUNDED), ("corrected_invoice_line_id", "varchar"),
    ("grace_period_ends_at", "timestamp"),
]
CREDIT_NOTE_FINALISATION_COLUMNS = [
    ("credit_note_number", "varchar"), ("credit_note_sequence", "bigint"), ("finalisation_id", "varchar"),
    ("finalized_at", "timestamp"), ("events_cutoff_at", "timestamp"),
]

# What finalisation adds to each invoice: its number and what it was computed from.
FINALISATION_COLUMNS = [
    ("invoice_number", "varchar"), ("invoice_sequence", "bigint"), ("finalisation_id", "varchar"),
    ("finalized_at", "timestamp"), ("events_cutoff_at", "timestamp"), ("events_fingerprint", "varchar"),
    ("price_book_fingerprint", "varchar"), ("code_version", "varchar"),
]

# ledger table -> (the mart its rows are copied from, the copied columns)
COPIED_TABLES: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "ledger.invoice_lines": ("marts.fct_invoice_lines", INVOICE_LINE_COLUMNS),
    "ledger.invoice_taxes": ("marts.fct_invoice_taxes", INVOICE_TAX_COLUMNS),
    "ledger.invoice_discounts": ("marts.fct_invoice_discounts", INVOICE_DISCOUNT_COLUMNS),
    "ledger.invoice_wallet_credits": ("marts.fct_invoice_wallet_credits", INVOICE_WALLET_CREDIT_COLUMNS),
    "ledger.invoice_credit_note_credits": ("marts.fct_invoice_credit_note_credits",
                                           INVOICE_CREDIT_NOTE_CREDIT_COLUMNS),
}

# The report marts a month-end close locks (fct_<name> -> ledger.closed_<name>), with their
# columns but is_closed_month, in the marts' order.
CLOSED_FIGURE_COLUMNS: dict[str, list[tuple[str, str]]] = {
    "revenue_monthly": [
        ("month_start", "date"), ("row_kind", "varchar"), ("revenue_key", "varchar"), ("customer_id", "varchar"),
        ("currency", "varchar"), ("revenue_stream", "varchar"), ("plan_code", "varchar"), ("metric_code", "varchar"),
        ("billed_amount", ROUNDED), ("recognised_amount", ROUNDED), ("deferred_balance", ROUNDED),
        ("unbilled_balance", ROUNDED),
    ],
    "mrr": [
        ("month_start", "date"), ("customer_id", "varchar"), ("currency", "varchar"), ("mrr", ROUNDED),
        ("arr", ROUNDED), ("previous_mrr", ROUNDED), ("movement", "varchar"), ("new_mrr", ROUNDED),
        ("expansion_mrr", ROUNDED), ("contraction_mrr", ROUNDED), ("churn_mrr", ROUNDED),
        ("reactivation_mrr", ROUNDED), ("net_change", ROUNDED),
    ],
    "billed_vs_collected": [
        ("month_start", "date"), ("row_kind", "varchar"), ("customer_id", "varchar"), ("currency", "varchar"),
        ("billed_amount", ROUNDED), ("collected_amount", ROUNDED), ("outstanding_balance", ROUNDED),
    ],
}

LEDGER_TABLES: dict[str, list[tuple[str, str]]] = {
    "ledger.finalisations": [
        ("finalisation_id", "varchar"), ("finalisation_sequence", "bigint"), ("finalized_at", "timestamp"),
        ("as_of", "timestamp"), ("events_cutoff_at", "timestamp"), ("price_book_fingerprint", "varchar"),
        ("code_version", "varchar"), ("invoice_count", "bigint"), ("credit_note_count", "bigint"),
    ],
    "ledger.invoices": INVOICE_COLUMNS + FINALISATION_COLUMNS,
    **{table: columns + [("finalisation_id", "varchar")] for table, (_, columns) in COPIED_TABLES.items()},
    "ledger.invoice_voids": [("invoice_id", "varchar"), ("voided_at", "timestamp"), ("reason", "varchar")],
    "ledger.credit_notes": CREDIT_NOTE_COLUMNS + CREDIT_NOTE_FINALISATION_COLUMNS,
    # The lines a manual credit note credits, each at its line's tax rate (stg_ledger__credit_notes
    # derives the note's rounded tax from them, with the one rounding macro).
    "ledger.credit_note_items": [
        ("credit_note_item_id", "varchar"), ("credit_note_id", "varchar"), ("invoice_line_id", "varchar"),
        ("description", "varchar"), ("amount", ROUNDED), ("tax_rate", PRECISE),
    ],
    "ledger.credit_note_voids": [("credit_note_id", "varchar"), ("voided_at", "timestamp"), ("reason", "varchar")],
    # Payments the customer made, as recorded (`meterline payment`): they settle finalised
    # invoices and go to the accounting systems; they never change what an invoice billed.
    "ledger.payments": [
        ("payment_id", "varchar"), ("invoice_id", "varchar"), ("customer_id", "varchar"), ("currency", "varchar"),
        ("amount", ROUNDED), ("paid_on", "date"), ("reference", "varchar"), ("recorded_at", "timestamp"),
    ],
    # The price book each finalisation used, file by file, so `meterline reproduce` can rebuild with it.
    "ledger.price_book_files": [("price_book_fingerprint", "varchar"), ("file_name", "varchar"),
                                ("content", "varchar")],
    # Month-end close (orchestration/reporting/close.py): a closed month's report figures, as
    # they were locked; the marts read them instead of computing that month again.
    "ledger.month_closes": [
        ("month_start", "date"), ("closed_at", "timestamp"), ("as_of", "timestamp"),
        ("figures_fingerprint", "varchar"),
    ],
    **{f"ledger.closed_{mart}": columns for mart, columns in CLOSED_FIGURE_COLUMNS.items()},
}

CRASH_VARIABLE = "METERLINE_CRASH_AT"
"""Test hook: the name of a finalisation step after which the process dies (os._exit), as a
power cut would. Crash tests set it in a subprocess; nothing else should."""


class FinalisationError(RuntimeError):
    """Finalisation refused: the warehouse is not in a state whose drafts may be frozen."""


# The targets whose ledger writes are multi-statement transactions. Spark's plain Parquet tables
# have none (SparkWarehouse ignores begin and commit): a finalisation that stopped halfway
# would leave numbered invoices without their lines, so the ledger refuses rather than try.
LEDGER_TARGETS = ("duckdb", "postgres")


def ledger_writes_supported(settings: Settings) -> bool:
    return settings.target in LEDGER_TARGETS


def _require_ledger_writes(settings: Settings, operation: str) -> None:
    if not ledger_writes_supported(settings):
        raise FinalisationError(
            f"{operation} is not available on the {settings.target} target: the ledger's writes are "
            "multi-statement transactions, which its tables do not have. `meterline run` bills there "
            "and leaves the invoices as drafts; keep the ledger on DuckDB or PostgreSQL (docs/engines.md).")


def _crash_point(step: str) -> None:
    if os.environ.get(CRASH_VARIABLE) == step:
        log.error("simulated crash after %s", step)
        os._exit(70)


# Keys the database itself enforces: an invoice, a number, a line, a void can be written once.
LEDGER_KEYS = {
    "ledger.invoices": "primary key (invoice_id), unique (invoice_number)",
    "ledger.invoice_lines": "primary key (invoice_line_id)",
    "ledger.invoice_voids": "primary key (invoice_id)",
    "ledger.credit_notes": "primary key (credit_note_id), unique (credit_note_number)",
    "ledger.credit_note_items": "primary key (credit_note_item_id)",
    "ledger.credit_note_voids": "primary key (credit_note_id)",
    "ledger.invoice_credit_note_credits": "primary key (invoice_credit_note_credit_id)",
    "ledger.finalisations": "primary key (finalisation_id), unique (finalisation_sequence)",
    "ledger.payments": "primary key (payment_id)",
    "ledger.month_closes": "primary key (month_start)",
}


# What a column added to an existing ledger holds for the rows written before it existed: an
# invoice finalised before credit notes paid invoices took nothing from them.
ADDED_COLUMN_DEFAULTS = {"credit_note_credit_amount": "0"}


def ensure_ledger(warehouse: Warehouse) -> None:
    """Create the ledger tables and columns that do not exist yet (never drop or change one)."""
    warehouse.execute("create schema if not exists ledger")
    for table, columns in LEDGER_TABLES.items():
        ddl = ", ".join([f"{name} {sql_type}" for name, sql_type in columns]
                        + ([LEDGER_KEYS[table]] if table in LEDGER_KEYS else []))
        warehouse.execute(f"create table if not exists {table} ({ddl})")
        existing = warehouse.column_names(*table.split("."))
        for column, sql_type in columns:
            if column not in existing:  # a ledger written by an earlier version: only ever add
                default = f" default {ADDED_COLUMN_DEFAULTS[column]}" if column in ADDED_COLUMN_DEFAULTS else ""
                warehouse.execute(f"alter table {table} add column {column} {sql_type}{default}")


def code_version() -> str:
    from orchestration.pipeline import code_fingerprint

    try:
        version = metadata.version("meterline")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return f"meterline {version}; models sha256:{code_fingerprint()}"


def invoice_number(prefix: str, issuing_date, sequence: int) -> str:
    """PREFIX-YYYYMM-NNNN: the sequence counts per billing entity and issuing month, from 1."""
    return f"{prefix}-{issuing_date:%Y%m}-{sequence:04d}"


def credit_note_number(prefix: str, issuing_date, sequence: int) -> str:
    """PREFIX-CN-YYYYMM-NNNN: credit notes have their own gapless sequence per billing entity
    and issuing month."""
    return f"{prefix}-CN-{issuing_date:%Y%m}-{sequence:04d}"


def _last_sequences(warehouse: Warehouse, table: str, sequence_column: str) -> dict[tuple[str, int, int], int]:
    """The last number handed out per (billing entity, issuing year, month)."""
    last: dict[tuple[str, int, int], int] = defaultdict(int)
    for entity, year, month, number in warehouse.query(
            f"select billing_entity_code, extract(year from issuing_date), extract(month from issuing_date), "
            f"max({sequence_column}) from {table} group by 1, 2, 3"):
        last[(entity, int(year), int(month))] = number
    return last


@dataclass(frozen=True)
class Finalisation:
    finalisation_id: str | None  # None when there was nothing to finalise
    as_of: datetime
    events_cutoff_at: datetime | None
    invoices: list[tuple[str, str]]  # (invoice_id, invoice_number), in number order
    credit_notes: tuple[tuple[str, str], ...] = ()  # (credit_note_id, credit_note_number)


def last_build(warehouse: Warehouse) -> tuple[datetime, str, str, datetime | None]:
    """(as_of, price-book fingerprint, code fingerprint, events loaded through) of the last build."""
    if not warehouse.table_exists("raw", "pipeline_runs"):
        raise FinalisationError("nothing was built yet: run `meterline run` first")
    rows = warehouse.query("select as_of, price_book_fingerprint, code_fingerprint, events_loaded_through "
                           "from raw.pipeline_runs order by finished_at desc limit 1")
    if not rows:
        raise FinalisationError("nothing was built yet: run `meterline run` first")
    return rows[0]


NO_EVENTS_CUTOFF = datetime(1970, 1, 1)
"""The cut-off of a build that saw no event: every event loaded later is late."""


def events_loaded_through(warehouse: Warehouse) -> datetime:
    """The newest loaded_at in raw.events: the cut-off of what a build starting now sees."""
    if not warehouse.table_exists("raw", "events"):
        return NO_EVENTS_CUTOFF
    return warehouse.query("select max(loaded_at) from raw.events")[0][0] or NO_EVENTS_CUTOFF


def _check_build_is_current(warehouse: Warehouse) -> tuple[datetime, str, str, datetime | None]:
    from orchestration.pipeline import code_fingerprint

    as_of, price_book, code, loaded_through = last_build(warehouse)
    current_price_book = warehouse.query("select fingerprint from catalog.price_book_versions")[0][0]
    if current_price_book != price_book:
        raise FinalisationError("the catalog changed since the last build: run `meterline run` first")
    if code != code_fingerprint():
        raise FinalisationError("the models changed since the last build: run `meterline run` first")
    if events_loaded_through(warehouse) != loaded_through:
        raise FinalisationError("events were loaded since the last build: run `meterline run` first")
    return as_of, price_book, code, loaded_through


# Each finalising invoice's events fingerprint: md5 over its events (id, transaction, metric,
# time, properties), ordered by the md5 of their ids (hex digits: the same order under every
# collation, so every engine agrees). An altered, added or removed event changes it.
EVENTS_FINGERPRINT_SQL = """
    select lines.invoice_id,
        md5(string_agg(events.event_id || '|' || events.transaction_id || '|' || events.metric_code || '|'
            || cast(events.event_at as varchar) || '|' || coalesce(events.properties, ''),
            ',' order by md5(events.event_id))) as events_fingerprint
    from marts.fct_invoice_line_events as events
    inner join marts.fct_invoice_lines as lines
        on events.invoice_line_id = lines.invoice_line_id
    inner join ledger_finalising as finalising
        on lines.invoice_id = finalising.invoice_id
    group by 1
"""


def _snapshot_price_book(warehouse: Warehouse, fingerprint: str) -> None:
    """Keep the catalog files of this price-book version in the ledger, once; refuse if the
    files on disk are no longer the ones the build loaded."""
    from pathlib import Path

    from orchestration.catalog import PRICE_BOOK_FILES, price_book_fingerprint

    p = warehouse.placeholder
    if warehouse.query(f"select count(*) from ledger.price_book_files where price_book_fingerprint = {p}",
                       [fingerprint])[0][0]:
        return
    directory = Path(warehouse.query("select source_directory from catalog.price_book_versions")[0][0])
    files = [(name, (directory / name).read_bytes() if (directory / name).exists() else b"")
             for name in PRICE_BOOK_FILES]
    if price_book_fingerprint(files) != fingerprint:
        raise FinalisationError(f"the catalog files in {directory} changed since they were loaded: "
                                "run `meterline run` first")
    warehouse.execute_many(f"insert into ledger.price_book_files values ({p}, {p}, {p})",
                           [(fingerprint, name, content.decode()) for name, content in files if content])


def run_blocking_checks(settings: Settings, as_of: datetime, *, accept_usage_cliffs: bool = False) -> None:
    """The money checks (dbt tests tagged `blocking`: conservation of events, the invoice
    identity, lineage, the unknown-customer ratio, usage cliffs) again, on the tables as they
    are now: a derived table changed since the build must not be frozen. The last two only warn
    in a build; here every one is an error. Raises FinalisationError naming the failing checks."""
    from orchestration.pipeline import DbtError, run_dbt

    # The checks that only warn in a build fail here: test warnings are errors. A flag, not a
    # var: a changed var makes dbt parse the whole project again (macros/as_of.sql).
    args = ["test", "--select", "tag:blocking", "--warn-error-options", json.dumps({"error": ["LogTestResult"]})]
    if accept_usage_cliffs:  # an operator looked at them: the drops are real
        args += ["--exclude", "assert_no_usage_cliff"]
    try:
        run_dbt(settings, args, as_of=as_of)
    except DbtError as error:
        raise FinalisationError(f"a blocking check failed, nothing was finalised:\n{error}") from None


def finalise(settings: Settings, *, now: datetime | None = None, accept_usage_cliffs: bool = False) -> Finalisation:
    """Finalise every closed invoice whose grace period ended by the last build's as_of.

    Refuses when the last build is stale (catalog, models or events changed since) or when a
    blocking check fails on the tables as they are: what is frozen must have passed them. Numbers continue each billing
    entity's sequence for the invoice's issuing month, in invoice date order.
    """
    _require_ledger_writes(settings, "finalisation")
    with connect(settings) as warehouse:
        ensure_ledger(warehouse)
        as_of, price_book, _, cutoff = _check_build_is_current(warehouse)
    run_blocking_checks(settings, as_of, accept_usage_cliffs=accept_usage_cliffs)
    with connect(settings) as warehouse:
        warehouse.execute("begin")
        try:
            finalised = _finalise_in_transaction(warehouse, as_of, price_book, cutoff, now)
            warehouse.execute("commit")
        except BaseException:
            warehouse.execute("rollback")
            raise
    if finalised.finalisation_id:
        log.info("finalised %d invoice(s) and %d credit note(s) as %s", len(finalised.invoices),
                 len(finalised.credit_notes), finalised.finalisation_id)
    return finalised


def _finalise_in_transaction(warehouse: Warehouse, as_of: datetime, price_book: str, cutoff: datetime,
                             now: datetime | None) -> Finalisation:
    """Number and copy the invoices; the caller holds the transaction (commit or rollback)."""
    from orchestration.pipeline import utc_now

    if warehouse.kind == "postgres":  # one finalisation at a time: numbers are read, then written
        warehouse.execute("lock table ledger.finalisations in exclusive mode")
    # Again inside the transaction: nothing may have been built or loaded since the checks ran.
    if _check_build_is_current(warehouse)[3] != cutoff:
        raise FinalisationError("a build ran during finalisation: run `meterline finalise` again")
    p = warehouse.placeholder
    candidates = warehouse.query(
        f"""
        select invoices.invoice_id, invoices.billing_entity_code, customers.invoice_prefix, invoices.issuing_date
        from marts.fct_invoices as invoices
        inner join staging.stg_catalog__customers as customers
            on invoices.customer_id = customers.customer_id
        left join ledger.invoices as issued
            on invoices.invoice_id = issued.invoice_id
        where invoices.status = 'closed'
            and issued.invoice_id is null  -- the marts may not show an earlier finalisation yet
            and invoices.grace_period_ends_at <= {p}
        order by invoices.billing_entity_code, invoices.invoice_at, invoices.invoice_id
        """, [as_of])
    # Automatic credit notes, closed and past their grace period, as invoices are (a credit note
    # a finalised invoice drew on is issued no later than it, so it is frozen with it or before).
    credit_note_candidates = warehouse.query(
        f"""
        select credit_notes.credit_note_id, credit_notes.billing_entity_code, customers.invoice_prefix,
            credit_notes.issuing_date
        from marts.fct_credit_notes as credit_notes
        inner join staging.stg_catalog__customers as customers
            on credit_notes.customer_id = customers.customer_id
        left join ledger.credit_notes as issued
            on credit_notes.credit_note_id = issued.credit_note_id
        where credit_notes.status = 'closed'
            and issued.credit_note_id is null
            and credit_notes.grace_period_ends_at <= {p}
        order by credit_notes.billing_entity_code, credit_notes.issued_at, credit_notes.credit_note_id
        """, [as_of])
    if not candidates and not credit_note_candidates:
        return Finalisation(None, as_of, cutoff, [])
    finalized_at = now or utc_now()
    sequence = warehouse.query("select coalesce(max(finalisation_sequence), 0) + 1 from ledger.finalisations")[0][0]
    finalisation_id = hashlib.sha256(
        f"{sequence}|{finalized_at.isoformat()}|{len(candidates)}".encode()).hexdigest()[:32]
    names = ", ".join(name for name, _ in LEDGER_TABLES["ledger.finalisations"])
    warehouse.execute(f"insert into ledger.finalisations ({names}) values ({', '.join([p] * 9)})",
                      [finalisation_id, sequence, finalized_at, as_of, cutoff, price_book, code_version(),
                       len(candidates), len(credit_note_candidates)])
    _crash_point("finalisation_recorded")
    credit_notes = _freeze_credit_notes(warehouse, credit_note_candidates, finalisation_id, finalized_at, cutoff)
    _crash_point("credit_notes_written")
    last_numbers = _last_sequences(warehouse, "ledger.invoices", "invoice_sequence")
    numbered = []
    for invoice_id, entity, prefix, issuing_date in candidates:
        key = (entity, issuing_date.year, issuing_date.month)
        last_numbers[key] += 1
        numbered.append((invoice_id, invoice_number(prefix, issuing_date, last_numbers[key]), last_numbers[key]))
    warehouse.execute("create temporary table ledger_finalising "
                      "(invoice_id varchar, invoice_number varchar, invoice_sequence bigint)")
    warehouse.execute_many(f"insert into ledger_finalising values ({p}, {p}, {p})", numbered)
    names = ", ".join(name for name, _ in INVOICE_COLUMNS)
    copied = ", ".join(f"invoices.{name}" for name, _ in INVOICE_COLUMNS)
    extra = ", ".join(name for name, _ in FINALISATION_COLUMNS)
    warehouse.execute(
        f"insert into ledger.invoices ({names}, {extra}) "
        f"select {copied}, finalising.invoice_number, finalising.invoice_sequence, {p}, {p}, {p}, "
        f"coalesce(fingerprints.events_fingerprint, md5('')), {p}, {p} "
        f"from marts.fct_invoices as invoices inner join ledger_finalising as finalising "
        f"on invoices.invoice_id = finalising.invoice_id "
        f"left join ({EVENTS_FINGERPRINT_SQL}) as fingerprints on invoices.invoice_id = fingerprints.invoice_id",
        [finalisation_id, finalized_at, cutoff, price_book, code_version()])
    _crash_point("invoices_written")
    for table, (mart, columns) in COPIED_TABLES.items():
        names = ", ".join(name for name, _ in columns)
        copied = ", ".join(f"source.{name}" for name, _ in columns)
        warehouse.execute(
            f"insert into {table} ({names}, finalisation_id) select {copied}, {p} from {mart} as source "
            f"inner join ledger_finalising as finalising on source.invoice_id = finalising.invoice_id",
            [finalisation_id])
        _crash_point(f"{table.split('.')[1]}_written")
    _snapshot_price_book(warehouse, price_book)
    warehouse.execute("drop table ledger_finalising")
    return Finalisation(finalisation_id, as_of, cutoff, [(i, n) for i, n, _ in numbered], tuple(credit_notes))


def _freeze_credit_notes(warehouse: Warehouse, candidates: list, finalisation_id: str, finalized_at: datetime,
                         cutoff: datetime) -> list[tuple[str, str]]:
    """Number the credit notes and copy them from the marts into the ledger."""
    if not candidates:
        return []
    p = warehouse.placeholder
    last_numbers = _last_sequences(warehouse, "ledger.credit_notes", "credit_note_sequence")
    numbered = []
    for credit_note_id, entity, prefix, issuing_date in candidates:
        key = (entity, issuing_date.year, issuing_date.month)
        last_numbers[key] += 1
        numbered.append((credit_note_id, credit_note_number(prefix, issuing_date, last_numbers[key]),
                         last_numbers[key]))
    warehouse.execute("create temporary table ledger_finalising_credit_notes "
                      "(credit_note_id varchar, credit_note_number varchar, credit_note_sequence bigint)")
    warehouse.execute_many(f"insert into ledger_finalising_credit_notes values ({p}, {p}, {p})", numbered)
    names = ", ".join(name for name, _ in CREDIT_NOTE_COLUMNS + CREDIT_NOTE_FINALISATION_COLUMNS)
    copied = ", ".join(f"credit_notes.{name}" for name, _ in CREDIT_NOTE_COLUMNS)
    warehouse.execute(
        f"insert into ledger.credit_notes ({names}) "
        f"select {copied}, finalising.credit_note_number, finalising.credit_note_sequence, {p}, {p}, {p} "
        f"from marts.fct_credit_notes as credit_notes inner join ledger_finalising_credit_notes as finalising "
        f"on credit_notes.credit_note_id = finalising.credit_note_id",
        [finalisation_id, finalized_at, cutoff])
    warehouse.execute("drop table ledger_finalising_credit_notes")
    return [(credit_note_id, number) for credit_note_id, number, _ in numbered]


def void(settings: Settings, invoice: str, reason: str, *, now: datetime | None = None) -> tuple[str, str]:
    """Void a finalised invoice or credit note (by id, id prefix or number). It stays in the
    ledger and in the marts with status `voided`; nothing is deleted. Returns (id, number)."""
    from orchestration.pipeline import utc_now

    _require_ledger_writes(settings, "voiding")
    if not reason.strip():
        raise FinalisationError("a void needs a reason")
    with connect(settings) as warehouse:
        ensure_ledger(warehouse)
        p = warehouse.placeholder
        found = warehouse.query(
            f"select invoice_id, invoice_number from ledger.invoices "
            f"where invoice_number = {p} or invoice_id like {p} order by invoice_id",
            [invoice, f"{invoice}%"])
        if not found:  # a credit note, perhaps
            voided = void_credit_note(warehouse, invoice, reason.strip(), now or utc_now())
            if voided:
                return voided
        if len(found) != 1:
            raise FinalisationError(
                f"{len(found)} finalised invoices match {invoice!r}: give a number or more of the id"
                if found else f"no finalised invoice or credit note {invoice!r} (only finalised ones can be voided)")
        invoice_id, number = found[0]
        if warehouse.query(f"select count(*) from ledger.invoice_voids where invoice_id = {p}", [invoice_id])[0][0]:
            raise FinalisationError(f"invoice {number} is already voided")
        notes = [row[0] for row in warehouse.query(
            f"select credit_note_number from ledger.credit_notes where invoice_id = {p} and origin = 'manual' "
            f"and credit_note_id not in (select credit_note_id from ledger.credit_note_voids) order by 1",
            [invoice_id])]
        if notes:  # voiding the invoice cancels what it billed: a credit on it would be given twice
            raise FinalisationError(f"invoice {number} has credit note(s) {', '.join(notes)}: void them first")
        if warehouse.query(f"select count(*) from ledger.payments where invoice_id = {p}", [invoice_id])[0][0]:
            raise FinalisationError(f"invoice {number} has recorded payments: a paid invoice is corrected by a "
                                    "credit note (refund), not voided")
        warehouse.execute(f"insert into ledger.invoice_voids values ({p}, {p}, {p})",
                          [invoice_id, now or utc_now(), reason.strip()])
    return invoice_id, number


MANUAL_REASONS = ("duplicated_charge", "product_unsatisfactory", "order_change", "order_cancellation",
                  "fraudulent_charge", "other")
CREDIT_METHODS = ("credit", "refund")


@dataclass(frozen=True)
class IssuedCreditNote:
    credit_note_id: str
    credit_note_number: str
    invoice_number: str
    currency: str
    credit_method: str
    items: list[tuple[str, Decimal, Decimal]]  # (invoice_line_id, amount, tax rate %)

    @property
    def amount(self) -> Decimal:
        return sum((amount for _, amount, _ in self.items), Decimal(0))


def issue_credit_note(settings: Settings, invoice: str, *, reason: str, method: str = "credit",
                      lines: dict[str, Decimal | None] | None = None, description: str | None = None,
                      now: datetime | None = None) -> IssuedCreditNote:
    """Issue a manual credit note on a finalised invoice: it is numbered and written to the
    ledger at once (docs/invoice-lifecycle.md, "Credit notes").

    `lines` maps invoice line ids (or unique prefixes) to the amount credited, excluding tax
    (None: all that is left of the line); no lines credits every line in full. A line can be
    credited up to what it was billed after progressive billing and coupons, less what earlier
    credit notes took; tax is given back at the line's rates. `credit` pays the customer's later
    invoices; `refund` is paid back and leaves later invoices alone.
    """
    from zoneinfo import ZoneInfo

    from orchestration.pipeline import utc_now

    _require_ledger_writes(settings, "issuing a credit note")
    if reason not in MANUAL_REASONS:
        raise FinalisationError(f"unknown credit note reason {reason!r}: one of {', '.join(MANUAL_REASONS)}")
    if method not in CREDIT_METHODS:
        raise FinalisationError(f"unknown credit method {method!r}: credit or refund")
    issued_at = now or utc_now()
    with connect(settings) as warehouse:
        ensure_ledger(warehouse)
        warehouse.execute("begin")
        try:
            if warehouse.kind == "postgres":  # numbers are read, then written: one writer at a time
                warehouse.execute("lock table ledger.finalisations in exclusive mode")
            issued = _issue_credit_note(warehouse, invoice, reason, method, lines or {}, description, issued_at,
                                        ZoneInfo)
            warehouse.execute("commit")
        except BaseException:
            warehouse.execute("rollback")
            raise
    log.info("issued credit note %s on %s", issued.credit_note_number, issued.invoice_number)
    return issued


def _issue_credit_note(warehouse: Warehouse, invoice: str, reason: str, method: str,
                       lines: dict[str, Decimal | None], description: str | None, issued_at: datetime,
                       zone_info) -> IssuedCreditNote:
    p = warehouse.placeholder
    found = warehouse.query(
        f"select invoices.invoice_id, invoices.invoice_number, invoices.customer_id, invoices.billing_entity_code, "
        f"invoices.currency, voids.invoice_id is not null "
        f"from ledger.invoices as invoices left join ledger.invoice_voids as voids "
        f"on invoices.invoice_id = voids.invoice_id "
        f"where invoices.invoice_number = {p} or invoices.invoice_id like {p} order by invoices.invoice_id",
        [invoice, f"{invoice}%"])
    if len(found) != 1:
        raise FinalisationError(
            f"{len(found)} finalised invoices match {invoice!r}: give a number or more of the id" if found
            else f"no finalised invoice {invoice!r} (credit notes are issued on finalised invoices)")
    invoice_id, number, customer_id, entity, currency, voided = found[0]
    if voided:
        raise FinalisationError(f"invoice {number} is voided: there is nothing left to credit")
    minor_unit = warehouse.query(f"select minor_unit from reference.currencies where currency_code = {p}",
                                 [currency])[0][0]
    step = Decimal(1).scaleb(-minor_unit)
    # What each line may still be credited: billed after progressive billing and coupons, rounded
    # down to the minor unit (never more than was billed), less earlier credit notes' items.
    # Automatic credit notes (frozen or not) already gave back part of some lines: the unused days
    # of a base fee, what late events took off a line.
    automatic: dict[str, Decimal] = defaultdict(Decimal)
    if warehouse.table_exists("marts", "fct_credit_notes"):
        for line_id, amount in warehouse.query(
                f"select coalesce(notes.corrected_invoice_line_id, lines.invoice_line_id), notes.amount "
                f"from marts.fct_credit_notes as notes "
                f"left join ledger.invoice_lines as lines on notes.corrected_invoice_line_id is null "
                f"and lines.invoice_id = notes.invoice_id and lines.billing_period_id = notes.billing_period_id "
                f"and lines.fee_kind = 'subscription' and lines.corrected_invoice_line_id is null "
                f"where notes.origin = 'automatic' and notes.status <> 'voided' and notes.invoice_id = {p}",
                [invoice_id]):
            if line_id is not None:
                automatic[line_id] += Decimal(amount)
    creditable = {}
    for line_id, line_description, taxable, tax_rate, credited in warehouse.query(
            f"select lines.invoice_line_id, lines.description, lines.taxable_amount, lines.tax_rate, "
            f"coalesce(sum(items.amount), 0) "
            f"from ledger.invoice_lines as lines "
            f"left join ledger.credit_note_items as items on lines.invoice_line_id = items.invoice_line_id "
            f"and items.credit_note_id not in (select credit_note_id from ledger.credit_note_voids) "
            f"where lines.invoice_id = {p} group by 1, 2, 3, 4 order by 1", [invoice_id]):
        left = ((Decimal(taxable) // step) * step - Decimal(credited) - automatic[line_id]).quantize(step)
        creditable[line_id] = (line_description, max(left, Decimal(0)), Decimal(tax_rate))
    requested = lines or {line_id: None for line_id, (_, left, _) in creditable.items() if left > 0}
    items = []
    for reference, amount in requested.items():
        matches = [line_id for line_id in creditable if line_id.startswith(reference)]
        if len(matches) != 1:
            raise FinalisationError(f"{len(matches)} lines of invoice {number} match {reference!r}"
                                    if matches else f"invoice {number} has no line {reference!r}")
        line_id = matches[0]
        line_description, left, tax_rate = creditable[line_id]
        amount = left if amount is None else Decimal(amount)
        if amount <= 0:
            raise FinalisationError(f"line {line_id[:12]} ({line_description}): nothing left to credit"
                                    if left <= 0 else f"line {line_id[:12]}: a credit must be positive")
        if amount != amount.quantize(step):
            raise FinalisationError(f"line {line_id[:12]}: {amount} {currency} has more than {minor_unit} decimal(s)")
        if amount > left:
            raise FinalisationError(f"line {line_id[:12]} ({line_description}): {amount} {currency} is more than "
                                    f"the {left} {currency} left to credit")
        items.append((line_id, line_description, amount, tax_rate))
    if not items:
        raise FinalisationError(f"invoice {number}: nothing left to credit")
    timezone_name, prefix = warehouse.query(
        f"select billing_timezone, invoice_prefix from staging.stg_catalog__customers where customer_id = {p}",
        [customer_id])[0]
    issuing_date = issued_at.replace(tzinfo=zone_info("UTC")).astimezone(zone_info(timezone_name)).date()
    sequence = _last_sequences(warehouse, "ledger.credit_notes", "credit_note_sequence")[
        (entity, issuing_date.year, issuing_date.month)] + 1
    number_cn = credit_note_number(prefix, issuing_date, sequence)
    credit_note_id = hashlib.md5(f"{invoice_id}|manual|{number_cn}".encode()).hexdigest()
    amount = sum((amount for _, _, amount, _ in items), Decimal(0))
    text = description or f"Credit on invoice {number} ({reason.replace('_', ' ')})"
    values = {
        "credit_note_id": credit_note_id, "origin": "manual", "reason": reason, "credit_method": method,
        "customer_id": customer_id, "billing_entity_code": entity, "invoice_id": invoice_id,
        "currency": currency, "issued_at": issued_at, "issuing_date": issuing_date, "description": text,
        "precise_amount": amount, "amount": amount, "grace_period_ends_at": issued_at,
        "credit_note_number": number_cn, "credit_note_sequence": sequence, "finalized_at": issued_at,
    }  # tax_amount and total_amount: derived from the items (stg_ledger__credit_notes)
    warehouse.execute(f"insert into ledger.credit_notes ({', '.join(values)}) values ({', '.join([p] * len(values))})",
                      list(values.values()))
    warehouse.execute_many(
        f"insert into ledger.credit_note_items values ({p}, {p}, {p}, {p}, {p}, {p})",
        [(hashlib.md5(f"{credit_note_id}|{line_id}".encode()).hexdigest(), credit_note_id, line_id, line_description,
          amount, tax_rate) for line_id, line_description, amount, tax_rate in items])
    return IssuedCreditNote(credit_note_id, number_cn, number, currency, method,
                            [(line_id, amount, tax_rate) for line_id, _, amount, tax_rate in items])


def void_credit_note(warehouse: Warehouse, credit_note: str, reason: str, voided_at: datetime) -> tuple[str, str] | None:
    """Void a finalised credit note (by number or id prefix), unless a finalised invoice already
    took credit from it. None when no credit note matches."""
    p = warehouse.placeholder
    found = warehouse.query(
        f"select credit_note_id, credit_note_number from ledger.credit_notes "
        f"where credit_note_number = {p} or credit_note_id like {p} order by credit_note_id",
        [credit_note, f"{credit_note}%"])
    if not found:
        return None
    if len(found) > 1:
        raise FinalisationError(f"{len(found)} credit notes match {credit_note!r}: give a number or more of the id")
    credit_note_id, number = found[0]
    if warehouse.query(f"select count(*) from ledger.credit_note_voids where credit_note_id = {p}",
                       [credit_note_id])[0][0]:
        raise FinalisationError(f"credit note {number} is already voided")
    used = warehouse.query(
        f"select invoices.invoice_number from ledger.invoice_credit_note_credits as credits "
        f"inner join ledger.invoices as invoices on credits.invoice_id = invoices.invoice_id "
        f"where credits.credit_note_id = {p} "
        f"and credits.invoice_id not in (select invoice_id from ledger.invoice_voids) order by 1", [credit_note_id])
    if used:
        raise FinalisationError(f"credit note {number} paid part of finalised invoice(s) "
                                f"{', '.join(row[0] for row in used)}: void those first")
    warehouse.execute(f"insert into ledger.credit_note_voids values ({p}, {p}, {p})",
                      [credit_note_id, voided_at, reason])
    return credit_note_id, number


@dataclass(frozen=True)
class RecordedPayment:
    payment_id: str
    invoice_number: str
    currency: str
    amount: Decimal
    outstanding_after: Decimal


def record_payment(settings: Settings, invoice: str, amount: Decimal, *, paid_on, reference: str | None = None,
                   now: datetime | None = None) -> RecordedPayment:
    """Record a payment of a finalised invoice (by number, id or id prefix): at most what is
    still due (its total due less the payments recorded before), in the currency's minor unit.
    The payment id is a hash of the invoice, amount, date and reference, so recording the same
    payment twice is refused rather than counted twice."""
    from orchestration.catalog import known_currencies
    from orchestration.pipeline import utc_now

    _require_ledger_writes(settings, "recording a payment")
    with connect(settings) as warehouse:
        ensure_ledger(warehouse)
        p = warehouse.placeholder
        found = warehouse.query(
            f"select invoices.invoice_id, invoices.invoice_number, invoices.customer_id, invoices.currency, "
            f"invoices.total_amount, voids.invoice_id is not null from ledger.invoices as invoices "
            f"left join ledger.invoice_voids as voids on invoices.invoice_id = voids.invoice_id "
            f"where invoices.invoice_number = {p} or invoices.invoice_id like {p} order by invoices.invoice_id",
            [invoice, f"{invoice}%"])
        if len(found) != 1:
            raise FinalisationError(f"{len(found)} finalised invoices match {invoice!r}: give its number"
                                    if found else f"no finalised invoice {invoice!r} (payments settle finalised invoices)")
        invoice_id, number, customer_id, currency, total, voided = found[0]
        if voided:
            raise FinalisationError(f"invoice {number} is voided: nothing is due")
        minor_unit = known_currencies()[currency]
        if amount <= 0 or amount != amount.quantize(Decimal(1).scaleb(-minor_unit)):
            raise FinalisationError(f"a payment is a positive amount with at most {minor_unit} decimals in "
                                    f"{currency}, not {amount}")
        paid = warehouse.query(f"select coalesce(sum(amount), 0) from ledger.payments where invoice_id = {p}",
                               [invoice_id])[0][0]
        outstanding = (Decimal(total) - Decimal(paid)).quantize(Decimal(1).scaleb(-minor_unit))
        if amount > outstanding:
            raise FinalisationError(f"{amount} {currency} is more than the {outstanding} {currency} still due on "
                                    f"invoice {number}")
        payment_id = hashlib.md5("|".join([invoice_id, str(amount), paid_on.isoformat(), reference or ""]).encode()
                                 ).hexdigest()
        if warehouse.query(f"select count(*) from ledger.payments where payment_id = {p}", [payment_id])[0][0]:
            raise FinalisationError(f"this payment of {amount} {currency} on {paid_on} was recorded already "
                                    "(give another --reference for a second payment of the same amount that day)")
        warehouse.execute(f"insert into ledger.payments values ({', '.join([p] * 8)})",
                          [payment_id, invoice_id, customer_id, currency, amount, paid_on, reference,
                           now or utc_now()])
    log.info("recorded a payment of %s %s on %s", amount, currency, number)
    return RecordedPayment(payment_id, number, currency, amount, outstanding - amount)

