"""Events read in place from a Parquet lake partitioned by date bill exactly as the same
events ingested into the warehouse, incrementally, with rejects kept (orchestration/lake.py)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pytest

from orchestration import pipeline
from orchestration.demo.generator import generate_demo
from orchestration.exports import fetch_invoices, reconciliation
from orchestration.ingest import PARSED_EVENT_AT
from orchestration.lake import LakeError
from orchestration.settings import get_settings
from orchestration.warehouse import connect

AS_OF = datetime(2026, 11, 21, 12)
FIRST_LOAD = datetime(2026, 11, 19, 1)
SECOND_LOAD = datetime(2026, 11, 21, 12)
LATE_DAYS = 3


def _results(settings):
    with connect(settings, read_only=True) as warehouse:
        invoices = [{k: v for k, v in i.items() if k != "computed_as_of"} for i in fetch_invoices(warehouse)]
        rejects = warehouse.query("select reason_code, count(*) from raw.event_rejects group by 1 order by 1")
        # A duplicate's event_id is its raw event's, though int_event_duplicates computes it
        # from the batch and row (macro event_id) rather than reading it.
        [(duplicates, misnamed)] = warehouse.query(
            "select count(*), count(*) filter (where events.event_id is null)"
            " from intermediate.int_event_duplicates as duplicates left join raw.events as events"
            " on events.event_id = duplicates.event_id and events.batch_id = duplicates.batch_id"
            " and events.source_row = duplicates.source_row")
        assert duplicates > 0 and misnamed == 0
        return invoices, sorted(reconciliation(warehouse)), rejects


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A generated demo's daily Parquet files, with one malformed record added to a day."""
    home = tmp_path_factory.mktemp("demo") / "home"
    generate_demo(home, customers=10, events=3_000, seed=9, as_of=AS_OF.replace(tzinfo=timezone.utc), overwrite=True)
    days = sorted((home / "landing").glob("events-*.parquet"))
    with duckdb.connect() as con:  # a record without a timestamp: rejected, kept, counted
        con.execute(f"""copy (select * from read_parquet('{days[5]}')
                              union all
                              (select 'broken-1', external_subscription_id, external_customer_id, code, null,
                                      properties
                               from read_parquet('{days[5]}') limit 1))
                        to '{days[5]}.tmp' (format parquet)""")
    shutil.move(f"{days[5]}.tmp", days[5])
    return home, days


@pytest.fixture(scope="module")
def ingested(demo, tmp_path_factory):
    """Warehouse input: the demo's files ingested (copied) in two loads; its results."""
    home, days = demo
    copied = get_settings(tmp_path_factory.mktemp("copied") / "home")
    shutil.copytree(home / "catalog", copied.catalog_dir)
    copied.landing_dir.mkdir()
    pipeline.read_and_load_catalog(copied, copied.catalog_dir)
    pipeline.ingest(copied, days[:-LATE_DAYS], loaded_at=FIRST_LOAD)
    pipeline.build(copied, FIRST_LOAD)
    pipeline.ingest(copied, days[-LATE_DAYS:], loaded_at=SECOND_LOAD)
    assert not pipeline.build(copied, AS_OF).full_refresh
    return _results(copied)


def test_lake_input_bills_like_warehouse_input(demo, ingested, tmp_path):
    home, days = demo
    early, late = days[:-LATE_DAYS], days[-LATE_DAYS:]

    # Lake input: the same files under date partitions, registered as they arrive.
    lake = tmp_path / "lake"
    in_place = get_settings(tmp_path / "in_place")
    shutil.copytree(home / "catalog", in_place.catalog_dir)
    in_place.landing_dir.mkdir()

    def arrive(files):
        for file in files:
            partition = lake / f"date={file.stem.removeprefix('events-')}"
            partition.mkdir(parents=True)
            shutil.copy(file, partition / "part-0.parquet")

    pipeline.read_and_load_catalog(in_place, in_place.catalog_dir)
    arrive(early)
    first = pipeline.register_lake(in_place, lake, loaded_at=FIRST_LOAD)
    assert first.rejected_by_reason == {"missing_timestamp": 1}
    pipeline.build(in_place, FIRST_LOAD)
    arrive(late)
    second = pipeline.register_lake(in_place, lake, loaded_at=SECOND_LOAD)
    assert len(second.files) == LATE_DAYS, "only the new files are read"
    assert not pipeline.build(in_place, AS_OF).full_refresh

    invoices, outcomes, rejects = _results(in_place)
    assert len(invoices) > 20
    assert rejects == [("missing_timestamp", 1)]
    assert ingested == (invoices, outcomes, rejects)

    with connect(in_place, read_only=True) as warehouse:
        # Nothing was copied: raw.events is a view over the lake's files.
        [[kind]] = warehouse.query("select table_type from information_schema.tables "
                                   "where table_schema = 'raw' and table_name = 'events'")
        assert kind == "VIEW"
        # What an incremental run reads: the plan of the newest load's events has one Parquet
        # scan (that load's files); the earlier registration's branch is pruned when planned.
        def scans(where: str) -> int:
            return "\n".join(row[1] for row in warehouse.query(
                f"explain select count(*) from raw.events where {where}")).count("READ_PARQUET")

        # The first load's clean files, its file with a reject (left out by a join), the second load.
        assert scans("true") == 3
        assert scans(f"loaded_at > timestamp '{FIRST_LOAD}'") == 1
        [[count]] = warehouse.query(f"select count(*) from raw.events where loaded_at > timestamp '{FIRST_LOAD}'")
        assert count == sum(duckdb.sql(f"select count(*) from read_parquet('{f}')").fetchall()[0][0] for f in late)
    # ... and the deduplication's and the metering's incremental runs filter on that constant.
    for model in ("int_event_contenders.sql", "int_usage_increments.sql"):
        compiled = next((in_place.home / "dbt" / "target" / "compiled").rglob(model)).read_text()
        assert f"loaded_at > cast('{FIRST_LOAD}' as timestamp)" in compiled, model


