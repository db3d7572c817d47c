"""Invoice files: JSON and CSV under <home>/output, downstream of the invoice marts."""


from dagster import AssetKey, MaterializeResult, asset

from orchestration import pipeline
from orchestration.resources import MeterlineSettings


@asset(
    deps=[AssetKey(["marts", "fct_invoices"]), AssetKey(["marts", "fct_invoice_lines"]),
          AssetKey(["marts", "fct_invoice_discounts"])],
    group_name="exports",
)
def invoice_files(meterline: MeterlineSettings) -> MaterializeResult:
    """Every invoice as JSON (all in one file and one file each) and a flat CSV of lines."""
    from orchestration.exports import totals_by_currency
    from orchestration.warehouse import connect

    settings = meterline.settings()
    outputs = pipeline.export(settings)
    with connect(settings, read_only=settings.target == "duckdb") as warehouse:
        totals = totals_by_currency(warehouse, "closed")
    metadata = {"output": str(outputs["json"].parent)}
    for currency, count, total in totals:
        metadata[f"closed_invoices/{currency}"] = count
        metadata[f"total_billed/{currency}"] = str(total)
    return MaterializeResult(metadata=metadata)
