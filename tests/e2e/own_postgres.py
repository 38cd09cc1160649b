"""
A PostgreSQL of the test's own: made with initdb in a temporary folder, on a
free loopback port, so that a test may restart it (never the machine's).

initdb and the server refuse to run as root: as root, they run as the
``postgres`` account, which Debian's postgresql package creates.
"""

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from servers import free_port


def postgres_bin() -> Path | None:
    """The folder of initdb and pg_ctl: on PATH, or Debian's versioned one."""
    found = shutil.which("initdb") or next(
        iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)), None
    )
    return Path(found).parent if found else None


def missing() -> str | None:
    """Why a PostgreSQL of the test's own cannot be made here, or None."""
    if postgres_bin() is None:
        return "needs initdb and pg_ctl (Debian's postgresql)"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "as root, needs runuser to run PostgreSQL as the postgres account"
    return None


class PostgresServer:
    """One PostgreSQL cluster, without fsync (a test's data need not survive a crash)."""

    def __init__(self):
        self.folder = Path(tempfile.mkdtemp(prefix="usersite-pg-"))
        self.port = free_port()
        self.bin = postgres_bin()
        self.as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_owner:
            shutil.chown(self.folder, "postgres")
        self.data, self.log = self.folder / "data", self.folder / "postgres.log"

    def url(self, database: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *command: str) -> None:
        subprocess.run(
            [*self.as_owner, str(self.bin / command[0]), *command[1:]],
            check=True,
            stdout=subprocess.DEVNULL,
        )

    def _pg_ctl(self, action: str) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-o", options, action)

    def start(self) -> "PostgresServer":
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                  "--no-sync")  # fmt: skip
        self._pg_ctl("start")
        return self

    def restart(self) -> None:
        """``pg_ctl restart``: every connection is closed, and the server is back."""
        self._pg_ctl("restart")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-w", "-m", "immediate", "stop")
        shutil.rmtree(self.folder, ignore_errors=True)
