"""Throwaway local PostgreSQL servers for tests and benchmarks.

``local_postgres()`` runs ``initdb`` into a fresh directory, starts a private
``postgres`` on 127.0.0.1 with a free TCP port, creates the requested
database, yields a :class:`PostgresServer` describing how to connect, and on
exit stops the server (``pg_ctl stop -m fast``) and deletes the directory --
also when the body raised.

Design notes
------------
* **Binaries**: ``$METERLINE_PG_BIN`` if set (a directory holding ``initdb``,
  ``pg_ctl`` and ``postgres``); otherwise ``/usr/lib/postgresql/15/bin``, then
  the newest other ``/usr/lib/postgresql/*/bin``, a few other common prefixes,
  and finally whatever ``pg_ctl`` is on ``PATH``.
* **Authentication**: password authentication.  Each server gets a freshly
  generated random password for its superuser role (``meterline``), and
  ``pg_hba.conf`` allows TCP connections from 127.0.0.1 only, with
  ``scram-sha-256`` (PostgreSQL 15's default password hashing; it is the
  modern replacement for ``md5`` and every libpq >= 10, including the one in
  psycopg2-binary, speaks it).  The unix socket lives inside the 0700 data
  directory, so it is reachable only by the server's OS user and root; it is
  ``trust`` for that reason and is not used by this module.
* **root**: ``initdb`` and ``postgres`` refuse to run as root.  When the
  effective uid is 0, they (and ``pg_ctl``) are run as the ``postgres`` OS
  user (created with ``useradd`` if it does not exist) by dropping privileges
  in the child process (``subprocess``'s ``user=``/``group=``).  The server's
  directory is created under a temp root that every user can traverse
  (``/tmp`` unless ``$TMPDIR`` is traversable) and chowned to that user.
  Otherwise everything runs as the current user.
* **Speed**: ``initdb --no-sync``; ``fsync``, ``synchronous_commit`` and
  ``full_page_writes`` off; ``wal_level = minimal``.  Data is not crash safe,
  which is fine for a server that is deleted on exit.
* **Ports**: a port is chosen by binding port 0 on 127.0.0.1 and releasing it;
  if the server then fails to bind it (another process took it in between),
  a new port is chosen, up to a few attempts.
* **Concurrency**: every call has its own directory, port, password and
  process, so several servers can run at once in one process (threads too).

If the Python process is killed with SIGKILL the server outlives it (nothing
can run cleanup then); its directory is ``<tmp>/meterline-pg-*``.
"""

from __future__ import annotations

import glob
import logging
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import psycopg2
from psycopg2 import sql

__all__ = [
    "LocalPostgresError",
    "PostgresServer",
    "find_pg_bin",
    "local_postgres",
]

logger = logging.getLogger(__name__)

PG_BIN_ENV = "METERLINE_PG_BIN"
DEFAULT_USER = "meterline"
HOST = "127.0.0.1"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0
PORT_ATTEMPTS = 5
_SERVER_OS_USER = "postgres"
_REQUIRED_BINARIES = ("initdb", "pg_ctl", "postgres")
_PREFERRED_MAJOR = 15
# sockaddr_un.sun_path is 108 bytes on Linux (107 usable + NUL).
_MAX_SOCKET_PATH = 107
_LOG_TAIL_LINES = 40

_useradd_lock = threading.Lock()


class LocalPostgresError(RuntimeError):
    """A local PostgreSQL server could not be set up, started or stopped."""


@dataclass(frozen=True)
class PostgresServer:
    """Connection details of a running server."""

    host: str
    port: int
    user: str
    password: str = field(repr=False)
    dbname: str

    @property
    def dsn(self) -> str:
        """libpq keyword/value connection string (for ``psycopg2.connect``)."""
        parts = {
            "host": self.host,
            "port": str(self.port),
            "user": self.user,
            "password": self.password,
            "dbname": self.dbname,
        }
        return " ".join(f"{key}={_libpq_quote(value)}" for key, value in parts.items())

    @property
    def url(self) -> str:
        """SQLAlchemy URL (``postgresql+psycopg2://user:password@host:port/db``)."""
        return (
            f"postgresql+psycopg2://{quote(self.user, safe='')}:{quote(self.password, safe='')}"
            f"@{self.host}:{self.port}/{quote(self.dbname, safe='')}"
        )

    def env(self) -> dict[str, str]:
        """``METERLINE_PG_*`` environment variables (as read by profiles.yml)."""
        return {
            "METERLINE_PG_HOST": self.host,
            "METERLINE_PG_PORT": str(self.port),
            "METERLINE_PG_USER": self.user,
            "METERLINE_PG_PASSWORD": self.password,
            "METERLINE_PG_DATABASE": self.dbname,
        }


