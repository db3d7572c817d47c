"""Assembles the Dagster definitions; each concern lives in orchestration/assets/."""

from __future__ import annotations

from dagster import (
    AssetSelection,
    Definitions,
    ScheduleDefinition,
    build_schedule_from_partitioned_job,
    define_asset_job,
    in_process_executor,
)
from dagster_dbt import DbtCliResource

from orchestration.assets.accounting import netsuite_sync, xero_sync
from orchestration.assets.billing import build_dbt_assets, dbt_project
from orchestration.assets.exports import invoice_documents, invoice_files, issued_invoices
from orchestration.assets.ingestion import build_landing_sensor, price_book, raw_events, raw_events_expectations
from orchestration.assets.ledger import finalised_invoices, money_checks_before_finalisation
from orchestration.assets.reporting import monthly_revenue_report, revenue_report, revenue_report_job
from orchestration.pipeline import dbt_executable
from orchestration.resources import MeterlineSettings

meterline_models = build_dbt_assets()

# One process runs the steps in order: DuckDB allows a single writer per file.
billing_job = define_asset_job(
    "billing_run",
    selection=AssetSelection.all() - AssetSelection.assets(issued_invoices, revenue_report),
    executor_def=in_process_executor,
    description="Load the catalog, ingest new files, build and test the models, run the blocking money checks, "
                "finalise the invoices whose grace period ended, write invoice files and documents, sync them to "
                "the accounting systems that have credentials.",
)

# Every day the whole run, as of now: what left its grace period is finalised (after the checks).
daily_finalisation = ScheduleDefinition(
    name="daily_finalisation",
    job=billing_job,
    cron_schedule="0 3 * * *",
    execution_timezone="UTC",
    description="Every day at 03:00 UTC: build and check as of now, finalise the invoices whose grace period ended.",
)

# Billing by date: each run issues the invoices of one UTC day (a partition); backfills in the
# UI (or `dagster job backfill`) re-issue past dates with the same result.
invoices_by_date_job = define_asset_job(
    "invoices_by_billing_date",
    selection=AssetSelection.assets(issued_invoices),
    executor_def=in_process_executor,
    description="Issue the invoices of one billing date (load, ingest, build when needed, write the day's files).",
)

daily_billing = build_schedule_from_partitioned_job(
    invoices_by_date_job,
    name="daily_billing",
    hour_of_day=2,
    description="Every day at 02:00 UTC: the invoices of the day before are issued.",
)

defs = Definitions(
    assets=[price_book, raw_events, meterline_models, finalised_invoices, invoice_files, invoice_documents,
            issued_invoices, xero_sync, netsuite_sync, revenue_report],
    asset_checks=[raw_events_expectations, money_checks_before_finalisation],
    jobs=[billing_job, invoices_by_date_job, revenue_report_job],
    schedules=[daily_billing, daily_finalisation, monthly_revenue_report],
    sensors=[build_landing_sensor(billing_job)],
    resources={
        "dbt": DbtCliResource(project_dir=dbt_project(), dbt_executable=dbt_executable()),
        "meterline": MeterlineSettings(),
    },
)
