"""The billing pipeline as plain functions: load the catalog, ingest events, build the models.

The CLI, the Dagster assets, the benchmark and the tests all call these, so there is one
code path. dbt runs as a subprocess of this interpreter's environment: its memory is its
own (the benchmark measures it), and a dbt failure cannot leave this process half-imported.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path

from orchestration.catalog import Catalog, read_catalog, write_catalog
from orchestration.ingest import IngestReport, ensure_raw_tables, expand_paths, file_sha256, ingest_paths
from orchestration.settings import AS_OF_VARIABLE, PROJECT_DIR, Settings
from orchestration.warehouse import Warehouse, connect

log = logging.getLogger(__name__)

RUNS_TABLE_COLUMNS = [
    ("run_id", "varchar"), ("as_of", "timestamp"), ("price_book_fingerprint", "varchar"),
    ("full_refresh", "boolean"), ("started_at", "timestamp"), ("finished_at", "timestamp"),
    ("code_fingerprint", "varchar"),
    # The newest loaded_at in raw.events when the build started: the events cut-off of its invoices.
    ("events_loaded_through", "timestamp"),
    # What the hashes in the key index (int_event_keys) were computed with.
    ("key_index_fingerprint", "varchar"),
]
CODE_PATHS = ("dbt_project.yml", "models", "macros", "seeds")
KEY_INDEX = "intermediate.int_event_keys"
KEY_INDEX_CODE = ("macros/event_keys.sql", "models/intermediate/int_event_keys.sql")


def code_fingerprint() -> str:
    """sha256 over the dbt project's code: a changed model must rebuild the incremental tables."""
    digest = hashlib.sha256()
    for root in CODE_PATHS:
        path = PROJECT_DIR / root
        for file in sorted([path] if path.is_file() else (p for p in path.rglob("*") if p.is_file())):
            digest.update(str(file.relative_to(PROJECT_DIR)).encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()


def key_index_fingerprint(settings: Settings) -> str:
    """sha256 of what the key index's hashes depend on: its SQL and the engine that hashes.

    The index is kept by a full refresh (hashing every event again would be most of one), so a
    change here is the one thing that must rebuild it: DuckDB's hash() may change between
    versions, and old hashes would no longer find new events' duplicates."""
    digest = hashlib.sha256()
    for name in KEY_INDEX_CODE:
        digest.update((PROJECT_DIR / name).read_bytes())
    if settings.target == "duckdb":
        import duckdb

        digest.update(f"duckdb {duckdb.__version__}".encode())
    else:
        digest.update(settings.target.encode())
    return digest.hexdigest()


class DbtError(RuntimeError):
    """A dbt command failed; the message carries the failing nodes from dbt's output."""


def utc_now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0)


def format_as_of(as_of: datetime) -> str:
    if as_of.tzinfo is not None:
        as_of = as_of.astimezone(timezone.utc).replace(tzinfo=None)
    return as_of.strftime("%Y-%m-%d %H:%M:%S")


def dbt_executable() -> str:
    candidate = Path(sys.executable).parent / "dbt"
    return str(candidate) if candidate.exists() else "dbt"


def dbt_command(settings: Settings, args: list[str], *,
                as_of: datetime | None = None) -> tuple[list[str], dict[str, str]]:
    """The dbt command line and environment for `args` against this project and the settings'
    warehouse."""
    # Compiled SQL and logs go under the working folder: runs on two folders never share state.
    command = [dbt_executable(), *args, "--project-dir", str(PROJECT_DIR), "--profiles-dir", str(PROJECT_DIR),
               "--target-path", str(settings.home / "dbt" / "target"), "--log-path", str(settings.home / "dbt" / "logs")]
    # The clock goes in the environment, not in --vars: a changed var makes dbt parse the whole
    # project again (macros/as_of.sql).
    clock = {AS_OF_VARIABLE: format_as_of(as_of)} if as_of is not None else {}
    return command, {**os.environ, **settings.dbt_env(), **clock, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}


