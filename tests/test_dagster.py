"""The Dagster definitions load on a fresh clone (given the manifest), and the whole asset graph
materialises in-process: catalog, ingestion, GX check, dbt models and tests, invoice files."""

from __future__ import annotations

import json
import os
import shutil

from dagster import AssetKey, DagsterInstance, build_sensor_context

from tests.conftest import FIXTURES


def test_definitions_load():
    from orchestration.definitions import defs

    job = defs.resolve_job_def("billing_run")
    keys = {"/".join(spec.key.path) for spec in defs.resolve_all_asset_specs()}
    assert {"raw/events", "catalog/customers", "marts/fct_invoices", "invoice_files", "xero_sync", "netsuite_sync"} <= keys
    assert job.executor_def.name == "in_process"
    assert defs.resolve_schedule_def("daily_billing").cron_schedule == "0 2 * * *"
    report = defs.resolve_schedule_def("monthly_revenue_report")
    assert report.cron_schedule == "0 6 5 * *" and report.job_name == "monthly_revenue_report"
    assert AssetKey("finalised_invoices") in defs.resolve_asset_graph().get(AssetKey("revenue_report")).parent_keys
    assert defs.resolve_sensor_def("landing_folder_sensor") is not None


def test_finalisation_is_downstream_of_the_blocking_money_checks():
    from orchestration.assets.ledger import money_checks_before_finalisation
    from orchestration.definitions import defs

    graph = defs.resolve_asset_graph()
    finalised = graph.get(AssetKey("finalised_invoices"))
    assert {AssetKey(["marts", "fct_invoices"]), AssetKey(["marts", "fct_event_reconciliation"])} <= set(
        finalised.parent_keys)
    assert AssetKey("finalised_invoices") in graph.get(AssetKey("invoice_files")).parent_keys
    [check] = money_checks_before_finalisation.check_specs
    assert check.blocking and check.asset_key == AssetKey(["marts", "fct_invoices"])
    schedule = defs.resolve_schedule_def("daily_finalisation")
    assert schedule.job_name == "billing_run" and schedule.cron_schedule == "0 3 * * *"


def test_whole_graph_materialises(small_home, monkeypatch):
    from orchestration.definitions import defs

    monkeypatch.setenv("METERLINE_HOME", str(small_home.home))
    shutil.copy(FIXTURES / "small_events" / "events.jsonl", small_home.landing_dir)
    with DagsterInstance.ephemeral() as instance:
        result = defs.resolve_job_def("billing_run").execute_in_process(
            instance=instance, tags={"meterline/as_of": "2026-11-21T12:00:00Z"})
        assert result.success
        materialized = {"/".join(e.asset_key.path) for e in result.get_asset_materialization_events()}
        assert {"catalog/plans", "raw/events", "intermediate/int_events_matched", "marts/fct_invoices",
                "finalised_invoices", "invoice_files"} <= materialized
        [finalised] = [e.materialization.metadata for e in result.get_asset_materialization_events()
                       if e.asset_key == AssetKey("finalised_invoices")]
        assert finalised["finalised"].value == 5 and finalised["numbers"].value == "TEST-202609-0001 .. TEST-202611-0002"
        checks = {e.check_name: e.passed
                  for e in result.get_asset_check_evaluations()}
        assert checks["raw_events_expectations"] is True
        assert checks["money_checks_before_finalisation"] is True
        assert len(checks) > 30 and all(checks.values()), [k for k, v in checks.items() if not v]
        # The monthly report job closes October (its invoices are final) and writes the report;
        # run again, it reads the locked month.
        report_job = defs.resolve_job_def("monthly_revenue_report")
        october = report_job.execute_in_process(instance=instance, partition_key="2026-10-01")
        assert october.success
        [metadata] = [e.materialization.metadata for e in october.get_asset_materialization_events()]
        assert metadata["closed_now"].value.endswith("2026-10") and "mrr/USD" in metadata
        assert (small_home.output_dir / "reports" / "2026-10" / "revenue-report-2026-10.html").exists()
        again = report_job.execute_in_process(instance=instance, partition_key="2026-10-01")
        [metadata_again] = [e.materialization.metadata for e in again.get_asset_materialization_events()]
        assert metadata_again["closed_now"].value == "already closed"
        assert metadata_again["mrr/USD"].value == metadata["mrr/USD"].value
    # The run's warehouse location is not left in the process's environment, where it would
    # redirect whatever builds next in this process (another test's warehouse, in CI).
    assert "METERLINE_WAREHOUSE" not in os.environ

    invoices = json.loads((small_home.output_dir / "invoices.json").read_text())
    totals = sorted((i["customer_id"], i["issuing_date"], i["total_amount"]) for i in invoices)
    assert ("cus_a", "2026-10-01", "7.52") in totals and ("cus_b", "2026-10-01", "1501") in totals
    assert {i["status"] for i in invoices} == {"finalized", "draft"}  # the files come after finalisation


