"""Great Expectations (1.x) suite for ``raw.events``, validated inside the warehouse.

The suite runs through a GX SQL Data Source (SQLAlchemy), so every check is a SQL
query executed by the warehouse: the table is never loaded into pandas. The same
suite runs against DuckDB (``duckdb:////abs/path/warehouse.duckdb``, through
duckdb-engine) and PostgreSQL (``postgresql+psycopg2://...``).

Public API:

* :func:`build_raw_events_suite` returns the :class:`gx.ExpectationSuite`.
* :func:`validate_raw_events` validates a warehouse table with it, using an
  ephemeral GX context (nothing is written to disk), and returns a
  :class:`SuiteOutcome` of plain, JSON-friendly values that the orchestration
  maps onto Dagster asset checks (one per :attr:`ExpectationOutcome.check_name`).

Every expectation carries ``meta = {"check_name": ..., "columns": [...]}``; the
check name is a stable identifier (``[a-z0-9_]+``) usable as a Dagster check name.
"""

from __future__ import annotations

import contextlib
import math
import re
import uuid
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator, Sequence

import great_expectations as gx
import great_expectations.expectations as gxe
import sqlalchemy as sa
from great_expectations.data_context.types.base import ProgressBarsConfig

__all__ = [
    "PARTIAL_UNEXPECTED_LIMIT",
    "SUITE_NAME",
    "ExpectNoViolatingRows",
    "ExpectationOutcome",
    "SuiteOutcome",
    "build_raw_events_suite",
    "validate_raw_events",
]

SUITE_NAME = "raw_events"
#: At most this many offending values are reported per expectation.
PARTIAL_UNEXPECTED_LIMIT = 10

