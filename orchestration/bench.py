"""`meterline bench`: the pipeline's cost measured against a floor in the same run.

The events are the demo's, as a Parquet lake partitioned by date (read in place). The floor is
one bare DuckDB group-by of those files by subscription, metric and month: the least any engine
must do to read and count them. Measured side by side, and reported as ratios (absolute times
depend on the machine; ratios travel):

- rating: every period rated from the deduplicated events (the metering path from the
  calendar to the fees, full refresh, deduplication verdicts kept);
- full rebuild: the same from the raw files with the deduplication redone (the key index of
  earlier loads is kept: it depends on nothing but the raw events, int_event_keys);
- incremental day: one more day of events registered and metered (same models, incremental),
  as a ratio of the full rebuild;
- peak memory of every process that billed (dbt and the registration), and the DuckDB memory
  limit they ran under;
- the same small workload on DuckDB, PostgreSQL and Spark, side by side.

Every dbt stage's per-model timings are kept beside bench-N.json's data (run_results/STAGE.json
in the bench's home): where a ratio comes from, model by model.

Each measured step runs in a child process: its peak resident memory is its own (os.wait4), and
dbt's start-up (parsing the project, a constant) is reported apart from the models' time.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import duckdb
from rich.console import Console
from rich.table import Table

from orchestration import pipeline
from orchestration.settings import Settings, get_settings

AS_OF = datetime(2026, 11, 20, 12, 0, 0)
# The models that meter and rate events, from the calendar to the fees (every period): what
# "rating" measures. A dbt selection: downstream of the calendar and upstream of the fees.
RATING_SELECT = ["int_metering_calendar+,+int_fees"]
# The same with the deduplication (contenders, verdicts) and the key index's new loads.
METERING_SELECT = ["int_event_contenders+,+int_fees", "int_metering_calendar", "int_event_keys"]


@dataclass
class Stage:
    name: str
    wall_seconds: float
    """The whole child process: dbt's start-up included."""
    models_seconds: float | None = None
    """dbt only: from the first model's start to the last one's end (run_results.json)."""
    peak_memory_mib: float = 0.0
    slowest: list[dict[str, Any]] = field(default_factory=list)
    run_results: str | None = None
    """dbt only: every model's and test's timing in this stage, a copy of dbt's run_results.json
    (relative to the bench's home; the next dbt command overwrites dbt's own)."""


class BenchError(RuntimeError):
    pass