def test_landing_sensor_requests_a_run_for_new_files(small_home, monkeypatch):
    from orchestration.definitions import defs

    monkeypatch.setenv("METERLINE_HOME", str(small_home.home))
    from orchestration.resources import MeterlineSettings

    sensor = defs.resolve_sensor_def("landing_folder_sensor")
    resources = {"meterline": MeterlineSettings(home=str(small_home.home))}
    with DagsterInstance.ephemeral() as instance:
        empty = sensor.evaluate_tick(build_sensor_context(instance=instance, resources=resources))
        assert not empty.run_requests
        shutil.copy(FIXTURES / "small_events" / "events.jsonl", small_home.landing_dir)
        first = sensor.evaluate_tick(build_sensor_context(instance=instance, resources=resources))
        assert len(first.run_requests) == 1
        again = sensor.evaluate_tick(build_sensor_context(instance=instance, resources=resources,
                                                          cursor=first.cursor))
        assert not again.run_requests  # the same files do not start a second run


def test_billing_dates_are_partitions_and_a_backfill_is_idempotent(small_home, monkeypatch):
    """Issue 30 September, then 31 October, then 30 September again (a backfill): the second run
    rewrites the same bytes without rebuilding (the warehouse never moves back). Both customers
    are east of UTC, so September closes on 30 September in UTC (at 22:00 and 15:00)."""
    from orchestration.definitions import defs

    monkeypatch.setenv("METERLINE_HOME", str(small_home.home))
    shutil.copy(FIXTURES / "small_events" / "events.jsonl", small_home.landing_dir)
    job = defs.resolve_job_def("invoices_by_billing_date")
    assert defs.resolve_schedule_def("daily_billing").job_name == "invoices_by_billing_date"
    september = small_home.output_dir / "issued" / "2026-09-30" / "invoices.json"

    def issue(instance, day: str) -> dict:
        result = job.execute_in_process(instance=instance, partition_key=day)
        assert result.success
        [event] = result.get_asset_materialization_events()
        return {k: v.value for k, v in event.materialization.metadata.items()}

    with DagsterInstance.ephemeral() as instance:
        first = issue(instance, "2026-09-30")
        first_bytes = september.read_bytes()
        october = issue(instance, "2026-10-31")
        again = issue(instance, "2026-09-30")
    assert first["built"] is True and october["built"] is True and again["built"] is False
    assert first["files_ingested"] == 1 and again["files_ingested"] == 0
    assert september.read_bytes() == first_bytes
    issued = json.loads(first_bytes)
    assert sorted((i["customer_id"], i["invoice_at"], i["total_amount"]) for i in issued) == [
        ("cus_a", "2026-09-30T22:00:00Z", "7.52"), ("cus_b", "2026-09-30T15:00:00Z", "1501")]
    assert first["invoices"] == 2 and first["total/USD"] == "7.52" and first["total/JPY"] == "1501"
    assert "computed_as_of" not in issued[0]
