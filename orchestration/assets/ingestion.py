"""The catalog and the raw events: loading, the landing-folder sensor, and the GX suite check."""


import hashlib

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    AssetKey,
    AssetSpec,
    MaterializeResult,
    RunRequest,
    SensorEvaluationContext,
    SkipReason,
    asset_check,
    multi_asset,
    sensor,
)

from orchestration import pipeline
from orchestration.catalog import CATALOG_TABLES, read_catalog
from orchestration.ingest import SUPPORTED_SUFFIXES
from orchestration.resources import MeterlineSettings

CATALOG_KEYS = [AssetKey(table.split(".")) for table in CATALOG_TABLES]
RAW_EVENTS = AssetKey(["raw", "events"])
RAW_REJECTS = AssetKey(["raw", "event_rejects"])
RAW_BATCHES = AssetKey(["raw", "ingest_batches"])


@multi_asset(
    specs=[AssetSpec(key, group_name="catalog", description=f"{'.'.join(key.path)}, loaded from the catalog folder")
           for key in CATALOG_KEYS],
    can_subset=False,
)
def price_book(context: AssetExecutionContext, meterline: MeterlineSettings):
    """Validate the catalog folder and load it. An invalid catalog fails here, before any model builds."""
    settings = meterline.settings()
    catalog = read_catalog(settings.catalog_dir)  # raises CatalogError naming file, row, field
    pipeline.load_catalog(settings, catalog)
    counts = {"catalog/billable_metrics": len(catalog.metrics), "catalog/plans": len(catalog.plans),
              "catalog/customers": len(catalog.customers), "catalog/subscriptions": len(catalog.subscriptions)}
    for key in CATALOG_KEYS:
        name = "/".join(key.path)
        metadata = {"fingerprint": catalog.fingerprint}
        if name in counts:
            metadata["rows"] = counts[name]
        yield MaterializeResult(asset_key=key, metadata=metadata)


@multi_asset(
    specs=[
        AssetSpec(RAW_EVENTS, group_name="raw", deps=CATALOG_KEYS,
                  description="Accepted usage events, append-only, each stamped with loaded_at."),
        AssetSpec(RAW_REJECTS, group_name="raw", deps=CATALOG_KEYS,
                  description="Rejected input records, each with a reason code."),
        AssetSpec(RAW_BATCHES, group_name="raw", deps=CATALOG_KEYS, description="One row per ingested file."),
    ],
    can_subset=False,
)
def raw_events(context: AssetExecutionContext, meterline: MeterlineSettings):
    """Ingest the landing folder's files that were not ingested before (by content hash)."""
    settings = meterline.settings()
    files = pipeline.new_landing_files(settings)
    report = pipeline.ingest(settings, files) if files else None
    accepted = report.accepted if report else 0
    rejected = dict(report.rejected_by_reason) if report else {}
    context.log.info(f"ingested {len(files)} file(s): {accepted} accepted, {sum(rejected.values())} rejected")
    yield MaterializeResult(asset_key=RAW_EVENTS, metadata={"files": len(files), "accepted": accepted})
    yield MaterializeResult(asset_key=RAW_REJECTS, metadata={"rejected": sum(rejected.values()),
                                                             **{f"rejected/{k}": v for k, v in rejected.items()}})
    yield MaterializeResult(asset_key=RAW_BATCHES, metadata={"files": len(files)})


@asset_check(asset=RAW_EVENTS, blocking=True,
             description="Great Expectations suite on raw.events, evaluated inside the warehouse.")
def raw_events_expectations(meterline: MeterlineSettings) -> AssetCheckResult:
    from expectations.raw_events import validate_raw_events

    settings = meterline.settings()
    if settings.target == "duckdb":
        url = f"duckdb:///{settings.warehouse_path}"
    else:
        from orchestration.warehouse import postgres_url_from_env

        url = postgres_url_from_env()
    outcome = validate_raw_events(url)
    metadata = {"evaluated_rows": outcome.evaluated_rows or 0}
    for result in outcome.results:
        metadata[f"{result.check_name}/unexpected"] = result.unexpected_count or 0
        if not result.success:
            metadata[f"{result.check_name}/sample"] = ", ".join(str(v) for v in result.partial_unexpected_list)
    return AssetCheckResult(passed=outcome.success, severity=AssetCheckSeverity.ERROR, metadata=metadata)


def _landing_signature(settings) -> dict[str, str]:
    """path -> size:mtime of every supported file in the landing folder (no warehouse access)."""
    if not settings.landing_dir.exists():
        return {}
    return {
        str(p): f"{p.stat().st_size}:{p.stat().st_mtime_ns}"
        for p in sorted(settings.landing_dir.rglob("*"))
        if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES
    }


def build_landing_sensor(job):
    @sensor(job=job, minimum_interval_seconds=30,
            description="Starts a billing run when new or changed files appear in the landing folder.")
    def landing_folder_sensor(context: SensorEvaluationContext, meterline: MeterlineSettings):
        # The sensor never opens the warehouse (a run may hold DuckDB's single write lock); it
        # remembers what it has seen in its cursor, and the run ingests by content hash.
        import json

        seen = json.loads(context.cursor) if context.cursor else {}
        current = _landing_signature(meterline.settings())
        new = {path: sig for path, sig in current.items() if seen.get(path) != sig}
        if not new:
            return SkipReason("no new files in the landing folder")
        context.update_cursor(json.dumps(current))
        run_key = hashlib.sha256(json.dumps(new, sort_keys=True).encode()).hexdigest()[:16]
        return RunRequest(run_key=run_key, tags={"meterline/new_files": str(len(new))})

    return landing_folder_sensor
