"""Accounting sync: finalised invoices and credit notes to Xero and NetSuite, exactly once
(docs/accounting-sync.md).

    books.py        what is sent, read from the issued documents
    mappings.py     catalog/accounting.yml: items, accounts and tax types per line
    sync_ledger.py  accounting.sync_ledger: one row per remote object, written before sending
    sync.py         the engine: lookups after uncertain outcomes, batches, per-element failures
    http.py         tokens, retries (401, 429, 5xx), the errors the engine acts on
    xero.py, netsuite.py   the two providers
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime

import httpx

from orchestration.accounting.books import read_books
from orchestration.accounting.http import RetryPolicy
from orchestration.accounting.mappings import read_mappings
from orchestration.accounting.sync import SyncEngine, SyncReport
from orchestration.accounting.sync_ledger import SyncLedger
from orchestration.settings import Settings
from orchestration.warehouse import connect

log = logging.getLogger(__name__)

PROVIDERS = ("xero", "netsuite")


def _classes(provider_name: str):
    """(configuration, provider) classes of one accounting system, imported when used."""
    if provider_name == "xero":
        from orchestration.accounting.xero import XeroConfig, XeroProvider

        return XeroConfig, XeroProvider
    from orchestration.accounting.netsuite import NetSuiteConfig, NetSuiteProvider

    return NetSuiteConfig, NetSuiteProvider


def sync(settings: Settings, provider_name: str, *, now: Callable[[], datetime], dry_run: bool = False,
         retry_failed_now: bool = False, env: Mapping[str, str] | None = None, policy: RetryPolicy | None = None,
         sleep: Callable[[float], None] | None = None) -> SyncReport:
    """Send what is finalised and not yet in `provider_name`; return what happened. A dry run
    needs no credentials, sends nothing and writes nothing: the report holds the payloads."""
    if provider_name not in PROVIDERS:
        raise ValueError(f"unknown accounting provider {provider_name!r}: one of {', '.join(PROVIDERS)}")
    mappings = read_mappings(settings.catalog_dir)
    with connect(settings, read_only=dry_run and settings.target == "duckdb") as warehouse, \
            httpx.Client() as http:
        books = read_books(warehouse)
        config_class, provider_class = _classes(provider_name)
        if dry_run:
            provider = provider_class(books, mappings, None, tenant="dry-run")
        else:
            config = config_class.from_env(env)
            provider = provider_class(books, mappings, config.session(http, policy=policy, sleep=sleep),
                                      tenant=config.tenant)
            # Credentials refused stop the run here, before any row is marked as being sent.
            provider.session.token.access_token()
        ledger = None if dry_run else SyncLedger(warehouse, provider.name, provider.tenant)
        report = SyncEngine(provider, ledger, now=now, dry_run=dry_run, retry_failed_now=retry_failed_now).run()
        records = {} if ledger is None else ledger.records()
        for object_type, local_id, number in getattr(provider, "not_supported", []):
            record = records.get((object_type, local_id))
            if record is not None and record.remote_id:
                # NetSuite's record API cannot void: a person voids it there (docs/accounting-sync.md).
                report.counts[("void", "not_supported")] += 1
                log.warning("%s: %s %s was voided after it was sent: void it in %s by hand", provider_name,
                            object_type, number, provider_name)
    log.info("%s sync%s: %s", provider_name, " (dry run)" if dry_run else "", dict(report.counts))
    return report
