"""The order in which events arrive never changes an invoice.

The hand-computed fixtures (every charge model; every aggregation) are re-sent shuffled and
split into several files, ingested as separate batches at different load times, and billed:
the invoices must equal those of the single in-order file. Each example is a whole pipeline
run (about ten seconds), so Hypothesis draws only a few orders per fixture.
"""

from __future__ import annotations

import shutil
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestration import pipeline
from orchestration.exports import fetch_invoices
from orchestration.settings import get_settings
from orchestration.warehouse import connect
from tests.conftest import FIXTURES

CASES = {"charge_models": datetime(2026, 11, 15, 12), "aggregations": datetime(2026, 11, 15)}
_baselines: dict[str, list[dict]] = {}


def _comparable(invoices: list[dict]) -> list[dict]:
    return [{k: v for k, v in invoice.items() if k != "computed_as_of"} for invoice in invoices]


def _baseline(case: str) -> list[dict]:
    if case not in _baselines:
        source = FIXTURES / case
        _baselines[case] = _comparable(
            pipeline.simulate(source / "catalog", [source / "events.jsonl"], as_of=CASES[case]).invoices)
    return _baselines[case]


def _bill_in_batches(case: str, batches: list[list[str]]) -> list[dict]:
    source = FIXTURES / case
    with tempfile.TemporaryDirectory(prefix="meterline-order-") as scratch:
        home = Path(scratch)
        shutil.copytree(source / "catalog", home / "catalog")
        settings_ = get_settings(home)
        pipeline.read_and_load_catalog(settings_, settings_.catalog_dir)
        loaded_at = datetime(2026, 11, 15, 13)
        for number, lines in enumerate(batches):
            path = home / f"batch-{number}.jsonl"
            path.write_text("\n".join(lines) + "\n")
            pipeline.ingest(settings_, [path], loaded_at=loaded_at + timedelta(minutes=number))
        pipeline.build(settings_, CASES[case], full_refresh=True)
        with connect(settings_, read_only=True) as warehouse:
            return _comparable(fetch_invoices(warehouse))


@st.composite
def shuffled_batches(draw, lines: list[str]) -> list[list[str]]:
    order = draw(st.permutations(lines))
    cuts = sorted(draw(st.sets(st.integers(1, len(order) - 1), max_size=3)))
    bounds = [0, *cuts, len(order)]
    return [list(order[a:b]) for a, b in zip(bounds, bounds[1:])]


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_arrival_order_never_changes_an_invoice(case):
    lines = (FIXTURES / case / "events.jsonl").read_text().splitlines()
    expected = _baseline(case)

    @settings(max_examples=2, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(batches=shuffled_batches(lines))
    def check(batches):
        assert _bill_in_batches(case, batches) == expected

    check()
