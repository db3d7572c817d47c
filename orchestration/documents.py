"""Invoice and credit note documents: one PDF per finalised invoice and credit note, rendered
from HTML templates (orchestration/templates, Jinja) by WeasyPrint.

Only finalised documents get a PDF: a draft has no number and still changes. A finalised
document never changes, except that a void stamps it VOID, so each PDF is written once and
again only when its HTML changes: <output>/documents/manifest.json keeps the sha256 of the
HTML each PDF was made from, and a re-run renders nothing new.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Iterator

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from orchestration.exports import fetch_credit_notes, fetch_invoices, format_decimal, format_money
from orchestration.settings import Settings
from orchestration.warehouse import Warehouse, connect

log = logging.getLogger(__name__)

TITLES = {"progressive_billing": "Invoice (usage to date)", "correction": "Invoice (corrections)",
          "credit_purchase": "Invoice (prepaid credits)"}


def _environment() -> Environment:
    return Environment(loader=PackageLoader("orchestration", "templates"), autoescape=select_autoescape(["j2"]),
                       undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def _parties(warehouse: Warehouse) -> tuple[dict[str, dict], dict[str, dict]]:
    """Billing entities by code (with their address as lines) and customers by id."""
    entities = {}
    for code, name, address in warehouse.query("select billing_entity_code, name, address from catalog.billing_entities"):
        entities[code] = {"code": code, "name": name,
                          "address_lines": [part.strip() for part in (address or "").splitlines() if part.strip()]}
    columns = ["customer_id", "customer_name", "email", "country", "billing_entity_code"]
    customers = {row[0]: dict(zip(columns, row)) for row in warehouse.query(
        f"select {', '.join(columns)} from staging.stg_catalog__customers")}
    return entities, customers


def render_invoice(invoice: dict[str, Any], entity: dict, customer: dict) -> str:
    """The HTML of one invoice (an exported invoice: `meterline invoices --format json`)."""
    lines = [{**line, "tax_rate": line["tax_rate"] if Decimal(line["tax_rate"]) else ""} for line in invoice["lines"]]
    return _environment().get_template("invoice.html.j2").render(
        invoice={**invoice, "has_progressive": bool(Decimal(invoice["progressive_billing_credit_amount"]))},
        lines=lines, entity=entity, customer=customer, voided=invoice["status"] == "voided",
        title=TITLES.get(invoice["invoice_kind"], "Invoice"), document_number=invoice["invoice_number"])


def render_credit_note(note: dict[str, Any], items: list[dict], entity: dict, customer: dict,
                       invoice_number: str | None) -> str:
    """The HTML of one credit note; `items` are its credited lines (one for an automatic note)."""
    return _environment().get_template("credit_note.html.j2").render(
        note=note, items=items, entity=entity, customer=customer, invoice_number=invoice_number,
        voided=note["status"] == "voided", document_number=note["credit_note_number"])


def _render_all(htmls: list[str]) -> Iterator[bytes]:
    """PDFs in order. A PDF takes a few tenths of a second (mostly subsetting its fonts), so a
    first run's hundreds of documents are rendered on every core."""
    workers = min(os.cpu_count() or 1, 4)
    if len(htmls) < 8 or workers == 1:
        yield from map(html_to_pdf, htmls)
        return
    # Spawned, not forked: the caller has DuckDB's and others' threads running, and a forked
    # child of a threaded process can crash in any C library (it did, in font subsetting).
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield from pool.map(html_to_pdf, htmls, chunksize=4)


def html_to_pdf(html: str) -> bytes:
    from weasyprint import HTML

    # Without libharfbuzz-subset (not on every machine) WeasyPrint subsets fonts with fontTools
    # and says so for every font of every document: the PDFs are the same, the warning is noise.
    logging.getLogger("weasyprint").setLevel(logging.ERROR)

    return HTML(string=html).write_pdf()


def _credit_note_items(warehouse: Warehouse, notes: list[dict], exponents: dict[str, int]) -> dict[str, list[dict]]:
    items: dict[str, list[dict]] = defaultdict(list)
    currency = {note["credit_note_id"]: note["currency"] for note in notes}
    for credit_note_id, description, amount, tax_rate in warehouse.query(
            "select credit_note_id, description, amount, tax_rate from ledger.credit_note_items "
            "order by credit_note_id, invoice_line_id"):
        if credit_note_id in currency:
            items[credit_note_id].append({
                "description": description, "amount": format_money(amount, exponents[currency[credit_note_id]]),
                "tax_rate": format_decimal(tax_rate) if tax_rate else ""})
    for note in notes:  # an automatic credit note is one item: what it says it credits
        if not items[note["credit_note_id"]]:
            items[note["credit_note_id"]] = [{"description": note["description"], "amount": note["amount"],
                                              "tax_rate": ""}]
    return items


@dataclass
class DocumentsResult:
    folder: Path
    written: list[Path] = field(default_factory=list)
    unchanged: int = 0

    @property
    def total(self) -> int:
        return len(self.written) + self.unchanged


def write_documents(settings: Settings, progress: Callable[[int], Callable[[], None]] | None = None) -> DocumentsResult:
    """A PDF for every finalised (or voided) invoice and credit note, under
    <output>/documents/invoices/NUMBER.pdf and <output>/documents/credit_notes/NUMBER.pdf.
    `progress(total)` may return a function called after each document (a progress bar)."""
    from orchestration.catalog import known_currencies

    folder = settings.output_dir / "documents"
    exponents = known_currencies()
    with connect(settings, read_only=settings.target == "duckdb") as warehouse:
        if not warehouse.table_exists("ledger", "invoices"):
            return DocumentsResult(folder)
        entities, customers = _parties(warehouse)
        invoices = [i for i in fetch_invoices(warehouse) if i["invoice_number"]]
        notes = [n for n in fetch_credit_notes(warehouse) if n["credit_note_number"]]
        items = _credit_note_items(warehouse, notes, exponents)
        numbers = dict(warehouse.query("select invoice_id, invoice_number from ledger.invoices"))
    manifest_path = folder / "manifest.json"
    manifest: dict[str, str] = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    result = DocumentsResult(folder)
    documents: list[tuple[str, str]] = []
    for invoice in invoices:
        customer = customers[invoice["customer_id"]]
        documents.append((f"invoices/{invoice['invoice_number']}.pdf",
                          render_invoice(invoice, entities[customer["billing_entity_code"]], customer)))
    for note in notes:
        customer = customers[note["customer_id"]]
        documents.append((f"credit_notes/{note['credit_note_number']}.pdf",
                          render_credit_note(note, items[note["credit_note_id"]],
                                             entities[customer["billing_entity_code"]], customer,
                                             numbers.get(note["invoice_id"]))))
    changed = [(relative, html, hashlib.sha256(html.encode()).hexdigest()) for relative, html in documents]
    changed = [(relative, html, digest) for relative, html, digest in changed
               if manifest.get(relative) != digest or not (folder / relative).exists()]
    result.unchanged = len(documents) - len(changed)
    advance = progress(len(changed)) if progress and changed else None
    for (relative, _, digest), pdf in zip(changed, _render_all([html for _, html, _ in changed])):
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pdf)
        manifest[relative] = digest
        result.written.append(path)
        if advance:
            advance()
    folder.mkdir(parents=True, exist_ok=True)
    manifest_path.write_text(json.dumps(dict(sorted(manifest.items())), indent=1) + "\n")
    log.info("documents: %d written, %d unchanged", len(result.written), result.unchanged)
    return result