def _libpq_quote(value: str) -> str:
    if value and not re.search(r"[\s'\\]", value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _conf_quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


# --------------------------------------------------------------------------
# Binaries
# --------------------------------------------------------------------------


def _has_binaries(directory: str) -> bool:
    return all(
        os.path.isfile(os.path.join(directory, name)) and os.access(os.path.join(directory, name), os.X_OK)
        for name in _REQUIRED_BINARIES
    )


def _major_of(path: str) -> int:
    match = re.search(r"/postgresql/(\d+)/bin$", path)
    return int(match.group(1)) if match else -1


def find_pg_bin() -> str:
    """Return the directory holding ``initdb``, ``pg_ctl`` and ``postgres``.

    ``$METERLINE_PG_BIN`` wins when set (and must be valid).  Otherwise
    PostgreSQL 15 under ``/usr/lib/postgresql`` is preferred, then the newest
    other version there, then other common prefixes, then ``PATH``.
    """
    override = os.environ.get(PG_BIN_ENV)
    if override:
        directory = os.path.abspath(os.path.expanduser(override))
        if not _has_binaries(directory):
            raise LocalPostgresError(
                f"${PG_BIN_ENV}={override!r} does not contain executable {', '.join(_REQUIRED_BINARIES)}"
            )
        return directory

    debian = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_major_of, reverse=True)
    debian.sort(key=lambda p: _major_of(p) != _PREFERRED_MAJOR)  # stable: 15 first, then newest
    candidates = [
        *debian,
        f"/usr/pgsql-{_PREFERRED_MAJOR}/bin",
        f"/usr/local/pgsql-{_PREFERRED_MAJOR}/bin",
        "/usr/local/pgsql/bin",
        f"/opt/homebrew/opt/postgresql@{_PREFERRED_MAJOR}/bin",
        f"/usr/local/opt/postgresql@{_PREFERRED_MAJOR}/bin",
    ]
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(os.path.dirname(os.path.realpath(on_path)))
        candidates.append(os.path.dirname(on_path))
    for directory in candidates:
        if _has_binaries(directory):
            return directory
    raise LocalPostgresError(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found; "
        f"install PostgreSQL {_PREFERRED_MAJOR} or set ${PG_BIN_ENV} to their directory"
    )


# --------------------------------------------------------------------------
# Running as the right OS user
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class _RunAs:
    """Who runs the server processes: ``None`` uid means the current user."""

    uid: int | None = None
    gid: int | None = None
    name: str | None = None

    def popen_kwargs(self) -> dict[str, Any]:
        if self.uid is None:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": []}


def _ensure_os_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    with _useradd_lock:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            pass
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        logger.warning("OS user %r does not exist; creating it with useradd", name)
        result = subprocess.run(
            [useradd, "--system", "--user-group", "--no-create-home",
             "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", name],
            capture_output=True, text=True, check=False,
        )
        try:
            return pwd.getpwnam(name)
        except KeyError:
            raise LocalPostgresError(
                f"running as root and could not create OS user {name!r} to run PostgreSQL: "
                f"{(result.stderr or result.stdout).strip()}"
            ) from None


def _run_as() -> _RunAs:
    if os.geteuid() != 0:
        return _RunAs()
    entry = _ensure_os_user(_SERVER_OS_USER)
    return _RunAs(uid=entry.pw_uid, gid=entry.pw_gid, name=entry.pw_name)


def _child_env() -> dict[str, str]:
    # PG* variables (PGDATA, PGPORT, PGHOST, ...) would leak into pg_ctl/initdb.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    env.pop("LANG", None)
    env.pop("LANGUAGE", None)
    return env


# --------------------------------------------------------------------------
# Directory
# --------------------------------------------------------------------------


def _traversable_by_everyone(path: str) -> bool:
    path = os.path.realpath(path)
    while True:
        try:
            if not os.stat(path).st_mode & stat.S_IXOTH:
                return False
        except OSError:
            return False
        parent = os.path.dirname(path)
        if parent == path:
            return True
        path = parent


def _make_base_dir(run_as: _RunAs) -> str:
    parent = tempfile.gettempdir()
    # The socket path <base>/data/.s.PGSQL.NNNNN must fit into sun_path, and a
    # different OS user must be able to reach the directory.
    probe_len = len(os.path.join(parent, "meterline-pg-xxxxxxxx", "data", ".s.PGSQL.65535"))
    if probe_len > _MAX_SOCKET_PATH or (run_as.uid is not None and not _traversable_by_everyone(parent)):
        parent = "/tmp"
    base = tempfile.mkdtemp(prefix="meterline-pg-", dir=parent)
    if run_as.uid is not None:
        os.chown(base, run_as.uid, run_as.gid)
    return base


