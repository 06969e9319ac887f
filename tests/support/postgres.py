"""A real PostgreSQL server for end-to-end tests (Debian's `postgresql` package; `.ci/run` installs it): a fresh
cluster in a temporary folder, trust authentication on a free loopback port, started and stopped by PID. Run as
the `postgres` user when the tests run as root (PostgreSQL refuses root)."""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from tests.support.servers import free_port, start, stop_group, tail, wait_for


def postgres_binaries() -> Path | None:
    """The folder of `initdb` and `postgres`: on PATH, else Debian's /usr/lib/postgresql/<version>/bin."""
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(versions[-1]).parent if versions else None


def _as_server_user(argv: list[str]) -> list[str]:
    """`argv` run as `postgres` when this process is root."""
    if os.geteuid() != 0:
        return argv
    return ["runuser", "-u", "postgres", "--", *argv]


@contextmanager
def postgres_server(database: str = "mlflow") -> Iterator[str]:
    """A PostgreSQL server with one database; yields its SQLAlchemy URL (user `postgres`, no password). Its cluster
    lives in a folder of its own under the system's temporary folder (the server's user must reach it; pytest's
    folders are private to root), removed afterwards."""
    binaries = postgres_binaries()
    if binaries is None:
        pytest.skip("PostgreSQL is not installed (Debian: apt-get install postgresql; .ci/run does)")
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no `postgres` user to run the server as")
    folder = Path(tempfile.mkdtemp(prefix="fuseflow-pg-"))
    data = folder / "pgdata"
    data.mkdir()
    if os.geteuid() == 0:
        os.chown(folder, user.pw_uid, user.pw_gid)
        os.chown(data, user.pw_uid, user.pw_gid)
    made = subprocess.run(_as_server_user([str(binaries / "initdb"), "-D", str(data), "-U", "postgres",
                                           "--auth=trust", "-E", "UTF8", "--no-sync"]),
                          capture_output=True, text=True, timeout=120)
    if made.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        raise RuntimeError(f"initdb failed: {made.stderr.strip()[-2000:]}")
    port = free_port()
    log = folder / "postgres.log"
    log.touch()
    if os.geteuid() == 0:
        os.chown(log, user.pw_uid, user.pw_gid)
    proc = start(_as_server_user([str(binaries / "postgres"), "-D", str(data), "-p", str(port), "-h", "127.0.0.1",
                                  "-k", str(folder), "-c", "fsync=off"]), dict(os.environ), log)
    try:
        import sqlalchemy

        admin = sqlalchemy.create_engine(f"postgresql://postgres@127.0.0.1:{port}/postgres",
                                         isolation_level="AUTOCOMMIT")

        def ready() -> bool:
            try:
                with admin.connect() as connection:
                    connection.execute(sqlalchemy.text("SELECT 1"))
                return True
            except sqlalchemy.exc.OperationalError:
                return False

        wait_for(ready, 60, "PostgreSQL", proc, log)
        with admin.connect() as connection:
            connection.execute(sqlalchemy.text(f'CREATE DATABASE "{database}"'))
        admin.dispose()
        yield f"postgresql://postgres@127.0.0.1:{port}/{database}"
    finally:
        stop_group(proc)
        if proc.returncode not in (0, None, -15):
            print(tail(log))
        shutil.rmtree(folder, ignore_errors=True)
