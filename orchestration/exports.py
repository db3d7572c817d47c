"""Reading invoices out of the marts, and writing them as JSON and CSV files.

Amounts leave the warehouse already rounded (macros/money.sql); here they are only formatted
as decimal strings with the currency's number of decimals, never re-rounded.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from orchestration.catalog import known_currencies
from orchestration.warehouse import Warehouse

INVOICE_FIELDS = [
    "invoice_id", "invoice_number", "status", "invoice_kind", "customer_id", "customer_name", "currency", "issuing_date", "invoice_at",
    "period_start", "period_end", "fees_amount", "progressive_billing_credit_amount", "discount_amount", "subtotal_excluding_taxes", "tax_amount",
    "subtotal_including_taxes", "credit_note_credit_amount", "prepaid_credit_amount", "total_amount", "event_count", "computed_as_of",
    "grace_period_ends_at", "finalized_at", "voided_at",
]
LINE_FIELDS = [
    "line_id", "fee_kind", "metric_code", "description", "service_period_start", "service_period_end",
    "quantity", "unit_amount", "amount", "precise_amount", "progressive_billing_credit_amount",
    "precise_discount_amount", "tax_rate", "precise_tax_amount", "precise_total_amount", "precise_credit_amount",
    "event_count",
]
MONEY_FIELDS = {"fees_amount", "progressive_billing_credit_amount", "discount_amount", "subtotal_excluding_taxes", "tax_amount", "subtotal_including_taxes",
                "credit_note_credit_amount", "prepaid_credit_amount", "total_amount", "amount"}


ISSUED = ("closed", "finalized")
"""Invoices whose date has passed and that count: closed (not finalised yet) and finalized.
Drafts are still accruing; voided invoices were cancelled (docs/invoice-lifecycle.md)."""


def status_filter(column: str, status: str, placeholder: str) -> tuple[str, list[str]]:
    """SQL condition and parameters for one status, or `issued` for closed and finalized."""
    statuses = list(ISSUED) if status == "issued" else [status]
    return f"{column} in ({', '.join([placeholder] * len(statuses))})", statuses


def format_money(value: Decimal, minor_unit: int) -> str:
    """A rounded amount as text with exactly the currency's decimals (exact: no rounding here)."""
    quantized = value.quantize(Decimal(1).scaleb(-minor_unit))
    if quantized != value:
        raise ValueError(f"{value} is not rounded to {minor_unit} decimals: rounding belongs to the models")
    return f"{quantized:f}"


def format_decimal(value: Decimal) -> str:
    """A precise figure without trailing zeros (quantities, unit prices)."""
    text = f"{value:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, date):
        return value.isoformat()
    return value


