"""Scripted misbehaviour for the fake accounting servers (tests/fakes/xero.py, netsuite.py)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass
class Fault:
    """A scripted misbehaviour, played on the next request(s) that match `method` and `path`
    (the path after the API's prefix, a prefix match)."""

    kind: str
    """rate_limit | unavailable | timeout_after_save | expired_token | reject_element"""
    method: str | None = None
    path: str | None = None
    times: int = 1
    retry_after: int = 1
    delay: float = 1.5
    """timeout_after_save: seconds the answer is held back after the request was applied."""
    match: str | None = None
    """reject_element: the number (InvoiceNumber, CreditNoteNumber, ...) of the element to refuse."""
    message: str = "A validation exception occurred"


def take_fault(faults: deque[Fault], method: str, path: str) -> Fault | None:
    """The first scripted fault matching this request, used up once its `times` are spent."""
    for fault in list(faults):
        if (fault.method is None or fault.method == method) and (fault.path is None or path.startswith(fault.path)):
            fault.times -= 1
            if fault.times <= 0:
                faults.remove(fault)
            return fault
    return None