def test_a_lake_with_typed_timestamps_bills_like_warehouse_input(demo, ingested, tmp_path):
    """Parquet written by Spark or pandas types its timestamps: the view reads them as they
    are (no text round trip) and the invoices are those of the text timestamps ingested."""
    home, days = demo
    settings = get_settings(tmp_path / "typed")
    shutil.copytree(home / "catalog", settings.catalog_dir)
    settings.landing_dir.mkdir()
    pipeline.read_and_load_catalog(settings, settings.catalog_dir)
    lake = tmp_path / "lake"
    # The instant validation reads from the text (ingest.PARSED_EVENT_AT): with a time zone in
    # the first load's files, naive UTC in the second's.
    instant = PARSED_EVENT_AT.replace("$text", '"timestamp"')
    typed = {False: f"timezone('UTC', {instant})", True: instant}

    def arrive(files, naive: bool):
        for file in files:
            partition = lake / f"date={file.stem.removeprefix('events-')}"
            partition.mkdir(parents=True)
            with duckdb.connect() as con:
                con.execute("set TimeZone = 'UTC'")
                con.execute(f"""copy (select * replace ({typed[naive]} as "timestamp")
                                      from read_parquet('{file}'))
                                to '{partition / "part-0.parquet"}' (format parquet)""")

    arrive(days[:-LATE_DAYS], naive=False)
    pipeline.register_lake(settings, lake, loaded_at=FIRST_LOAD)
    pipeline.build(settings, FIRST_LOAD)
    arrive(days[-LATE_DAYS:], naive=True)
    pipeline.register_lake(settings, lake, loaded_at=SECOND_LOAD)
    assert not pipeline.build(settings, AS_OF).full_refresh

    assert _results(settings) == ingested
    with connect(settings, read_only=True) as warehouse:
        [[view]] = warehouse.query("select sql from duckdb_views() where schema_name = 'raw' and view_name = 'events'")
    assert "timezone('UTC', lake.\"timestamp\")" in view and 'lake."timestamp" AS event_at' in view, view
    assert 'CAST("timestamp" AS VARCHAR)' not in view, view


def test_a_lake_cannot_join_a_warehouse_of_ingested_events(demo, tmp_path):
    home, days = demo
    settings = get_settings(tmp_path / "mixed")
    shutil.copytree(home / "catalog", settings.catalog_dir)
    settings.landing_dir.mkdir()
    pipeline.read_and_load_catalog(settings, settings.catalog_dir)
    pipeline.ingest(settings, days[:1], loaded_at=FIRST_LOAD)
    lake = tmp_path / "lake" / "date=2026-11-20"
    lake.mkdir(parents=True)
    shutil.copy(days[-1], lake / "part-0.parquet")
    with pytest.raises(LakeError, match="either from ingested files or from a lake"):
        pipeline.register_lake(settings, lake.parent, loaded_at=SECOND_LOAD)


def _s3_server(patch, stops):
    """A local S3 (moto's server), reached through the standard AWS variables, as s3fs (and
    dbt's subprocess) read them."""
    moto_server = pytest.importorskip("moto.server")
    pytest.importorskip("s3fs")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    stops.append(server.stop)
    host, port = server.get_host_and_port()
    for name, value in {"AWS_ACCESS_KEY_ID": "meterline", "AWS_SECRET_ACCESS_KEY": "meterline",
                        "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": f"http://{host}:{port}"}.items():
        patch.setenv(name, value)
    import fsspec

    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    fs.mkdir("events-lake")
    return fs


