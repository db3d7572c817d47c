"""Revenue reporting (docs/revenue.md): the monthly revenue report, a monthly-partitioned asset
downstream of the finalised invoices and the report marts, and its monthly schedule.

Each partition is a calendar month. Materialising it closes the month (its figures are locked
in the ledger) and writes the report; a month that cannot close yet (an invoice issued in it is
not finalised) fails with the reason, so it shows red and is run again once billing caught up.
"""

from dagster import (
    AssetExecutionContext,
    AssetKey,
    Failure,
    MaterializeResult,
    MetadataValue,
    MonthlyPartitionsDefinition,
    asset,
    build_schedule_from_partitioned_job,
    define_asset_job,
    in_process_executor,
)

from orchestration.reporting.close import REPORT_MARTS
from orchestration.resources import MeterlineSettings

# Months are calendar months (UTC); the first is far enough back for any backfill of the demo.
report_months = MonthlyPartitionsDefinition(start_date="2024-01-01", timezone="UTC")


@asset(partitions_def=report_months, group_name="reporting",
       deps=[AssetKey("finalised_invoices"), *(AssetKey(["marts", name]) for name in REPORT_MARTS)])
def revenue_report(context: AssetExecutionContext, meterline: MeterlineSettings) -> MaterializeResult:
    """The month's revenue report: HTML with charts and the same tables as CSV, once the month is
    closed (its invoices all finalised); its figures are locked from then on."""
    from orchestration.reporting import CloseError, write_report

    month = context.partition_key[:7]
    try:
        result = write_report(meterline.settings(), month)
    except CloseError as error:
        raise Failure(description=str(error)) from error
    if not result.state.closed:
        raise Failure(description=f"{month} cannot be closed yet: {result.state.reason}. A preliminary report was "
                                  f"written to {result.html_path}", metadata={"report": str(result.html_path)})
    summary = result.tables["summary"]
    metadata: dict[str, object] = {
        "report": MetadataValue.path(str(result.html_path)),
        "closed": result.state.reason,
        "closed_now": ", ".join(f"{m:%Y-%m}" for m in result.closed_now) or "already closed",
    }
    for row in summary.rows:
        values = dict(zip(summary.columns, row))
        currency = values["currency"]
        for column in ("mrr", "recognised_revenue", "deferred_balance", "unbilled_balance", "collected"):
            metadata[f"{column}/{currency}"] = str(values[column])
    context.log.info(f"revenue report {month}: {result.html_path}")
    return MaterializeResult(metadata=metadata)


revenue_report_job = define_asset_job(
    "monthly_revenue_report",
    selection=[revenue_report],
    partitions_def=report_months,
    executor_def=in_process_executor,
    description="Close the month and write its revenue report (HTML with charts, CSV tables).",
)

# On the 5th at 06:00 UTC, the month before: the daily finalisation (03:00) has finalised the
# invoices of its last day by then, grace periods of up to four days included.
monthly_revenue_report = build_schedule_from_partitioned_job(
    revenue_report_job,
    name="monthly_revenue_report",
    day_of_month=5,
    hour_of_day=6,
    description="On the 5th of every month at 06:00 UTC: close the month before and write its revenue report.",
)
