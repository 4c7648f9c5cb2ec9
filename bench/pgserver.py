"""A throwaway PostgreSQL server for the benches, durable, and what it costs per event.

The cluster is the tests' (tests/pgcluster.py: initdb + pg_ctl in a temporary folder, on a free
loopback port, as the `postgres` system user when run as root), restarted with durability on:
the benches measure committed events, so a commit waits for its WAL to reach the disk. The
server is not pinned to a core: it shares the machine with the gateway and the load.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import procstat  # bench/procstat.py, next to this script: CPU time from /proc

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.pgcluster import PgCluster, missing_reason  # noqa: E402

# PostgreSQL's defaults for durability and memory (unlike the tests' fsync=off), plus
# pg_stat_statements to count the statements the gateway runs.
SETTINGS = ("fsync=on", "synchronous_commit=on", "full_page_writes=on", "wal_level=replica",
            "shared_buffers=128MB", "max_connections=100", "listen_addresses=127.0.0.1",
            "shared_preload_libraries=pg_stat_statements")


class DurableCluster(PgCluster):
    def start(self) -> None:
        if not self.data.exists():  # created (initdb) and started the tests' way, then stopped
            super().start()
            self.stop()
        options = " ".join(f"-c {setting}" for setting in (
            *SETTINGS, f"port={self.port}", f"unix_socket_directories={self.root}"))
        self._run(str(self.bin / "pg_ctl"), "start", "-w", "-D", str(self.data),
                  "-l", str(self.root / "server.log"), "-o", options)

    def describe(self) -> str:
        """The server's version and settings, for a bench's header."""
        version = self.sql("SHOW server_version").split()[0]
        shown = [s for s in SETTINGS if not s.startswith(("listen_", "shared_preload"))]
        return f"PostgreSQL {version} ({', '.join(shown)}; not pinned to a core)"

    def cpu_seconds(self) -> float:
        """CPU seconds used so far by the server's live processes (the postmaster and its
        children: backends, WAL writer, checkpointer, autovacuum), from /proc. A backend that
        has exited is no longer counted: read while the connections measured are open."""
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        return procstat.cpu_seconds(lambda pid, fields: postmaster in (
            pid, int(fields[procstat.PARENT])))

    def fresh_database(self) -> str:
        """A new empty database with pg_stat_statements; its name."""
        name = self.create_database()
        self.sql("CREATE EXTENSION pg_stat_statements", name)
        return name


@contextlib.contextmanager
def running() -> Iterator[DurableCluster]:
    """A started server, stopped and removed on exit, error or Ctrl-C."""
    reason = missing_reason()
    if reason:
        raise SystemExit(f"--engine postgres: {reason}")
    cluster = DurableCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.remove()


@dataclass(frozen=True)
class Counters:
    """A database's cumulative counters at one moment."""

    wal_lsn: int  # bytes of WAL written by the whole server (one database runs here)
    statements: int  # pg_stat_statements calls in this database
    commits: int
    inserted: int

    def per_event(self, later: Counters, events: int, unit: str = "event") -> str:
        n = max(events, 1)
        return (f"{(later.statements - self.statements) / n:.3f} statements, "
                f"{(later.commits - self.commits) / n:.3f} commits, "
                f"{(later.inserted - self.inserted) / n:.2f} rows inserted, "
                f"{(later.wal_lsn - self.wal_lsn) / n:,.0f} WAL bytes per {unit} "
                f"({events:,} {unit}s)")


def counters(cluster: PgCluster, database: str) -> Counters:
    """Read after the gateway's connections closed (their statistics reach the counters when
    a backend goes idle, at most once a second, or exits)."""
    row = cluster.sql(
        "SELECT pg_current_wal_lsn() - '0/0'::pg_lsn, "
        "(SELECT coalesce(sum(calls), 0) FROM pg_stat_statements s JOIN pg_database d "
        f" ON d.oid = s.dbid WHERE d.datname = '{database}'), "
        f"xact_commit, tup_inserted FROM pg_stat_database WHERE datname = '{database}'",
        database)
    wal, statements, commits, inserted = (int(float(x)) for x in row.split("|"))
    return Counters(wal, statements, commits, inserted)
