"""What the accounting systems receive, read from the issued documents: customers, finalised
invoices with their lines, finalised credit notes, credit notes' payments of invoices, recorded
payments, voids.

Only finalised documents leave (their figures never change, docs/invoice-lifecycle.md); drafts
and closed invoices wait for their finalisation. Amounts arrive rounded from the models.

An accounting system wants each line in the currency's minor unit, while an invoice rounds its
coupons and taxes once per invoice and rate (docs/invoice-amounts.md). `allocate` splits those
rounded invoice amounts over the lines by largest remainder: this is no second rounding, the
lines' shares add up exactly to the invoice's figures, each within one minor unit of its
precise share.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_FLOOR, Decimal

from orchestration.catalog import known_currencies
from orchestration.warehouse import Warehouse


class BooksError(ValueError):
    """The issued documents do not add up (a bug upstream): nothing is sent."""


def allocate(total: Decimal, precise_shares: Sequence[Decimal], minor_unit: int) -> list[Decimal]:
    """Amounts in minor units, one per precise share, that add up exactly to `total` (already
    rounded): each share is floored, and the units left over go one by one to the largest
    remainders (the first share wins a tie). When the shares do not add up to the total (a total
    rounded per rate), the difference goes the same way, round the shares again if it is larger
    than their number; a share then moves by more than one unit."""
    if not precise_shares:
        if total != 0:
            raise BooksError(f"cannot spread {total} over no lines")
        return []
    unit = Decimal(1).scaleb(-minor_unit)
    scaled = [share / unit for share in precise_shares]
    floors = [value.to_integral_value(rounding=ROUND_FLOOR) for value in scaled]
    left_over = int(total / unit) - int(sum(floors))
    if total / unit != int(total / unit):
        raise BooksError(f"{total} is not rounded to {minor_unit} decimals")
    remainders = [value - floor for value, floor in zip(scaled, floors)]
    if left_over >= 0:
        order = sorted(range(len(scaled)), key=lambda i: (-remainders[i], i))
        step = 1
    else:
        order = sorted(range(len(scaled)), key=lambda i: (remainders[i], i))
        step = -1
    units = list(floors)
    for n in range(abs(left_over)):
        units[order[n % len(order)]] += step
    return [(u * unit).quantize(unit) for u in units]


@dataclass(frozen=True)
class Customer:
    customer_id: str
    name: str
    email: str | None
    country: str | None
    currency: str | None


@dataclass(frozen=True)
class InvoiceLine:
    line_id: str
    description: str
    fee_kind: str
    metric_code: str | None
    tax_codes: tuple[str, ...]
    quantity: Decimal
    unit_amount: Decimal
    gross_amount: Decimal
    """The line's fee less what progressive billing already invoiced of it, rounded."""
    discount_amount: Decimal
    tax_amount: Decimal
    service_period_start: date | None
    service_period_end: date | None

    @property
    def net_amount(self) -> Decimal:
        return self.gross_amount - self.discount_amount


@dataclass(frozen=True)
class Invoice:
    invoice_id: str
    number: str
    customer_id: str
    currency: str
    minor_unit: int
    issuing_date: date
    period_start: date | None
    period_end: date | None
    lines: tuple[InvoiceLine, ...]
    subtotal_excluding_taxes: Decimal
    tax_amount: Decimal
    subtotal_including_taxes: Decimal
    credit_note_credit_amount: Decimal
    prepaid_credit_amount: Decimal
    total_amount: Decimal
    voided_at: datetime | None


@dataclass(frozen=True)
class CreditNoteLine:
    line_id: str
    description: str
    fee_kind: str | None
    metric_code: str | None
    tax_codes: tuple[str, ...]
    amount: Decimal
    tax_amount: Decimal


@dataclass(frozen=True)
class CreditNote:
    credit_note_id: str
    number: str
    customer_id: str
    currency: str
    minor_unit: int
    issuing_date: date
    invoice_id: str | None
    reason: str
    credit_method: str
    lines: tuple[CreditNoteLine, ...]
    amount: Decimal
    tax_amount: Decimal
    total_amount: Decimal
    voided_at: datetime | None


