"""Tests for orchestration.local_postgres (they start real PostgreSQL servers)."""

from __future__ import annotations

import os
import socket
import threading
from decimal import Decimal

import psycopg2
import pytest

from orchestration import local_postgres as lp
from orchestration.local_postgres import LocalPostgresError, PostgresServer, local_postgres

pytestmark = pytest.mark.postgres

NUMERIC_VALUES = [
    Decimal("12345678901234567890123456.123456789012"),  # all 38 digits used
    Decimal("-0.000000000001"),
    Decimal("0.100000000000"),
    Decimal("99999999999999999999999999.999999999999"),
]


def _server_facts(server: PostgresServer) -> tuple[str, int]:
    """(data directory, postmaster pid) of a running server."""
    with psycopg2.connect(server.dsn) as conn, conn.cursor() as cur:
        cur.execute("SHOW data_directory")
        data_dir = cur.fetchone()[0]
    conn.close()
    with open(os.path.join(data_dir, "postmaster.pid"), encoding="utf-8") as fh:
        pid = int(fh.readline())
    return data_dir, pid


def _assert_gone(server: PostgresServer, data_dir: str, pid: int) -> None:
    with pytest.raises(psycopg2.OperationalError):
        psycopg2.connect(server.dsn, connect_timeout=3)
    with socket.socket() as sock:
        assert sock.connect_ex((server.host, server.port)) != 0, "port still accepting TCP connections"
    assert not os.path.exists(data_dir)
    assert not os.path.exists(os.path.dirname(data_dir)), "server base directory left behind"
    assert not _pid_alive(pid), f"postmaster {pid} still running"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie would still answer kill(0); it is not ours to reap, check its state.
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as fh:
            return fh.read().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def test_numeric_round_trip_and_cleanup() -> None:
    with local_postgres() as server:
        assert server.host == "127.0.0.1"
        assert server.dbname == "meterline"
        data_dir, pid = _server_facts(server)
        assert os.path.isdir(data_dir)

        conn = psycopg2.connect(server.dsn)
        try:
            with conn, conn.cursor() as cur:
                cur.execute("SELECT current_database(), current_setting('fsync'), "
                            "current_setting('synchronous_commit'), current_setting('full_page_writes')")
                assert cur.fetchone() == ("meterline", "off", "off", "off")
                cur.execute("CREATE TABLE amounts (id int PRIMARY KEY, amount NUMERIC(38,12) NOT NULL)")
                cur.executemany("INSERT INTO amounts VALUES (%s, %s)", list(enumerate(NUMERIC_VALUES)))
            with conn, conn.cursor() as cur:
                cur.execute("SELECT amount FROM amounts ORDER BY id")
                got = [row[0] for row in cur.fetchall()]
        finally:
            conn.close()

        assert all(isinstance(v, Decimal) for v in got)
        assert got == NUMERIC_VALUES
        # Exactly, digits and scale: every value already carries the column's 12 places.
        assert [v.as_tuple() for v in got] == [v.as_tuple() for v in NUMERIC_VALUES]
        assert str(got[0]) == "12345678901234567890123456.123456789012"

    _assert_gone(server, data_dir, pid)


def test_cleanup_when_body_raises() -> None:
    class Boom(Exception):
        pass

    facts: dict[str, object] = {}
    with pytest.raises(Boom):
        with local_postgres(dbname="billing_test") as server:
            facts["server"] = server
            facts["data_dir"], facts["pid"] = _server_facts(server)
            conn = psycopg2.connect(server.dsn)  # left open on purpose: -m fast must cope
            raise Boom
    conn.close()
    _assert_gone(facts["server"], facts["data_dir"], facts["pid"])  # type: ignore[arg-type]


