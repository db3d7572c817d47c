"""The `meterline` command line. Exit codes: 0 success, 1 a pipeline or data failure,
2 invalid input (a bad catalog, a missing file, a bad option)."""

from __future__ import annotations

import dataclasses

import json
import logging
import shutil
import sys
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from orchestration import pipeline
from orchestration.catalog import CatalogError, known_currencies, read_catalog
from orchestration.object_store import as_location
from orchestration.settings import Settings, get_settings
from orchestration.warehouse import connect

app = typer.Typer(help="Meterline: usage metering and billing computed in your warehouse.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
console = Console()
errors = Console(stderr=True, soft_wrap=True)  # an error names file, row, field: never break that line


class OutputFormat(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"


HomeOption = Annotated[Optional[Path], typer.Option(
    "--home", help="Working folder (catalog/, landing/, output/, warehouse). Default: $METERLINE_HOME or ./data.")]
AsOfOption = Annotated[Optional[str], typer.Option(
    "--as-of", help="The run's clock, ISO UTC (e.g. 2026-11-21T12:00:00Z). Default: now.")]


def _settings(home: Path | None) -> Settings:
    return get_settings(home)


def _parse_as_of(value: str | None) -> datetime:
    if not value:
        return pipeline.utc_now()
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        errors.print(f"[red]--as-of {value!r} is not an ISO timestamp[/red]")
        raise typer.Exit(2) from None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(timezone.utc)
    return parsed.replace(tzinfo=None)


def _fail(message: str, code: int = 1) -> None:
    errors.print(f"[bold red]error:[/bold red] {message}")
    raise typer.Exit(code)


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log what happens.")] = False) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")


def _print_ingest_report(report) -> None:
    table = Table(title="Ingestion", show_edge=False)
    table.add_column("outcome")
    table.add_column("records", justify="right")
    table.add_row("accepted", f"{report.accepted:,}")
    for reason, count in sorted(report.rejected_by_reason.items()):
        table.add_row(f"rejected: {reason}", f"{count:,}")
    console.print(table)


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Event files (.parquet, .jsonl, .csv) or folders of them.")],
    home: HomeOption = None,
) -> None:
    """Load event files into raw.events; malformed rows go to raw.event_rejects with a reason."""
    settings = _settings(home)
    try:
        with connect(settings) as warehouse:
            if not pipeline.loaded_metrics(warehouse):
                _fail("no catalog is loaded: run `meterline run --catalog DIR` (or `meterline demo`) first", 2)
        files = pipeline.expand_paths(paths)
    except FileNotFoundError as error:
        _fail(str(error), 2)
    report = _ingest_with_progress(settings, files)
    _print_ingest_report(report)
    console.print("Run [bold]meterline run[/bold] to bill them.")


def _ingest_with_progress(settings: Settings, files: list[Path]):
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as progress:
        task = progress.add_task("Ingesting files", total=len(files))
        return pipeline.ingest(settings, files, on_file=lambda _: progress.advance(task))


@app.command()
def run(
    catalog: Annotated[Optional[Path], typer.Option(help="Catalog folder. Default: <home>/catalog.")] = None,
    home: HomeOption = None,
    as_of: AsOfOption = None,
    full_refresh: Annotated[Optional[bool], typer.Option(
        "--full-refresh/--incremental", help="Force a full rebuild, or force incremental. Default: decide.")] = None,
    finalise: Annotated[bool, typer.Option(
        "--finalise/--no-finalise", help="Finalise the invoices whose grace period ended (after the checks passed).")
    ] = True,
    events_lake: Annotated[Optional[str], typer.Option(
        help="Read events in place from this folder of Parquet files (e.g. partitioned by date), local or an "
             "object-store URI such as s3://bucket/events, instead of ingesting <home>/landing. "
             "Default: $METERLINE_EVENTS_LAKE.")] = None,
) -> None:
    """Validate the catalog, ingest new files from <home>/landing (or register a Parquet lake's
    new files), build and check the models, finalise the invoices whose grace period ended,
    write invoices."""
    settings = _settings(home)
    if events_lake is not None:
        settings = dataclasses.replace(settings, events_lake=as_location(events_lake))
    run_pipeline(settings, catalog or settings.catalog_dir, _parse_as_of(as_of), full_refresh, finalise=finalise)


def run_pipeline(settings: Settings, catalog_dir: Path, as_of: datetime, full_refresh: bool | None,
                 *, finalise: bool = True) -> None:
    try:
        with console.status("Validating the catalog"):
            catalog = read_catalog(catalog_dir)
    except CatalogError as error:
        _fail(f"invalid catalog, nothing was built:\n  {error}", 2)
    pipeline.load_catalog(settings, catalog)
    if settings.events_lake is not None:
        from orchestration.lake import LakeError

        try:
            with console.status(f"Registering the new files of {settings.events_lake}"):
                report = pipeline.register_lake(settings, settings.events_lake)
        except LakeError as error:
            _fail(str(error), 2)
        if report.files:
            _print_ingest_report(report)
    else:
        new_files = pipeline.new_landing_files(settings)
        if new_files:
            _print_ingest_report(_ingest_with_progress(settings, new_files))
    with console.status("Building the models (dbt build)"):
        try:
            result = pipeline.build(settings, as_of, full_refresh=full_refresh)
        except pipeline.DbtError as error:
            _fail(str(error))
    from orchestration.ledger import ledger_writes_supported

    if finalise and not ledger_writes_supported(settings):
        console.print(f"Finalisation skipped: the ledger is not kept on the {settings.target} target "
                      "(docs/engines.md); the invoices stay drafts.")
        finalise = False
    finalised = _finalise(settings) if finalise else None
    with console.status("Writing invoices"):
        outputs = pipeline.export(settings)
    documents = _write_documents(settings)
    _print_summary(settings, result, outputs)
    if finalised is not None:
        _print_finalisation(finalised)
    if documents.total:
        console.print(f"Documents: {len(documents.written):,} PDF(s) written, {documents.unchanged:,} unchanged, "
                      f"in {documents.folder}")


