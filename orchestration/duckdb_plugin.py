"""A dbt-duckdb plugin (profiles.yml, `plugins`): dbt's DuckDB connections read the events of
an object-store lake as the loaders' connections do (orchestration/object_store.py)."""

from __future__ import annotations

from dbt.adapters.duckdb.plugins import BasePlugin

from orchestration import object_store


class Plugin(BasePlugin):
    def configure_connection(self, conn) -> None:
        object_store.register_for_lake(conn)
