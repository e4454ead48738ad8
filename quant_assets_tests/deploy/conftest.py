"""A real PostgreSQL server for the deployment tests.

``QUANT_ASSETS_TEST_PG_DSN`` (set by ``.ci/run``) names a server to use; otherwise the session
starts a private one from the installed binaries (``initdb``/``pg_ctl``) in a temporary
directory on 127.0.0.1, as the ``postgres`` OS user when run as root. The tests skip only when
no PostgreSQL binaries exist at all.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

DSN_ENV = "QUANT_ASSETS_TEST_PG_DSN"
PASSWORD = "test-only-password"  # a throw-away cluster that listens on 127.0.0.1 only


@dataclass(frozen=True)
class PgServer:
    """Where the test server listens, as whom, and one database of it."""

    host: str
    port: int
    user: str
    password: str
    dbname: str

    def connect(self, **kwargs) -> psycopg.Connection:
        return psycopg.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            dbname=self.dbname,
            **kwargs,
        )

    def new_database(self) -> PgServer:
        """A fresh, empty database on the same server (the user needs CREATEDB)."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        with self.connect(autocommit=True) as conn:
            conn.execute(f'create database "{name}"')
        return replace(self, dbname=name)

    def dagster_env(self) -> dict[str, str]:
        """The environment deploy/dagster.yaml reads its instance storage from."""
        return {
            "DAGSTER_POSTGRES_USER": self.user,
            "DAGSTER_POSTGRES_PASSWORD": self.password,
            "DAGSTER_POSTGRES_HOST": self.host,
            "DAGSTER_POSTGRES_DB": self.dbname,
            "DAGSTER_POSTGRES_PORT": str(self.port),
        }


def _binaries() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), reverse=True)
    return Path(candidates[0]).parent if candidates else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _as_postgres(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", "postgres", "--", *command]


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    dsn = os.environ.get(DSN_ENV)
    if dsn:
        params = conninfo_to_dict(dsn)
        yield PgServer(
            host=str(params.get("host", "127.0.0.1")),
            port=int(params.get("port", 5432)),
            user=str(params["user"]),
            password=str(params.get("password", "")),
            dbname=str(params.get("dbname", params["user"])),
        )
        return
    binaries = _binaries()
    if binaries is None:
        pytest.skip("no PostgreSQL binaries (initdb, pg_ctl) installed")
    root = Path(tempfile.mkdtemp(prefix="qa-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    data = root / "data"
    port = _free_port()
    pwfile = root / "pw"
    pwfile.write_text(PASSWORD)
    if os.geteuid() == 0:
        shutil.chown(pwfile, "postgres")
    subprocess.run(
        _as_postgres(
            [
                str(binaries / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=scram-sha-256",
                f"--pwfile={pwfile}",
                "-E",
                "UTF8",
                "--no-sync",
            ]
        ),
        check=True,
        capture_output=True,
    )
    options = f"-h 127.0.0.1 -p {port} -k {root} -c fsync=off -c max_connections=200"
    subprocess.run(
        _as_postgres(
            [
                str(binaries / "pg_ctl"),
                "-D",
                str(data),
                "-o",
                options,
                "-l",
                str(root / "log"),
                "-w",
                "start",
            ]
        ),
        check=True,
        capture_output=True,
    )
    try:
        yield PgServer("127.0.0.1", port, "postgres", PASSWORD, "postgres")
    finally:
        subprocess.run(
            _as_postgres([str(binaries / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"]),
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg_database(pg_server: PgServer) -> PgServer:
    """A fresh database for one test."""
    return pg_server.new_database()
