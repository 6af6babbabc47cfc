"""Make sure the PostgreSQL that ``DATABASE_URL`` names answers, starting the machine's own if
it is down (``make test`` runs this first).

Without ``DATABASE_URL`` there is nothing to do: the tests start an embedded PostgreSQL.
With it, a server on this machine that is down is started with Debian's ``pg_ctlcluster``
(as on the project's CI machines); any other server that does not answer is an error that
says so, before a single test runs.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

LOOPBACK = {"127.0.0.1", "localhost", "::1", ""}


def answers(host: str, port: int) -> bool:
    """Whether something accepts TCP connections at ``host:port``."""
    try:
        with socket.create_connection((host or "127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


def start_local_cluster() -> str | None:
    """Start the machine's PostgreSQL cluster; return why not when it cannot."""
    ctl = shutil.which("pg_ctlcluster")
    clusters = sorted(Path("/etc/postgresql").glob("*/main"))
    if ctl is None or not clusters:
        return "no local PostgreSQL cluster to start (pg_ctlcluster, /etc/postgresql/*/main)"
    version = clusters[0].parent.name
    print(f"== starting PostgreSQL {version}", flush=True)
    done = subprocess.run([ctl, "--skip-systemctl-redirect", version, "main", "start"], check=False)
    return None if done.returncode == 0 else f"pg_ctlcluster exited {done.returncode}"


def main() -> int:
    url = os.environ.get("DATABASE_URL", "")
    if not url:
        print("DATABASE_URL is not set: the tests start an embedded PostgreSQL of their own")
        return 0
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or 5432
    if parts.hostname is None and "host=" in parts.query:
        return 0  # a Unix socket: asyncpg will say clearly if it is not there
    if answers(host, port):
        return 0
    problem = "it is not on this machine"
    if host in LOOPBACK:
        problem = start_local_cluster() or ""
        for _ in range(60):
            if not problem and answers(host, port):
                return 0
            time.sleep(0.5)
        problem = problem or "it did not start within 30 s"
    print(
        f"PostgreSQL at {host or '127.0.0.1'}:{port} (DATABASE_URL) does not answer and could "
        f"not be started: {problem}. Start it, or unset DATABASE_URL to use an embedded one.",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
