"""Month-end close (docs/revenue.md): a finished month's report figures, locked.

A month may close once it has ended (by the last build's as_of) and every invoice issued in it
is finalised (or voided). Closing it copies the rows the report marts hold for it, and for any
earlier month still open, into the ledger's closed_* tables and records the close in
ledger.month_closes, in one transaction. From then on the marts read those months as locked
(macros/month_closes.sql); what a later correction changes there is booked in the first month
still open, as a prior-period adjustment. Nothing ever rewrites a closed month.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, datetime

from orchestration import pipeline
from orchestration.ledger import CLOSED_FIGURE_COLUMNS, ensure_ledger, ledger_writes_supported
from orchestration.settings import Settings
from orchestration.warehouse import Warehouse, connect

# The marts the report reads, and what a close rebuilds so they read the locked months.
REPORT_MARTS = [f"fct_{mart}" for mart in CLOSED_FIGURE_COLUMNS]


class CloseError(RuntimeError):
    """The month cannot be closed (or reported) as asked."""


@dataclass(frozen=True)
class MonthState:
    month: date
    closed: bool
    closed_at: datetime | None
    closable: bool
    reason: str  # why it is open, or when it closed


def first_day(month: str | date) -> date:
    """'YYYY-MM' (or a date) -> the month's first day."""
    if isinstance(month, date):
        return month.replace(day=1)
    try:
        year, number = month.split("-")
        return date(int(year), int(number), 1)
    except ValueError:
        raise CloseError(f"month {month!r}: expected YYYY-MM, for example 2026-10") from None


def next_month(month: date) -> date:
    return date(month.year + (month.month == 12), month.month % 12 + 1, 1)


def month_state(warehouse: Warehouse, month: date, as_of: datetime | None) -> MonthState:
    p = warehouse.placeholder
    closed = warehouse.query(f"select closed_at from ledger.month_closes where month_start = {p}", [month])
    if closed:
        return MonthState(month, True, closed[0][0], False, f"closed at {closed[0][0]:%Y-%m-%d %H:%M} UTC")
    if as_of is None:
        return MonthState(month, False, None, False, "nothing was built yet")
    # Issuing dates are local: the month has ended everywhere a day after it ended in UTC.
    if as_of.date() <= next_month(month):
        return MonthState(month, False, None, False,
                          f"the month has not ended in every time zone by the last run's as_of "
                          f"({pipeline.format_as_of(as_of)})")
    window = [month, next_month(month)]
    pending = warehouse.query(
        f"select count(*) from marts.fct_invoices where status in ('draft', 'closed') "
        f"and issuing_date >= {p} and issuing_date < {p}", window)[0][0]
    pending_notes = warehouse.query(
        f"select count(*) from marts.fct_credit_notes where status in ('draft', 'closed') "
        f"and issuing_date >= {p} and issuing_date < {p}", window)[0][0]
    if pending or pending_notes:
        return MonthState(month, False, None, False,
                          f"{pending} invoice(s) and {pending_notes} credit note(s) issued in the month are not "
                          f"finalised yet")
    return MonthState(month, False, None, True, "ended, and its invoices and credit notes are finalised")


def _figures_fingerprint(warehouse: Warehouse, month: date) -> str:
    """sha256 over the locked rows of the months up to `month`, in a stable order."""
    digest = hashlib.sha256()
    p = warehouse.placeholder
    for mart, columns in CLOSED_FIGURE_COLUMNS.items():
        names = [name for name, _ in columns]
        for row in warehouse.query(f"select {', '.join(names)} from ledger.closed_{mart} where month_start <= {p} "
                                   f"order by {', '.join(names)}", [month]):
            digest.update(("|".join("" if value is None else str(value) for value in row) + "\n").encode())
    return digest.hexdigest()


def close_month(settings: Settings, month: date, *, now: datetime | None = None) -> list[date]:
    """Lock `month` and every earlier month still open; returns the months closed now.

    Raises CloseError when the month cannot close yet (the reason says why)."""
    if not ledger_writes_supported(settings):
        raise CloseError(f"months are closed in the ledger, which is not kept on the {settings.target} target "
                         "(docs/engines.md)")
    as_of = pipeline.last_as_of(settings)
    now = now or pipeline.utc_now()
    with connect(settings) as warehouse:
        ensure_ledger(warehouse)
        if month_state(warehouse, month, as_of).closed:
            return []
        stale = _marts_behind_ledger(warehouse)
    if stale:  # a close whose rebuild did not happen (a crash): the marts must read it first
        pipeline.build(settings, as_of, full_refresh=False, select=" ".join(REPORT_MARTS))
    with connect(settings) as warehouse:
        p = warehouse.placeholder
        last = warehouse.query("select max(month_start) from ledger.month_closes")[0][0]
        closed = []
        current = next_month(last) if last else _first_month(warehouse)
        while current <= month:
            closed.append(current)
            current = next_month(current)
        closed = closed or [month]  # before any figures: it closes with nothing to lock
        # Every month that closes now must be closable, not only the one asked for.
        for closing in closed:
            state = month_state(warehouse, closing, as_of)
            if not state.closable:
                raise CloseError(f"{closing:%Y-%m} cannot be closed: {state.reason}"
                                 + (f" (closing {month:%Y-%m} closes it too)" if closing != month else ""))
        warehouse.execute("begin")
        try:
            for mart, columns in CLOSED_FIGURE_COLUMNS.items():
                names = ", ".join(name for name, _ in columns)
                # Only months after the last close: a month is locked once, whatever the marts say.
                warehouse.execute(f"insert into ledger.closed_{mart} ({names}) select {names} from marts.fct_{mart} "
                                  f"where month_start >= {p} and month_start <= {p}", [closed[0], month])
            fingerprint = _figures_fingerprint(warehouse, month)
            warehouse.execute_many(
                f"insert into ledger.month_closes values ({p}, {p}, {p}, {p})",
                [(closed_month, now.replace(tzinfo=None), as_of, fingerprint) for closed_month in closed])
            warehouse.execute("commit")
        except BaseException:
            warehouse.execute("rollback")
            raise
    # The report marts read the closed months from the ledger from now on.
    pipeline.build(settings, as_of, full_refresh=False, select=" ".join(REPORT_MARTS))
    return closed


def _marts_behind_ledger(warehouse: Warehouse) -> bool:
    """Whether a report mart does not read the last closed month as locked yet."""
    last = warehouse.query("select max(month_start) from ledger.month_closes")[0][0]
    if last is None:
        return False
    for mart in CLOSED_FIGURE_COLUMNS:
        if not warehouse.table_exists("marts", f"fct_{mart}"):
            return True
        latest = warehouse.query(f"select max(month_start) from marts.fct_{mart} where is_closed_month")[0][0]
        locked = warehouse.query(f"select max(month_start) from ledger.closed_{mart}")[0][0]
        if latest != locked:
            return True
    return False


def _first_month(warehouse: Warehouse) -> date:
    first = warehouse.query("select min(month_start) from marts.fct_revenue_monthly")[0][0]
    others = [value for (value,) in warehouse.query(
        "select min(month_start) from marts.fct_mrr union all select min(month_start) from marts.fct_billed_vs_collected")
        if value is not None]
    candidates = [value for value in [first, *others] if value is not None]
    if not candidates:
        raise CloseError("there are no figures to close: run `meterline run` first")
    return min(candidates)