def _write_documents(settings: Settings):
    """A PDF per finalised invoice and credit note (only the new or changed ones), with a progress bar."""
    from orchestration.documents import write_documents

    with Progress(TextColumn("Writing PDF documents"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as bar:
        def start(total: int):
            task = bar.add_task("documents", total=total)
            return lambda: bar.advance(task)

        return write_documents(settings, progress=start)


@app.command()
def documents(home: HomeOption = None) -> None:
    """Write a PDF for every finalised invoice and credit note that has none yet (or whose
    document changed: a void stamps it VOID), under <home>/output/documents."""
    settings = _settings(home)
    result = _write_documents(settings)
    console.print(f"{len(result.written):,} PDF(s) written, {result.unchanged:,} unchanged, in {result.folder}")


def _finalise(settings: Settings, *, accept_usage_cliffs: bool = False):
    """Freeze what the build's checks passed on; the marts then read those invoices from the ledger."""
    from orchestration.ledger import FinalisationError

    with console.status("Finalising the invoices whose grace period ended"):
        try:
            done = pipeline.finalise(settings, accept_usage_cliffs=accept_usage_cliffs)
        except (FinalisationError, pipeline.DbtError) as error:
            _fail(f"finalisation stopped: {error}")
    return done


def _print_finalisation(done) -> None:
    if not done.invoices:
        console.print("Finalised: nothing new (no closed invoice whose grace period ended).")
        return
    console.print(f"Finalised {len(done.invoices):,} invoice(s) into the ledger: {done.invoices[0][1]} .. "
                  f"{done.invoices[-1][1]} (events loaded through {done.events_cutoff_at:%Y-%m-%d %H:%M:%S} UTC). "
                  "They never change again; `meterline void NUMBER --reason ...` cancels one.")


@app.command()
def finalise(
    home: HomeOption = None,
    accept_usage_cliffs: Annotated[bool, typer.Option(
        help="Finalise even if a usage cliff check fails (after checking the drops are real).")] = False,
) -> None:
    """Finalise the closed invoices whose grace period ended by the last build's as_of: number
    them (gapless per billing entity and month) and append them to the ledger, in one transaction.

    Refuses (exit 1) when the catalog, the models or the events changed since the last build.
    """
    settings = _settings(home)
    _print_finalisation(_finalise(settings, accept_usage_cliffs=accept_usage_cliffs))


@app.command()
def reproduce(
    invoice: Annotated[str, typer.Argument(help="A finalised invoice's number, id, or first characters of its id.")],
    home: HomeOption = None,
) -> None:
    """Rebuild a finalised invoice in a scratch warehouse from what it recorded (events loaded up
    to its cut-off, its price book, the ledger before it, its as_of) and compare it with the
    ledger. Exit 0 when identical, 1 with the differences otherwise."""
    from orchestration.reproduce import ReproduceError, reproduce as reproduce_invoice

    settings = _settings(home)
    try:
        with errors.status("Rebuilding the invoice in a scratch warehouse"):
            result = reproduce_invoice(settings, invoice)
    except (ReproduceError, FileNotFoundError) as error:
        _fail(str(error), 2)
    except pipeline.DbtError as error:
        _fail(str(error))
    console.print(f"Invoice {result.invoice_number} ({result.invoice_id}): rebuilt as of "
                  f"{pipeline.format_as_of(result.as_of)} from {result.events_copied:,} events loaded through "
                  f"{pipeline.format_as_of(result.events_cutoff_at)}")
    if result.code_version_recorded != result.code_version_now:
        console.print(f"[yellow]code changed since[/yellow]: recorded {result.code_version_recorded}, "
                      f"now {result.code_version_now}")
    if result.identical:
        console.print("[bold green]identical[/bold green]: the invoice, its lines, taxes, discounts, credits and "
                      "events fingerprint")
        return
    table = Table(title=f"{len(result.differences)} difference(s)", show_edge=False)
    for column in ("table", "row", "column", "issued", "reproduced"):
        table.add_column(column)
    for row in result.differences:
        table.add_row(*row)
    console.print(table)
    raise typer.Exit(1)


@app.command()
def void(
    invoice: Annotated[str, typer.Argument(help="A finalised invoice's number, id, or first characters of its id.")],
    reason: Annotated[str, typer.Option(help="Why it is voided (kept in ledger.invoice_voids).")],
    home: HomeOption = None,
) -> None:
    """Void a finalised invoice: it stays in the ledger and in the marts with status voided."""
    from orchestration.ledger import FinalisationError, void as void_invoice

    settings = _settings(home)
    try:
        voided_id, number = void_invoice(settings, invoice, reason)
        pipeline.rebuild_from_ledger(settings)
    except FinalisationError as error:
        _fail(str(error), 2)
    except pipeline.DbtError as error:
        _fail(str(error))
    console.print(f"Voided {number} ({voided_id}): {reason}")


@app.command("credit-note")
def credit_note(
    invoice: Annotated[str, typer.Argument(help="A finalised invoice's number, id, or first characters of its id.")],
    reason: Annotated[str, typer.Option(help="One of: duplicated_charge, product_unsatisfactory, order_change, "
                                             "order_cancellation, fraudulent_charge, other.")],
    line: Annotated[Optional[list[str]], typer.Option(
        help="LINE_ID[=AMOUNT]: a line (id or first characters) and the amount credited excluding tax (all "
             "that is left of it without =AMOUNT). Repeat for several lines; none credits every line.")] = None,
    refund: Annotated[bool, typer.Option(
        "--refund/--credit", help="Pay the amount back (refund), or credit it to the customer's later invoices.")] = False,
    description: Annotated[Optional[str], typer.Option(help="What the credit note says (a default names the invoice).")] = None,
    home: HomeOption = None,
) -> None:
    """Issue a manual credit note on a finalised invoice: numbered PREFIX-CN-YYYYMM-NNNN and
    written to the ledger at once, tax given back at each line's rates. A credit pays the
    customer's next invoices (after tax, before prepaid credits); a refund is paid back."""
    from orchestration.ledger import FinalisationError, issue_credit_note

    settings = _settings(home)
    lines: dict[str, Decimal | None] = {}
    for spec in line or []:
        reference, _, amount = spec.partition("=")
        try:
            value = Decimal(amount) if amount.strip() else None
        except ArithmeticError:
            value = Decimal("NaN")
        if value is not None and not value.is_finite():
            _fail(f"--line {spec!r}: {amount!r} is not an amount", 2)
        lines[reference.strip()] = value
    try:
        issued = issue_credit_note(settings, invoice, reason=reason, method="refund" if refund else "credit",
                                   lines=lines, description=description)
        pipeline.rebuild_from_ledger(settings)
    except FinalisationError as error:
        _fail(str(error), 2)
    except pipeline.DbtError as error:
        _fail(str(error))
    with connect(settings, read_only=settings.target == "duckdb") as warehouse:
        p = warehouse.placeholder
        row = warehouse.query(f"select amount, tax_amount, total_amount from marts.fct_credit_notes "
                              f"where credit_note_id = {p}", [issued.credit_note_id])
    places = known_currencies()[issued.currency]
    amount, tax, total = (f"{value:,.{places}f}" for value in row[0])
    what = "refunded" if refund else "credited to later invoices"
    console.print(f"Issued credit note {issued.credit_note_number} on invoice {issued.invoice_number}: "
                  f"{amount} + tax {tax} = {total} {issued.currency}, {what} "
                  f"({len(issued.items)} line(s); marts.fct_credit_notes)")


@app.command("payment")
def payment(
    invoice: Annotated[str, typer.Argument(help="A finalised invoice's number (or id).")],
    amount: Annotated[str, typer.Argument(help="The amount paid, in the invoice's currency (e.g. 120.50).")],
    paid_on: Annotated[Optional[str], typer.Option("--date", help="When it was paid, YYYY-MM-DD. Default: today (UTC).")] = None,
    reference: Annotated[Optional[str], typer.Option(help="The bank's or processor's reference.")] = None,
    home: HomeOption = None,
) -> None:
    """Record a payment of a finalised invoice (ledger.payments): at most what is still due.
    `meterline sync xero` sends it as a Xero payment."""
    from datetime import date

    from orchestration.ledger import FinalisationError, record_payment

    try:
        value = Decimal(amount)
        day = date.fromisoformat(paid_on) if paid_on else pipeline.utc_now().date()
    except (ArithmeticError, ValueError):
        value, day = Decimal("NaN"), None
    if not value.is_finite() or day is None:
        _fail(f"{amount!r} is not an amount or {paid_on!r} is not a date (YYYY-MM-DD)", 2)
    try:
        recorded = record_payment(_settings(home), invoice, value, paid_on=day, reference=reference)
    except FinalisationError as error:
        _fail(str(error), 2)
    console.print(f"Recorded a payment of {recorded.amount} {recorded.currency} on invoice {recorded.invoice_number}: "
                  f"{recorded.outstanding_after} {recorded.currency} still due")


@app.command()
def report(
    month: Annotated[str, typer.Option("--month", help="The month to report, YYYY-MM.")],
    output: Annotated[Optional[Path], typer.Option(help="Folder for the files. Default: output/reports/YYYY-MM.")] = None,
    no_close: Annotated[bool, typer.Option("--no-close", help="Do not close the month, even when it could.")] = False,
    home: HomeOption = None,
) -> None:
    """Write a month's revenue report: an HTML file with charts and the same tables as CSV.
    A finished month whose invoices are all finalised is closed first: its figures are locked,
    and later corrections are booked in the month still open (docs/revenue.md)."""
    from orchestration.reporting import CloseError, write_report

    try:
        result = write_report(_settings(home), month, output_dir=output, close=not no_close)
    except CloseError as error:
        _fail(str(error), 2)
    _print_report(result)


def _print_report(result) -> None:
    from orchestration.reporting.report import formatted_rows

    if result.closed_now:
        months = [f"{m:%Y-%m}" for m in result.closed_now]
        console.print(f"Closed {months[0]}{' .. ' + months[-1] if len(months) > 1 else ''}: figures locked in "
                      f"the ledger (later corrections are booked in the first open month).")
    status = "closed" if result.state.closed else f"preliminary, {result.state.reason}"
    summary = result.tables["summary"]
    shown = ["currency", "mrr", "new_mrr", "churn_mrr", "recognised_revenue", "deferred_balance",
             "unbilled_balance", "collected"]
    by_currency = [dict(zip(summary.columns, row)) for row in formatted_rows(summary)]
    table = Table(title=f"Revenue {result.month:%B %Y} ({status}), excluding taxes")
    table.add_column("")
    for values in by_currency:
        table.add_column(values["currency"], justify="right")
    for column in shown[1:]:
        table.add_row(column.replace("_", " "), *(values[column] for values in by_currency))
    console.print(table)
    console.print(f"Revenue report: {result.html_path} (and {len(result.csv_paths)} CSV tables beside it)")


class AccountingProvider(str, Enum):
    xero = "xero"
    netsuite = "netsuite"


@app.command("sync")
def sync_command(
    provider: Annotated[AccountingProvider, typer.Argument(help="The accounting system: xero or netsuite.")],
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Print what would be sent; send and record nothing (no credentials needed).")] = False,
    retry_failed: Annotated[bool, typer.Option(
        "--retry-failed", help="Send again what was refused or is waiting for its next attempt time.")] = False,
    home: HomeOption = None,
) -> None:
    """Send finalised invoices, credit notes, their allocations, payments and voids to Xero or NetSuite,
    each exactly once (docs/accounting-sync.md). Credentials come from the environment
    (METERLINE_XERO_* or METERLINE_NETSUITE_*); items, accounts and tax types from
    catalog/accounting.yml. Exits 1 when anything failed: the sync ledger
    (accounting.sync_ledger) says what and why, and the next run retries it."""
    from orchestration.accounting import sync
    from orchestration.accounting.books import BooksError
    from orchestration.accounting.http import ConfigError, SyncError
    from orchestration.accounting.mappings import MappingFileError

    settings = _settings(home)
    try:
        report = sync(settings, provider.value, now=pipeline.utc_now, dry_run=dry_run, retry_failed_now=retry_failed)
    except (ConfigError, MappingFileError, BooksError, SyncError, FileNotFoundError) as error:
        _fail(str(error), 2)
    if dry_run:
        import simplejson

        for object_type, number, payload in report.dry_run_payloads:
            console.print(f"[bold]would send {object_type} {number}[/bold]")
            # As sent: amounts exact (rich's print_json would read them back as floats).
            console.print(simplejson.dumps(payload, use_decimal=True, sort_keys=True, indent=2), markup=False,
                          highlight=False)
    table = Table(title=f"{provider.value} sync" + (" (dry run)" if dry_run else f", tenant {report.tenant}"))
    outcomes = sorted({outcome for _, outcome in report.counts})
    table.add_column("object")
    for outcome in outcomes:
        table.add_column(outcome.replace("_", " "), justify="right")
    for object_type in sorted({t for t, _ in report.counts}):
        table.add_row(object_type, *[f"{report.counts.get((object_type, o), 0):,}" for o in outcomes])
    console.print(table)
    for (object_type, currency), total in sorted(report.synced_totals.items()):
        console.print(f"synced {object_type} total: {total:,.{known_currencies()[currency]}f} {currency}")
    for failure in report.failures:
        errors.print(f"[red]failed[/red] {failure.object_type} {failure.local_number or failure.local_id} "
                     f"({failure.error_kind}{f', HTTP {failure.http_status}' if failure.http_status else ''}): "
                     f"{failure.message}")
    if not report.ok:
        raise typer.Exit(1)


def _print_summary(settings: Settings, result, outputs: dict[str, Path]) -> None:
    from orchestration.exports import amounts_by_currency, billed_by_charge, reconciliation, taxes_by_rate

    with connect(settings, read_only=True) as warehouse:
        by_charge = billed_by_charge(warehouse)
        plans_in_use = warehouse.query(
            """
            select plans.base_plan_code, plans.billing_interval, plans.is_pay_in_advance, plans.trial_period_days,
                count(distinct subscriptions.external_subscription_id),
                sum(case when subscriptions.change_kind is not null then 1 else 0 end),
                sum(case when plans.plan_code <> plans.base_plan_code then 1 else 0 end)
            from intermediate.int_subscriptions as subscriptions
            inner join staging.stg_catalog__plans as plans
                on subscriptions.plan_code = plans.plan_code
            group by 1, 2, 3, 4
            order by 1
            """)
        one_off = warehouse.query(
            "select count(distinct invoice_id) from marts.fct_invoice_lines where fee_kind = 'add_on'")[0][0]
        progressive = warehouse.query(
            "select count(*), count(distinct customer_id) from marts.fct_invoices "
            "where invoice_kind = 'progressive_billing' and status in ('closed', 'finalized')")[0]
        credit_notes = warehouse.query(
            "select currency, count(*), sum(total_amount), sum(applied_amount), sum(refunded_amount), "
            "sum(balance_amount) from marts.fct_credit_notes where status in ('closed', 'finalized') "
            "group by 1 order by 1")
        closed = amounts_by_currency(warehouse, "issued")
        drafts = amounts_by_currency(warehouse, "draft")
        taxes = taxes_by_rate(warehouse, "issued")
        wallets = warehouse.query(
            "select wallets.currency, count(*), sum(wallets.balance_amount), sum(wallets.ongoing_usage_amount), "
            "sum(wallets.ongoing_balance_amount), sum(top_ups.top_up_count) from marts.fct_wallets as wallets "
            "left join (select wallet_id, count(*) as top_up_count from marts.fct_wallet_transactions "
            "where source_kind = 'threshold_top_up' and status = 'settled' group by 1) as top_ups "
            "on wallets.wallet_id = top_ups.wallet_id group by 1 order by 1")
        # An invoice worth reading step by step: the closed one with the most steps in use.
        example = warehouse.query(
            "select invoice_id from marts.fct_invoices where status in ('closed', 'finalized') order by "
            "(case when discount_amount > 0 then 1 else 0 end) + (case when tax_amount > 0 then 1 else 0 end) "
            "+ (case when progressive_billing_credit_amount > 0 then 1 else 0 end) "
            "+ (case when prepaid_credit_amount > 0 then 1 else 0 end) desc, line_count desc, invoice_id limit 1")
        outcomes = reconciliation(warehouse)
    console.rule(f"Billing as of {pipeline.format_as_of(result.as_of)} UTC "
                 f"({'full rebuild' if result.full_refresh else 'incremental'}: {result.reason})")
    # One column per currency, one row per step of docs/invoice-amounts.md (fits a narrow terminal).
    table = Table(title="Issued invoices (closed and finalized), step by step", show_edge=False, pad_edge=False)
    draft_map = {row[0]: (row[1], row[8]) for row in drafts}
    closed_map = {row[0]: row[1:] for row in closed}
    exponents = known_currencies()
    currencies = sorted(closed_map)
    table.add_column("")
    for currency in currencies:
        table.add_column(currency, justify="right", no_wrap=True)
    steps = ("invoices", "fees", "- billed early (progressive)", "- coupons", "+ taxes", "- credit notes",
             "- prepaid credits", "= due")
    for index, step in enumerate(steps):
        cells = []
        for currency in currencies:
            value = closed_map[currency][index]
            cells.append(f"{value:,}" if index == 0 else f"{value:,.{exponents[currency]}f}")
        if index == len(steps) - 1:
            cells = [f"[bold]{cell}[/bold]" for cell in cells]
        table.add_row(step, *cells)
    console.print(table)
    if draft_map:
        console.print("Drafts (open periods, recomputed on every run): " + ", ".join(
            f"{currency} {count:,} invoices, {total:,.{exponents[currency]}f}"
            for currency, (count, total) in sorted(draft_map.items())))
    if taxes:
        by_rate = Table(title="Taxes on issued invoices, per rate", show_edge=False, pad_edge=False)
        for column in ("", "code", "rate %", "taxable", "tax"):
            by_rate.add_column(column, justify="right" if column in ("rate %", "taxable", "tax") else "left",
                               no_wrap=True)
        for currency, code, _, rate, taxable, tax in taxes:
            places = exponents[currency]
            by_rate.add_row(currency, code, f"{rate.normalize():f}", f"{taxable:,.{places}f}", f"{tax:,.{places}f}")
        console.print(by_rate)
    for currency, count, balance, ongoing_usage, ongoing_balance, top_ups in wallets:
        places = exponents[currency]
        console.print(f"Prepaid credits: {count} wallet(s) in {currency}, balance {balance:,.{places}f}, "
                      f"ongoing usage {ongoing_usage:,.{places}f}, ongoing balance {ongoing_balance:,.{places}f}, "
                      f"{top_ups or 0} threshold top-up(s) "
                      "(marts.fct_wallets, history in marts.fct_wallet_transactions)")
    _print_plans_in_use(plans_in_use, one_off)
    if progressive[0]:
        console.print(f"Progressive billing: {progressive[0]:,} invoice(s) of usage so far for {progressive[1]:,} "
                      "customer(s) who reached a usage threshold, deducted from their period-end invoices")
    _print_billed_by_charge(by_charge, exponents)
    for currency, count, total, applied, refunded, balance in credit_notes:
        places = exponents[currency]
        console.print(f"Credit notes in {currency}: {count:,} for {total:,.{places}f} (unused in-advance days, usage "
                      f"billed early beyond a period's amount, late events, manual); {applied:,.{places}f} paid "
                      f"later invoices, {refunded:,.{places}f} refunded, {balance:,.{places}f} left to use "
                      "(marts.fct_credit_notes)")
    events = Table(title="Events (every input record is accounted for)", show_edge=False)
    events.add_column("outcome")
    events.add_column("reason")
    events.add_column("records", justify="right")
    totals: dict[str, int] = {}
    for outcome, reason, count in outcomes:
        totals[outcome] = totals.get(outcome, 0) + count
        events.add_row(outcome, reason, f"{count:,}")
    console.print(events)
    console.print("  ".join(f"[bold]{k}[/bold] {v:,}" for k, v in sorted(totals.items())))
    console.print(f"Invoices written to {outputs['json']} and {outputs['csv']} "
                  f"(one file per invoice in {outputs['per_invoice']}/)")
    location = {"duckdb": str(settings.warehouse_path), "spark": f"Spark, {settings.spark_dir}",
                "postgres": "PostgreSQL (METERLINE_PG_*)"}.get(settings.target, settings.target)
    console.print(f"Warehouse: {location}   Try: meterline invoices --format table"
                  + (f"; one invoice step by step: meterline invoice {example[0][0][:12]}" if example else ""))


def _print_plans_in_use(rows, one_off_invoices: int) -> None:
    """Subscriptions per plan: interval, base fee timing, trial, plan changes into it, contracts."""
    table = Table(title="Subscriptions by plan", show_edge=False, pad_edge=False)
    for column in ("plan", "interval", "fee", "trial", "subs", "changed to", "contracts"):
        table.add_column(column, no_wrap=True,
                         justify="right" if column in {"subs", "changed to", "contracts"} else "left")
    for plan, interval, in_advance, trial_days, subscriptions, changes, contracts in rows:
        table.add_row(plan, interval, "advance" if in_advance else "arrears",
                      f"{trial_days} d" if trial_days else "", f"{subscriptions:,}",
                      f"{changes:,}" if changes else "", f"{contracts:,}" if contracts else "")
    console.print(table)
    if one_off_invoices:
        console.print(f"One-off add-on invoices: {one_off_invoices:,}")


def _print_billed_by_charge(rows, exponents: dict[str, int]) -> None:
    """What the closed invoices charged for: one row per metric, charge model and currency
    (base fees and spending-minimum true-ups on rows of their own)."""
    table = Table(title="Issued invoices by charge", show_edge=False, pad_edge=False)
    for column in ("metric", "aggregation", "priced by", "", "events", "billed"):
        table.add_column(column, justify="right" if column in {"events", "billed"} else "left", no_wrap=True)
    previous = None
    for fee_kind, metric, aggregation, model, currency, _lines, events, amount in rows:
        priced_by = {"subscription": "base fee", "true_up": "true-up", "commitment": "commitment",
                     "add_on": "add-on", "credit_purchase": "credits"}.get(fee_kind, model)
        first = (metric, priced_by) != previous
        previous = (metric, priced_by)
        table.add_row(metric if first else "", aggregation if first else "", priced_by if first else "",
                      currency, f"{events:,}" if fee_kind == "charge" else "",
                      f"{amount:,.{exponents[currency]}f}")
    console.print(table)


@app.command()
def demo(
    customers: Annotated[int, typer.Option(help="Number of customers.")] = 60,
    events: Annotated[int, typer.Option(help="Number of usage events.")] = 1_000_000,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same data.")] = 7,
    home: HomeOption = None,
    as_of: AsOfOption = None,
) -> None:
    """Generate the AI API company demo (catalog + events) into <home>, then run the pipeline."""
    from orchestration.demo.generator import generate_demo

    settings = _settings(home)
    clock = _parse_as_of(as_of)
    for stale in (settings.catalog_dir, settings.landing_dir, settings.output_dir):
        shutil.rmtree(stale, ignore_errors=True)
    settings.warehouse_path.unlink(missing_ok=True)
    with console.status(f"Generating {events:,} events for {customers} customers"):
        summary = generate_demo(settings.home, customers=customers, events=events, seed=seed,
                                as_of=clock.replace(tzinfo=timezone.utc), overwrite=True)
    console.print(f"Demo data: {summary.customers} customers, {summary.events_written:,} events "
                  f"from {summary.window_start:%Y-%m-%d} to {summary.window_end:%Y-%m-%d %H:%M} UTC in "
                  f"{settings.landing_dir}")
    run_pipeline(settings, settings.catalog_dir, clock, full_refresh=True)
    # The revenue report of the last month that ended (closed, when its invoices are all final).
    from orchestration.reporting import CloseError, write_report

    last_month = (clock.replace(day=1) - timedelta(days=1)).strftime("%Y-%m")
    try:
        _print_report(write_report(settings, last_month))
    except CloseError as error:
        console.print(f"No revenue report: {error}")


@app.command()
def invoices(
    period: Annotated[Optional[str], typer.Option(help="Billing period month, YYYY-MM.")] = None,
    customer: Annotated[Optional[str], typer.Option(help="external_customer_id")] = None,
    status: Annotated[Optional[str], typer.Option(
        help="draft, closed, finalized, voided, or issued (closed and finalized)")] = None,
    format: Annotated[OutputFormat, typer.Option("--format", help="table, json or csv")] = OutputFormat.table,
    home: HomeOption = None,
) -> None:
    """Print invoices (JSON: a list of invoices with their lines, amounts as decimal strings)."""
    from orchestration.exports import fetch_invoices, invoices_to_csv_rows

    settings = _settings(home)
    try:
        with connect(settings, read_only=True) as warehouse:
            found = fetch_invoices(warehouse, period=period, customer=customer, status=status)
    except FileNotFoundError as error:
        _fail(str(error), 2)
    if format is OutputFormat.json:
        sys.stdout.write(json.dumps(found, indent=2) + "\n")
    elif format is OutputFormat.csv:
        import csv

        header, rows = invoices_to_csv_rows(found)
        writer = csv.writer(sys.stdout)
        writer.writerow(header)
        writer.writerows(rows)
    else:
        _print_invoice_table(found)


def _print_invoice_table(found: list[dict]) -> None:
    table = Table(show_edge=False)
    for column in ("issued", "number", "customer", "status", "period", "fees", "discount", "tax", "total", "lines",
                   "invoice_id"):
        table.add_column(column, justify="right" if column in {"fees", "discount", "tax", "total", "lines"}
                         else "left")
    for inv in found:
        table.add_row(inv["issuing_date"], inv["invoice_number"] or "", inv["customer_id"], inv["status"],
                      f"{inv['period_start']}..{inv['period_end']}", f"{inv['fees_amount']} {inv['currency']}",
                      inv["discount_amount"], inv["tax_amount"], f"[bold]{inv['total_amount']}[/bold]",
                      str(len(inv["lines"])), inv["invoice_id"][:12])
    console.print(table)
    console.print(f"{len(found)} invoice(s). One step by step: meterline invoice INVOICE_ID; "
                  "a line's events: meterline explain LINE_ID")


@app.command()
def invoice(
    invoice_id: Annotated[str, typer.Argument(help="An invoice id, or its first characters (as in file names).")],
    home: HomeOption = None,
) -> None:
    """Show one invoice step by step: lines, fees, coupons, taxes per rate, credits, amount due."""
    from orchestration.exports import fetch_invoices

    settings = _settings(home)
    try:
        with connect(settings, read_only=True) as warehouse:
            found = fetch_invoices(warehouse, invoice_id_prefix=invoice_id)
    except FileNotFoundError as error:
        _fail(str(error), 2)
    if len(found) != 1:
        _fail(f"{len(found)} invoices have an id starting with {invoice_id!r}: give "
              f"{'more characters' if found else 'an id from `meterline invoices`'}", 2)
    _print_invoice(found[0])


def _print_invoice(inv: dict) -> None:
    """One invoice in the computation order of docs/invoice-amounts.md."""
    currency = inv["currency"]
    kind = {"progressive_billing": "progressive billing: usage so far, a usage threshold was reached",
            "one_off": "one-off", "credit_purchase": "purchase of credits"}.get(inv["invoice_kind"])
    number = f" {inv['invoice_number']}" if inv["invoice_number"] else ""
    console.print(f"[bold]Invoice{number} {inv['invoice_id']}[/bold] ({inv['status']}{'; ' + kind if kind else ''}) "
                  f"to {inv['customer_name']} "
                  f"({inv['customer_id']}), issued {inv['issuing_date']}, period {inv['period_start']}.."
                  f"{inv['period_end']}, {currency}")
    lines = Table(show_edge=False, pad_edge=False)
    billed_early = any(Decimal(line["progressive_billing_credit_amount"]) for line in inv["lines"])
    for column in ("line", "quantity", "amount", *(("billed early",) if billed_early else ()), "coupons", "tax %"):
        lines.add_column(column, justify="left" if column == "line" else "right")
    for line in inv["lines"]:
        service = ("" if (line["service_period_start"], line["service_period_end"]) == (inv["period_start"],
                                                                                         inv["period_end"])
                   else f" ({line['service_period_start']}..{line['service_period_end']})")
        early = Decimal(line["progressive_billing_credit_amount"])
        lines.add_row(line["description"] + service, line["quantity"], line["amount"],
                      *((f"-{line['progressive_billing_credit_amount']}" if early else "",) if billed_early else ()),
                      "" if line["precise_discount_amount"] == "0" else f"-{line['precise_discount_amount']}",
                      line["tax_rate"])
    console.print(lines)
    steps = Table(show_edge=False, show_header=False)
    steps.add_column("step")
    steps.add_column("amount", justify="right")
    steps.add_row("Fees", inv["fees_amount"])
    if Decimal(inv["progressive_billing_credit_amount"]):
        steps.add_row("  Already invoiced by progressive billing", f"-{inv['progressive_billing_credit_amount']}")
    for discount in inv["discounts"]:
        carried = f", {discount['carried_amount']} left for later invoices" if Decimal(discount["carried_amount"]) else ""
        steps.add_row(f"  Coupon {discount['name']} ({discount['coupon_code']}{carried})", f"-{discount['amount']}")
    steps.add_row("Subtotal excluding taxes", inv["subtotal_excluding_taxes"])
    for tax in inv["taxes"]:
        steps.add_row(f"  {tax['name']} {tax['rate']}% on {tax['taxable_amount']}", tax["amount"])
    steps.add_row("Subtotal including taxes", inv["subtotal_including_taxes"])
    for credit in inv.get("credit_note_credits", []):
        steps.add_row(f"  Credit note {credit['credit_note_number'] or credit['credit_note_id'][:12]}",
                      f"-{credit['amount']}")
    for credit in inv["credits"]:
        steps.add_row(f"  {credit['name']} ({credit['wallet_id']}): {credit['credits']} credits, balance "
                      f"before {credit['balance_before_amount']}", f"-{credit['amount']}")
    steps.add_row(f"[bold]Total due ({currency})[/bold]", f"[bold]{inv['total_amount']}[/bold]")
    console.print(steps)


@app.command()
def explain(
    line_id: Annotated[str, typer.Argument(help="An invoice line id (line_id in `meterline invoices --format json`).")],
    events: Annotated[int, typer.Option(help="How many of the line's events to show.")] = 10,
    home: HomeOption = None,
) -> None:
    """Show the raw events behind an invoice line and the arithmetic from units to amount."""
    from orchestration.explain import explain_line

    settings = _settings(home)
    try:
        with connect(settings, read_only=True) as warehouse:
            text = explain_line(warehouse, line_id, sample=events)
    except LookupError as error:
        _fail(str(error), 2)
    console.print(text, highlight=False)


@app.command()
def simulate(
    catalog: Annotated[Path, typer.Option(help="Catalog folder with the price book to try.")],
    events: Annotated[Optional[list[Path]], typer.Option(
        help="Event file or folder (repeat for several). With --diff: default, the warehouse's events.")] = None,
    customers: Annotated[Optional[Path], typer.Option(help="customers.csv instead of the catalog's.")] = None,
    subscriptions: Annotated[Optional[Path], typer.Option(help="subscriptions.csv instead of the catalog's.")] = None,
    applied_coupons: Annotated[Optional[Path], typer.Option(help="applied_coupons.csv instead of the catalog's.")] = None,
    as_of: AsOfOption = None,
    diff: Annotated[bool, typer.Option(
        "--diff", help="Compare with the current price book over --from..--to, per customer and line.")] = False,
    start: Annotated[Optional[str], typer.Option("--from", help="With --diff: first day of the window, YYYY-MM-DD.")
                     ] = None,
    end: Annotated[Optional[str], typer.Option("--to", help="With --diff: day after the window, YYYY-MM-DD.")] = None,
    max_change_percent: Annotated[Optional[float], typer.Option(
        help="With --diff: exit 1 when a currency's fees change by more than this percentage (a check before "
             "a price change is merged).")] = None,
    home: HomeOption = None,
    format: Annotated[OutputFormat, typer.Option("--format", help="table or json (and csv with --diff)")] = (
        OutputFormat.table),
) -> None:
    """Bill events with a price book in a scratch warehouse and print the invoices; with --diff,
    price a past window with it and report the change against the current price book.

    The configured warehouse is only read. JSON output has the shape of `meterline invoices`.
    """
    if diff:
        _simulate_diff(_settings(home), catalog, start, end, max_change_percent, format)
        return
    if not events:
        _fail("--events is required (or --diff to use the warehouse's events)", 2)
    try:
        with errors.status("Simulating in a scratch warehouse"):
            result = pipeline.simulate(catalog, events, as_of=_parse_as_of(as_of), customers=customers,
                                       subscriptions=subscriptions, applied_coupons=applied_coupons)
    except CatalogError as error:
        _fail(f"invalid catalog:\n  {error}", 2)
    except FileNotFoundError as error:
        _fail(str(error), 2)
    except pipeline.DbtError as error:
        _fail(str(error))
    if result.ingest.rejected:
        errors.print(f"{result.ingest.rejected} input record(s) rejected: "
                     + ", ".join(f"{k} {v}" for k, v in sorted(result.ingest.rejected_by_reason.items())))
    if format is OutputFormat.json:
        sys.stdout.write(json.dumps(result.invoices, indent=2) + "\n")
    else:
        _print_invoice_table(result.invoices)


def _simulate_diff(settings: Settings, catalog: Path, start: str | None, end: str | None,
                   max_change_percent: float | None, format: OutputFormat) -> None:
    from orchestration.whatif import price_diff

    if not start or not end:
        _fail("--diff needs --from and --to (YYYY-MM-DD)", 2)
    try:
        window = [datetime.fromisoformat(start), datetime.fromisoformat(end)]
    except ValueError:
        _fail(f"--from {start!r} / --to {end!r}: expected YYYY-MM-DD", 2)
    if window[0] >= window[1]:
        _fail("--from must be before --to", 2)
    try:
        with errors.status("Pricing the window with both price books in scratch warehouses"):
            result = price_diff(settings, catalog, window[0], window[1])
    except CatalogError as error:
        _fail(f"invalid catalog:\n  {error}", 2)
    except FileNotFoundError as error:
        _fail(str(error), 2)
    except pipeline.DbtError as error:
        _fail(str(error))
    header = ["customer_id", "currency", "invoice_at", "invoice_line_id", "description", "metric_code",
              "quantity_current", "quantity_proposed", "quantity_change", "amount_current", "amount_proposed",
              "amount_change"]
    from orchestration.exports import format_decimal, format_money

    exponents = known_currencies()
    rows = [[line.customer_id, line.currency, pipeline.format_as_of(line.invoice_at), line.invoice_line_id,
             line.description, line.metric_code or "",
             *(format_decimal(value) for value in (line.quantity_current, line.quantity_proposed,
                                                   line.quantity_change)),
             *(format_money(value, exponents[line.currency]) for value in (
                 line.amount_current, line.amount_proposed, line.amount_change))] for line in result.changed]
    totals = []
    for t in result.totals:
        money = lambda value, currency=t.currency: format_money(value, exponents[currency])  # noqa: E731
        totals.append({"currency": t.currency, "fees_current": money(t.fees_current),
                       "fees_proposed": money(t.fees_proposed), "fees_change": money(t.fees_proposed - t.fees_current),
                       "fees_change_percent": None if t.change_percent is None else f"{t.change_percent:f}",
                       "due_current": money(t.due_current), "due_proposed": money(t.due_proposed),
                       "due_change": money(t.due_proposed - t.due_current)})
    if format is OutputFormat.json:
        sys.stdout.write(json.dumps({"from": start, "to": end, "lines": [dict(zip(header, r)) for r in rows],
                                     "totals": totals}, indent=2) + "\n")
    elif format is OutputFormat.csv:
        import csv

        writer = csv.writer(sys.stdout)
        writer.writerow(header)
        writer.writerows(rows)
        for total in totals:
            writer.writerow(["TOTAL", total["currency"], "", "", "fees", "", "", "", "", total["fees_current"],
                             total["fees_proposed"], total["fees_change"]])
    else:
        table = Table(title=f"Lines that change, invoices dated {start} to {end} (excluded)", show_edge=False)
        for column in ("customer", "issued", "line", "quantity", "change", "amount", "proposed", "change"):
            table.add_column(column, justify="left" if column in ("customer", "issued", "line") else "right")
        for line, row in zip(result.changed, rows):
            table.add_row(line.customer_id, f"{line.invoice_at:%Y-%m-%d}", line.description, row[6],
                          ("+" if line.quantity_change > 0 else "") + row[8], f"{row[9]} {line.currency}", row[10],
                          ("+" if line.amount_change > 0 else "") + row[11])
        console.print(table)
        summary = Table(title="Totals per currency", show_edge=False)
        for column in ("currency", "fees now", "fees proposed", "change", "%", "due now", "due proposed"):
            summary.add_column(column, justify="left" if column == "currency" else "right")
        for total in totals:
            summary.add_row(total["currency"], total["fees_current"], total["fees_proposed"], total["fees_change"],
                            total["fees_change_percent"] or "", total["due_current"], total["due_proposed"])
        console.print(summary)
        console.print(f"{len(result.changed)} of {len(result.lines)} line(s) change.")
    if max_change_percent is not None:
        over = [t for t in result.totals if t.change_percent is not None and abs(t.change_percent) > Decimal(
            str(max_change_percent))]
        if over:
            _fail("fees change by more than {}%: {}".format(max_change_percent, ", ".join(
                f"{t.currency} {t.change_percent:+f}%" for t in over)))


@app.command()
def check(catalog: Annotated[Path, typer.Argument(help="Catalog folder to validate.")]) -> None:
    """Validate a catalog folder without loading it (exit 2 and the first problem if invalid)."""
    try:
        found = read_catalog(catalog)
    except CatalogError as error:
        _fail(str(error), 2)
    console.print(f"[green]valid[/green]: {len(found.metrics)} metrics, {len(found.plans)} plans, "
                  f"{len(found.customers)} customers, {len(found.subscriptions)} subscriptions "
                  f"(fingerprint {found.fingerprint[:12]})")


@app.command()
def bench(
    events: Annotated[int, typer.Option(help="Events to generate and bill.")] = 1_000_000,
    customers: Annotated[int, typer.Option(help="Customers in the generated data.")] = 200,
    out: Annotated[Path, typer.Option(help="Where to keep the data and write bench-N.json.")] = Path("bench"),
    memory_limit: Annotated[Optional[str], typer.Option(
        help="DuckDB memory limit of every billing process (default: METERLINE_DUCKDB_MEMORY_LIMIT, else 3GB).")] = None,
    engines: Annotated[bool, typer.Option(help="Also bill a small workload on DuckDB, PostgreSQL and Spark.")] = True,
    engine_events: Annotated[int, typer.Option(help="Events of that small workload.")] = 100_000,
) -> None:
    """Measure rating, a full rebuild and an incremental day against a bare group-by floor, with
    peak memory, and a small workload on each engine (docs/engines.md, "Benchmark")."""
    from orchestration.bench import BenchError, print_summary, run_benchmark

    try:
        result = run_benchmark(out.resolve(), events=events, customers=customers, memory_limit=memory_limit,
                               engines=engines, engine_events=engine_events, console=console)
    except BenchError as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(1)
    print_summary(result, console)