@dataclass(frozen=True)
class Allocation:
    """A credit note paying part of a finalised invoice (ledger.invoice_credit_note_credits)."""

    allocation_id: str
    credit_note_id: str
    invoice_id: str
    amount: Decimal
    allocated_on: date


@dataclass(frozen=True)
class Payment:
    """A payment recorded against a finalised invoice (ledger.payments)."""

    payment_id: str
    invoice_id: str
    amount: Decimal
    paid_on: date
    reference: str | None


@dataclass
class Books:
    customers: dict[str, Customer] = field(default_factory=dict)
    invoices: list[Invoice] = field(default_factory=list)
    credit_notes: list[CreditNote] = field(default_factory=list)
    allocations: list[Allocation] = field(default_factory=list)
    payments: list[Payment] = field(default_factory=list)


def tidy(value: Decimal) -> Decimal:
    """A quantity or unit price without trailing zeros or an exponent (3772.000000000 -> 3772)."""
    return value.quantize(Decimal(1)) if value == value.to_integral_value() else value.normalize()


def _exact(value: Decimal, minor_unit: int) -> Decimal:
    """A rounded amount with exactly the currency's decimals (500.000 -> 500.00); never rounds."""
    unit = Decimal(1).scaleb(-minor_unit)
    if value != value.quantize(unit):
        raise BooksError(f"{value} is not rounded to {minor_unit} decimals")
    return value.quantize(unit)


def _codes(text: str | None) -> tuple[str, ...]:
    return tuple(sorted(code for code in (text or "").split("+") if code))


def _line_taxes(rows: list[tuple], invoice_taxes: list[tuple[str, Decimal, Decimal]], total: Decimal,
                minor_unit: int) -> list[Decimal]:
    """Each line's share of the invoice's taxes. Each tax's rounded amount is split over the lines
    that bear it (by their taxable amount x its rate), so the lines' taxes add up per tax code to
    what the invoice says. Lines finalised before lines recorded their tax codes share the total
    in proportion to their exact tax."""
    codes = [_codes(r[4]) for r in rows]
    known = {code for code, _, _ in invoice_taxes}
    if any(r[10] and not c for r, c in zip(rows, codes)) or not set().union(*codes, set()) <= known:
        return allocate(total, [r[10] for r in rows], minor_unit)
    shares = [Decimal(0)] * len(rows)
    for code, rate, amount in invoice_taxes:
        bearing = [i for i, c in enumerate(codes) if code in c]
        for i, share in zip(bearing, allocate(amount, [rows[i][13] * rate / 100 for i in bearing], minor_unit)):
            shares[i] += share
    if sum(shares) != total:
        raise BooksError(f"the taxes per code add up to {sum(shares)}, not the invoice's {total}")
    unit = Decimal(1).scaleb(-minor_unit)
    return [share.quantize(unit) for share in shares]