def _measured(command: list[str], env: dict[str, str] | None = None) -> tuple[int, str, float, float]:
    """Run a child; return its exit code, output, wall seconds and peak resident MiB."""
    start = time.perf_counter()
    with open(os.devnull, "rb") as stdin:
        proc = subprocess.Popen(command, env=env, cwd=pipeline.PROJECT_DIR, stdin=stdin,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        output = proc.stdout.read() if proc.stdout else ""
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    # ru_maxrss: KiB on Linux, of the child and the descendants it waited for.
    return proc.returncode, output, wall, usage.ru_maxrss / 1024


def _models_span(run_results: Path) -> tuple[float | None, list[dict[str, Any]]]:
    """First model start to last model end, and the slowest models, of one dbt command."""
    results = json.loads(run_results.read_text())["results"]
    starts, ends = [], []
    for result in results:
        for step in result.get("timing", []):
            if step.get("started_at") and step.get("completed_at"):
                starts.append(datetime.fromisoformat(step["started_at"].replace("Z", "+00:00")))
                ends.append(datetime.fromisoformat(step["completed_at"].replace("Z", "+00:00")))
    span = (max(ends) - min(starts)).total_seconds() if starts else None
    slowest = sorted(results, key=lambda r: -r["execution_time"])[:6]
    return span, [{"node": r["unique_id"].split(".", 2)[-1], "seconds": round(r["execution_time"], 2)}
                  for r in slowest]


def dbt_stage(settings: Settings, key: str, name: str, args: list[str], as_of: datetime,
              console: Console | None) -> Stage:
    command, env = pipeline.dbt_command(settings, args, as_of=as_of)
    with (console.status(name) if console else _quiet()):
        code, output, wall, peak = _measured(command, env)
    if code != 0:
        raise BenchError(f"{name}: dbt {' '.join(args)} failed:\n" + "\n".join(output.splitlines()[-30:]))
    kept = Path("run_results") / f"{key}.json"
    (settings.home / kept).parent.mkdir(exist_ok=True)
    shutil.copyfile(settings.home / "dbt" / "target" / "run_results.json", settings.home / kept)
    span, slowest = _models_span(settings.home / kept)
    stage = Stage(name, round(wall, 3), round(span, 3) if span is not None else None, round(peak, 1), slowest,
                  str(kept))
    if console:
        console.print(f"{name}: {stage.models_seconds:.2f} s of models ({wall:.2f} s with dbt's start-up), "
                      f"peak {peak:,.0f} MiB")
    return stage


def python_stage(name: str, step: str, console: Console | None, env: dict[str, str] | None = None,
                 **arguments: Any) -> tuple[Stage, Any]:
    """One of this module's child steps (`python -m orchestration.bench STEP JSON`)."""
    command = [sys.executable, "-m", "orchestration.bench", step, json.dumps(arguments, default=str)]
    with (console.status(name) if console else _quiet()):
        code, output, wall, peak = _measured(command, env)
    if code != 0:
        raise BenchError(f"{name} failed:\n" + "\n".join(output.splitlines()[-30:]))
    lines = [line for line in output.splitlines() if line.startswith("RESULT ")]
    result = json.loads(lines[-1].removeprefix("RESULT ")) if lines else None
    stage = Stage(name, round(wall, 3), peak_memory_mib=round(peak, 1))
    if console:
        console.print(f"{name}: {wall:.2f} s, peak {peak:,.0f} MiB")
    return stage, result


class _quiet:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


# DuckDB may draw a progress bar for a query over 2 s (it did when the bench ran under
# `python -c`): not in the report, and not in the floor's time.
QUIET = "set enable_progress_bar = false"

FLOOR_SQL = """
    select count(*) from (
        select external_subscription_id, code, date_trunc('month', cast("timestamp" as timestamp)) as month,
            count(*) as events
        from read_parquet('{files}')
        group by all
    )
"""


def measure_floor(lake: Path, memory_limit: str, repeats: int = 3) -> float:
    """Best of `repeats` bare group-bys over the lake's files (the first warms the file cache),
    with the memory limit and threads the models run with."""
    best = float("inf")
    with duckdb.connect() as con:
        con.execute(f"set memory_limit = '{memory_limit}'")
        con.execute("set TimeZone = 'UTC'")
        con.execute(QUIET)
        for _ in range(repeats):
            start = time.perf_counter()
            con.execute(FLOOR_SQL.format(files=lake / "**" / "*.parquet")).fetchone()
            best = min(best, time.perf_counter() - start)
    return best


def write_next_day(source_day: Path, target: Path) -> int:
    """A copy of the last day's events shifted one day later, with new transaction ids.

    Seat removals and storage deletions are left out: repeated a day later they would remove
    what the copy never added (a storage level below zero)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect() as con:
        con.execute("set TimeZone = 'UTC'")
        con.execute(QUIET)
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


def _lake_from_landing(landing: Path, lake: Path) -> list[Path]:
    """The generated daily files as a lake partitioned by date."""
    files = []
    for day in sorted(landing.glob("events-*.parquet")):
        partition = lake / f"date={day.stem.removeprefix('events-')}"
        partition.mkdir(parents=True, exist_ok=True)
        shutil.move(str(day), partition / "part-0.parquet")
        files.append(partition / "part-0.parquet")
    return files


def run_benchmark(out: Path, *, events: int, customers: int = 200, seed: int = 7,
                  memory_limit: str | None = None, engines: bool = True, engine_events: int = 100_000,
                  console: Console | None = None) -> dict[str, Any]:
    home = out / f"events-{events}"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    memory_limit = memory_limit or os.environ.get("METERLINE_DUCKDB_MEMORY_LIMIT", "3GB")
    settings = Settings(home=home, target="duckdb", warehouse_path=home / "warehouse.duckdb",
                        duckdb_memory_limit=memory_limit)
    stages: dict[str, Stage] = {}

    stages["generate"], _ = python_stage("generate", "generate", console, home=str(home), customers=customers,
                                         events=events, seed=seed)
    lake = home / "lake"
    days = _lake_from_landing(settings.landing_dir, lake)
    next_day = out / f"next-day-{events}" / "date=next" / "part-0.parquet"
    shutil.rmtree(next_day.parent.parent, ignore_errors=True)
    next_day_events = write_next_day(days[-1], next_day)

    child_env = {**os.environ, **settings.dbt_env()}

    def dbt(key: str, name: str, args: list[str], as_of: datetime) -> None:
        stages[key] = dbt_stage(settings, key, name, args, as_of, console)

    stages["register"], _ = python_stage("register the lake (validate every file once)", "register", console,
                                         env=child_env, home=str(home), lake=str(lake))
    dbt("first_build", "first build: every model and test, key index included", ["build", "--full-refresh"], AS_OF)
    with pipeline.connect(settings) as warehouse:
        pipeline.record_run(warehouse, AS_OF, True, pipeline.utc_now(), None,
                            pipeline.key_index_fingerprint(settings))

    floor = measure_floor(lake, memory_limit)
    if console:
        console.print(f"floor (bare group-by over the lake's files): {floor:.2f} s")
    dbt("full_rebuild", "full rebuild from the raw files (deduplication included)",
        ["run", "--full-refresh", "--select", *METERING_SELECT], AS_OF)
    dbt("rating", "rating every period from the deduplicated events",
        ["run", "--full-refresh", "--select", *RATING_SELECT], AS_OF)
    floor_after = measure_floor(lake, memory_limit)

    # One more day: registered, then metered incrementally (the same models).
    shutil.move(str(next_day.parent), lake / "date=next")
    shutil.rmtree(next_day.parent.parent, ignore_errors=True)
    time.sleep(1)  # a later loaded_at second than the first registration's
    stages["register_day"], _ = python_stage("register the new day", "register", console, env=child_env,
                                             home=str(home), lake=str(lake))
    next_as_of = AS_OF + timedelta(days=1)
    dbt("incremental_day", "incremental day (metering and rating)", ["run", "--select", *METERING_SELECT], next_as_of)
    dbt("daily_build", "the rest of the daily build: invoices, taxes, revenue, tests", [*pipeline.BUILD_COMMAND],
        next_as_of)

    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        con.execute(QUIET)
        raw_events = con.execute("select count(*) from raw.events").fetchone()[0]
        invoices = con.execute("select count(*) from marts.fct_invoices").fetchone()[0]
        duplicates = con.execute("select count(*) from intermediate.int_event_duplicates").fetchone()[0]
        by_aggregation = dict(con.execute(
            """
            select metrics.aggregation, sum(increments.event_count)
            from intermediate.int_usage_increments as increments
            inner join catalog.billable_metrics as metrics on increments.metric_code = metrics.metric_code
            group by 1 order by 2 desc
            """).fetchall())

    engine_results = run_engines(out, events=engine_events, seed=seed, console=console) if engines else None

    full = stages["full_rebuild"].models_seconds
    measured_peaks = {name: stage.peak_memory_mib for name, stage in stages.items() if name != "generate"}
    result = {
        "events_requested": events,
        "raw_events": raw_events,
        "duplicates": duplicates,
        "next_day_events": next_day_events,
        "events_by_aggregation": {k: int(v) for k, v in by_aggregation.items()},
        "invoices": invoices,
        "duckdb_memory_limit": memory_limit,
        "floor_seconds": round(floor, 3),
        "floor_seconds_after": round(floor_after, 3),
        "ratios": {
            "rating_to_floor": round(stages["rating"].models_seconds / floor, 2),
            "full_rebuild_to_floor": round(full / floor, 2),
            "incremental_day_to_full_rebuild": round(stages["incremental_day"].models_seconds / full, 4),
            "first_build_to_floor": round(stages["first_build"].models_seconds / floor, 2),
            "register_to_floor": round(stages["register"].wall_seconds / floor, 2),
        },
        "peak_memory_mib": max(measured_peaks.values()),
        "stages": {name: asdict(stage) for name, stage in stages.items()},
        "engines": engine_results,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "duckdb": duckdb.__version__},
        "measured_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    (out / f"bench-{events}.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def _first_error(text: str) -> str:
    """The line naming what failed and the one after it (dbt prints the cause there), else the
    last line: what a reader of bench-N.json needs to see."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for index, line in enumerate(lines):
        if " Error in " in line or line.startswith(("Runtime Error", "Database Error", "Compilation Error")):
            return " ".join(lines[index:index + 2])
    return lines[-1] if lines else text


def run_engines(out: Path, *, events: int, seed: int, console: Console | None,
                targets: tuple[str, ...] = ("duckdb", "postgres", "spark")) -> dict[str, Any]:
    """The same small demo billed on DuckDB, PostgreSQL and Spark: catalog and events loaded,
    then the models from the raw events to the fees (what every target builds today, see
    docs/engines.md) built from scratch, each engine in its own process."""
    from orchestration.demo.generator import generate_demo
    from orchestration.local_postgres import LocalPostgresError, local_postgres

    source = out / f"engines-{events}"
    shutil.rmtree(source, ignore_errors=True)
    generate_demo(source / "demo", customers=20, events=events, seed=seed,
                  as_of=AS_OF.replace(tzinfo=timezone.utc), overwrite=True)
    results: dict[str, Any] = {}

    def one(target: str, extra_env: dict[str, str]) -> None:
        home = source / target
        shutil.copytree(source / "demo", home)
        env = {**os.environ, **extra_env, "METERLINE_TARGET": target}
        try:
            stage, timing = python_stage(f"small workload on {target}", "engine", console, env=env, home=str(home))
            results[target] = {**timing, "peak_memory_mib": stage.peak_memory_mib}
        except BenchError as error:
            results[target] = {"error": _first_error(str(error))}

    for target in targets:
        if target == "postgres":
            try:
                with local_postgres() as server:
                    one("postgres", server.env())
            except LocalPostgresError as error:
                results["postgres"] = {"error": str(error)}
        else:
            one(target, {})
    base = results.get("duckdb", {}).get("build_seconds")
    for timing in results.values():
        if base and timing.get("build_seconds"):
            timing["build_to_duckdb"] = round(timing["build_seconds"] / base, 2)
    return results


def print_summary(result: dict[str, Any], console: Console) -> None:
    ratios, stages = result["ratios"], result["stages"]
    table = Table(title=f"{result['raw_events']:,} events, floor {result['floor_seconds']:.2f} s "
                        f"(bare group-by over the lake's files)")
    table.add_column("step")
    table.add_column("models s", justify="right")
    table.add_column("with dbt start-up s", justify="right")
    table.add_column("ratio", justify="right")
    table.add_column("peak MiB", justify="right")
    rows = [("rating every period", "rating", f"{ratios['rating_to_floor']}x floor"),
            ("full rebuild from raw files", "full_rebuild", f"{ratios['full_rebuild_to_floor']}x floor"),
            ("incremental day", "incremental_day", f"{ratios['incremental_day_to_full_rebuild']:.1%} of full"),
            ("first build, everything", "first_build", f"{ratios['first_build_to_floor']}x floor"),
            ("daily build, the rest", "daily_build", ""),
            ("registering the lake", "register", f"{ratios['register_to_floor']}x floor")]
    for label, key, ratio in rows:
        stage = stages[key]
        models = stage.get("models_seconds")
        table.add_row(label, f"{models:.2f}" if models is not None else "", f"{stage['wall_seconds']:.2f}", ratio,
                      f"{stage['peak_memory_mib']:,.0f}")
    console.print(table)
    if result.get("engines"):
        engines = Table(title="The same small workload on each engine (raw events to fees, from scratch)")
        for column in ("engine", "events", "load s", "build s", "x DuckDB", "peak MiB"):
            engines.add_column(column, justify="left" if column == "engine" else "right")
        for engine, timing in result["engines"].items():
            if "error" in timing:
                engines.add_row(engine, "", "", "", timing["error"], "")
                continue
            engines.add_row(engine, f"{timing['events']:,}", f"{timing['load_seconds']:.2f}",
                            f"{timing['build_seconds']:.2f}", f"{timing.get('build_to_duckdb', '')}",
                            f"{timing['peak_memory_mib']:,.0f}")
        console.print(engines)
    console.print(f"peak memory {result['peak_memory_mib']:,.0f} MiB (DuckDB memory limit "
                  f"{result['duckdb_memory_limit']}); details in bench-{result['events_requested']}.json")


# Child steps: `python -m orchestration.bench STEP JSON`; a result is printed as "RESULT <json>".

def _step_generate(home: str, customers: int, events: int, seed: int) -> None:
    from orchestration.demo.generator import generate_demo

    generate_demo(Path(home), customers=customers, events=events, seed=seed,
                  as_of=AS_OF.replace(tzinfo=timezone.utc), overwrite=True)


def _step_register(home: str, lake: str) -> None:
    from orchestration.catalog import read_catalog

    settings = get_settings(home)
    pipeline.load_catalog(settings, read_catalog(settings.catalog_dir))
    report = pipeline.register_lake(settings, Path(lake))
    pipeline.prepare_build(settings)  # the ledger tables dbt reads as sources
    print("RESULT " + json.dumps({"accepted": report.accepted, "rejected": report.rejected}))


def _step_engine(home: str) -> None:
    """Load the catalog and the events, then build raw events to fees from scratch, timed."""
    settings = get_settings(home)
    start = time.perf_counter()
    pipeline.read_and_load_catalog(settings, settings.catalog_dir)
    report = pipeline.ingest(settings, pipeline.new_landing_files(settings), loaded_at=AS_OF)
    pipeline.prepare_build(settings)
    loaded = time.perf_counter()
    # Seeds and models only: the reference seeds (currencies) are parents of the periods.
    pipeline.run_dbt(settings, ["build", "--full-refresh", "--select", "+int_fees",
                                "--resource-type", "seed", "--resource-type", "model"], as_of=AS_OF)
    built = time.perf_counter()
    print("RESULT " + json.dumps({"events": report.accepted, "load_seconds": round(loaded - start, 3),
                                  "build_seconds": round(built - loaded, 3)}))


if __name__ == "__main__":
    steps = {"generate": _step_generate, "register": _step_register, "engine": _step_engine}
    steps[sys.argv[1]](**json.loads(sys.argv[2]))
    sys.stdout.flush()
    os._exit(0)  # Spark's JVM and dbt's threads: leave without waiting for them