def run_dbt(settings: Settings, args: list[str], *, as_of: datetime | None = None,
            capture: bool = True) -> subprocess.CompletedProcess:
    """Run one dbt command against this project and the settings' warehouse."""
    command, env = dbt_command(settings, args, as_of=as_of)
    log.info("running %s", " ".join(command))
    if settings.target == "spark":
        return _run_dbt_in_process(settings, command, args, env.get(AS_OF_VARIABLE))
    result = subprocess.run(command, cwd=PROJECT_DIR, env=env, text=True,
                            stdout=subprocess.PIPE if capture else None,
                            stderr=subprocess.STDOUT if capture else None)
    if result.returncode != 0:
        lines = (result.stdout or "").splitlines()
        # dbt prints "<kind> Error in model X (path)" followed by the indented database message.
        failing: list[str] = []
        for index, line in enumerate(lines):
            if any(word in line for word in ("ERROR", "FAIL ", "Error in", "error:")):
                failing += lines[index:index + 4] if "Error in" in line else [line]
        summary = "\n".join(dict.fromkeys(failing[-60:])) or "\n".join(lines[-60:])
        raise DbtError(f"dbt {' '.join(args)} failed (exit {result.returncode}):\n{summary}")
    return result


def _run_dbt_in_process(settings: Settings, command: list[str], args: list[str],
                        as_of: str | None) -> subprocess.CompletedProcess:
    """dbt in this process, for the Spark target: dbt-spark's session method must share this
    process's SparkSession with the loaders (orchestration/spark.py)."""
    from dbt.cli.main import dbtRunner

    from orchestration.settings import dbt_environment
    from orchestration.spark import spark_session

    spark_session(settings)  # created with the home's metastore before dbt-spark asks for one
    with dbt_environment(settings, as_of):
        result = dbtRunner().invoke(command[1:])
    if not result.success:
        failing = []
        for node in getattr(result.result, "results", None) or []:
            if str(node.status) in ("error", "fail"):
                failing.append(f"{node.node.unique_id}: {node.message}")
        detail = "\n".join(failing[-20:]) or str(result.exception)
        raise DbtError(f"dbt {' '.join(args)} failed on Spark:\n{detail}")
    return subprocess.CompletedProcess(command, 0, "", "")


def load_catalog(settings: Settings, catalog: Catalog, *, loaded_at: datetime | None = None) -> None:
    """Write a validated catalog into the warehouse (replacing the previous one)."""
    with connect(settings) as warehouse:
        write_catalog(warehouse, catalog, loaded_at or utc_now())
        ensure_raw_tables(warehouse)


def loaded_metrics(warehouse: Warehouse):
    """The billable metrics currently loaded, for validating events at ingestion."""
    from orchestration.catalog import BillableMetric

    if not warehouse.table_exists("catalog", "billable_metrics"):
        return {}
    rows = warehouse.query("select metric_code, name, aggregation, field_name from catalog.billable_metrics")
    return {code: BillableMetric.model_construct(code=code, name=name, aggregation=aggregation, field=field)
            for code, name, aggregation, field in rows}


def ingest(settings: Settings, paths: list[Path], *, loaded_at: datetime | None = None,
           on_file=None) -> IngestReport:
    with connect(settings) as warehouse:
        metrics = loaded_metrics(warehouse)
        return ingest_paths(warehouse, paths, metrics, loaded_at=loaded_at or utc_now(), on_file=on_file)


def register_lake(settings: Settings, lake: Path | str, *, loaded_at: datetime | None = None,
                  on_file=None) -> IngestReport:
    """The lake's new Parquet files, validated and read in place (orchestration/lake.py)."""
    from orchestration.lake import register_lake as register

    with connect(settings) as warehouse:
        return register(warehouse, lake, loaded_metrics(warehouse), loaded_at=loaded_at or utc_now(),
                        on_file=on_file)


@dataclass(frozen=True)
class BuildResult:
    as_of: datetime
    full_refresh: bool
    reason: str