def _gcs_server(patch, stops):
    """A local Google Cloud Storage (gcp-storage-emulator), reached through
    STORAGE_EMULATOR_HOST, as gcsfs reads it. gcsfs first asks a bucket's type over gRPC,
    which the emulator does not serve: GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false, read when gcsfs
    is imported, keeps it on the JSON API (real buckets need neither variable)."""
    patch.setenv("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
    emulator = pytest.importorskip("gcp_storage_emulator.server")
    gcsfs = pytest.importorskip("gcsfs")
    from gcsfs.core import GCSFileSystem

    assert gcsfs.GCSFileSystem is GCSFileSystem, "gcsfs was imported before the switch was set"
    server = emulator.create_server("127.0.0.1", 0, in_memory=True, default_bucket="events-lake")
    server.start()
    stops.append(server.stop)
    port = server._api._httpd.server_address[1]
    patch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
    import fsspec

    return fsspec.filesystem("gs", skip_instance_cache=True)


# Where `make test` installs Azurite (AZURITE_BLOB names another).
AZURITE = Path(__file__).resolve().parents[1] / ".venv" / "azurite" / "node_modules" / ".bin" / "azurite-blob"
# Azurite's documented development account (not a secret: every Azurite has it).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def _azure_server(patch, stops):
    """A local Azure Blob Storage (Azurite, installed by `make test` when npm is there),
    reached through AZURE_STORAGE_CONNECTION_STRING, as adlfs reads it."""
    pytest.importorskip("adlfs")
    binary = os.environ.get("AZURITE_BLOB") or (str(AZURITE) if AZURITE.exists() else shutil.which("azurite-blob"))
    if binary is None:
        pytest.skip("Azurite is not installed (make test installs it with npm)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([binary, "--blobHost", "127.0.0.1", "--blobPort", str(port), "--inMemoryPersistence",
                               "--skipApiVersionCheck", "--silent"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop():  # in memory: nothing to flush, and Azurite lingers after a SIGTERM
        server.kill()
        server.wait(timeout=30)

    stops.append(stop)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Azurite ({binary}) did not start on port {port}") from None
            time.sleep(0.1)
    patch.setenv("AZURE_STORAGE_CONNECTION_STRING",
                 f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
                 f"BlobEndpoint=http://127.0.0.1:{port}/{AZURITE_ACCOUNT};")
    import fsspec

    fs = fsspec.filesystem("az", skip_instance_cache=True)
    fs.mkdir("events-lake")
    return fs


@pytest.fixture(scope="module", params=["s3", "gs", "az"])
def object_store(request):
    """An object store on this machine with a bucket `events-lake`: its scheme and its fsspec
    file system. The server stops and the variables go back however the setup ends."""
    patch, stops = pytest.MonkeyPatch(), []
    try:
        yield request.param, {"s3": _s3_server, "gs": _gcs_server, "az": _azure_server}[request.param](patch, stops)
    finally:
        patch.undo()
        for stop in reversed(stops):
            stop()


def test_object_store_lake_bills_like_warehouse_input(demo, ingested, object_store, tmp_path):
    """The same lake in a bucket (s3://…, gs://…, az://…): listed, validated and read in place through
    fsspec, by the loaders and by dbt alike (orchestration/object_store.py)."""
    home, days = demo
    scheme, store = object_store
    settings = get_settings(tmp_path / scheme)
    shutil.copytree(home / "catalog", settings.catalog_dir)
    settings.landing_dir.mkdir()
    pipeline.read_and_load_catalog(settings, settings.catalog_dir)
    lake = f"{scheme}://events-lake/usage"

    def arrive(files):
        for file in files:
            store.put(str(file), f"events-lake/usage/date={file.stem.removeprefix('events-')}/part-0.parquet")

    arrive(days[:-LATE_DAYS])
    first = pipeline.register_lake(settings, lake, loaded_at=FIRST_LOAD)
    assert first.rejected_by_reason == {"missing_timestamp": 1}
    # Named by the store's first protocol (abfs:// for az://): the name DuckDB reads them by.
    assert all(file.startswith(f"{store.unstrip_protocol('events-lake/usage')}/date=") for file in first.files)
    pipeline.build(settings, FIRST_LOAD)
    arrive(days[-LATE_DAYS:])
    second = pipeline.register_lake(settings, lake, loaded_at=SECOND_LOAD)
    assert len(second.files) == LATE_DAYS, "only the new objects are read"
    assert not pipeline.build(settings, AS_OF).full_refresh

    assert _results(settings) == ingested
    with connect(settings, read_only=True) as warehouse:  # a new connection reads the bucket too
        [[stored]] = warehouse.query("select count(distinct source_file) from raw.events")
    assert stored == len(days)


def test_object_store_lake_names_a_missing_prefix(object_store, tmp_path, demo):
    home, _ = demo
    settings = get_settings(tmp_path / "missing")
    shutil.copytree(home / "catalog", settings.catalog_dir)
    pipeline.read_and_load_catalog(settings, settings.catalog_dir)
    missing = f"{object_store[0]}://events-lake/nothing-here"
    with pytest.raises(LakeError, match=missing):
        pipeline.register_lake(settings, missing, loaded_at=FIRST_LOAD)