def _remove_dir(path: str) -> None:
    for attempt in range(3):
        try:
            shutil.rmtree(path)
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if attempt == 2:
                logger.warning("could not remove %s: %s", path, exc)
                return
            time.sleep(0.2)


# --------------------------------------------------------------------------
# initdb / start / stop
# --------------------------------------------------------------------------


def _initdb(bin_dir: str, base: str, data: str, user: str, password: str, run_as: _RunAs) -> None:
    pwfile = os.path.join(base, "pwfile")
    fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(password + "\n")
    if run_as.uid is not None:
        os.chown(pwfile, run_as.uid, run_as.gid)
    try:
        result = subprocess.run(
            [
                os.path.join(bin_dir, "initdb"),
                "--pgdata", data,
                "--username", user,
                "--pwfile", pwfile,
                "--auth-local", "trust",
                "--auth-host", "scram-sha-256",
                "--encoding", "UTF8",
                "--no-locale",
                "--no-sync",
                "--no-instructions",
            ],
            cwd=base, env=_child_env(), stdin=subprocess.DEVNULL,
            capture_output=True, text=True, timeout=120, check=False,
            **run_as.popen_kwargs(),
        )
    finally:
        try:
            os.unlink(pwfile)
        except FileNotFoundError:
            pass
    if result.returncode != 0:
        raise LocalPostgresError(
            f"initdb failed (exit {result.returncode}) in {data}:\n{(result.stdout + result.stderr).strip()}"
        )

    with open(os.path.join(data, "pg_hba.conf"), "w", encoding="utf-8") as fh:
        fh.write(
            "# Written by orchestration.local_postgres: TCP from 127.0.0.1 with a password only.\n"
            "# The unix socket is inside the 0700 data directory (owner and root only).\n"
            "local   all   all                  trust\n"
            "host    all   all   127.0.0.1/32   scram-sha-256\n"
        )
    with open(os.path.join(data, "postgresql.conf"), "a", encoding="utf-8") as fh:
        fh.write(
            "\n# --- orchestration.local_postgres: throwaway server, speed over durability ---\n"
            f"listen_addresses = {_conf_quote(HOST)}\n"
            f"unix_socket_directories = {_conf_quote(data)}\n"
            "fsync = off\n"
            "synchronous_commit = off\n"
            "full_page_writes = off\n"
            "wal_level = minimal\n"
            "max_wal_senders = 0\n"
            "logging_collector = off\n"
        )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _log_tail(log_path: str, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        with open(log_path, encoding="utf-8", errors="replace") as fh:
            return "".join(fh.readlines()[-lines:]).rstrip()
    except OSError as exc:
        return f"<server log unavailable: {exc}>"


def _port_conflict(log_text: str) -> bool:
    return "Address already in use" in log_text or "could not create any TCP/IP sockets" in log_text


def _postmaster_ready(data: str) -> bool:
    """True once postmaster.pid reports status "ready" (what ``pg_ctl -w`` checks).

    Waiting for this before connecting means we never talk to a foreign
    listener that grabbed the port: our postmaster exits if it cannot bind.
    """
    try:
        with open(os.path.join(data, "postmaster.pid"), encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return False
    return len(lines) >= 8 and lines[7].strip() == "ready"


def _try_connect(port: int, user: str, password: str, data: str) -> bool:
    if not _postmaster_ready(data):
        return False
    try:
        conn = psycopg2.connect(
            host=HOST, port=port, user=user, password=password, dbname="postgres",
            connect_timeout=3, sslmode="disable",
        )
    except psycopg2.OperationalError:
        return False
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW data_directory")
            served = cur.fetchone()[0]
    finally:
        conn.close()
    # Guard against having reached some other server that grabbed the port.
    return os.path.realpath(served) == os.path.realpath(data)


def _start(bin_dir: str, base: str, data: str, log_path: str, user: str, password: str,
           run_as: _RunAs, deadline: float) -> tuple[subprocess.Popen[bytes], int]:
    """Start the postmaster; return (process, port) once it accepts connections."""
    last_error = ""
    for attempt in range(1, PORT_ATTEMPTS + 1):
        port = _free_port()
        with open(log_path, "ab") as log:
            log.write(f"--- local_postgres: start attempt {attempt} on port {port} ---\n".encode())
            log.flush()
            proc = subprocess.Popen(
                [os.path.join(bin_dir, "postgres"), "-D", data, "-p", str(port)],
                cwd=base, env=_child_env(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,  # terminal signals must not reach it; we stop it ourselves
                **run_as.popen_kwargs(),
            )
        try:
            while True:
                if proc.poll() is not None:
                    break
                if _try_connect(port, user, password, data):
                    return proc, port
                if time.monotonic() >= deadline:
                    raise LocalPostgresError(
                        f"PostgreSQL on {HOST}:{port} did not accept connections within {START_TIMEOUT_S:.0f}s; "
                        f"server log tail ({log_path}):\n{_log_tail(log_path)}"
                    )
                time.sleep(0.05)
        except BaseException:
            _stop(bin_dir, data, proc, run_as)
            raise
        tail = _log_tail(log_path)
        last_error = f"postgres exited with code {proc.returncode}; server log tail ({log_path}):\n{tail}"
        if not _port_conflict(tail) or time.monotonic() >= deadline:
            break
        logger.info("port %d was taken before PostgreSQL could bind it; retrying with another port", port)
    raise LocalPostgresError(f"could not start PostgreSQL in {data}: {last_error}")


def _stop(bin_dir: str, data: str, proc: subprocess.Popen[bytes], run_as: _RunAs) -> None:
    """Stop the postmaster with ``pg_ctl stop -m fast``; signal it as a fallback."""
    if proc.poll() is not None:
        return
    try:
        result = subprocess.run(
            [os.path.join(bin_dir, "pg_ctl"), "stop", "-D", data, "-m", "fast", "-w",
             "-t", str(int(STOP_TIMEOUT_S))],
            cwd=os.path.dirname(data), env=_child_env(), stdin=subprocess.DEVNULL,
            capture_output=True, text=True, timeout=STOP_TIMEOUT_S + 10, check=False,
            **run_as.popen_kwargs(),
        )
        if result.returncode != 0:
            logger.warning("pg_ctl stop failed (exit %d): %s", result.returncode,
                           (result.stdout + result.stderr).strip())
    except (OSError, subprocess.SubprocessError) as exc:
        logger.warning("pg_ctl stop failed: %s", exc)
    try:
        proc.wait(timeout=10)
        return
    except subprocess.TimeoutExpired:
        pass
    # Fallback: the postmaster and its backends share the session/process
    # group created for it (start_new_session), so this hits only them.
    logger.warning("PostgreSQL (pid %d) did not stop; killing its process group", proc.pid)
    for sig, wait_s in ((signal.SIGQUIT, 5), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue
    logger.error("PostgreSQL (pid %d) survived SIGKILL", proc.pid)


def _create_database(port: int, user: str, password: str, dbname: str) -> None:
    conn = psycopg2.connect(host=HOST, port=port, user=user, password=password, dbname="postgres",
                            connect_timeout=10, sslmode="disable")
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,))
            if cur.fetchone() is None:
                cur.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(dbname), sql.Identifier(user)))
    finally:
        conn.close()