# Schema and table names are spliced into SQL (DuckDB search_path, GX's {batch});
# only plain identifiers are accepted.
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# Columns that docs/data-contracts.md does not mark nullable (the two external ids
# are the nullable ones, covered together by `customer_or_subscription_present`).
_NOT_NULL_COLUMNS = (
    "event_id",
    "transaction_id",
    "metric_code",
    "event_at",
    "loaded_at",
    "batch_id",
    "properties",
    "source_file",
    "source_row",
)


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class ExpectationOutcome:
    """The outcome of one expectation, in plain values.

    ``unexpected_count`` / ``unexpected_percent`` are ``None`` when the expectation
    raised instead of evaluating (then ``exception_message`` says why and
    ``success`` is ``False``). ``unexpected_percent`` is a percentage (0-100) of the
    rows the expectation looked at (non-null rows for value checks, as GX counts it;
    all rows for the row-level SQL checks). ``partial_unexpected_list`` holds at most
    :data:`PARTIAL_UNEXPECTED_LIMIT` offending values rendered as strings (``None``
    for SQL NULL); for the row-level SQL checks the values are the offending rows'
    ``event_id``.
    """

    check_name: str
    expectation_type: str
    columns: tuple[str, ...]
    success: bool
    unexpected_count: int | None
    unexpected_percent: float | None
    partial_unexpected_list: list[str | None] = field(default_factory=list)
    description: str = ""
    exception_message: str | None = None

    @property
    def column(self) -> str | None:
        """The single column this expectation is about, or ``None`` for multi-column checks."""
        return self.columns[0] if len(self.columns) == 1 else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (e.g. for Dagster ``MetadataValue.json``)."""
        data = asdict(self)
        data["columns"] = list(self.columns)
        data["column"] = self.column
        return data


@dataclass(frozen=True)
class SuiteOutcome:
    """The outcome of one validation run of the suite.

    ``success`` is true only if every expectation evaluated and passed.
    ``evaluated_rows`` is the number of rows in the validated table (``None`` if
    no expectation reported it, e.g. because every one of them raised).
    """

    success: bool
    evaluated_rows: int | None
    results: list[ExpectationOutcome]

    def by_check_name(self) -> dict[str, ExpectationOutcome]:
        return {r.check_name: r for r in self.results}

    def failed(self) -> list[ExpectationOutcome]:
        return [r for r in self.results if not r.success]

    def to_dict(self) -> dict[str, Any]:
        return {
            "success": self.success,
            "evaluated_rows": self.evaluated_rows,
            "results": [r.to_dict() for r in self.results],
        }


# --------------------------------------------------------------------------- suite


class ExpectNoViolatingRows(gxe.UnexpectedRowsExpectation):
    """``UnexpectedRowsExpectation`` that also reports offending values with SUMMARY results.

    The stock expectation returns only the count of rows the query selected unless the
    result format is COMPLETE (which would make every column-value expectation return
    its full unexpected list). This one adds ``partial_unexpected_list``: the first
    column of up to :data:`PARTIAL_UNEXPECTED_LIMIT` of the rows the query returned
    (GX fetches at most 200 of them). The query must select the identifying column
    first (here ``event_id``).
    """

    def _validate(
        self,
        metrics: dict,
        runtime_configuration: dict | None = None,
        execution_engine: Any = None,
    ) -> Any:
        outcome = super()._validate(
            metrics=metrics,
            runtime_configuration=runtime_configuration,
            execution_engine=execution_engine,
        )
        if isinstance(outcome, dict) and isinstance(outcome.get("result"), dict):
            rows = metrics.get("unexpected_rows_query.table") or []
            outcome["result"]["partial_unexpected_list"] = [
                _first_value(row) for row in rows[:PARTIAL_UNEXPECTED_LIMIT]
            ]
        return outcome


def _first_value(row: Any) -> Any:
    if isinstance(row, dict):
        return next(iter(row.values()), None)
    if isinstance(row, (list, tuple)):
        return row[0] if row else None
    return row


def _meta(check_name: str, *columns: str) -> dict[str, Any]:
    return {"check_name": check_name, "columns": list(columns)}


def build_raw_events_suite() -> gx.ExpectationSuite:
    """The expectation suite for ``raw.events`` (see docs/data-contracts.md).

    The suite is not attached to any data context; :func:`validate_raw_events`
    registers it with its own ephemeral context.
    """
    expectations: list[gxe.Expectation] = []
    for column in _NOT_NULL_COLUMNS:
        expectations.append(
            gxe.ExpectColumnValuesToNotBeNull(
                column=column,
                description=f"{column} is never null",
                meta=_meta(f"{column}_not_null", column),
            )
        )
    expectations += [
        gxe.ExpectColumnValuesToBeUnique(
            column="event_id",
            description="event_id (<batch_id>-<source_row>) is unique",
            meta=_meta("event_id_unique", "event_id"),
        ),
        ExpectNoViolatingRows(
            unexpected_rows_query=(
                "SELECT event_id FROM {batch} "
                "WHERE external_subscription_id IS NULL AND external_customer_id IS NULL"
            ),
            description="every event names a subscription or a customer",
            meta=_meta(
                "customer_or_subscription_present",
                "external_subscription_id",
                "external_customer_id",
            ),
        ),
        ExpectNoViolatingRows(
            # Ingestion rejects events more than a day in the future of the batch.
            unexpected_rows_query=(
                "SELECT event_id FROM {batch} WHERE event_at > loaded_at + INTERVAL '1 day'"
            ),
            description="event_at is at most one day after loaded_at",
            meta=_meta("event_at_not_after_loaded_at_plus_1d", "event_at", "loaded_at"),
        ),
        # ExpectColumnValuesToMatchLikePattern would fit, but GX builds LIKE only for
        # dialects it recognises and reports "Like patterns are not supported for
        # dialect duckdb"; plain LIKE in SQL is portable. Braces are doubled because
        # GX formats the query with str.format (for {batch}).
        ExpectNoViolatingRows(
            unexpected_rows_query=(
                "SELECT event_id FROM {batch} WHERE properties NOT LIKE '{{%'"
            ),
            description="properties is a JSON object (starts with '{')",
            meta=_meta("properties_is_json_object", "properties"),
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="source_row",
            min_value=1,
            description="source_row is a 1-based line number",
            meta=_meta("source_row_positive", "source_row"),
        ),
    ]

    # Passed to the constructor: add_expectation() would need an active data context.
    suite = gx.ExpectationSuite(name=SUITE_NAME, expectations=expectations)
    if len(suite.expectations) != len(expectations):  # GX logs and drops invalid ones
        raise RuntimeError("GX rejected an expectation of the raw.events suite")
    return suite


# --------------------------------------------------------------------------- runner


def validate_raw_events(
    connection_url: str, schema: str = "raw", table: str = "events"
) -> SuiteOutcome:
    """Validate ``schema.table`` in the warehouse at ``connection_url`` with the suite.

    Runs in an ephemeral GX context with progress bars off; prints nothing.
    Raises if the warehouse or the table cannot be reached (GX's
    ``TestConnectionError``); a check that cannot be evaluated is reported as a
    failed :class:`ExpectationOutcome` with ``exception_message`` set.
    """
    for label, name in (("schema", schema), ("table", table)):
        if not _IDENTIFIER.match(name):
            raise ValueError(f"{label} must be a plain SQL identifier, got {name!r}")

    context = gx.get_context(mode="ephemeral")
    # GX draws tqdm bars ("Calculating Metrics") unless told otherwise.
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)

    with warnings.catch_warnings():
        # The generic SQL Data Source is used on purpose for every dialect; GX would
        # suggest its PostgreSQL-specific one for postgresql:// URLs.
        warnings.filterwarnings("ignore", message="You are using a generic SQLDatasource")
        datasource = context.data_sources.add_sql(
            name=f"warehouse_{uuid.uuid4().hex[:8]}", connection_string=connection_url
        )
    try:
        asset = datasource.add_table_asset(
            name=f"{schema}.{table}", table_name=table, schema_name=schema
        )
        batch_definition = asset.add_batch_definition_whole_table("whole_table")
        suite = context.suites.add(build_raw_events_suite())

        execution_engine = datasource.get_execution_engine()
        with _duckdb_compatibility(execution_engine, schema):
            batch = batch_definition.get_batch()
            validation = batch.validate(
                suite,
                result_format={
                    "result_format": "SUMMARY",
                    "partial_unexpected_count": PARTIAL_UNEXPECTED_LIMIT,
                },
            )
            if datasource.get_execution_engine() is not execution_engine:  # pragma: no cover
                raise RuntimeError("GX replaced the execution engine during validation")
    finally:
        _dispose_engines(datasource)

    order = {e.meta["check_name"]: i for i, e in enumerate(suite.expectations)}
    return _to_suite_outcome(validation, order)


@contextlib.contextmanager
def _duckdb_compatibility(execution_engine: Any, schema: str) -> Iterator[None]:
    """Work around two incompatibilities of GX 1.24 + duckdb-engine 0.17 + SQLAlchemy 2.1.

    1. GX's SqlAlchemyExecutionEngine.execute_query() closes its connection and only
       then lets the caller fetch the rows. Closing a SQLAlchemy connection rolls
       back its transaction, and a DuckDB rollback discards the pending result, so
       every metric query comes back empty (IndexError / NoneType inside GX). GX keeps
       one persisted connection for sqlite/mssql/bigquery/databricks for its own
       reasons; we do the same for DuckDB, on this engine instance only.
    2. SQLAlchemy 2.1's PostgreSQL column reflection (inherited by duckdb-engine)
       queries pg_catalog.pg_collation and ::REGCLASS, which DuckDB lacks, so GX falls
       back to ``SELECT * FROM <table> LIMIT 1`` *without the schema*. Putting the
       schema on DuckDB's search_path makes that fallback find the table.

    No-op for any other dialect (PostgreSQL works as is).
    """
    engine = execution_engine.engine
    if engine.dialect.name != "duckdb":
        yield
        return

    def _set_search_path(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.cursor().execute(f"SET search_path = '{schema},main'")

    sa.event.listen(engine, "connect", _set_search_path)
    engine.dispose()  # connections opened before the listener would lack the search_path

    state: dict[str, Any] = {"connection": None}

    @contextlib.contextmanager
    def persisted_connection() -> Iterator[Any]:
        connection = state["connection"]
        if connection is None or connection.closed:
            connection = state["connection"] = engine.connect()
        yield connection

    had_override = "get_connection" in vars(execution_engine)
    previous = vars(execution_engine).get("get_connection")
    execution_engine.get_connection = persisted_connection
    try:
        yield
    finally:
        if had_override:
            execution_engine.get_connection = previous
        else:
            del execution_engine.get_connection
        if state["connection"] is not None:
            state["connection"].close()
        sa.event.remove(engine, "connect", _set_search_path)
        engine.dispose()


def _dispose_engines(datasource: Any) -> None:
    """Close every connection GX opened, so no DuckDB file handle/lock outlives the call."""
    engines = []
    with contextlib.suppress(Exception):
        engines.append(datasource.get_execution_engine().engine)
    with contextlib.suppress(Exception):
        engines.append(datasource.get_engine())
    for engine in engines:
        with contextlib.suppress(Exception):
            engine.dispose()


def _to_suite_outcome(validation: Any, order: dict[str, int]) -> SuiteOutcome:
    evaluated_rows: int | None = None
    for result in validation.results:
        element_count = (result.result or {}).get("element_count")
        if isinstance(element_count, int) and not result.expectation_config.kwargs.get(
            "row_condition"
        ):
            evaluated_rows = element_count
            break

    outcomes = [_to_outcome(result, evaluated_rows) for result in validation.results]
    # GX returns results grouped by how it computed them; report them in suite order.
    outcomes.sort(key=lambda o: order.get(o.check_name, len(order)))
    success = bool(validation.success) and all(o.success for o in outcomes)
    return SuiteOutcome(success=success, evaluated_rows=evaluated_rows, results=outcomes)


def _to_outcome(result: Any, evaluated_rows: int | None) -> ExpectationOutcome:
    config = result.expectation_config
    kwargs = dict(config.kwargs)
    meta = dict(config.meta or {})
    details = dict(result.result or {})

    columns: Sequence[str]
    if meta.get("columns"):
        columns = meta["columns"]
    elif kwargs.get("column"):
        columns = [kwargs["column"]]
    elif kwargs.get("column_list"):
        columns = kwargs["column_list"]
    else:
        columns = [c for c in (kwargs.get("column_A"), kwargs.get("column_B")) if c]

    exception_message = _exception_message(result.exception_info)

    unexpected_count = details.get("unexpected_count")
    unexpected_percent = details.get("unexpected_percent")
    if unexpected_count is None and isinstance(details.get("observed_value"), int):
        # Row-level SQL checks report the number of offending rows as observed_value.
        unexpected_count = details["observed_value"]
        if evaluated_rows:
            unexpected_percent = 100.0 * unexpected_count / evaluated_rows
        elif evaluated_rows == 0:
            unexpected_percent = 0.0

    return ExpectationOutcome(
        check_name=str(meta.get("check_name") or config.type),
        expectation_type=str(config.type),
        columns=tuple(str(c) for c in columns),
        success=bool(result.success) and exception_message is None,
        unexpected_count=int(unexpected_count) if unexpected_count is not None else None,
        unexpected_percent=_as_percent(unexpected_percent),
        partial_unexpected_list=[
            _as_text(v)
            for v in (details.get("partial_unexpected_list") or [])[:PARTIAL_UNEXPECTED_LIMIT]
        ],
        description=str(config.description or ""),
        exception_message=exception_message,
    )


def _exception_message(exception_info: Any) -> str | None:
    """GX reports exceptions either flat or keyed by metric id; return the first message."""
    if not isinstance(exception_info, dict):
        return None
    if "raised_exception" in exception_info:
        if exception_info.get("raised_exception"):
            return str(exception_info.get("exception_message") or "expectation raised")
        return None
    for info in exception_info.values():
        if isinstance(info, dict) and info.get("raised_exception"):
            return str(info.get("exception_message") or "expectation raised")
    return None


def _as_percent(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return None if math.isnan(number) else number


def _as_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)
