"""Meterline: warehouse-native usage metering and billing."""

__version__ = "0.1.0"
