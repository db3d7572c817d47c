"""`meterline explain`: the raw events behind an invoice line, and its arithmetic."""

from __future__ import annotations

from decimal import Decimal

from orchestration.exports import format_decimal
from orchestration.warehouse import Warehouse

# The documented lineage query (docs/lineage.md): the raw events a line bills, each with the
# duplicates that lost to it (same transaction id, loaded later; null when none).
LINEAGE_SQL = (
    "select events.*, duplicates.event_id as lost_duplicate_event_id, "
    "duplicates.is_payload_conflict as duplicate_payload_differs "
    "from marts.fct_invoice_line_events as events "
    "left join intermediate.int_event_duplicates as duplicates on duplicates.winner_event_id = events.event_id "
    "where events.invoice_line_id = '{line_id}' order by events.event_at, events.event_id"
)


def _one(warehouse: Warehouse, sql: str, params: list) -> dict | None:
    rows = warehouse.query(sql, params)
    if not rows:
        return None
    return rows[0]


def _after_the_fee(warehouse: Warehouse, line_id: str, currency: str, minor: int, p: str) -> list[str]:
    """The line's part in the invoice's later steps (docs/invoice-amounts.md): its share of each
    coupon, the taxes on what is left, its share of the credit notes' and of each wallet's
    payment. Precise: the invoice rounds each coupon, each tax rate and each payment once."""
    out: list[str] = []
    for code, discount, share in warehouse.query(
            f"select coupon_code, discount_amount, line_discount_amount from "
            f"intermediate.int_invoice_coupons where invoice_line_id = {p} order by coupon_rank", [line_id]):
        out.append(f"  coupon {code}: this line's share of its {discount:.{minor}f} {currency} on the invoice "
                   f"= -{format_decimal(share)}")
    for code, rate, taxable, tax, level in warehouse.query(
            f"select tax_code, tax_rate, taxable_amount, tax_amount, taxed_by from "
            f"intermediate.int_invoice_line_taxes where invoice_line_id = {p} order by tax_code", [line_id]):
        out.append(f"  tax {code} ({level}'s): {format_decimal(taxable)} x {format_decimal(rate)}% = "
                   f"{format_decimal(tax)} (the invoice rounds each rate's sum once)")
    for number, paid, share in warehouse.query(
            f"select coalesce(notes.credit_note_number, notes.credit_note_id), credits.credit_amount, "
            f"due.credit_note_credit_amount from intermediate.int_invoice_line_amounts_due as due "
            f"inner join marts.fct_invoice_credit_note_credits as credits on due.invoice_id = credits.invoice_id "
            f"inner join marts.fct_credit_notes as notes on credits.credit_note_id = notes.credit_note_id "
            f"where due.invoice_line_id = {p} and due.credit_note_credit_amount <> 0 "
            f"order by notes.issued_at, notes.credit_note_id", [line_id]):
        out.append(f"  credit note {number} paid {paid:.{minor}f} {currency} of the invoice; this line's share of "
                   f"all credit notes' payment = -{format_decimal(share)}")
    for wallet, paid, share in warehouse.query(
            f"select wallet_id, credit_amount, line_credit_amount from intermediate.int_invoice_wallet_credits "
            f"where invoice_line_id = {p} order by wallet_rank", [line_id]):
        out.append(f"  prepaid credits from {wallet}: this line's share of its {paid:.{minor}f} {currency} "
                   f"= -{format_decimal(share)}")
    return out


