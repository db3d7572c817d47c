"""Assembles the Dagster definitions; each concern lives in orchestration/assets/."""

from __future__ import annotations

from dagster import AssetSelection, Definitions, ScheduleDefinition, define_asset_job, in_process_executor
from dagster_dbt import DbtCliResource

from orchestration.assets.billing import build_dbt_assets, dbt_project
from orchestration.assets.exports import invoice_files
from orchestration.assets.ingestion import build_landing_sensor, price_book, raw_events, raw_events_expectations
from orchestration.pipeline import dbt_executable
from orchestration.resources import MeterlineSettings

meterline_models = build_dbt_assets()

# One process runs the steps in order: DuckDB allows a single writer per file.
billing_job = define_asset_job(
    "billing_run",
    selection=AssetSelection.all(),
    executor_def=in_process_executor,
    description="Load the catalog, ingest new files, build and test the models, write invoice files.",
)

daily_billing = ScheduleDefinition(
    name="daily_billing",
    job=billing_job,
    cron_schedule="0 2 * * *",
    execution_timezone="UTC",
    description="Every day at 02:00 UTC: invoices of the periods that closed are computed and written.",
)

defs = Definitions(
    assets=[price_book, raw_events, meterline_models, invoice_files],
    asset_checks=[raw_events_expectations],
    jobs=[billing_job],
    schedules=[daily_billing],
    sensors=[build_landing_sensor(billing_job)],
    resources={
        "dbt": DbtCliResource(project_dir=dbt_project(), dbt_executable=dbt_executable()),
        "meterline": MeterlineSettings(),
    },
)
