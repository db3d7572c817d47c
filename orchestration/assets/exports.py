"""Invoice files: JSON and CSV under <home>/output, downstream of the invoice marts; and the
invoices of each billing date, a daily-partitioned asset."""


from decimal import Decimal

from dagster import AssetExecutionContext, AssetKey, DailyPartitionsDefinition, MaterializeResult, asset

from orchestration import pipeline
from orchestration.resources import MeterlineSettings


@asset(
    deps=[AssetKey(["marts", "fct_invoices"]), AssetKey(["marts", "fct_invoice_lines"]),
          AssetKey(["marts", "fct_invoice_discounts"]), AssetKey("finalised_invoices")],
    group_name="exports",
)
def invoice_files(meterline: MeterlineSettings) -> MaterializeResult:
    """Every invoice as JSON (all in one file and one file each) and a flat CSV of lines."""
    from orchestration.exports import totals_by_currency
    from orchestration.warehouse import connect

    settings = meterline.settings()
    outputs = pipeline.export(settings)
    with connect(settings, read_only=settings.target == "duckdb") as warehouse:
        totals = totals_by_currency(warehouse, "issued")
    metadata = {"output": str(outputs["json"].parent)}
    for currency, count, total in totals:
        metadata[f"issued_invoices/{currency}"] = count
        metadata[f"total_billed/{currency}"] = str(total)
    return MaterializeResult(metadata=metadata)


@asset(
    deps=[AssetKey("finalised_invoices"), AssetKey(["marts", "fct_invoices"]), AssetKey(["marts", "fct_credit_notes"])],
    group_name="exports",
)
def invoice_documents(meterline: MeterlineSettings) -> MaterializeResult:
    """A PDF per finalised invoice and credit note (orchestration/documents.py), written once:
    a re-run renders only new documents and voided ones (stamped VOID)."""
    from orchestration.documents import write_documents

    result = write_documents(meterline.settings())
    by_kind: dict[str, int] = {}
    for path in result.written:
        by_kind[path.parent.name] = by_kind.get(path.parent.name, 0) + 1
    return MaterializeResult(metadata={
        "folder": str(result.folder), "written": len(result.written), "unchanged": result.unchanged,
        **{f"written/{kind}": count for kind, count in sorted(by_kind.items())},
    })


# Billing dates are UTC days; the first is far enough back for any backfill of the demo.
billing_dates = DailyPartitionsDefinition(start_date="2024-01-01", timezone="UTC")


@asset(
    partitions_def=billing_dates,
    deps=[AssetKey(["marts", "fct_invoices"]), AssetKey(["marts", "fct_invoice_lines"])],
    group_name="exports",
)
def issued_invoices(context: AssetExecutionContext, meterline: MeterlineSettings) -> MaterializeResult:
    """The invoices issued on one billing date (UTC day), under <home>/output/issued/<date>/.

    Loads the catalog and new landing files, builds the models when needed (never backwards in
    time, see pipeline.bill_billing_date) and writes that day's closed invoices. Re-running or
    backfilling a date writes the same bytes."""
    from datetime import date

    settings = meterline.settings()
    result = pipeline.bill_billing_date(settings, date.fromisoformat(context.partition_key))
    context.log.info(
        f"{len(result.invoices)} invoice(s) issued on {result.billing_date}, read as of "
        f"{pipeline.format_as_of(result.as_of)}; "
        + (f"built ({'full refresh' if result.built.full_refresh else 'incremental'}: {result.built.reason})"
           if result.built else "no build needed"))
    metadata: dict[str, object] = {
        "billing_date": result.billing_date.isoformat(),
        "invoices": len(result.invoices),
        "files_ingested": result.ingested_files,
        "built": bool(result.built),
        "output": str(result.outputs["json"].parent),
    }
    for currency in sorted({i["currency"] for i in result.invoices}):
        of_currency = [i for i in result.invoices if i["currency"] == currency]
        metadata[f"invoices/{currency}"] = len(of_currency)
        metadata[f"total/{currency}"] = str(sum(Decimal(i["total_amount"]) for i in of_currency))
    return MaterializeResult(metadata=metadata)
