"""`meterline bench`: the pipeline's cost measured against a floor in the same run.

The floor is one bare DuckDB group-by of the same raw events by subscription, metric and
month: the least any engine must do to bill them. Reported as ratios measured side by side
(absolute times depend on the machine; ratios travel). Then one more day of events is
appended and billed incrementally, and its time is reported as a ratio of the full run's.
"""

from __future__ import annotations

import json
import platform
import resource
import shutil
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import duckdb
from rich.console import Console

from orchestration import pipeline
from orchestration.catalog import read_catalog
from orchestration.settings import get_settings

FLOOR_SQL = """
    select external_subscription_id, metric_code, date_trunc('month', event_at) as month, count(*) as events
    from raw.events
    group by all
"""


def _peak_rss_mib() -> dict[str, float]:
    """Peak resident memory of this process and of the largest finished child (dbt), in MiB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"self": round(own, 1), "largest_child": round(children, 1)}


def _timed(label: str, timings: dict[str, float], console: Console | None, action):
    start = time.perf_counter()
    with (console.status(label) if console else _nullcontext()):
        result = action()
    timings[label] = round(time.perf_counter() - start, 3)
    if console:
        console.print(f"{label}: {timings[label]:.2f} s")
    return result


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def measure_floor(warehouse_path: Path, repeats: int = 3) -> float:
    """Best of `repeats` runs of the bare group-by (the first warms the file cache)."""
    best = float("inf")
    with duckdb.connect(str(warehouse_path), read_only=True) as con:
        for _ in range(repeats):
            start = time.perf_counter()
            con.execute(f"select count(*) from ({FLOOR_SQL})").fetchone()
            best = min(best, time.perf_counter() - start)
    return best


def write_next_day(landing: Path, source_day: Path, target: Path) -> int:
    """A copy of the last day's events shifted one day later, with new transaction ids.

    Seat removals and storage deletions are left out: repeated a day later they would remove
    what the copy never added (a storage level below zero)."""
    with duckdb.connect() as con:
        con.execute("set TimeZone = 'UTC'")
        con.execute(
            f"""
            copy (
                select
                    'next_' || transaction_id as transaction_id,
                    external_subscription_id,
                    external_customer_id,
                    code,
                    strftime(cast(timestamp as timestamp) + interval 1 day, '%Y-%m-%dT%H:%M:%SZ') as timestamp,
                    properties
                from read_parquet('{source_day}')
                where not (code = 'seats' and properties like '%"remove"%')
                    and not (code = 'storage_gb' and properties like '%"gb":-%')
            ) to '{target}' (format parquet)
            """
        )
        return con.execute(f"select count(*) from read_parquet('{target}')").fetchone()[0]


def slowest_nodes(settings, top: int = 8) -> list[dict[str, Any]]:
    """The dbt nodes that took longest in the last build (from dbt's run_results.json)."""
    path = settings.home / "dbt" / "target" / "run_results.json"
    results = json.loads(path.read_text())["results"]
    ranked = sorted(results, key=lambda r: -r["execution_time"])[:top]
    return [{"node": r["unique_id"].split(".", 2)[-1], "seconds": round(r["execution_time"], 2)} for r in ranked]


def run_benchmark(out: Path, *, events: int, customers: int = 200, seed: int = 7,
                  console: Console | None = None) -> dict[str, Any]:
    from orchestration.demo.generator import generate_demo

    home = out / f"events-{events}"
    shutil.rmtree(home, ignore_errors=True)
    settings = get_settings(home)
    as_of = datetime(2026, 11, 20, 12, 0, 0)
    timings: dict[str, float] = {}

    summary = _timed("generate", timings, console, lambda: generate_demo(
        home, customers=customers, events=events, seed=seed, as_of=as_of.replace(tzinfo=timezone.utc),
        overwrite=True))
    day_files = sorted(settings.landing_dir.glob("events-*.parquet"))
    last_day = day_files[-1]
    # Keep the next day out of the landing folder until the incremental step.
    staged_next = out / "next-day.parquet"

    catalog = read_catalog(settings.catalog_dir)
    _timed("load_catalog", timings, console, lambda: pipeline.load_catalog(settings, catalog))
    _timed("ingest", timings, console, lambda: pipeline.ingest(
        settings, pipeline.new_landing_files(settings), loaded_at=pipeline.utc_now()))
    _timed("build_full", timings, console, lambda: pipeline.build(settings, as_of, full_refresh=True))
    full_nodes = slowest_nodes(settings)
    full_seconds = timings["load_catalog"] + timings["ingest"] + timings["build_full"]

    floor = measure_floor(settings.warehouse_path)
    timings["floor_group_by"] = round(floor, 3)

    next_day_events = write_next_day(settings.landing_dir, last_day, staged_next)
    shutil.move(str(staged_next), settings.landing_dir / "events-next-day.parquet")
    time.sleep(1)  # a later loaded_at second than the full run's
    _timed("ingest_next_day", timings, console, lambda: pipeline.ingest(
        settings, pipeline.new_landing_files(settings), loaded_at=pipeline.utc_now()))
    _timed("build_incremental", timings, console, lambda: pipeline.build(
        settings, as_of + timedelta(days=1), full_refresh=False))
    incremental_seconds = timings["ingest_next_day"] + timings["build_incremental"]
    incremental_nodes = slowest_nodes(settings)

    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        raw_events = con.execute("select count(*) from raw.events").fetchone()[0]
        invoices = con.execute("select count(*) from marts.fct_invoices").fetchone()[0]
        # The workload: events per aggregation type (every type of docs/billable-metrics.md).
        by_aggregation = dict(con.execute(
            """
            select metrics.aggregation, count(*)
            from raw.events
            inner join catalog.billable_metrics as metrics
                on raw.events.metric_code = metrics.metric_code
            group by 1 order by 2 desc
            """
        ).fetchall())

    result = {
        "events_requested": events,
        "events_generated": summary.events_written,
        "raw_events": raw_events,
        "next_day_events": next_day_events,
        "raw_events_by_aggregation": by_aggregation,
        "invoices": invoices,
        "timings_seconds": timings,
        "full_run_seconds": round(full_seconds, 3),
        "events_per_second": round(summary.events_written / full_seconds),
        "ratio_full_run_to_floor": round(full_seconds / floor, 1),
        "ratio_build_to_floor": round(timings["build_full"] / floor, 1),
        "ratio_incremental_to_full": round(incremental_seconds / full_seconds, 3),
        "peak_memory_mib": _peak_rss_mib(),
        "slowest_dbt_nodes": {"full": full_nodes, "incremental": incremental_nodes},
        "machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version(),
                    "duckdb": duckdb.__version__},
        "measured_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    (out / f"bench-{events}.json").write_text(json.dumps(result, indent=2) + "\n")
    return result
