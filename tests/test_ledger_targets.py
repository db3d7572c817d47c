"""The ledger's writes (finalisation, voids, credit notes, payments, month closes) are
multi-statement transactions. On a target whose tables have none (Spark's Parquet tables) they
are refused before anything is read or written. (`meterline run` there skips finalisation and
writes drafts: a whole Spark run, checked by hand, not here.)"""

from __future__ import annotations

import dataclasses
from datetime import date
from decimal import Decimal

import pytest

from orchestration import ledger, pipeline
from orchestration.reporting import close
from orchestration.settings import get_settings


@pytest.fixture
def spark_settings(tmp_path, monkeypatch):
    def no_warehouse(*args, **kwargs):
        raise AssertionError("the refusal must come before any warehouse is opened")

    monkeypatch.setattr(ledger, "connect", no_warehouse)
    monkeypatch.setattr(close, "connect", no_warehouse)
    monkeypatch.setattr(pipeline, "last_as_of", no_warehouse)
    return dataclasses.replace(get_settings(tmp_path), target="spark")


@pytest.mark.parametrize("operation, call", [
    ("finalisation", lambda settings: ledger.finalise(settings)),
    ("voiding", lambda settings: ledger.void(settings, "INV-1", "a reason")),
    ("issuing a credit note", lambda settings: ledger.issue_credit_note(settings, "INV-1", reason="order_change")),
    ("recording a payment", lambda settings: ledger.record_payment(settings, "INV-1", Decimal("1"),
                                                                   paid_on=date(2026, 11, 1))),
])
def test_ledger_writes_are_refused_on_spark(spark_settings, operation, call):
    with pytest.raises(ledger.FinalisationError, match=f"{operation} is not available on the spark target"):
        call(spark_settings)


def test_a_month_is_not_closed_on_spark(spark_settings):
    with pytest.raises(close.CloseError, match="not kept on the spark target"):
        close.close_month(spark_settings, date(2026, 10, 1))


def test_the_transactional_targets_keep_the_ledger(tmp_path):
    settings = get_settings(tmp_path)
    assert ledger.ledger_writes_supported(dataclasses.replace(settings, target="duckdb"))
    assert ledger.ledger_writes_supported(dataclasses.replace(settings, target="postgres"))
    assert not ledger.ledger_writes_supported(dataclasses.replace(settings, target="spark"))
