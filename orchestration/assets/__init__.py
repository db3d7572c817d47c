"""Dagster assets, checks, sensors and schedules, one module per concern."""
