"""Finalisation (docs/invoice-lifecycle.md): the blocking money checks, the finalised invoices
asset downstream of them, and the daily schedule that finalises what left its grace period."""

from collections import Counter
from decimal import Decimal

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    AssetKey,
    MaterializeResult,
    asset,
    asset_check,
)

from orchestration import pipeline
from orchestration.resources import MeterlineSettings

INVOICE_MARTS = [AssetKey(["marts", name]) for name in (
    "fct_invoices", "fct_invoice_lines", "fct_invoice_taxes", "fct_invoice_discounts", "fct_invoice_wallet_credits",
    "fct_invoice_credit_note_credits", "fct_credit_notes", "fct_event_reconciliation")]


@asset_check(asset=AssetKey(["marts", "fct_invoices"]), blocking=True, name="money_checks_before_finalisation")
def money_checks_before_finalisation(meterline: MeterlineSettings) -> AssetCheckResult:
    """The dbt tests tagged `blocking` (every event accounted for, on exactly one line; the invoice
    identity; lineage), run again on the tables as they are. Blocking: when one fails, nothing
    downstream (finalisation, files) runs."""
    from orchestration.ledger import FinalisationError, run_blocking_checks

    settings = meterline.settings()
    as_of = pipeline.last_as_of(settings)
    if as_of is None:
        return AssetCheckResult(passed=False, severity=AssetCheckSeverity.ERROR,
                                metadata={"error": "nothing was built yet"})
    try:
        run_blocking_checks(settings, as_of)
    except FinalisationError as error:
        return AssetCheckResult(passed=False, severity=AssetCheckSeverity.ERROR, metadata={"error": str(error)})
    return AssetCheckResult(passed=True, metadata={"as_of": pipeline.format_as_of(as_of)})


@asset(deps=INVOICE_MARTS, group_name="ledger")
def finalised_invoices(context: AssetExecutionContext, meterline: MeterlineSettings) -> MaterializeResult:
    """Closed invoices whose grace period ended, numbered and appended to the ledger in one
    transaction (orchestration/ledger.py); the marts are rebuilt to read them from there."""
    from orchestration.warehouse import connect

    settings = meterline.settings()
    done = pipeline.finalise(settings)
    metadata: dict[str, object] = {"finalised": len(done.invoices), "credit_notes_finalised": len(done.credit_notes)}
    if done.credit_notes:
        metadata["credit_note_numbers"] = f"{done.credit_notes[0][1]} .. {done.credit_notes[-1][1]}"
    if done.invoices:
        metadata["numbers"] = f"{done.invoices[0][1]} .. {done.invoices[-1][1]}"
        metadata["events_cutoff_at"] = pipeline.format_as_of(done.events_cutoff_at)
        with connect(settings, read_only=settings.target == "duckdb") as warehouse:
            rows = warehouse.query(f"select currency, total_amount from ledger.invoices where finalisation_id = "
                                   f"{warehouse.placeholder}", [done.finalisation_id])
        counts, totals = Counter(), Counter()
        for currency, total in rows:
            counts[currency] += 1
            totals[currency] += Decimal(total)
        for currency in sorted(counts):
            metadata[f"invoices/{currency}"] = counts[currency]
            metadata[f"total/{currency}"] = str(totals[currency])
    context.log.info(f"finalised {len(done.invoices)} invoice(s)")
    return MaterializeResult(metadata=metadata)
