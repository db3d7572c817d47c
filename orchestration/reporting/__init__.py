"""Revenue reporting (docs/revenue.md): the monthly report and the month-end close."""

from orchestration.reporting.close import CloseError, close_month, month_state
from orchestration.reporting.report import ReportResult, write_report

__all__ = ["CloseError", "ReportResult", "close_month", "month_state", "write_report"]