def fetch_invoices(
    warehouse: Warehouse,
    *,
    period: str | None = None,
    customer: str | None = None,
    status: str | None = None,
    issued_between: tuple[datetime, datetime] | None = None,
    invoice_id_prefix: str | None = None,
) -> list[dict[str, Any]]:
    """Invoices with their lines, discounts (coupons in the order they applied), taxes per rate
    and prepaid credits (wallets in the order they paid), in the JSON shape of `meterline invoices`.

    period: 'YYYY-MM', the month in which the invoice's billing period starts.
    issued_between: (start, end) in naive UTC: invoices whose invoice_at falls in [start, end).
    invoice_id_prefix: invoices whose id starts with it (file names carry the first 12 characters).
    """
    placeholder = warehouse.placeholder
    where, params = [], []
    if issued_between:
        where.append(f"invoice_at >= {placeholder} and invoice_at < {placeholder}")
        params.extend(issued_between)
    if period:
        where.append(f"cast(period_start as varchar) like {placeholder}")
        params.append(f"{period}-%")
    if invoice_id_prefix:
        where.append(f"invoice_id like {placeholder}")
        params.append(f"{invoice_id_prefix}%")
    if customer:
        where.append(f"customer_id = {placeholder}")
        params.append(customer)
    if status:
        condition, statuses = status_filter("status", status, placeholder)
        where.append(condition)
        params.extend(statuses)
    clause = f"where {' and '.join(where)}" if where else ""
    columns = [c for c in INVOICE_FIELDS]
    rows = warehouse.query(
        f"select {', '.join(columns)} from marts.fct_invoices {clause} order by customer_id, invoice_at, invoice_id",
        params,
    )
    invoices = [dict(zip(columns, row)) for row in rows]
    if not invoices:
        return []
    ids = [i["invoice_id"] for i in invoices]
    id_list = ", ".join([placeholder] * len(ids))
    line_columns = ["invoice_id", "invoice_line_id", "fee_kind", "metric_code", "description",
                    "service_period_start", "service_period_end", "quantity", "unit_amount", "amount",
                    "precise_amount", "progressive_billing_credit_amount", "precise_discount_amount", "tax_rate",
                    "precise_tax_amount", "precise_credit_amount", "event_count"]
    lines: dict[str, list[dict]] = defaultdict(list)
    for row in warehouse.query(
        f"select {', '.join(line_columns)} from marts.fct_invoice_lines where invoice_id in ({id_list}) "
        "order by invoice_id, fee_kind desc, description, invoice_line_id", ids,
    ):
        record = dict(zip(line_columns, row))
        record["line_id"] = record.pop("invoice_line_id")
        lines[record.pop("invoice_id")].append(record)
    discounts: dict[str, list[dict]] = defaultdict(list)
    for invoice_id, code, name, amount, carried in warehouse.query(
        f"select invoice_id, coupon_code, coupon_name, discount_amount, carried_amount from marts.fct_invoice_discounts "
        f"where invoice_id in ({id_list}) and discount_amount > 0 order by invoice_id, coupon_rank", ids,
    ):
        discounts[invoice_id].append({"coupon_code": code, "name": name, "amount": amount, "carried_amount": carried})
    taxes: dict[str, list[dict]] = defaultdict(list)
    for invoice_id, code, name, rate, taxable, amount in warehouse.query(
        f"select invoice_id, tax_code, tax_name, tax_rate, taxable_amount, tax_amount from marts.fct_invoice_taxes "
        f"where invoice_id in ({id_list}) order by invoice_id, tax_code", ids,
    ):
        taxes[invoice_id].append({"tax_code": code, "name": name, "rate": rate, "taxable_amount": taxable,
                                  "amount": amount})
    credit_note_credits: dict[str, list[dict]] = defaultdict(list)
    for invoice_id, credit_note_id, number, amount in warehouse.query(
        f"select invoice_id, credit_note_id, credit_note_number, credit_amount "
        f"from marts.fct_invoice_credit_note_credits where invoice_id in ({id_list}) "
        f"order by invoice_id, credit_note_number, credit_note_id", ids,
    ):
        credit_note_credits[invoice_id].append({"credit_note_id": credit_note_id, "credit_note_number": number,
                                                "amount": amount})
    credits: dict[str, list[dict]] = defaultdict(list)
    for invoice_id, wallet_id, name, balance, amount, spent in warehouse.query(
        f"select invoice_id, wallet_id, wallet_name, balance_before_amount, credit_amount, credits "
        f"from marts.fct_invoice_wallet_credits where invoice_id in ({id_list}) order by invoice_id, wallet_rank", ids,
    ):
        credits[invoice_id].append({"wallet_id": wallet_id, "name": name, "balance_before_amount": balance,
                                    "amount": amount, "credits": spent})

    exponents = known_currencies()
    result = []
    for invoice in invoices:
        minor_unit = exponents[invoice["currency"]]
        document = {k: (format_money(v, minor_unit) if k in MONEY_FIELDS else _plain(v)) for k, v in invoice.items()}
        document["discounts"] = [
            {**d, "amount": format_money(d["amount"], minor_unit),
             "carried_amount": format_money(d["carried_amount"], minor_unit)}
            for d in discounts[invoice["invoice_id"]]
        ]
        document["taxes"] = [
            {**t, "rate": format_decimal(t["rate"]), "taxable_amount": format_money(t["taxable_amount"], minor_unit),
             "amount": format_money(t["amount"], minor_unit)}
            for t in taxes[invoice["invoice_id"]]
        ]
        document["credit_note_credits"] = [
            {**c, "amount": format_money(c["amount"], minor_unit)} for c in credit_note_credits[invoice["invoice_id"]]
        ]
        document["credits"] = [
            {**c, "balance_before_amount": format_money(c["balance_before_amount"], minor_unit),
             "amount": format_money(c["amount"], minor_unit), "credits": format_decimal(c["credits"])}
            for c in credits[invoice["invoice_id"]]
        ]
        document["lines"] = [
            {
                **{k: _plain(v) for k, v in line.items()},
                "quantity": format_decimal(line["quantity"]),
                "unit_amount": format_decimal(line["unit_amount"]),
                "precise_amount": format_decimal(line["precise_amount"]),
                "amount": format_money(line["amount"], minor_unit),
                "progressive_billing_credit_amount": format_money(line["progressive_billing_credit_amount"], minor_unit),
                "precise_discount_amount": format_decimal(line["precise_discount_amount"]),
                "tax_rate": format_decimal(line["tax_rate"]),
                "precise_tax_amount": format_decimal(line["precise_tax_amount"]),
                # What the line adds to the amount due before credits: its fee less what progressive
                # billing already invoiced and its coupon share, plus its tax (exact, unrounded: the
                # invoice rounds its discounts and taxes per rate).
                "precise_total_amount": format_decimal(
                    line["amount"] - line["progressive_billing_credit_amount"] - line["precise_discount_amount"]
                    + line["precise_tax_amount"]),
                "precise_credit_amount": format_decimal(line["precise_credit_amount"]),
            }
            for line in lines[invoice["invoice_id"]]
        ]
        result.append(document)
    return result


