"""Several days billed one after the other, incrementally, give the invoices of a full rebuild.

A generated demo's daily event files arrive as a daily schedule would load them: the history
first, then one day per run with the clock moving on, then a file of retries and late events
for days already billed. Each run after the first is incremental (deduplication, matching and
usage read only what is new); a full rebuild at the end must give the same invoices, line
events and event outcomes.
"""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb

from orchestration import pipeline
from orchestration.demo.generator import generate_demo
from orchestration.exports import fetch_invoices, reconciliation
from orchestration.settings import get_settings
from orchestration.warehouse import connect

AS_OF = datetime(2026, 11, 21, 12)
DAILY_RUNS = 4


def _results(settings):
    with connect(settings, read_only=True) as warehouse:
        invoices = fetch_invoices(warehouse)
        outcomes = sorted(reconciliation(warehouse))
        line_events = warehouse.query(
            "select transaction_id, invoice_line_id, units from marts.fct_invoice_line_events "
            "order by transaction_id, invoice_line_id")
    # When a run computed an invoice differs between runs, not what it says.
    return [{k: v for k, v in i.items() if k != "computed_as_of"} for i in invoices], outcomes, line_events


def _run(settings, files: list[Path], day: datetime, *, full_refresh: bool | None = None):
    for file in files:
        shutil.move(file, settings.landing_dir / file.name)
    pipeline.ingest(settings, pipeline.new_landing_files(settings), loaded_at=day)
    return pipeline.build(settings, day, full_refresh=full_refresh)


def test_daily_incremental_runs_equal_a_full_rebuild(tmp_path):
    home = tmp_path / "home"
    generate_demo(home, customers=10, events=4_000, seed=11, as_of=AS_OF.replace(tzinfo=timezone.utc),
                  overwrite=True)
    settings = get_settings(home)
    held = tmp_path / "held"
    held.mkdir()
    for file in settings.landing_dir.iterdir():
        shutil.move(file, held / file.name)
    days = sorted(held.glob("events-*.parquet"))
    daily, history = days[-DAILY_RUNS:], days[:-DAILY_RUNS]
    pipeline.read_and_load_catalog(settings, settings.catalog_dir)

    first_day = datetime.strptime(daily[0].stem.removeprefix("events-"), "%Y-%m-%d")
    assert _run(settings, history, first_day).full_refresh
    for file in daily:
        day = datetime.strptime(file.stem.removeprefix("events-"), "%Y-%m-%d") + timedelta(days=1, hours=1)
        assert not _run(settings, [file], day).full_refresh

    # Retries of events already billed, and events of earlier days loaded late.
    late = held / "late-retries.parquet"
    with duckdb.connect() as con:
        con.execute(f"""
            copy (
                select * from read_parquet('{settings.landing_dir / history[3].name}') using sample 20 rows (reservoir, 1)
                union all
                select 'late_' || transaction_id as transaction_id, * exclude (transaction_id)
                from read_parquet('{settings.landing_dir / history[-2].name}') using sample 20 rows (reservoir, 2)
            ) to '{late}' (format parquet)""")
    final_day = day + timedelta(hours=6)
    assert not _run(settings, [late], final_day).full_refresh
    incremental = _results(settings)
    with connect(settings, read_only=True) as warehouse:
        # The index marks, as it takes each load, the events whose hash was already shared; a
        # full refresh trusts those marks instead of sorting every hash, so they must name
        # exactly the hashes that occur more than once.
        [(repeated, mismarked)] = warehouse.query("""
            select count(*) filter (where repeats), count(*) filter (where repeats <> marked)
            from (select count(*) > 1 as repeats, bool_or(is_key_repeated) as marked
                  from intermediate.int_event_keys group by key_hash) as hashes""")
    assert repeated >= 20 and mismarked == 0

    assert pipeline.build(settings, final_day, full_refresh=True).full_refresh
    rebuilt = _results(settings)

    invoices, outcomes, line_events = incremental
    assert len(invoices) > 20 and len(line_events) > 3_000
    duplicates = {reason: count for _, reason, count in outcomes}.get("duplicate", 0)
    assert duplicates >= 20, "the 20 retries are recognised as duplicates of events already billed"
    assert sum(1 for transaction_id, _, _ in line_events if transaction_id.startswith("late_")) == 20
    assert rebuilt[0] == invoices
    assert rebuilt[1] == outcomes
    assert rebuilt[2] == line_events
