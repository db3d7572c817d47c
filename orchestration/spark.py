"""The Spark target: one SparkSession per process, shared by the loaders and by dbt.

dbt-spark's `session` method runs dbt's SQL in a SparkSession of the process that runs dbt
(`SparkSession.builder.enableHiveSupport().getOrCreate()`). The loaders (catalog, events,
ledger) must see the same catalog of tables, and a local Hive metastore (embedded Derby)
admits one JVM at a time. So on this target dbt runs in this process (pipeline.run_dbt), and
`spark_session` creates the session first, with the home's warehouse folder and metastore:
dbt-spark's getOrCreate then returns it.

On a real cluster nothing here is needed: dbt-spark connects with `method: thrift`, `http`
(Databricks) or `odbc`, and the loaders write through that cluster's own tools. See
docs/engines.md.
"""

from __future__ import annotations

import os
import re
import threading
import uuid
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa

from orchestration.settings import Settings
from orchestration.warehouse import Warehouse

_lock = threading.Lock()
_session_home: Path | None = None


def spark_conf(settings: Settings) -> dict[str, str]:
    """The session's configuration: the same values profiles.yml gives dbt-spark (through the
    variables of Settings.dbt_env), so a plain `dbt build --target spark` sees the same tables."""
    return {
        "spark.master": settings.spark_master,
        "spark.app.name": "meterline",
        "spark.sql.warehouse.dir": str(settings.spark_dir / "warehouse"),
        "spark.hadoop.javax.jdo.option.ConnectionURL":
            f"jdbc:derby:;databaseName={settings.spark_dir / 'metastore_db'};create=true",
        # Naive timestamps are UTC everywhere in Meterline.
        "spark.sql.session.timeZone": "UTC",
        # Exact decimals: by default Spark cuts a result that could overflow 38 digits to 6
        # decimals (even (38, 9) + (38, 12)); money must keep its scale (macros/money.sql).
        "spark.sql.decimalOperations.allowPrecisionLoss": "false",
        # Small data on few cores: the default 200 shuffle partitions would be 200 tiny tasks.
        "spark.sql.shuffle.partitions": os.environ.get("METERLINE_SPARK_SHUFFLE_PARTITIONS", "4"),
        "spark.driver.memory": settings.spark_driver_memory,
        "spark.ui.enabled": "false",
        # Derby writes derby.log into the working directory unless told otherwise.
        "spark.driver.extraJavaOptions": f"-Dderby.system.home={settings.spark_dir}",
    }


def spark_session(settings: Settings):
    """The process's SparkSession for this home (created on first use)."""
    global _session_home
    from pyspark.sql import SparkSession

    with _lock:
        if _session_home is not None and _session_home != settings.spark_dir:
            raise RuntimeError(
                f"This process already runs Spark for {_session_home}; a local Hive metastore "
                f"serves one warehouse per process, so {settings.spark_dir} needs its own process.")
        settings.spark_dir.mkdir(parents=True, exist_ok=True)
        builder = SparkSession.builder.enableHiveSupport()
        for key, value in spark_conf(settings).items():
            builder = builder.config(key, value)
        session = builder.getOrCreate()
        session.sparkContext.setLogLevel("ERROR")
        _session_home = settings.spark_dir
        return session


# Loaders write DDL in types DuckDB and PostgreSQL share; Spark spells some differently and
# has no key constraints or transactions (a Delta table's statements are atomic one by one).
_CONSTRAINT = re.compile(r",\s*(primary key|unique)\s*\([^)]*\)", re.IGNORECASE)
_VARCHAR = re.compile(r"\b(varchar|text)\b(?!\s*\()", re.IGNORECASE)
_CREATE_TABLE = re.compile(r"^\s*create table\b", re.IGNORECASE)


def spark_ddl(sql: str) -> str:
    """A loader's `create table` in Spark's dialect: strings, no key constraints, Parquet."""
    sql = _CONSTRAINT.sub("", sql)
    sql = _VARCHAR.sub("string", sql)
    return sql.rstrip().rstrip(";") + " using parquet"


class SparkWarehouse(Warehouse):
    """The loaders' surface over a SparkSession (`?` parameters, Spark 3.5's positional args)."""

    kind = "spark"
    placeholder = "?"

    def __init__(self, settings: Settings):
        self.session = spark_session(settings)
        self.spark_dir = settings.spark_dir

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> None:
        statement = sql.strip().lower()
        if statement in ("begin", "commit", "rollback"):
            return  # no multi-statement transactions on Spark: each statement stands alone
        if _CREATE_TABLE.match(sql):
            sql = spark_ddl(sql)
        self.session.sql(sql, args=list(params) if params else None).collect()

    def query(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple]:
        rows = self.session.sql(sql, args=list(params) if params else None).collect()
        return [tuple(row) for row in rows]

    def execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        for row in rows:
            self.execute(sql, row)

    def query_arrow(self, sql: str) -> pa.Table:
        return pa.Table.from_pandas(self.session.sql(sql).toPandas(), preserve_index=False)

    def append_arrow(self, table: str, data: pa.Table) -> None:
        """Through a Parquet file, so that Spark reads the exact Arrow types and nulls."""
        if data.num_rows == 0:
            return
        import pyarrow.parquet as pq

        staging = self.spark_dir / "staging"
        staging.mkdir(parents=True, exist_ok=True)
        path = staging / f"{table}-{uuid.uuid4().hex}.parquet"
        pq.write_table(data, path)
        try:
            from pyspark.sql import functions as F

            columns = self.session.table(table).columns
            frame = self.session.read.parquet(str(path))
            # insertInto matches by position: the table's order, NULL for what the data lacks.
            frame.select(*[F.col(name) if name in data.column_names else F.lit(None).alias(name)
                           for name in columns]).write.insertInto(table)
        finally:
            path.unlink(missing_ok=True)

    def table_exists(self, schema: str, table: str) -> bool:
        return self.session.catalog.tableExists(f"{schema}.{table}")

    def column_names(self, schema: str, table: str) -> set[str]:
        return {column.name for column in self.session.catalog.listColumns(f"{schema}.{table}")}

    def replace_table(self, table: str, columns, rows) -> None:
        schema = table.split(".")[0]
        ddl = ", ".join(f"{name} {sql_type}" for name, sql_type in columns)
        self.execute(f"create schema if not exists {schema}")
        self.execute(f"drop table if exists {table}")
        self.execute(f"create table {table} ({ddl})")
        if rows:
            self._insert_rows(table, len(columns), rows)

    def _insert_rows(self, table: str, width: int, rows) -> None:
        # One statement of literal rows (a statement per row would be a Spark job per row).
        values = ", ".join("(" + ", ".join(_literal(value) for value in row) + ")" for row in rows)
        self.session.sql(f"insert into {table} values {values}").collect()

    def close(self) -> None:
        pass  # the session lives as long as the process: dbt and the next loader reuse it


def _literal(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, Decimal)):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, datetime):
        return f"timestamp'{value.isoformat(sep=' ')}'"
    if isinstance(value, date):
        return f"date'{value.isoformat()}'"
    text = str(value).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{text}'"
