"""Dagster resources: where the warehouse and the working folder are."""


from dagster import ConfigurableResource

from orchestration.settings import Settings, get_settings


class MeterlineSettings(ConfigurableResource):
    """The working folder (catalog/, landing/, output/, DuckDB file). Empty: $METERLINE_HOME or ./data."""

    home: str = ""

    def settings(self) -> Settings:
        return get_settings(self.home or None)
