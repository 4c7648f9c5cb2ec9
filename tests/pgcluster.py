"""A throwaway PostgreSQL cluster for the tests: `initdb` and `pg_ctl` from Debian's
`postgresql` package, in a temporary directory, on a free loopback port, with a password (so
that tests can check it is never shown). PostgreSQL refuses to run as root: as root, the server
runs as the `postgres` system user the package creates. Durability is off (fsync): only the
tests' speed depends on it, never what they check."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

__all__ = ["PASSWORD", "USER", "PgCluster", "binaries", "missing_reason"]

USER = "gateway"
PASSWORD = "pw-Zq7v-never-shown"  # a DSN's secret: tests check no message holds it
_SETTINGS = ("fsync=off", "synchronous_commit=off", "full_page_writes=off",
             "max_connections=400", "shared_buffers=32MB", "listen_addresses=127.0.0.1")


def binaries() -> Path | None:
    """The newest installed PostgreSQL's bin directory (Debian's layout), if any."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                   key=lambda path: int(path.parent.parent.name) if path.parent.parent.name
                   .isdigit() else 0)
    return found[-1].parent if found else None


def missing_reason() -> str | None:
    """Why the tests cannot start a cluster here, or None."""
    if binaries() is None:
        return ("PostgreSQL is not installed (Debian: apt-get install postgresql; .ci/run "
                "installs it)")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root without a postgres system user to run the server as"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PgCluster:
    """One server for a test session; a database per test."""

    def __init__(self) -> None:
        bin_dir = binaries()
        assert bin_dir is not None, missing_reason()
        self.bin = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="gateway-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self._as_server: list[str] = []
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
            self._as_server = ["runuser", "-u", "postgres", "--"]
        self._databases = 0

    def _run(self, *args: str) -> None:
        subprocess.run([*self._as_server, *args], check=True, capture_output=True, timeout=60)

    def start(self) -> None:
        """Create the cluster (first time) and start its server; wait until it answers."""
        if not self.data.exists():
            password_file = self.root / "password"
            password_file.write_text(PASSWORD)
            if self._as_server:
                shutil.chown(password_file, "postgres")
            self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", USER,
                      f"--pwfile={password_file}", "--auth=scram-sha-256", "--no-sync",
                      "--encoding=UTF8", "--locale=C")
        options = " ".join(f"-c {setting}" for setting in (
            *_SETTINGS, f"port={self.port}", f"unix_socket_directories={self.root}"))
        self._run(str(self.bin / "pg_ctl"), "start", "-w", "-D", str(self.data),
                  "-l", str(self.root / "server.log"), "-o", options)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (`immediate`: as if it crashed)."""
        self._run(str(self.bin / "pg_ctl"), "stop", "-w", "-D", str(self.data), "-m", mode)

    def remove(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def dsn(self, database: str = "postgres", *, password: str = PASSWORD) -> str:
        return f"postgresql://{USER}:{password}@127.0.0.1:{self.port}/{database}"

    def sql(self, statement: str, database: str = "postgres") -> str:
        """Run one statement with psql; its output (unaligned, tuples only)."""
        result = subprocess.run(
            [str(self.bin / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
             "-d", self.dsn(database), "-c", statement],
            check=True, capture_output=True, text=True, timeout=60)
        return result.stdout.strip()

    def create_database(self) -> str:
        """A fresh, empty database; its name."""
        self._databases += 1
        name = f"test_{self._databases}"
        # From template0 by copying files: ~5x faster than the default (WAL-logged) copy.
        self.sql(f"CREATE DATABASE {name} TEMPLATE template0 STRATEGY FILE_COPY")
        return name

    def drop_database(self, name: str) -> None:
        self.sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