def explain_line(warehouse: Warehouse, line_id: str, *, sample: int = 10) -> str:
    p = warehouse.placeholder
    columns = ["invoice_id", "status", "fee_kind", "customer_id", "subscription_id", "plan_code", "charge_id",
               "metric_code", "charge_model", "description", "currency", "service_period_start",
               "service_period_end", "quantity", "unit_amount", "proration_factor", "precise_amount", "amount",
               "event_count", "billing_period_id", "is_progressive_billing", "progressive_billing_credit_amount",
               "corrected_invoice_line_id"]
    row = _one(warehouse, f"select {', '.join(columns)} from marts.fct_invoice_lines where invoice_line_id = {p}",
               [line_id])
    if row is None:
        raise LookupError(f"no invoice line {line_id!r} (ids are in `meterline invoices --format json`)")
    line = dict(zip(columns, row))
    out = [
        f"[bold]Invoice line {line_id}[/bold] ({line['status']})",
        f"  invoice {line['invoice_id']}  customer {line['customer_id']}  subscription {line['subscription_id']}"
        f"  plan {line['plan_code']}",
        f"  {line['description']}: service {line['service_period_start']} .. {line['service_period_end']}",
        "",
        "[bold]Arithmetic[/bold]",
    ]
    currency = line["currency"]
    if line["corrected_invoice_line_id"]:
        corrected = _one(warehouse, f"select lines.invoice_id, invoices.invoice_number, lines.quantity, lines.amount "
                                    f"from marts.fct_invoice_lines as lines inner join marts.fct_invoices as invoices "
                                    f"on lines.invoice_id = invoices.invoice_id where lines.invoice_line_id = {p}",
                         [line["corrected_invoice_line_id"]])
        issued = (f"line {line['corrected_invoice_line_id']} of finalised invoice {corrected[1]} "
                  f"({format_decimal(corrected[2])} units, {corrected[3]} {currency})" if corrected else
                  f"line {line['corrected_invoice_line_id']}, not on its finalised invoice yet")
        out.append(f"  correction of {issued}: {line['event_count']:,} event(s) were loaded after the invoice "
                   "was finalised (docs/invoice-lifecycle.md)")
        out.append(f"  the line recomputed with every event, less what the ledger already billed for it: "
                   f"{format_decimal(line['quantity'])} units, {format_decimal(line['precise_amount'])} {currency}")
    elif line["fee_kind"] in ("subscription", "commitment"):
        period = _one(warehouse, f"select base_fee_days, fee_days_in_period, trial_end_at from "
                                 f"intermediate.int_billing_periods where billing_period_id = {p}",
                      [line["billing_period_id"]])
        base = _one(warehouse, f"select base_amount, is_pay_in_advance, minimum_commitment "
                               f"from staging.stg_catalog__plans where plan_code = {p}", [line["plan_code"]])
        if line["fee_kind"] == "subscription":
            out.append(f"  base fee {format_decimal(base[0])} {currency} x {period[0]} billed days / {period[1]} days "
                       f"in the period = {format_decimal(line['precise_amount'])}"
                       f" ({'in advance' if base[1] else 'in arrears'}; days from the end of any trial)")
        else:
            out.append(f"  minimum commitment {format_decimal(base[2])} {currency} x {period[0]} / {period[1]} days, "
                       f"rounded, less everything the period invoiced = {format_decimal(line['precise_amount'])}")
    elif line["fee_kind"] == "true_up":
        minimum = _one(warehouse, f"select c.min_amount, p.billed_days, p.days_in_period "
                                  f"from staging.stg_catalog__charges c, intermediate.int_billing_periods p "
                                  f"where c.charge_id = {p} and p.billing_period_id = {p}",
                       [line["charge_id"], line["billing_period_id"]])
        out.append(f"  spending minimum {format_decimal(minimum[0])} x {minimum[1]} / {minimum[2]} days, rounded, "
                   f"less the charge's own invoiced fees = {format_decimal(line['precise_amount'])}")
    elif line["is_progressive_billing"]:
        early = _one(warehouse, f"select fees.period_invoice_line_id, checkpoints.units_to_date, "
                                f"checkpoints.precise_amount_to_date from intermediate.int_progressive_billing_fees "
                                f"as fees inner join intermediate.int_usage_checkpoints as checkpoints "
                                f"on fees.period_invoice_line_id = checkpoints.invoice_line_id "
                                f"and fees.invoice_at = checkpoints.checkpoint_at where fees.invoice_line_id = {p}",
                     [line_id])
        out.append(f"  progressive billing: a usage threshold was reached; usage to "
                   f"{line['service_period_end']} = {format_decimal(early[1])} units ({line['charge_model']}), "
                   f"{format_decimal(early[2])} {currency} so far")
        out.append(f"  rounded, less what earlier progressive invoices of the period billed for it = "
                   f"{format_decimal(line['precise_amount'])}; the period's line {early[0]} deducts it")
    elif (advance := _one(warehouse, f"select level_after, peak_before, peak_after from "
                                     f"intermediate.int_in_advance_fees where invoice_line_id = {p}", [line_id])):
        out.append(f"  billed in advance when the event happened: the period's level became "
                   f"{format_decimal(advance[0])}; its peak went from {format_decimal(advance[1])} to "
                   f"{format_decimal(advance[2])}")
        out.append(f"  {line['charge_model']} amount at {format_decimal(advance[2])} - amount at "
                   f"{format_decimal(advance[1])} = {format_decimal(line['precise_amount'])}")
    elif line["charge_model"] == "percentage":
        parts = _one(warehouse, f"select units, event_count, free_units, free_events, percentage_amount, "
                                f"fixed_fee_amount, has_transaction_limits from intermediate.int_percentage_fees "
                                f"where invoice_line_id = {p}", [line_id])
        rate = _one(warehouse, f"select rate, fixed_amount from staging.stg_catalog__charges where charge_id = {p}",
                    [line["charge_id"]])
        out.append(f"  amount = {line['metric_code']} over {parts[1]:,} event(s) = {format_decimal(parts[0])}; "
                   f"free: {format_decimal(parts[2])} and {parts[3]} event(s)")
        out.append(f"  ({format_decimal(parts[0])} - {format_decimal(parts[2])}) x {format_decimal(rate[0])}% = "
                   f"{format_decimal(parts[4])}; fixed fee {format_decimal(rate[1] or 0)} x paying events = "
                   f"{format_decimal(parts[5])}")
        if parts[6]:
            out.append("  each transaction priced on its own and held between the per-transaction minimum and "
                       f"maximum: {format_decimal(line['precise_amount'])}")
    else:
        out.append(f"  units = {line['metric_code']} over {line['event_count']:,} event(s) = "
                   f"{format_decimal(line['quantity'])} ({line['charge_model']})")
        tiers = warehouse.query(
            f"select tier_index, from_value, to_value, units_in_tier, per_unit_amount, flat_amount, is_reached, "
            f"tier_amount from intermediate.int_charge_tiers_rated where invoice_line_id = {p} order by tier_index",
            [line_id])
        if line["charge_model"] == "package":
            package = _one(warehouse, f"select c.package_size, c.free_units, t.package_count "
                                      f"from staging.stg_catalog__charges c inner join "
                                      f"intermediate.int_charge_tiers_rated t on t.charge_id = c.charge_id "
                                      f"where t.invoice_line_id = {p}", [line_id])
            out.append(f"  {format_decimal(line['quantity'])} - {format_decimal(package[1])} free = "
                       f"{format_decimal(tiers[0][3])} units: ceil(/ {format_decimal(package[0])}) = "
                       f"{package[2]} package(s) x {format_decimal(tiers[0][4])} = {format_decimal(tiers[0][7])}")
            tiers = []
        for index, low, high, units, per_unit, flat, reached, amount in tiers:
            bounds = f"{format_decimal(low)}..{format_decimal(high) if high is not None else 'inf'}"
            flat_text = f" + flat {format_decimal(flat)}" if reached and flat else ""
            out.append(f"  tier {index} [{bounds}]: {format_decimal(units)} x {format_decimal(per_unit)}"
                       f"{flat_text} = {format_decimal(amount)}")
        out.append(f"  sum of tiers = {format_decimal(line['precise_amount'])}")
    minor = warehouse.query(f"select minor_unit from reference.currencies where currency_code = {p}", [currency])[0][0]
    out.append(f"  rounded half-up to {minor} decimal(s): [bold]{line['amount']:.{minor}f} {currency}[/bold]")
    if line["progressive_billing_credit_amount"]:
        out.append(f"  already invoiced by the period's progressive billing invoices: "
                   f"-{line['progressive_billing_credit_amount']:.{minor}f}")
    out += _after_the_fee(warehouse, line_id, currency, minor, p)

    if line["is_progressive_billing"]:
        out += ["", "[bold]Events[/bold]: traced on the period's line (meterline explain "
                    f"{early[0]}); this line bills {line['event_count']:,} of them early"]
    elif line["fee_kind"] == "charge":
        events = warehouse.query(
            f"select event_id, transaction_id, event_at, units, source_file, source_row "
            f"from marts.fct_invoice_line_events where invoice_line_id = {p} order by event_at, event_id limit {int(sample)}",
            [line_id])
        duplicates = warehouse.query(
            f"select count(*), sum(case when d.is_payload_conflict then 1 else 0 end) "
            f"from intermediate.int_event_duplicates d inner join marts.fct_invoice_line_events m "
            f"on d.winner_event_id = m.event_id where m.invoice_line_id = {p}", [line_id])[0]
        out += ["", f"[bold]Events[/bold]: {line['event_count']:,} billed on this line; "
                    f"{duplicates[0] or 0:,} duplicate(s) lost to them ({duplicates[1] or 0} with a different payload)"]
        for event_id, transaction_id, event_at, units, source_file, source_row in events:
            out.append(f"  {event_at:%Y-%m-%d %H:%M:%S}  {transaction_id}  units {format_decimal(Decimal(units))}"
                       f"  ({source_file}:{source_row}, event {event_id})")
        if line["event_count"] > len(events):
            out.append(f"  ... and {line['event_count'] - len(events):,} more")
        out += ["", "All of them, in SQL:", f"  {LINEAGE_SQL.format(line_id=line_id)};"]
    return "\n".join(out)
