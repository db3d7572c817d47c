"""`meterline reproduce`: rebuild a finalised invoice from what it recorded, and compare.

A finalised invoice records its events cut-off, the fingerprint of its events, the price-book
fingerprint (whose files the ledger keeps) and the code version. Reproducing it builds a
scratch DuckDB warehouse from exactly that: the raw events loaded at or before the cut-off, the
price book of that fingerprint, and the ledger as it was before that finalisation (earlier
finalised invoices shape later ones: coupon uses, wallet balances, corrections). The scratch
build runs as of the same `as_of`; its invoice, lines, taxes, discounts and wallet credits are
compared with the ledger's, column by column, and its events fingerprint with the recorded one.
The configured warehouse is only read.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from orchestration.ledger import COPIED_TABLES, INVOICE_COLUMNS, LEDGER_TABLES, code_version, ensure_ledger
from orchestration.settings import Settings
from orchestration.warehouse import Warehouse, connect

log = logging.getLogger(__name__)


@dataclass
class Reproduction:
    invoice_id: str
    invoice_number: str
    events_cutoff_at: object
    as_of: object
    events_copied: int
    code_version_recorded: str
    code_version_now: str
    differences: list[tuple[str, str, str, str, str]] = field(default_factory=list)
    """(table, row key, column, issued value, reproduced value)"""

    @property
    def identical(self) -> bool:
        return not self.differences


class ReproduceError(RuntimeError):
    """The invoice cannot be reproduced (unknown, or its price book is missing)."""



def _find_invoice(warehouse: Warehouse, invoice: str) -> dict:
    p = warehouse.placeholder
    columns = ["invoice_id", "invoice_number", "events_cutoff_at", "computed_as_of", "price_book_fingerprint",
               "code_version", "events_fingerprint", "finalisation_id", "finalized_at"]
    rows = warehouse.query(f"select {', '.join(columns)} from ledger.invoices "
                           f"where invoice_number = {p} or invoice_id like {p}", [invoice, f"{invoice}%"])
    if len(rows) != 1:
        raise ReproduceError(f"{len(rows)} finalised invoices match {invoice!r}: give its number or more of its id"
                             if rows else f"no finalised invoice {invoice!r} (only finalised invoices record what "
                                          "they were computed from)")
    return dict(zip(columns, rows[0]))


def _write_price_book(warehouse: Warehouse, fingerprint: str, directory: Path) -> None:
    from orchestration.catalog import PRICE_BOOK_FILES, price_book_fingerprint

    p = warehouse.placeholder
    files = dict(warehouse.query(f"select file_name, content from ledger.price_book_files "
                                 f"where price_book_fingerprint = {p}", [fingerprint]))
    if not files:
        raise ReproduceError(f"the ledger has no price book {fingerprint[:12]}")
    directory.mkdir(parents=True)
    for name, content in files.items():
        (directory / name).write_text(content)
    found = price_book_fingerprint((name, files[name].encode() if name in files else b"") for name in PRICE_BOOK_FILES)
    if found != fingerprint:
        raise ReproduceError(f"the ledger's price book files give fingerprint {found[:12]}, not {fingerprint[:12]}")


def _copy(source: Warehouse, target: Warehouse, table: str, where: str, params: list) -> int:
    """Copy the rows of `table` matching `where` (parameters in the source's style)."""
    data = source.query_arrow(_bind(source, f"select * from {table} where {where}", params))
    if data.num_rows:
        target.append_arrow(table, data)
    return data.num_rows


def _bind(warehouse: Warehouse, sql: str, params: list) -> str:
    """query_arrow takes no parameters: inline these (timestamps and ids we read ourselves)."""
    for value in params:
        sql = sql.replace(warehouse.placeholder, f"'{value}'", 1)
    return sql


def _compare(issued: Warehouse, scratch: Warehouse, invoice_id: str) -> list[tuple[str, str, str, str, str]]:
    differences = []
    tables = [("ledger.invoices", "marts.fct_invoices", INVOICE_COLUMNS, "invoice_id")]
    tables += [(table, mart, columns, columns[0][0]) for table, (mart, columns) in COPIED_TABLES.items()]
    for ledger_table, mart, columns, key in tables:
        names = [name for name, _ in columns if name != "computed_as_of"]
        select = f"select {', '.join(names)} from {{table}} where invoice_id = {{p}}"
        frozen = {row[names.index(key)]: row for row in issued.query(
            select.format(table=ledger_table, p=issued.placeholder), [invoice_id])}
        rebuilt = {row[names.index(key)]: row for row in scratch.query(
            select.format(table=mart, p=scratch.placeholder), [invoice_id])}
        for row_key in sorted(set(frozen) | set(rebuilt)):
            if row_key not in rebuilt:
                differences.append((ledger_table, row_key, "(row)", "present", "missing"))
            elif row_key not in frozen:
                differences.append((ledger_table, row_key, "(row)", "missing", "present"))
            else:
                for name, was, now in zip(names, frozen[row_key], rebuilt[row_key]):
                    if was != now:
                        differences.append((ledger_table, row_key, name, str(was), str(now)))
    return differences


def reproduce(settings: Settings, invoice: str) -> Reproduction:
    from orchestration import pipeline
    from orchestration.catalog import read_catalog
    from orchestration.ingest import ensure_raw_tables
    from orchestration.ledger import EVENTS_FINGERPRINT_SQL

    with connect(settings, read_only=settings.target == "duckdb") as issued, \
            tempfile.TemporaryDirectory(prefix="meterline-reproduce-") as folder:
        recorded = _find_invoice(issued, invoice)
        home = Path(folder)
        _write_price_book(issued, recorded["price_book_fingerprint"], home / "catalog")
        scratch_settings = Settings(home=home, target="duckdb", warehouse_path=home / "warehouse.duckdb",
                                    duckdb_memory_limit=settings.duckdb_memory_limit)
        pipeline.load_catalog(scratch_settings, read_catalog(scratch_settings.catalog_dir))
        p = issued.placeholder
        earlier = [row[0] for row in issued.query(
            f"select finalisation_id from ledger.finalisations where finalisation_sequence < "
            f"(select finalisation_sequence from ledger.finalisations where finalisation_id = {p})",
            [recorded["finalisation_id"]])]
        with connect(scratch_settings) as scratch:
            ensure_raw_tables(scratch)
            ensure_ledger(scratch)
            copied = _copy(issued, scratch, "raw.events", f"loaded_at <= {p}", [recorded["events_cutoff_at"]])
            ids = ", ".join(f"'{i}'" for i in earlier) or "''"
            for table, columns in LEDGER_TABLES.items():
                if "finalisation_id" not in dict(columns) or table == "ledger.credit_notes":
                    continue  # voids, price books, credit note items: below or not needed
                if earlier:
                    _copy(issued, scratch, table, f"finalisation_id in ({ids})", [])
            # Credit notes frozen by earlier finalisations, and manual ones issued before this one.
            _copy(issued, scratch, "ledger.credit_notes",
                  f"finalisation_id in ({ids}) or (origin = 'manual' and finalized_at < {p})",
                  [recorded["finalized_at"]])
            manual = [row[0] for row in issued.query(
                f"select credit_note_id from ledger.credit_notes where origin = 'manual' and finalized_at < {p}",
                [recorded["finalized_at"]])]
            if manual:  # ids are md5 hex digests read from the ledger: safe to inline
                _copy(issued, scratch, "ledger.credit_note_items",
                      f"credit_note_id in ({', '.join(repr(str(i)) for i in manual)})", [])
            # Credit notes voided before this invoice was finalised paid nothing to it.
            _copy(issued, scratch, "ledger.credit_note_voids", f"voided_at < {p}", [recorded["finalized_at"]])
        log.info("reproducing %s from %d events", recorded["invoice_number"], copied)
        pipeline.build(scratch_settings, recorded["computed_as_of"], full_refresh=True)
        with connect(scratch_settings) as scratch:
            differences = _compare(issued, scratch, recorded["invoice_id"])
            scratch.execute("create temporary table ledger_finalising (invoice_id varchar)")
            scratch.execute("insert into ledger_finalising values (?)", [recorded["invoice_id"]])
            rows = scratch.query(EVENTS_FINGERPRINT_SQL)
        fingerprint = rows[0][1] if rows else hashlib.md5(b"").hexdigest()
        if fingerprint != recorded["events_fingerprint"]:
            differences.append(("ledger.invoices", recorded["invoice_id"], "events_fingerprint",
                                recorded["events_fingerprint"], fingerprint))
    return Reproduction(recorded["invoice_id"], recorded["invoice_number"], recorded["events_cutoff_at"],
                        recorded["computed_as_of"], copied, recorded["code_version"], code_version(), differences)
