"""Where things live. Everything is read from the environment when asked, never at import."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from orchestration.object_store import as_location

PROJECT_DIR = Path(__file__).resolve().parent.parent
"""The dbt project root (dbt_project.yml, profiles.yml, models/)."""


@dataclass(frozen=True)
class Settings:
    home: Path
    """Working folder: catalog/, landing/, output/ and the DuckDB warehouse live here."""
    target: str
    """dbt target: duckdb (default), postgres or spark."""
    warehouse_path: Path
    duckdb_memory_limit: str
    events_lake: Path | str | None = None
    """A folder (or object-store URI) of Parquet event files read in place instead of
    <home>/landing (orchestration/lake.py)."""
    spark_master: str = "local[2]"
    """Spark target only: the master of the in-process session (orchestration/spark.py)."""
    spark_driver_memory: str = "2g"

    @property
    def catalog_dir(self) -> Path:
        return self.home / "catalog"

    @property
    def landing_dir(self) -> Path:
        return self.home / "landing"

    @property
    def output_dir(self) -> Path:
        return self.home / "output"

    @property
    def spark_dir(self) -> Path:
        """Spark target only: the local warehouse folder and Hive metastore."""
        return self.home / "spark"

    def dbt_env(self) -> dict[str, str]:
        """Variables profiles.yml reads, for a dbt subprocess or an in-process dbt run."""
        return {
            "METERLINE_TARGET": self.target,
            "METERLINE_WAREHOUSE": str(self.warehouse_path),
            "METERLINE_DUCKDB_MEMORY_LIMIT": self.duckdb_memory_limit,
            "METERLINE_SPARK_MASTER": self.spark_master,
            "METERLINE_SPARK_DIR": str(self.spark_dir),
        }


# The billing run's clock for dbt (macros/as_of.sql): an environment variable, not a dbt var,
# because a changed var makes dbt parse the whole project again.
AS_OF_VARIABLE = "METERLINE_AS_OF"


@contextmanager
def environment(variables: dict[str, str]) -> Iterator[None]:
    """`variables` in this process's environment for the duration of a block, then the previous
    values back: an in-process dbt run (Dagster, Spark) must not leave its warehouse location or
    clock behind for whatever runs next in the same process."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def dbt_environment(settings: Settings, as_of: str | None = None):
    """The settings' dbt variables (and the run's clock, 'YYYY-MM-DD HH:MM:SS') in this process's
    environment for the duration of a block."""
    return environment({**settings.dbt_env(), **({AS_OF_VARIABLE: as_of} if as_of else {})})


def get_settings(home: Path | str | None = None) -> Settings:
    """Settings from METERLINE_* variables; `home` overrides METERLINE_HOME."""
    home_path = Path(home or os.environ.get("METERLINE_HOME") or PROJECT_DIR / "data").resolve()
    warehouse = os.environ.get("METERLINE_WAREHOUSE")
    return Settings(
        home=home_path,
        target=os.environ.get("METERLINE_TARGET", "duckdb"),
        warehouse_path=Path(warehouse).resolve() if warehouse else home_path / "warehouse.duckdb",
        duckdb_memory_limit=os.environ.get("METERLINE_DUCKDB_MEMORY_LIMIT", "3GB"),
        events_lake=as_location(os.environ["METERLINE_EVENTS_LAKE"]) if os.environ.get("METERLINE_EVENTS_LAKE")
        else None,
        spark_master=os.environ.get("METERLINE_SPARK_MASTER", "local[2]"),
        spark_driver_memory=os.environ.get("METERLINE_SPARK_DRIVER_MEMORY", "2g"),
    )
