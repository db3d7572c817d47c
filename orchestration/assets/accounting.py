"""Accounting sync (docs/accounting-sync.md): finalised invoices and credit notes to Xero and
NetSuite, one asset per system, downstream of finalisation (itself downstream of the blocking
money checks) and of the documents.

A system whose credentials are not in the environment is skipped, and says so in the metadata.
A sync with failures fails the asset: the UI shows it red with the failures in its metadata,
and the next run (the daily schedule, or a re-execution) retries what is due.
"""

from collections.abc import Callable

from dagster import AssetExecutionContext, AssetKey, AssetsDefinition, Failure, MaterializeResult, MetadataValue, asset

from orchestration import pipeline
from orchestration.resources import MeterlineSettings

CREDENTIALS = {"xero": "METERLINE_XERO_CLIENT_ID", "netsuite": "METERLINE_NETSUITE_CLIENT_ID"}


def _sync_metadata(report) -> dict[str, object]:
    metadata: dict[str, object] = {"configured": True, "tenant": report.tenant, "failures": len(report.failures)}
    for (object_type, outcome), count in sorted(report.counts.items()):
        metadata[f"{object_type}/{outcome}"] = count
    for (object_type, currency), total in sorted(report.synced_totals.items()):
        metadata[f"synced_total/{object_type}/{currency}"] = str(total)
    if report.failures:
        metadata["failed"] = MetadataValue.md("\n".join(
            f"- {f.object_type} {f.local_number or f.local_id} ({f.error_kind}"
            f"{f', HTTP ' + str(f.http_status) if f.http_status else ''}): {f.message}" for f in report.failures[:50]))
    return metadata


def _build_sync_asset(provider: str) -> AssetsDefinition:
    @asset(
        name=f"{provider}_sync",
        deps=[AssetKey("finalised_invoices"), AssetKey("invoice_documents")],
        group_name="accounting",
        description=(f"Finalised invoices, credit notes, their allocations and voids sent to {provider}, each exactly "
                     "once (accounting.sync_ledger). Skipped when its credentials are not in the environment; fails "
                     "when anything failed, and the next run retries it."),
    )
    def sync_asset(context: AssetExecutionContext, meterline: MeterlineSettings) -> MaterializeResult:
        import os

        from orchestration.accounting import sync

        if not os.environ.get(CREDENTIALS[provider]):
            context.log.info(f"{provider}: no credentials ({CREDENTIALS[provider]} and the rest): not synced")
            return MaterializeResult(metadata={"configured": False})
        report = sync(meterline.settings(), provider, now=pipeline.utc_now)
        metadata = _sync_metadata(report)
        if not report.ok:
            raise Failure(description=f"{provider} sync: {len(report.failures)} failure(s); the next run retries "
                                      "what is due (meterline sync --help)", metadata=metadata)
        return MaterializeResult(metadata=metadata)

    return sync_asset


xero_sync: Callable = _build_sync_asset("xero")
netsuite_sync: Callable = _build_sync_asset("netsuite")