def test_two_servers_at_once_in_threads() -> None:
    servers: list[tuple[PostgresServer, str, int]] = []
    errors: list[BaseException] = []
    both_up = threading.Barrier(2, timeout=60)

    def run(name: str) -> None:
        try:
            with local_postgres(dbname=name) as server:
                data_dir, pid = _server_facts(server)
                servers.append((server, data_dir, pid))
                both_up.wait()  # both servers are running at the same time here
                with psycopg2.connect(server.dsn) as conn, conn.cursor() as cur:
                    cur.execute("SELECT current_database()")
                    assert cur.fetchone()[0] == name
                conn.close()
        except BaseException as exc:  # surfaced in the main thread
            errors.append(exc)
            both_up.abort()

    threads = [threading.Thread(target=run, args=(f"db_{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert len(servers) == 2
    (a, dir_a, _), (b, dir_b, _) = servers
    assert a.port != b.port
    assert dir_a != dir_b
    assert a.password != b.password
    for server, data_dir, pid in servers:
        _assert_gone(server, data_dir, pid)


def test_nested_servers_are_independent() -> None:
    with local_postgres() as outer, local_postgres() as inner:
        assert outer.port != inner.port
        assert _server_facts(outer)[0] != _server_facts(inner)[0]


def test_password_auth_and_connection_forms() -> None:
    with local_postgres() as server:
        with pytest.raises(psycopg2.OperationalError):
            psycopg2.connect(host=server.host, port=server.port, user=server.user,
                             password="wrong", dbname=server.dbname)

        env = server.env()
        assert env == {
            "METERLINE_PG_HOST": "127.0.0.1",
            "METERLINE_PG_PORT": str(server.port),
            "METERLINE_PG_USER": server.user,
            "METERLINE_PG_PASSWORD": server.password,
            "METERLINE_PG_DATABASE": "meterline",
        }
        conn = psycopg2.connect(host=env["METERLINE_PG_HOST"], port=int(env["METERLINE_PG_PORT"]),
                                user=env["METERLINE_PG_USER"], password=env["METERLINE_PG_PASSWORD"],
                                dbname=env["METERLINE_PG_DATABASE"])
        with conn.cursor() as cur:
            cur.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
            assert cur.fetchone()[0] is True
        conn.close()

        assert server.password not in repr(server)
        assert server.url.startswith("postgresql+psycopg2://")

        sqlalchemy = pytest.importorskip("sqlalchemy")
        engine = sqlalchemy.create_engine(server.url)
        try:
            with engine.connect() as sa_conn:
                assert sa_conn.execute(sqlalchemy.text("SELECT CAST('1.5' AS NUMERIC(38,12))")).scalar() \
                    == Decimal("1.5")
        finally:
            engine.dispose()


def test_dsn_quotes_awkward_values() -> None:
    server = PostgresServer(host="127.0.0.1", port=5, user="u", password="a b'c\\", dbname="d")
    assert server.dsn == r"host=127.0.0.1 port=5 user=u password='a b\'c\\' dbname=d"
    assert server.url == "postgresql+psycopg2://u:a%20b%27c%5C@127.0.0.1:5/d"


def test_retries_when_port_is_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        real_free_port = lp._free_port
        ports = iter([taken])
        monkeypatch.setattr(lp, "_free_port", lambda: next(ports, None) or real_free_port())
        with local_postgres() as server:
            assert server.port != taken
            with psycopg2.connect(server.dsn) as conn, conn.cursor() as cur:
                cur.execute("SELECT 1")
                assert cur.fetchone() == (1,)
            conn.close()


def test_bad_pg_bin_env_is_reported(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("METERLINE_PG_BIN", str(tmp_path))
    with pytest.raises(LocalPostgresError, match="METERLINE_PG_BIN"):
        with local_postgres():
            pass


def test_start_failure_reports_log_tail_and_cleans_up(monkeypatch: pytest.MonkeyPatch) -> None:
    created: list[str] = []
    real_make_base_dir = lp._make_base_dir

    def make_base_dir(run_as):
        base = real_make_base_dir(run_as)
        created.append(base)
        return base

    real_initdb = lp._initdb

    def broken_initdb(bin_dir, base, data, *args, **kwargs):
        real_initdb(bin_dir, base, data, *args, **kwargs)
        with open(os.path.join(data, "postgresql.conf"), "a", encoding="utf-8") as fh:
            fh.write("shared_buffers = 'not a size'\n")

    monkeypatch.setattr(lp, "_make_base_dir", make_base_dir)
    monkeypatch.setattr(lp, "_initdb", broken_initdb)
    with pytest.raises(LocalPostgresError, match="shared_buffers"):
        with local_postgres():
            pass
    assert created and not os.path.exists(created[0])
