"""Connections to the warehouse: the embedded DuckDB file, a PostgreSQL database or Spark
(orchestration/spark.py).

Python writes only the `raw` and `catalog` schemas (docs/data-contracts.md); everything else
is built by dbt. DuckDB allows one writer per file: open read-only wherever you only read.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.csv as pa_csv

from orchestration import object_store
from orchestration.settings import Settings

log = logging.getLogger(__name__)

Column = tuple[str, str]
"""(name, SQL type) of a column, in types that DuckDB and PostgreSQL both understand."""


class Warehouse:
    """The small surface the loaders need. `kind` is the dbt adapter type."""

    kind: str
    placeholder: str
    """The driver's parameter marker: ? for DuckDB, %s for psycopg2."""

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> None:
        raise NotImplementedError

    def query(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple]:
        raise NotImplementedError

    def execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """One statement per row of parameters (placeholders: ? on DuckDB, %s on PostgreSQL)."""
        raise NotImplementedError

    def query_arrow(self, sql: str) -> pa.Table:
        raise NotImplementedError

    def append_arrow(self, table: str, data: pa.Table) -> None:
        """Append rows whose columns match `table`'s by name."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def table_exists(self, schema: str, table: str) -> bool:
        rows = self.query(
            "select count(*) from information_schema.tables where table_schema = ? and table_name = ?"
            if self.kind == "duckdb"
            else "select count(*) from information_schema.tables where table_schema = %s and table_name = %s",
            [schema, table],
        )
        return rows[0][0] > 0

    def column_names(self, schema: str, table: str) -> set[str]:
        p = self.placeholder
        return {row[0] for row in self.query(
            f"select column_name from information_schema.columns where table_schema = {p} and table_name = {p}",
            [schema, table])}

    def replace_table(self, table: str, columns: Sequence[Column], rows: Sequence[Sequence[Any]]) -> None:
        """Drop and re-create `table` (schema.name) with exactly these rows, in one transaction."""
        schema = table.split(".")[0]
        ddl = ", ".join(f"{name} {sql_type}" for name, sql_type in columns)
        self.execute(f"create schema if not exists {schema}")
        self.execute("begin")
        try:
            self.execute(f"drop table if exists {table}")
            self.execute(f"create table {table} ({ddl})")
            if rows:
                self._insert_rows(table, len(columns), rows)
            self.execute("commit")
        except Exception:
            self.execute("rollback")
            raise

    def _insert_rows(self, table: str, width: int, rows: Sequence[Sequence[Any]]) -> None:
        raise NotImplementedError


class DuckDBWarehouse(Warehouse):
    kind = "duckdb"
    placeholder = "?"

    def __init__(self, path: Path, *, read_only: bool = False, memory_limit: str | None = None):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.connection = duckdb.connect(str(path), read_only=read_only)
        # Naive timestamps are UTC everywhere in Meterline; make casts from text agree.
        self.connection.execute("set TimeZone = 'UTC'")
        if memory_limit:
            self.connection.execute(f"set memory_limit = '{memory_limit}'")
        # An events lake in an object store: raw.events reads its URIs (orchestration/object_store.py).
        object_store.register_for_lake(self.connection)

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> None:
        self.connection.execute(sql, params)

    def query(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple]:
        return self.connection.execute(sql, params).fetchall()

    def execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self.connection.executemany(sql, [list(row) for row in rows])

    def query_arrow(self, sql: str) -> pa.Table:
        return self.connection.sql(sql).to_arrow_table()

    def append_arrow(self, table: str, data: pa.Table) -> None:
        self.connection.register("_meterline_append", data)
        try:
            names = ", ".join(data.column_names)
            self.connection.execute(f"insert into {table} ({names}) select {names} from _meterline_append")
        finally:
            self.connection.unregister("_meterline_append")

    def _insert_rows(self, table: str, width: int, rows: Sequence[Sequence[Any]]) -> None:
        placeholders = ", ".join(["?"] * width)
        self.connection.executemany(f"insert into {table} values ({placeholders})", [list(r) for r in rows])

    def close(self) -> None:
        self.connection.close()


class PostgresWarehouse(Warehouse):
    kind = "postgres"
    placeholder = "%s"

    def __init__(self, dsn: str):
        import psycopg2  # imported here: only the Postgres target needs it

        self.connection = psycopg2.connect(dsn)
        self.connection.autocommit = True

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> None:
        with self.connection.cursor() as cursor:
            cursor.execute(sql, params)

    def query(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple]:
        with self.connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()

    def execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            with self.connection.cursor() as cursor:
                cursor.executemany(sql, [tuple(row) for row in rows])

    def query_arrow(self, sql: str) -> pa.Table:
        with self.connection.cursor() as cursor:
            cursor.execute(sql)
            names = [d[0] for d in cursor.description]
            rows = cursor.fetchall()
        return pa.table({n: [r[i] for r in rows] for i, n in enumerate(names)})

    def append_arrow(self, table: str, data: pa.Table) -> None:
        # COPY in CSV form is the fast path into Postgres; NULL is the empty unquoted field.
        buffer = io.BytesIO()
        pa_csv.write_csv(data, buffer, pa_csv.WriteOptions(include_header=False, quoting_style="needed"))
        buffer.seek(0)
        names = ", ".join(data.column_names)
        with self.connection.cursor() as cursor:
            cursor.copy_expert(f"copy {table} ({names}) from stdin with (format csv)", buffer)

    def _insert_rows(self, table: str, width: int, rows: Sequence[Sequence[Any]]) -> None:
        placeholders = ", ".join(["%s"] * width)
        with self.connection.cursor() as cursor:
            cursor.executemany(f"insert into {table} values ({placeholders})", [tuple(r) for r in rows])

    def close(self) -> None:
        self.connection.close()


def postgres_dsn_from_env() -> str:
    env = os.environ
    return (
        f"host={env.get('METERLINE_PG_HOST', 'localhost')} port={env.get('METERLINE_PG_PORT', '5432')} "
        f"user={env.get('METERLINE_PG_USER', 'postgres')} password={env.get('METERLINE_PG_PASSWORD', '')} "
        f"dbname={env.get('METERLINE_PG_DATABASE', 'meterline')}"
    )


def open_warehouse(settings: Settings, *, read_only: bool = False) -> Warehouse:
    if settings.target == "duckdb":
        if read_only and not settings.warehouse_path.exists():
            raise FileNotFoundError(
                f"No warehouse at {settings.warehouse_path}: run `meterline run` (or `make run`) first."
            )
        return DuckDBWarehouse(
            settings.warehouse_path, read_only=read_only, memory_limit=settings.duckdb_memory_limit
        )
    if settings.target == "postgres":
        return PostgresWarehouse(postgres_dsn_from_env())
    if settings.target == "spark":
        from orchestration.spark import SparkWarehouse  # pyspark only for this target

        return SparkWarehouse(settings)
    raise ValueError(f"Unknown METERLINE_TARGET {settings.target!r}: expected duckdb, postgres or spark")


@contextmanager
def connect(settings: Settings, *, read_only: bool = False) -> Iterator[Warehouse]:
    warehouse = open_warehouse(settings, read_only=read_only)
    try:
        yield warehouse
    finally:
        warehouse.close()


def postgres_url_from_env() -> str:
    """SQLAlchemy URL of the Postgres target (for Great Expectations)."""
    from urllib.parse import quote

    env = os.environ
    return (
        f"postgresql+psycopg2://{quote(env.get('METERLINE_PG_USER', 'postgres'))}:"
        f"{quote(env.get('METERLINE_PG_PASSWORD', ''))}@{env.get('METERLINE_PG_HOST', 'localhost')}:"
        f"{env.get('METERLINE_PG_PORT', '5432')}/{env.get('METERLINE_PG_DATABASE', 'meterline')}"
    )
