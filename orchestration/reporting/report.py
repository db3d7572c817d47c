"""The monthly revenue report (docs/revenue.md): one self-contained HTML file with charts, and
the same tables as CSV files, read from the report marts (fct_mrr, fct_revenue_monthly,
fct_billed_vs_collected), so every figure traces back to invoice lines.

Figures are per currency: nothing is converted. Amounts are exact decimals from the marts,
printed with the currency's decimals; the charts get them as text (plotly.js reads numbers
from text), never as Python floats.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

from jinja2 import Environment, PackageLoader, select_autoescape

from orchestration import pipeline
from orchestration.catalog import known_currencies
from orchestration.exports import format_decimal
from orchestration.reporting.close import CloseError, MonthState, close_month, first_day, month_state, next_month
from orchestration.settings import Settings
from orchestration.warehouse import Warehouse, connect

TREND_MONTHS = 12
TOP_CUSTOMERS = 10
MOVEMENTS = ["new", "expansion", "reactivation", "contraction", "churn"]


@dataclass
class Table:
    """One table of the report: its CSV file name, title, columns and rows (exact values)."""

    name: str
    title: str
    columns: list[str]
    rows: list[list]
    money_columns: set[str] = field(default_factory=set)


@dataclass
class ReportResult:
    month: date
    state: MonthState
    closed_now: list[date]
    html_path: Path
    csv_paths: list[Path]
    tables: dict[str, Table]


def _summary(warehouse: Warehouse, month: date) -> Table:
    p = warehouse.placeholder
    rows = {}
    for currency, mrr, new, expansion, reactivation, contraction, churn, customers in warehouse.query(
            f"select currency, sum(mrr), sum(new_mrr), sum(expansion_mrr), sum(reactivation_mrr), "
            f"sum(contraction_mrr), sum(churn_mrr), sum(case when mrr <> 0 then 1 else 0 end) "
            f"from marts.fct_mrr where month_start = {p} group by currency", [month]):
        rows.setdefault(currency, {}).update(mrr=mrr, arr=mrr * 12, new_mrr=new, expansion_mrr=expansion,
                                             reactivation_mrr=reactivation, contraction_mrr=contraction,
                                             churn_mrr=churn, paying_customers=customers)
    in_month = "case when month_start = {p} then {column} else 0 end"
    for currency, billed, recognised, deferred, unbilled, billed_to_date, recognised_to_date in warehouse.query(
            "select currency, " + ", ".join(f"sum({in_month.format(p=p, column=column)})" for column in (
                "billed_amount", "recognised_amount", "deferred_balance", "unbilled_balance"))
            + f", sum(billed_amount), sum(recognised_amount) from marts.fct_revenue_monthly "
              f"where month_start <= {p} group by currency", [month] * 5):
        rows.setdefault(currency, {}).update(
            billed_revenue=billed, recognised_revenue=recognised, deferred_balance=deferred,
            unbilled_balance=unbilled, billed_to_date=billed_to_date, recognised_to_date=recognised_to_date)
    for currency, billed, collected, outstanding in warehouse.query(
            f"select currency, sum(billed_amount), sum(collected_amount), sum(outstanding_balance) "
            f"from marts.fct_billed_vs_collected where month_start = {p} group by currency", [month]):
        rows.setdefault(currency, {}).update(invoiced_incl_taxes=billed, collected=collected, outstanding=outstanding)
    columns = ["currency", "mrr", "arr", "new_mrr", "expansion_mrr", "reactivation_mrr", "contraction_mrr",
               "churn_mrr", "paying_customers", "billed_revenue", "recognised_revenue", "deferred_balance",
               "unbilled_balance", "billed_to_date", "recognised_to_date", "invoiced_incl_taxes", "collected",
               "outstanding"]
    zero = Decimal(0)
    table_rows = [[currency] + [values.get(column, 0 if column == "paying_customers" else zero)
                                for column in columns[1:]]
                  for currency, values in sorted(rows.items())]
    return Table("summary", "Summary", columns, table_rows, set(columns) - {"currency", "paying_customers"})


def _query_table(warehouse: Warehouse, name: str, title: str, sql: str, params: list, columns: list[str],
                 money: set[str]) -> Table:
    return Table(name, title, columns, [list(row) for row in warehouse.query(sql, params)], money)


def read_tables(warehouse: Warehouse, month: date) -> dict[str, Table]:
    p = warehouse.placeholder
    first = _months_back(month, TREND_MONTHS - 1)
    tables = [
        _summary(warehouse, month),
        _query_table(
            warehouse, "mrr_trend", f"MRR and its movements, {TREND_MONTHS} months",
            f"select month_start, currency, sum(mrr), sum(new_mrr), sum(expansion_mrr), sum(reactivation_mrr), "
            f"sum(contraction_mrr), sum(churn_mrr), sum(net_change) from marts.fct_mrr "
            f"where month_start between {p} and {p} group by month_start, currency order by currency, month_start",
            [first, month],
            ["month", "currency", "mrr", "new_mrr", "expansion_mrr", "reactivation_mrr", "contraction_mrr",
             "churn_mrr", "net_change"],
            {"mrr", "new_mrr", "expansion_mrr", "reactivation_mrr", "contraction_mrr", "churn_mrr", "net_change"}),
        _query_table(
            warehouse, "mrr_movements", "MRR movements by customer",
            f"select mrr.customer_id, customers.customer_name, mrr.currency, mrr.movement, mrr.previous_mrr, "
            f"mrr.mrr, mrr.net_change from marts.fct_mrr as mrr "
            f"left join staging.stg_catalog__customers as customers on mrr.customer_id = customers.customer_id "
            f"where mrr.month_start = {p} and mrr.movement <> 'unchanged' "
            f"order by mrr.currency, mrr.movement, mrr.customer_id", [month],
            ["customer_id", "customer_name", "currency", "movement", "previous_mrr", "mrr", "net_change"],
            {"previous_mrr", "mrr", "net_change"}),
        _query_table(
            warehouse, "revenue_by_metric", "Revenue by stream and metric",
            f"select currency, revenue_stream, coalesce(metric_code, ''), sum(billed_amount), sum(recognised_amount) "
            f"from marts.fct_revenue_monthly where month_start = {p} "
            f"group by currency, revenue_stream, coalesce(metric_code, '') "
            f"order by currency, revenue_stream, coalesce(metric_code, '')", [month],
            ["currency", "revenue_stream", "metric_code", "billed_revenue", "recognised_revenue"],
            {"billed_revenue", "recognised_revenue"}),
        _query_table(
            warehouse, "revenue_by_plan", "Revenue by plan",
            f"select currency, coalesce(plan_code, ''), sum(billed_amount), sum(recognised_amount), "
            f"sum(case when revenue_stream = 'usage' then recognised_amount else 0 end) "
            f"from marts.fct_revenue_monthly where month_start = {p} "
            f"group by currency, coalesce(plan_code, '') order by currency, coalesce(plan_code, '')", [month],
            ["currency", "plan_code", "billed_revenue", "recognised_revenue", "usage_revenue"],
            {"billed_revenue", "recognised_revenue", "usage_revenue"}),
        _query_table(
            warehouse, "revenue_by_customer", "Revenue by customer",
            f"select revenue.currency, revenue.customer_id, customers.customer_name, sum(revenue.billed_amount), "
            f"sum(revenue.recognised_amount), sum(case when revenue.revenue_stream = 'usage' "
            f"then revenue.recognised_amount else 0 end) "
            f"from marts.fct_revenue_monthly as revenue "
            f"left join staging.stg_catalog__customers as customers on revenue.customer_id = customers.customer_id "
            f"where revenue.month_start = {p} "
            f"group by revenue.currency, revenue.customer_id, customers.customer_name "
            f"order by revenue.currency, sum(revenue.recognised_amount) desc, revenue.customer_id", [month],
            ["currency", "customer_id", "customer_name", "billed_revenue", "recognised_revenue", "usage_revenue"],
            {"billed_revenue", "recognised_revenue", "usage_revenue"}),
        _query_table(
            warehouse, "recognition_trend", f"Recognised, deferred and unbilled revenue, {TREND_MONTHS} months",
            f"select month_start, currency, sum(billed_amount), sum(recognised_amount), sum(deferred_balance), "
            f"sum(unbilled_balance) from marts.fct_revenue_monthly where month_start between {p} and {p} "
            f"group by month_start, currency order by currency, month_start", [first, month],
            ["month", "currency", "billed_revenue", "recognised_revenue", "deferred_balance", "unbilled_balance"],
            {"billed_revenue", "recognised_revenue", "deferred_balance", "unbilled_balance"}),
        _query_table(
            warehouse, "billed_vs_collected", "Billed vs collected by customer",
            f"select billed.currency, billed.customer_id, customers.customer_name, sum(billed.billed_amount), "
            f"sum(billed.collected_amount), sum(billed.outstanding_balance) "
            f"from marts.fct_billed_vs_collected as billed "
            f"left join staging.stg_catalog__customers as customers on billed.customer_id = customers.customer_id "
            f"where billed.month_start = {p} "
            f"group by billed.currency, billed.customer_id, customers.customer_name "
            f"having sum(billed.billed_amount) <> 0 or sum(billed.collected_amount) <> 0 "
            f"or sum(billed.outstanding_balance) <> 0 "
            f"order by billed.currency, billed.customer_id", [month],
            ["currency", "customer_id", "customer_name", "invoiced_incl_taxes", "collected", "outstanding"],
            {"invoiced_incl_taxes", "collected", "outstanding"}),
        _query_table(
            warehouse, "prior_period_adjustments", "Corrections to closed months, booked in this month",
            f"select currency, customer_id, revenue_stream, coalesce(metric_code, ''), billed_amount, "
            f"recognised_amount from marts.fct_revenue_monthly "
            f"where month_start = {p} and row_kind = 'prior_period_adjustment' "
            f"order by currency, customer_id, revenue_stream, coalesce(metric_code, '')", [month],
            ["currency", "customer_id", "revenue_stream", "metric_code", "billed_revenue", "recognised_revenue"],
            {"billed_revenue", "recognised_revenue"}),
        _query_table(
            warehouse, "current_usage", "Open periods: usage so far and its estimated amount (before coupons and taxes)",
            f"select usage.currency, usage.customer_id, usage.customer_name, usage.fee_kind, "
            f"coalesce(usage.metric_code, ''), min(usage.service_period_start), max(usage.service_period_end), "
            f"sum(usage.units_to_date), sum(usage.event_count), sum(usage.estimated_amount), "
            f"sum(usage.estimated_amount_to_invoice) "
            f"from marts.fct_current_usage as usage "
            f"where usage.computed_as_of >= {p} and usage.computed_as_of < {p} "
            f"group by usage.currency, usage.customer_id, usage.customer_name, usage.fee_kind, "
            f"coalesce(usage.metric_code, '') "
            f"order by usage.currency, usage.customer_id, usage.fee_kind, coalesce(usage.metric_code, '')",
            [datetime(month.year, month.month, 1), datetime(next_month(month).year, next_month(month).month, 1)],
            ["currency", "customer_id", "customer_name", "fee_kind", "metric_code", "period_start", "period_end",
             "units_to_date", "events", "estimated_amount", "estimated_amount_to_invoice"],
            {"estimated_amount", "estimated_amount_to_invoice"}),
    ]
    return {table.name: table for table in tables}


def _months_back(month: date, count: int) -> date:
    index = month.year * 12 + month.month - 1 - count
    return date(index // 12, index % 12 + 1, 1)


def _text(value, column: str, table: Table, currency: str | None, exponents: dict[str, int]) -> str:
    if value is None:
        return ""
    if isinstance(value, date):
        return value.strftime("%Y-%m") if column == "month" else value.isoformat()
    if column in table.money_columns and currency is not None:
        return f"{Decimal(value).quantize(Decimal(1).scaleb(-exponents[currency])):f}"
    if isinstance(value, Decimal):
        return format_decimal(value)
    return str(value)


def formatted_rows(table: Table, exponents: dict[str, int] | None = None) -> list[list[str]]:
    """The table's rows as text: amounts with their currency's decimals, months as YYYY-MM."""
    exponents = exponents or known_currencies()
    currency_index = table.columns.index("currency") if "currency" in table.columns else None
    return [[_text(value, column, table, row[currency_index] if currency_index is not None else None, exponents)
             for column, value in zip(table.columns, row)] for row in table.rows]


def _charts(tables: dict[str, Table], month: date, exponents: dict[str, int]) -> list[dict]:
    """Plotly figures (as JSON specs), per currency: MRR movements, revenue by metric and by
    plan, top customers, recognised vs deferred. Values are the exact amounts as text."""
    charts = []

    def column(table: Table, name: str, rows: list[list]) -> list[str]:
        index = table.columns.index(name)
        currency = table.columns.index("currency")
        return [_text(row[index], name, table, row[currency], exponents) for row in rows]

    currencies = sorted({row[0] for row in tables["summary"].rows})
    for currency in currencies:
        trend = tables["mrr_trend"]
        rows = [row for row in trend.rows if row[1] == currency]
        months = [row[0].strftime("%Y-%m") for row in rows]
        data = [{"type": "bar", "name": kind.replace("_", " "), "x": months,
                 "y": column(trend, f"{kind}_mrr", rows)} for kind in MOVEMENTS]
        data.append({"type": "scatter", "mode": "lines+markers", "name": "MRR", "x": months,
                     "y": column(trend, "mrr", rows), "yaxis": "y"})
        charts.append({"id": f"mrr-{currency}", "title": f"MRR movements ({currency})", "data": data,
                       "layout": {"barmode": "relative"}})

        by_metric = tables["revenue_by_metric"]
        rows = [row for row in by_metric.rows if row[0] == currency]
        labels = [f"{row[1]}{' · ' + row[2] if row[2] else ''}" for row in rows]
        charts.append({"id": f"metric-{currency}", "title": f"Revenue by metric, {month:%Y-%m} ({currency})",
                       "data": [{"type": "bar", "name": "recognised", "x": labels,
                                 "y": column(by_metric, "recognised_revenue", rows)},
                                {"type": "bar", "name": "billed", "x": labels,
                                 "y": column(by_metric, "billed_revenue", rows)}],
                       "layout": {"barmode": "group"}})

        by_plan = tables["revenue_by_plan"]
        rows = [row for row in by_plan.rows if row[0] == currency]
        charts.append({"id": f"plan-{currency}", "title": f"Revenue by plan, {month:%Y-%m} ({currency})",
                       "data": [{"type": "bar", "name": "recognised", "x": [row[1] or "(none)" for row in rows],
                                 "y": column(by_plan, "recognised_revenue", rows)}],
                       "layout": {}})

        by_customer = tables["revenue_by_customer"]
        rows = [row for row in by_customer.rows if row[0] == currency][:TOP_CUSTOMERS]
        charts.append({"id": f"customers-{currency}", "title": f"Top {TOP_CUSTOMERS} customers, {month:%Y-%m} "
                                                              f"({currency})",
                       "data": [{"type": "bar", "orientation": "h", "name": "recognised",
                                 "y": [f"{row[2] or ''} ({row[1]})".strip() for row in reversed(rows)],
                                 "x": list(reversed(column(by_customer, "recognised_revenue", rows)))}],
                       "layout": {"margin": {"l": 180}}})

        recognition = tables["recognition_trend"]
        rows = [row for row in recognition.rows if row[1] == currency]
        months = [row[0].strftime("%Y-%m") for row in rows]
        charts.append({"id": f"recognition-{currency}", "title": f"Recognised vs deferred ({currency})",
                       "data": [{"type": "bar", "name": "recognised in the month", "x": months,
                                 "y": column(recognition, "recognised_revenue", rows)},
                                {"type": "scatter", "mode": "lines+markers", "name": "deferred at month end",
                                 "x": months, "y": column(recognition, "deferred_balance", rows)},
                                {"type": "scatter", "mode": "lines+markers", "name": "unbilled at month end",
                                 "x": months, "y": column(recognition, "unbilled_balance", rows)}],
                       "layout": {}})
    return charts


def _environment() -> Environment:
    return Environment(loader=PackageLoader("orchestration", "templates"), autoescape=select_autoescape(["j2"]))


def render_html(month: date, state: MonthState, tables: dict[str, Table], as_of: datetime | None,
                generated_at: datetime) -> str:
    import plotly.offline

    exponents = known_currencies()
    charts = _charts(tables, month, exponents)
    return _environment().get_template("revenue_report.html.j2").render(
        month=month, state=state, as_of=pipeline.format_as_of(as_of) if as_of else "",
        generated_at=generated_at.strftime("%Y-%m-%d %H:%M UTC"),
        plotly_js=plotly.offline.get_plotlyjs(),
        charts=[{**chart, "spec": json.dumps({"data": chart["data"], "layout": {
            "title": {"text": chart["title"]}, "height": 380, **chart["layout"]}}).replace("<", "\\u003c")}
            for chart in charts],
        tables=[{"name": table.name, "title": table.title, "columns": table.columns,
                 "money": table.money_columns, "rows": formatted_rows(table, exponents)}
                for table in tables.values()],
    )


def write_report(settings: Settings, month: str | date, *, output_dir: Path | None = None, close: bool = True,
                 now: datetime | None = None) -> ReportResult:
    """Write the month's report (HTML and CSV files); first close the month when it can close.

    A month that cannot close yet (not ended, invoices not finalised) gets a preliminary report."""
    month = first_day(month)
    now = now or pipeline.utc_now()
    as_of = pipeline.last_as_of(settings)
    if as_of is None:
        raise CloseError("nothing was built yet: run `meterline run` first")
    closed_now: list[date] = []
    with connect(settings, read_only=settings.target == "duckdb") as warehouse:
        state = month_state(warehouse, month, as_of)
    blocked = None
    if close and state.closable:
        try:
            closed_now = close_month(settings, month, now=now)
        except CloseError as error:  # an earlier month it would close is not ready: preliminary
            blocked = str(error)
    with connect(settings, read_only=settings.target == "duckdb") as warehouse:
        state = month_state(warehouse, month, as_of)
        if blocked and not state.closed:
            state = dataclasses.replace(state, closable=False, reason=blocked)
        if month >= next_month(as_of.date().replace(day=1)):
            raise CloseError(f"{month:%Y-%m} is after the last run's as_of ({pipeline.format_as_of(as_of)})")
        tables = read_tables(warehouse, month)
    output_dir = output_dir or settings.home / "output" / "reports" / f"{month:%Y-%m}"
    output_dir.mkdir(parents=True, exist_ok=True)
    exponents = known_currencies()
    csv_paths = []
    for table in tables.values():
        path = output_dir / f"{table.name}.csv"
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(table.columns)
            writer.writerows(formatted_rows(table, exponents))
        csv_paths.append(path)
    html_path = output_dir / f"revenue-report-{month:%Y-%m}.html"
    html_path.write_text(render_html(month, state, tables, as_of, now), encoding="utf-8")
    return ReportResult(month, state, closed_now, html_path, csv_paths, tables)