CREDIT_NOTE_FIELDS = [
    "credit_note_id", "credit_note_number", "status", "origin", "reason", "credit_method", "customer_id",
    "invoice_id", "subscription_id", "plan_code", "currency", "issued_at", "issuing_date", "service_period_start",
    "service_period_end", "unused_days", "days_in_period", "description", "quantity", "corrected_invoice_line_id",
    "precise_amount", "amount", "tax_amount", "total_amount", "credited_amount", "refunded_amount",
    "applied_amount", "balance_amount", "finalized_at", "voided_at",
]
CREDIT_NOTE_MONEY_FIELDS = {"amount", "tax_amount", "total_amount", "credited_amount", "refunded_amount",
                            "applied_amount", "balance_amount"}


def fetch_credit_notes(warehouse: Warehouse) -> list[dict[str, Any]]:
    """Credit notes (marts.fct_credit_notes), amounts as decimal strings like invoices."""
    if not warehouse.table_exists("marts", "fct_credit_notes"):
        return []
    rows = warehouse.query(f"select {', '.join(CREDIT_NOTE_FIELDS)} from marts.fct_credit_notes "
                           "order by customer_id, issued_at, credit_note_id")
    exponents = known_currencies()
    notes = []
    for row in rows:
        note = {k: _plain(v) for k, v in zip(CREDIT_NOTE_FIELDS, row)}
        for field in CREDIT_NOTE_MONEY_FIELDS:
            note[field] = format_money(row[CREDIT_NOTE_FIELDS.index(field)], exponents[note["currency"]])
        note["precise_amount"] = format_decimal(row[CREDIT_NOTE_FIELDS.index("precise_amount")])
        if note["quantity"] is not None:
            note["quantity"] = format_decimal(note["quantity"])
        notes.append(note)
    return notes


