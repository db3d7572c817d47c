"""Shared fixtures: the dbt manifest, small working folders, and a local PostgreSQL server."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from orchestration import pipeline
from orchestration.settings import PROJECT_DIR, Settings, get_settings

FIXTURES = Path(__file__).parent / "fixtures"
SMALL_CATALOG = FIXTURES / "small_catalog"
SMALL_AS_OF = datetime(2026, 11, 21, 12, 0, 0)


@pytest.fixture(scope="session", autouse=True)
def dbt_manifest() -> Path:
    """dagster-dbt reads target/manifest.json when the definitions load: prepare it once.

    With pytest-xdist every worker runs this fixture; a file lock keeps their `dbt parse`
    runs from writing the same manifest at once."""
    dbt = Path(sys.executable).parent / "dbt"
    (PROJECT_DIR / "target").mkdir(exist_ok=True)
    with open(PROJECT_DIR / "target" / ".parse.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        subprocess.run([str(dbt), "parse", "--project-dir", str(PROJECT_DIR), "--profiles-dir", str(PROJECT_DIR),
                        "--quiet"], check=True, cwd=PROJECT_DIR)
    return PROJECT_DIR / "target" / "manifest.json"


@pytest.fixture(scope="session", autouse=True)
def _shifted_clock() -> Iterator[None]:
    """TEST_CLOCK_SHIFT_DAYS=N runs the suite as if the real clock were N days later (what
    pipeline.utc_now stamps: load times, finalisations, payments), to find the tests whose
    result depends on today's date before the calendar does."""
    days = int(os.environ.get("TEST_CLOCK_SHIFT_DAYS", "0"))
    if not days:
        yield
        return
    real = pipeline.utc_now
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pipeline, "utc_now", lambda: real() + timedelta(days=days))
        yield


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never read the developer's METERLINE_* settings."""
    for name in list(os.environ):
        if name.startswith("METERLINE_"):
            monkeypatch.delenv(name)


def make_home(tmp_path: Path, catalog: Path = SMALL_CATALOG) -> Settings:
    """A working folder with a copy of `catalog` and an empty landing folder."""
    home = tmp_path / "home"
    shutil.copytree(catalog, home / "catalog")
    (home / "landing").mkdir(parents=True)
    return get_settings(home)


def run_all(settings: Settings, as_of: datetime = SMALL_AS_OF, *, full_refresh: bool | None = None,
            loaded_at: datetime | None = None):
    """What `meterline run` does, without the printing: catalog, new landing files, dbt build, export.
    The files are stamped `loaded_at` (default: now, as `meterline run` does)."""
    catalog = pipeline.read_and_load_catalog(settings, settings.catalog_dir)
    report = pipeline.ingest(settings, pipeline.new_landing_files(settings), loaded_at=loaded_at or pipeline.utc_now())
    result = pipeline.build(settings, as_of, full_refresh=full_refresh)
    outputs = pipeline.export(settings)
    return catalog, report, result, outputs


@pytest.fixture
def small_home(tmp_path: Path) -> Settings:
    return make_home(tmp_path)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator:
    from orchestration.local_postgres import LocalPostgresError, find_pg_bin, local_postgres

    try:
        find_pg_bin()
    except LocalPostgresError as error:
        if os.environ.get("CI"):
            raise  # CI must exercise Postgres: a missing server is a failure there, not a skip
        pytest.skip(f"no PostgreSQL server binaries: {error}")
    with local_postgres() as server:
        yield server


_exit_status = 0


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    global _exit_status
    _exit_status = int(exitstatus)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Leave without interpreter finalisation once pytest has printed its summary.

    DuckDB's Python module (nanobind) prints pages of "leaked instance" warnings at
    finalisation when SQLAlchemy (used by Great Expectations) still caches its objects. They are
    harmless but would bury pytest's closing line, which CI reads. Everything pytest writes is
    flushed first; the exit code is pytest's own.
    """
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return  # an xdist worker must shut down normally to report back; the controller exits here
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_exit_status)


def catalog_error_after_edit(catalog: Path, tmp_path: Path, old: str, new: str, file: str = "plans.yml"):
    """Copy a catalog, replace `old` by `new` in one of its files (plans.yml by default), and
    return the CatalogError that reading it raises, which must name that file (the test fails
    if the edit does not apply or nothing is raised). The edited file is `error.file`."""
    from orchestration.catalog import CatalogError, read_catalog

    copy = tmp_path / "edited_catalog"
    shutil.copytree(catalog, copy)
    edited = copy / file
    text = edited.read_text()
    assert old in text, f"the edit does not apply: {old!r}"
    edited.write_text(text.replace(old, new))
    with pytest.raises(CatalogError) as raised:
        read_catalog(copy)
    assert str(raised.value).startswith(f"{edited}: ")
    return raised.value