def read_books(warehouse: Warehouse) -> Books:
    """Everything finalised, from the marts (which show the ledger's issued figures for
    finalised and voided documents). Checks that every invoice adds up before anything is sent."""
    exponents = known_currencies()
    books = Books()
    invoice_rows = warehouse.query(
        "select invoice_id, invoice_number, customer_id, currency, issuing_date, period_start, period_end, "
        "fees_amount, progressive_billing_credit_amount, discount_amount, subtotal_excluding_taxes, tax_amount, "
        "subtotal_including_taxes, credit_note_credit_amount, prepaid_credit_amount, total_amount, voided_at "
        "from marts.fct_invoices where status in ('finalized', 'voided') and invoice_number is not null "
        "order by invoice_at, invoice_number")
    lines_by_invoice: dict[str, list[tuple]] = defaultdict(list)
    for row in warehouse.query(
            "select lines.invoice_id, lines.invoice_line_id, lines.description, lines.fee_kind, lines.metric_code, "
            "lines.tax_codes, lines.quantity, lines.unit_amount, lines.amount, lines.progressive_billing_credit_amount, "
            "lines.precise_discount_amount, lines.precise_tax_amount, lines.service_period_start, "
            "lines.service_period_end, lines.taxable_amount "
            "from marts.fct_invoice_lines as lines "
            "where lines.status in ('finalized', 'voided') "
            "order by lines.invoice_id, lines.fee_kind desc, lines.description, lines.invoice_line_id"):
        lines_by_invoice[row[0]].append(row[1:])
    taxes_by_invoice: dict[str, list[tuple[str, Decimal, Decimal]]] = defaultdict(list)
    for invoice_id, code, rate, amount in warehouse.query(
            "select taxes.invoice_id, taxes.tax_code, taxes.tax_rate, taxes.tax_amount "
            "from marts.fct_invoice_taxes as taxes inner join marts.fct_invoices as invoices "
            "on taxes.invoice_id = invoices.invoice_id where invoices.status in ('finalized', 'voided')"):
        taxes_by_invoice[invoice_id].append((code, rate, amount))
    for (invoice_id, number, customer_id, currency, issuing_date, period_start, period_end, fees, progressive,
         discount, subtotal, tax, subtotal_with_tax, credit_note_credit, prepaid, total, voided_at) in invoice_rows:
        minor_unit = exponents[currency]
        rows = lines_by_invoice.get(invoice_id, [])
        discounts = allocate(discount, [r[9] for r in rows], minor_unit)
        taxes = _line_taxes(rows, taxes_by_invoice.get(invoice_id, []), tax, minor_unit)
        lines = tuple(
            InvoiceLine(line_id=r[0], description=r[1], fee_kind=r[2], metric_code=r[3], tax_codes=_codes(r[4]),
                        quantity=r[5], unit_amount=r[6], gross_amount=_exact(r[7] - r[8], minor_unit), discount_amount=d,
                        tax_amount=t, service_period_start=r[11], service_period_end=r[12])
            for r, d, t in zip(rows, discounts, taxes))
        if sum((line.net_amount for line in lines), Decimal(0)) != subtotal or fees - progressive - discount != subtotal:
            raise BooksError(f"invoice {number}: its lines add up to "
                             f"{sum((line.net_amount for line in lines), Decimal(0))}, not {subtotal}")
        if subtotal + tax != subtotal_with_tax or subtotal_with_tax - credit_note_credit - prepaid != total:
            raise BooksError(f"invoice {number}: its amounts do not add up to its total {total}")
        books.invoices.append(Invoice(
            invoice_id=invoice_id, number=number, customer_id=customer_id, currency=currency, minor_unit=minor_unit,
            issuing_date=issuing_date, period_start=period_start, period_end=period_end, lines=lines,
            subtotal_excluding_taxes=_exact(subtotal, minor_unit), tax_amount=_exact(tax, minor_unit),
            subtotal_including_taxes=_exact(subtotal_with_tax, minor_unit),
            credit_note_credit_amount=_exact(credit_note_credit, minor_unit),
            prepaid_credit_amount=_exact(prepaid, minor_unit), total_amount=_exact(total, minor_unit),
            voided_at=voided_at))

    if warehouse.table_exists("marts", "fct_credit_notes"):
        _read_credit_notes(warehouse, books, exponents)
    invoice_ids = {invoice.invoice_id for invoice in books.invoices}
    invoice_currency = {invoice.invoice_id: invoice.currency for invoice in books.invoices}
    if warehouse.table_exists("ledger", "invoice_credit_note_credits"):
        for allocation_id, credit_note_id, invoice_id, amount, invoice_at in warehouse.query(
                "select credits.invoice_credit_note_credit_id, credits.credit_note_id, credits.invoice_id, "
                "credits.credit_amount, credits.invoice_at from ledger.invoice_credit_note_credits as credits "
                "where credits.credit_amount > 0 order by credits.invoice_at, credits.invoice_credit_note_credit_id"):
            if invoice_id in invoice_ids:
                minor_unit = exponents[invoice_currency[invoice_id]]
                books.allocations.append(Allocation(allocation_id, credit_note_id, invoice_id, _exact(amount, minor_unit),
                                                    invoice_at.date()))

    if warehouse.table_exists("ledger", "payments"):
        for payment_id, invoice_id, amount, paid_on, reference in warehouse.query(
                "select payment_id, invoice_id, amount, paid_on, reference from ledger.payments "
                "order by paid_on, recorded_at, payment_id"):
            if invoice_id in invoice_ids:
                books.payments.append(Payment(payment_id, invoice_id,
                                              _exact(amount, exponents[invoice_currency[invoice_id]]), paid_on,
                                              reference))

    wanted = {i.customer_id for i in books.invoices} | {n.customer_id for n in books.credit_notes}
    for customer_id, name, email, country, currency in warehouse.query(
            "select customer_id, customer_name, email, country, currency from staging.stg_catalog__customers "
            "order by customer_id"):
        if customer_id in wanted:
            books.customers[customer_id] = Customer(customer_id, name, email, country, currency)
    missing = wanted - set(books.customers)
    if missing:
        raise BooksError(f"customers {sorted(missing)} have finalised documents but are not in the catalog")
    return books