def _ensure_runs_table(warehouse: Warehouse) -> None:
    warehouse.execute("create schema if not exists raw")
    ddl = ", ".join(f"{name} {sql_type}" for name, sql_type in RUNS_TABLE_COLUMNS)
    warehouse.execute(f"create table if not exists raw.pipeline_runs ({ddl})")
    existing = warehouse.column_names("raw", "pipeline_runs")
    for name, sql_type in RUNS_TABLE_COLUMNS:
        if name not in existing:  # a warehouse written by an earlier version
            warehouse.execute(f"alter table raw.pipeline_runs add column {name} {sql_type}")


def drop_stale_key_index(settings: Settings) -> bool:
    """Drop the key index when its hashes were made by other code or another engine version (or
    by a build that did not record it); the build that follows indexes every event again, and
    must be a full refresh (True)."""
    schema, table = KEY_INDEX.split(".")
    with connect(settings) as warehouse:
        if not warehouse.table_exists(schema, table):
            return False
        _ensure_runs_table(warehouse)
        rows = warehouse.query("select key_index_fingerprint from raw.pipeline_runs order by finished_at desc limit 1")
        if rows and rows[0][0] == key_index_fingerprint(settings):
            return False
        log.warning("the key index was built by other code or another engine version: rebuilding it")
        warehouse.execute(f"drop table {KEY_INDEX}")
    return True


def _previous_run(warehouse: Warehouse) -> tuple[datetime, str, str | None] | None:
    if not warehouse.table_exists("raw", "pipeline_runs"):
        return None
    _ensure_runs_table(warehouse)
    rows = warehouse.query("select as_of, price_book_fingerprint, code_fingerprint from raw.pipeline_runs "
                           "order by finished_at desc limit 1")
    return (rows[0][0], rows[0][1], rows[0][2]) if rows else None


def last_as_of(settings: Settings) -> datetime | None:
    """The as_of of the last build, if any."""
    with connect(settings) as warehouse:
        previous = _previous_run(warehouse)
    return previous[0] if previous else None


def needs_full_refresh(settings: Settings, as_of: datetime) -> tuple[bool, str]:
    """Incremental models stay correct while the catalog is unchanged and time only moves on."""
    with connect(settings) as warehouse:
        previous = _previous_run(warehouse)
        fingerprint_rows = (warehouse.query("select fingerprint from catalog.price_book_versions")
                            if warehouse.table_exists("catalog", "price_book_versions") else [])
    if previous is None:
        return True, "first build"
    previous_as_of, previous_fingerprint, previous_code = previous
    current = fingerprint_rows[0][0] if fingerprint_rows else None
    if current != previous_fingerprint:
        return True, "the catalog changed since the last build"
    if previous_code != code_fingerprint():
        return True, "the models changed since the last build"
    if as_of.replace(tzinfo=None) < previous_as_of:
        return True, "as_of is earlier than the last build's"
    return False, "incremental"


# A billing build: seeds, models and data tests. Not the dbt unit tests: they check the models'
# SQL on fixed inputs, so they cannot fail on new data; they run in `make test`
# (tests/test_dbt_unit_tests.py) and in the engines' parity tests, not in every daily build
# (17 of them took 6 s of a 35 s daily build at 100M events).
BUILD_COMMAND = ("build", "--exclude-resource-type", "unit_test")


def build(settings: Settings, as_of: datetime, *, full_refresh: bool | None = None,
          select: str | None = None) -> BuildResult:
    """`dbt build` (seeds, models, tests) as of `as_of`; full refresh when it is needed."""
    as_of = as_of.replace(tzinfo=None) if as_of.tzinfo is None else as_of.astimezone(timezone.utc).replace(tzinfo=None)
    if full_refresh is None:
        full_refresh, reason = needs_full_refresh(settings, as_of)
    else:
        reason = "requested" if full_refresh else "incremental (requested)"
    started = utc_now()
    loaded_through = prepare_build(settings)
    if select is None and drop_stale_key_index(settings) and not full_refresh:
        full_refresh, reason = True, "the key index is rebuilt"
    args = [*BUILD_COMMAND] + (["--full-refresh"] if full_refresh else []) + (["--select", select] if select else [])
    run_dbt(settings, args, as_of=as_of)
    if select is None:  # a partial build (after a finalisation) is not a build of the events
        with connect(settings) as warehouse:
            record_run(warehouse, as_of, full_refresh, started, loaded_through, key_index_fingerprint(settings))
    return BuildResult(as_of, full_refresh, reason)