@contextmanager
def local_postgres(dbname: str = "meterline") -> Iterator[PostgresServer]:
    """Run a throwaway PostgreSQL server for the duration of the ``with`` block.

    Yields a :class:`PostgresServer` for superuser role ``meterline`` with a
    random password, on 127.0.0.1 and a free port, with database ``dbname``
    created.  On exit the server is stopped and its directory removed, whether
    or not the body raised.  Raises :class:`LocalPostgresError` (with the tail
    of the server log) if the server cannot be started within ~30 s.
    """
    if not dbname:
        raise ValueError("dbname must be non-empty")
    started = time.monotonic()
    bin_dir = find_pg_bin()
    run_as = _run_as()
    user = DEFAULT_USER
    password = secrets.token_urlsafe(24)
    base = _make_base_dir(run_as)
    data = os.path.join(base, "data")
    log_path = os.path.join(base, "postgres.log")
    proc: subprocess.Popen[bytes] | None = None
    try:
        _initdb(bin_dir, base, data, user, password, run_as)
        proc, port = _start(bin_dir, base, data, log_path, user, password, run_as,
                            deadline=time.monotonic() + START_TIMEOUT_S)
        _create_database(port, user, password, dbname)
        server = PostgresServer(host=HOST, port=port, user=user, password=password, dbname=dbname)
        logger.info("local PostgreSQL ready on %s:%d (db %s, dir %s%s) in %.2fs",
                    HOST, port, dbname, base, f", as OS user {run_as.name}" if run_as.name else "",
                    time.monotonic() - started)
        yield server
    finally:
        stopping = time.monotonic()
        if proc is not None:
            _stop(bin_dir, data, proc, run_as)
        _remove_dir(base)
        logger.info("local PostgreSQL in %s stopped and removed in %.2fs", base, time.monotonic() - stopping)