def invoices_to_csv_rows(invoices: list[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """One row per line, with its invoice's header fields in front (a flat line-item table)."""
    header_fields = [f for f in INVOICE_FIELDS if f not in {"computed_as_of"}]
    header = header_fields + [f"line_{f}" if not f.startswith("line_") else f for f in LINE_FIELDS]
    rows = []
    for invoice in invoices:
        for line in invoice["lines"]:
            rows.append([invoice[f] for f in header_fields] + [line[f] for f in LINE_FIELDS])
    return header, rows


def _write_json_and_csv(folder: Path, invoices: list[dict[str, Any]]) -> dict[str, Path]:
    """invoices.json and the flat invoice_lines.csv of these invoices, in `folder`."""
    json_path = folder / "invoices.json"
    json_path.write_text(json.dumps(invoices, indent=2) + "\n")
    csv_path = folder / "invoice_lines.csv"
    header, rows = invoices_to_csv_rows(invoices)
    with csv_path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return {"json": json_path, "csv": csv_path}


def write_invoice_files(output_dir: Path, invoices: list[dict[str, Any]]) -> dict[str, Path]:
    """invoices.json (all), invoice_lines.csv (flat), and one JSON file per invoice."""
    per_invoice_dir = output_dir / "invoices"
    per_invoice_dir.mkdir(parents=True, exist_ok=True)
    for stale in per_invoice_dir.glob("*.json"):
        stale.unlink()  # drafts change ids as periods close; the folder mirrors the marts
    for invoice in invoices:
        (per_invoice_dir / f"{invoice['issuing_date']}_{invoice['customer_id']}_{invoice['invoice_id'][:12]}.json"
         ).write_text(json.dumps(invoice, indent=2) + "\n")
    return {**_write_json_and_csv(output_dir, invoices), "per_invoice": per_invoice_dir}


def write_billing_date_files(output_dir: Path, billing_date: date, invoices: list[dict[str, Any]]) -> dict[str, Path]:
    """The invoices issued on one billing date: <output>/issued/<date>/invoices.json and
    invoice_lines.csv. Content only (no run time), so re-running a date rewrites the same bytes."""
    folder = output_dir / "issued" / billing_date.isoformat()
    folder.mkdir(parents=True, exist_ok=True)
    issued = [{k: v for k, v in invoice.items() if k != "computed_as_of"} for invoice in invoices]
    return _write_json_and_csv(folder, issued)


def reconciliation(warehouse: Warehouse) -> list[tuple[str, str, int]]:
    return warehouse.query("select outcome, reason, event_count from marts.fct_event_reconciliation order by 1, 2")


def billed_by_charge(warehouse: Warehouse) -> list[tuple[str, str, str, str, str, int, int, Decimal]]:
    """Closed invoice lines per fee: (fee kind, metric, aggregation, charge model, currency,
    lines, events, amount), base fees first, then by metric. Usage billed early by progressive
    billing counts once: on its progressive line, deducted from the period's line (whose events
    are counted there)."""
    return warehouse.query(
        """
        select
            lines.fee_kind,
            coalesce(lines.metric_code, ''),
            coalesce(max(metrics.aggregation), ''),
            coalesce(lines.charge_model, ''),
            lines.currency,
            count(*),
            sum(case when lines.is_progressive_billing then 0 else lines.event_count end),
            sum(lines.amount - lines.progressive_billing_credit_amount)
        from marts.fct_invoice_lines as lines
        left join catalog.billable_metrics as metrics
            on lines.metric_code = metrics.metric_code
        where lines.status in ('closed', 'finalized')
        group by lines.fee_kind, lines.metric_code, lines.charge_model, lines.currency
        order by coalesce(lines.metric_code, ''), lines.fee_kind, lines.charge_model, lines.currency
        """
    )


def amounts_by_currency(warehouse: Warehouse, status: str = "issued") -> list[tuple]:
    """Per currency: invoices, then the sums of each step of docs/invoice-amounts.md (fees,
    progressive billing already invoiced, discounts, taxes, credit notes' credits, prepaid credits,
    total due)."""
    condition, params = status_filter("status", status, warehouse.placeholder)
    return warehouse.query(
        "select currency, count(*), sum(fees_amount), sum(progressive_billing_credit_amount), sum(discount_amount), "
        "sum(tax_amount), "
        f"sum(credit_note_credit_amount), sum(prepaid_credit_amount), sum(total_amount) "
        f"from marts.fct_invoices where {condition} "
        "group by 1 order by 1", params,
    )


def taxes_by_rate(warehouse: Warehouse, status: str = "issued") -> list[tuple]:
    """Per currency and tax: (currency, code, name, rate, taxable amount, tax) over invoices of a status."""
    condition, params = status_filter("invoices.status", status, warehouse.placeholder)
    return warehouse.query(
        "select taxes.currency, taxes.tax_code, taxes.tax_name, taxes.tax_rate, sum(taxes.taxable_amount), "
        "sum(taxes.tax_amount) from marts.fct_invoice_taxes as taxes inner join marts.fct_invoices as invoices "
        f"on taxes.invoice_id = invoices.invoice_id where {condition} "
        "group by 1, 2, 3, 4 order by 1, 2", params,
    )


def totals_by_currency(warehouse: Warehouse, status: str = "issued") -> list[tuple[str, int, Decimal]]:
    condition, params = status_filter("status", status, warehouse.placeholder)
    return warehouse.query(
        f"select currency, count(*), sum(total_amount) from marts.fct_invoices where {condition} "
        "group by 1 order by 1", params,
    )
