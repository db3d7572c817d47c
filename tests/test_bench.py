"""`meterline bench` end to end on a small data set: every step runs and the report holds what
docs/engines.md promises (ratios measured in one run, peak memory, the engines side by side).
It checks that the benchmark works, never how fast anything is."""

from __future__ import annotations

import json

import duckdb
from typer.testing import CliRunner

from orchestration.bench import run_engines
from orchestration.cli import app


def test_bench_reports_ratios_from_one_run(tmp_path):
    out = tmp_path / "bench"
    ran = CliRunner().invoke(app, ["bench", "--events", "20000", "--customers", "20", "--no-engines",
                                   "--out", str(out)])
    assert ran.exit_code == 0, ran.output
    assert "floor" in ran.output and "incremental day" in ran.output

    result = json.loads((out / "bench-20000.json").read_text())
    assert result["invoices"] > 0
    assert 0 < result["next_day_events"] < result["raw_events"]
    assert result["duplicates"] > 0, "the generated data repeats some events"
    assert sum(result["events_by_aggregation"].values()) > 0
    for ratio in ("rating_to_floor", "full_rebuild_to_floor", "incremental_day_to_full_rebuild"):
        assert result["ratios"][ratio] > 0, ratio
    kept = {}
    for stage in ("first_build", "full_rebuild", "rating", "incremental_day", "daily_build"):
        assert result["stages"][stage]["models_seconds"] > 0, stage
        assert result["stages"][stage]["peak_memory_mib"] > 0, stage
        # Each stage's own per-model timings are kept, not the last dbt command's.
        kept[stage] = json.loads((out / "events-20000" / result["stages"][stage]["run_results"]).read_text())
        timed = {node["unique_id"].split(".", 2)[-1] for node in kept[stage]["results"]}
        assert {slow["node"] for slow in result["stages"][stage]["slowest"]} <= timed, stage
    assert result["peak_memory_mib"] == max(stage["peak_memory_mib"] for name, stage in result["stages"].items()
                                            if name != "generate")
    assert result["engines"] is None
    assert "int_fees" in {node["unique_id"].split(".")[-1] for node in kept["rating"]["results"]}
    assert not any(node["unique_id"].startswith("test.") for node in kept["rating"]["results"])
    assert any(node["unique_id"].startswith("test.") for node in kept["daily_build"]["results"])

    # The incremental day was billed: its events are in the warehouse the bench leaves.
    warehouse = out / "events-20000" / "warehouse.duckdb"
    with duckdb.connect(str(warehouse), read_only=True) as con:
        [[next_day]] = con.execute(
            "select count(*) from raw.events where loaded_at = (select max(loaded_at) from raw.events)").fetchall()
    assert next_day == result["next_day_events"]


def test_engine_step_bills_the_small_workload(tmp_path):
    results = run_engines(tmp_path, events=2_000, seed=7, console=None, targets=("duckdb",))
    assert set(results) == {"duckdb"}
    assert "error" not in results["duckdb"], results["duckdb"]
    assert results["duckdb"]["events"] > 1_900
    assert results["duckdb"]["build_seconds"] > 0
    assert results["duckdb"]["build_to_duckdb"] == 1.0