def _read_credit_notes(warehouse: Warehouse, books: Books, exponents: dict[str, int]) -> None:
    notes = warehouse.query(
        "select notes.credit_note_id, notes.credit_note_number, notes.customer_id, notes.currency, notes.issuing_date, "
        "notes.invoice_id, notes.reason, notes.credit_method, notes.description, notes.amount, notes.tax_amount, "
        "notes.total_amount, notes.voided_at, notes.corrected_invoice_line_id, notes.origin "
        "from marts.fct_credit_notes as notes where notes.status in ('finalized', 'voided') "
        "and notes.credit_note_number is not null order by notes.issued_at, notes.credit_note_number")
    if not notes:
        return
    items: dict[str, list[tuple]] = defaultdict(list)
    if warehouse.table_exists("ledger", "credit_note_items"):
        for row in warehouse.query(
                "select items.credit_note_id, items.credit_note_item_id, items.description, items.amount, "
                "items.tax_rate, lines.fee_kind, lines.metric_code, lines.tax_codes "
                "from ledger.credit_note_items as items left join marts.fct_invoice_lines as lines "
                "on items.invoice_line_id = lines.invoice_line_id order by items.credit_note_item_id"):
            items[row[0]].append(row[1:])
    # What an automatic note credits: the line it corrects, else the invoice's base fee.
    credited_lines = {row[0]: row[1:] for row in warehouse.query(
        "select invoice_line_id, fee_kind, metric_code, tax_codes from marts.fct_invoice_lines")}
    base_fees = {row[0]: row[1:] for row in warehouse.query(
        "select invoice_id, max(fee_kind), max(metric_code), max(tax_codes) from marts.fct_invoice_lines "
        "where fee_kind = 'subscription' group by invoice_id")}
    for (credit_note_id, number, customer_id, currency, issuing_date, invoice_id, reason, method, description,
         amount, tax, total, voided_at, corrected_line_id, origin) in notes:
        minor_unit = exponents[currency]
        if items.get(credit_note_id):
            rows = items[credit_note_id]
            taxes = allocate(tax, [r[2] * r[3] / 100 for r in rows], minor_unit)
            lines = tuple(CreditNoteLine(line_id=r[0], description=r[1], fee_kind=r[4], metric_code=r[5],
                                         tax_codes=_codes(r[6]), amount=_exact(r[2], minor_unit), tax_amount=t)
                          for r, t in zip(rows, taxes))
        else:
            fee_kind, metric_code, tax_codes = (credited_lines.get(corrected_line_id) if corrected_line_id
                                                else base_fees.get(invoice_id)) or (None, None, None)
            lines = (CreditNoteLine(line_id=credit_note_id, description=description or origin, fee_kind=fee_kind,
                                    metric_code=metric_code, tax_codes=_codes(tax_codes),
                                    amount=_exact(amount, minor_unit), tax_amount=_exact(tax, minor_unit)),)
        if sum((line.amount for line in lines), Decimal(0)) != amount or amount + tax != total:
            raise BooksError(f"credit note {number}: its lines do not add up to {amount} + {tax} tax")
        books.credit_notes.append(CreditNote(
            credit_note_id=credit_note_id, number=number, customer_id=customer_id, currency=currency,
            minor_unit=minor_unit, issuing_date=issuing_date, invoice_id=invoice_id, reason=reason,
            credit_method=method, lines=lines, amount=_exact(amount, minor_unit), tax_amount=_exact(tax, minor_unit),
            total_amount=_exact(total, minor_unit),
            voided_at=voided_at))
