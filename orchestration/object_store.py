"""Lake files in an object store (`s3://…`, `gs://…`, `az://…`): listed, hashed and read through
fsspec, the file-system layer pandas and Dask use.

DuckDB reads such a path once the store's fsspec file system is registered on the connection
(`register_filesystem`). Every connection that may read `raw.events` registers the stores its
registered files live in: the loaders' (warehouse.py) and dbt's (orchestration/duckdb_plugin.py,
a dbt-duckdb plugin named in profiles.yml). So the view over the lake works from any process.

Credentials and endpoints come from the environment, as each store's library reads them
(s3fs: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL, ~/.aws; gcsfs:
GOOGLE_APPLICATION_CREDENTIALS; adlfs: AZURE_STORAGE_*). Install the store's package
(`pip install "meterline[s3]"` for s3fs, `"meterline[gcs]"` for gcsfs, `"meterline[azure]"`
for adlfs).
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import IO

import duckdb

_URI = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")

Location = str | Path
"""A local path, or an object-store URI kept as text (a Path would fold its `//`)."""


def protocol(location: Location) -> str | None:
    """The URI's scheme (`s3`), or None for a local path."""
    match = _URI.match(str(location)) if isinstance(location, str) else None
    return match.group(1).lower() if match and match.group(1).lower() != "file" else None


def as_location(text: str) -> Location:
    """A lake given on the command line or in the environment: a URI as is, else a local path."""
    return text.rstrip("/") if protocol(text) else Path(text).resolve()


def suffix(location: Location) -> str:
    return PurePosixPath(str(location)).suffix


def filesystem(scheme: str):
    """The fsspec file system of a store, configured from the environment."""
    import fsspec

    try:
        return fsspec.filesystem(scheme)
    except (ImportError, ValueError) as error:
        raise RuntimeError(f"{scheme}:// needs its fsspec package (for s3: pip install s3fs): {error}") from error


def list_files(root: str, extension: str) -> list[str]:
    """Every file under a URI whose name ends with `extension`, as URIs, sorted."""
    fs = filesystem(protocol(root))
    path = fs._strip_protocol(root)
    if not fs.exists(path):
        raise FileNotFoundError(f"{root}: no such bucket or prefix")
    # Named by the store's first protocol, whichever alias the lake was given by (adlfs:
    # abfs:// for az://): a file has one name, the one DuckDB reports when it reads it through
    # fsspec, so batch ids and rejects match the view's rows (tests/test_events_lake.py).
    return sorted(fs.unstrip_protocol(found) for found in fs.find(path) if found.endswith(extension))


def open_binary(location: Location) -> IO[bytes]:
    if protocol(location):
        import fsspec

        return fsspec.open(str(location), "rb").open()
    return Path(location).open("rb")


def register(con, schemes) -> None:
    """Make DuckDB read these stores' URIs through fsspec (once per connection and scheme)."""
    for scheme in sorted(set(schemes)):
        fs = filesystem(scheme)
        names = {fs.protocol} if isinstance(fs.protocol, str) else set(fs.protocol)
        if not names & set(con.list_filesystems()):  # DuckDB refuses a second registration
            con.register_filesystem(fs)


def register_for_lake(con) -> None:
    """Register the stores the warehouse's registered lake files live in (none for local lakes,
    and nothing to do on a warehouse without batches yet)."""
    try:
        rows = con.execute(
            "select distinct lower(regexp_extract(source_file, ?, 1)) "
            "from raw.ingest_batches where source_file like '%://%'", [_URI.pattern]).fetchall()
    except duckdb.CatalogException:  # no raw.ingest_batches yet
        return
    schemes = [row[0] for row in rows if row[0] and row[0] != "file"]
    if schemes:
        register(con, schemes)