def prepare_build(settings: Settings) -> datetime | None:
    """Before dbt runs: the ledger tables exist (dbt reads them as sources), and the events
    cut-off of this build is taken (what is loaded later is not in it)."""
    from orchestration.ledger import ensure_ledger, events_loaded_through

    with connect(settings) as warehouse:
        ensure_raw_tables(warehouse)
        ensure_ledger(warehouse)
        return events_loaded_through(warehouse)


def finalise(settings: Settings, *, accept_usage_cliffs: bool = False):
    """Finalise the invoices whose grace period ended (orchestration/ledger.py), then rebuild the
    marts, which read finalised invoices from the ledger, as of the same build."""
    from orchestration.ledger import finalise as finalise_invoices

    done = finalise_invoices(settings, accept_usage_cliffs=accept_usage_cliffs)
    if done.finalisation_id:
        rebuild_from_ledger(settings, done.as_of)
    return done


LEDGER_DEPENDENTS = "source:ledger+"
"""The models that read the ledger, and everything built on them: what a change to the ledger
(a finalisation, a void, a credit note) makes stale. The events' deduplication and matching
are not among them."""


def rebuild_from_ledger(settings: Settings, as_of: datetime | None = None) -> None:
    """Rebuild what reads the ledger, as of the last build (nothing when nothing was built)."""
    as_of = as_of or last_as_of(settings)
    if as_of is not None:
        build(settings, as_of, full_refresh=False, select=LEDGER_DEPENDENTS)


def record_run(warehouse: Warehouse, as_of: datetime, full_refresh: bool, started: datetime,
               loaded_through: datetime | None, key_index: str | None = None) -> None:
    _ensure_runs_table(warehouse)
    fingerprint = warehouse.query("select fingerprint from catalog.price_book_versions")[0][0]
    placeholder = warehouse.placeholder
    names = ", ".join(name for name, _ in RUNS_TABLE_COLUMNS)
    warehouse.execute(
        f"insert into raw.pipeline_runs ({names}) values ({', '.join([placeholder] * len(RUNS_TABLE_COLUMNS))})",
        [f"{format_as_of(started)}|{format_as_of(as_of)}", as_of, fingerprint, full_refresh, started, utc_now(),
         code_fingerprint(), loaded_through, key_index],
    )


def new_landing_files(settings: Settings) -> list[Path]:
    """Files in the landing folder whose content has not been ingested yet (by sha256).

    A file dropped twice under two names is ingested once; a file whose content changed is
    ingested again, and deduplication keeps its events from being billed twice.
    """
    if not settings.landing_dir.exists():
        return []
    files = expand_paths([settings.landing_dir])
    with connect(settings) as warehouse:
        ensure_raw_tables(warehouse)
        seen = {row[0] for row in warehouse.query("select distinct file_sha256 from raw.ingest_batches")}
    fresh, hashes = [], set()
    for path in files:
        digest = file_sha256(path)
        if digest not in seen and digest not in hashes:
            fresh.append(path)
            hashes.add(digest)
    return fresh


def export(settings: Settings) -> dict[str, Path]:
    """Write every invoice as JSON and CSV, and the credit notes as JSON, under <home>/output."""
    from orchestration.exports import fetch_credit_notes, fetch_invoices, write_invoice_files

    with connect(settings, read_only=settings.target == "duckdb") as warehouse:
        invoices = fetch_invoices(warehouse)
        credit_notes = fetch_credit_notes(warehouse)
    outputs = write_invoice_files(settings.output_dir, invoices)
    outputs["credit_notes"] = settings.output_dir / "credit_notes.json"
    outputs["credit_notes"].write_text(json.dumps(credit_notes, indent=2) + "\n")
    return outputs


@dataclass(frozen=True)
class BillingDateResult:
    billing_date: date
    as_of: datetime  # the warehouse's as_of the invoices were read from (>= the day's end)
    built: BuildResult | None  # None when the warehouse was already past the day, unchanged
    ingested_files: int
    invoices: list[dict]
    outputs: dict[str, Path]


def bill_billing_date(settings: Settings, billing_date: date) -> BillingDateResult:
    """Issue the invoices of one billing date: those whose invoice_at falls in that UTC day
    (the periods that ended then, and in-advance fees that started then).

    The catalog and any new landing files are loaded first. The closed invoices of a day are
    the same for every as_of at or after the day's end (as_of decides what is closed, not what
    an issued invoice contains), so the warehouse only ever moves forward: it is built as of
    max(the day's end, its last as_of) when new data arrived, the catalog or models changed, or
    it is behind the day; otherwise the day's invoices are read as they are. Re-running or
    backfilling a date therefore writes the same files, and stays incremental.
    """
    day_start = datetime.combine(billing_date, time())
    day_end = day_start + timedelta(days=1)
    catalog = read_catalog(settings.catalog_dir)
    load_catalog(settings, catalog)
    files = new_landing_files(settings)
    if files:
        ingest(settings, files)
    with connect(settings) as warehouse:
        previous = _previous_run(warehouse)
    as_of = max(day_end, previous[0]) if previous else day_end
    built = None
    if previous is None or files or previous[0] < day_end or needs_full_refresh(settings, as_of)[0]:
        built = build(settings, as_of)
    from orchestration.exports import fetch_invoices, write_billing_date_files

    with connect(settings, read_only=settings.target == "duckdb") as warehouse:
        invoices = fetch_invoices(warehouse, status="issued", issued_between=(day_start, day_end))
    outputs = write_billing_date_files(settings.output_dir, billing_date, invoices)
    return BillingDateResult(billing_date, as_of, built, len(files), invoices, outputs)


def read_and_load_catalog(settings: Settings, directory: Path, **files: Path | None) -> Catalog:
    catalog = read_catalog(directory, **files)
    load_catalog(settings, catalog)
    return catalog


@dataclass(frozen=True)
class Simulation:
    invoices: list[dict]
    ingest: IngestReport
    as_of: datetime
    credit_notes: list[dict]


def simulate(
    catalog_dir: Path,
    events: list[Path],
    *,
    as_of: datetime,
    customers: Path | None = None,
    subscriptions: Path | None = None,
    applied_coupons: Path | None = None,
) -> Simulation:
    """Bill `events` with the catalog in `catalog_dir` in a scratch DuckDB warehouse.

    Nothing outside the scratch folder is read or written besides the inputs: the configured
    warehouse (DuckDB file or Postgres) is untouched. Raises CatalogError for an invalid catalog.
    """
    import shutil
    import tempfile

    from orchestration.exports import fetch_credit_notes, fetch_invoices

    with tempfile.TemporaryDirectory(prefix="meterline-simulate-") as scratch:
        home = Path(scratch)
        shutil.copytree(catalog_dir, home / "catalog")
        for source, name in ((customers, "customers.csv"), (subscriptions, "subscriptions.csv"),
                             (applied_coupons, "applied_coupons.csv")):
            if source is not None:
                shutil.copyfile(source, home / "catalog" / name)
        settings = Settings(home=home, target="duckdb", warehouse_path=home / "warehouse.duckdb",
                            duckdb_memory_limit=os.environ.get("METERLINE_DUCKDB_MEMORY_LIMIT", "3GB"))
        catalog = read_catalog(settings.catalog_dir)
        load_catalog(settings, catalog)
        report = ingest(settings, expand_paths(list(events)))
        build(settings, as_of, full_refresh=True)
        with connect(settings, read_only=True) as warehouse:
            invoices = fetch_invoices(warehouse)
            credit_notes = fetch_credit_notes(warehouse)
    return Simulation(invoices, report, as_of, credit_notes)
