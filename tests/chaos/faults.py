"""The faults of a run, all drawn from one seeded ``random.Random``.

* process faults, one at a time at planned moments: a host killed with SIGKILL (then
  restarted) or paused with SIGSTOP for 2–6 s (mostly past its attempts' 2.5 s leases),
  qstash_local killed and restarted empty, PostgreSQL restarted in ``fast`` or
  ``immediate`` mode;
* duplicate signed deliveries all along: a job's current dispatch delivered again to a
  host, signed with the current signing key as QStash would sign it, sometimes the very
  same signed request twice at once (a captured delivery replayed);
* an operator cancelling and replaying jobs, through the HTTP API or the dispatcher.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Final

import aiohttp
import orjson

import jobstore
import qstash_local
from jobstore import Dispatcher, EventStore, JobError, job_state
from jobstore.job_events import JobDispatched
from qstash_local import signature
from tests.chaos import app
from tests.chaos.cluster import Cluster

FAULT_KINDS: Final = (
    "host_kill",
    "host_stall",
    "qstash_restart",
    "pg_restart_fast",
    "pg_restart_immediate",
)
Say = Callable[[str], None]


def fault_plan(
    rng: random.Random, count: int, duration: float, kinds_from: Sequence[str] = FAULT_KINDS
) -> list[tuple[float, str]]:
    """``count`` (seconds into the run, fault kind) pairs, every kind before any repeats."""
    unknown = set(kinds_from) - set(FAULT_KINDS)
    if unknown or not kinds_from:
        raise ValueError(f"fault kinds {sorted(unknown)} unknown; known: {', '.join(FAULT_KINDS)}")
    kinds: list[str] = []
    while len(kinds) < count:
        batch = list(kinds_from)
        rng.shuffle(batch)
        kinds += batch
    times = sorted(rng.uniform(0.1, 0.9) * duration for _ in range(count))
    return list(zip(times, kinds[:count], strict=True))


class Injector:
    """Kills and restarts the cluster's processes at the planned moments."""

    def __init__(self, cluster: Cluster, rng: random.Random, say: Say) -> None:
        self.cluster, self.rng, self.say = cluster, rng, say
        self.done: Counter[str] = Counter()

    async def run(self, planned: Sequence[tuple[float, str]]) -> None:
        """Inject each fault at its moment (counted from now), one after another."""
        started = time.monotonic()
        for at, kind in planned:
            await asyncio.sleep(max(0.0, started + at - time.monotonic()))
            self.say(f"fault at {time.monotonic() - started:5.1f} s: {kind}")
            try:
                await self.inject(kind)
            except RuntimeError as exc:  # a process that would not come back: a finding
                self.cluster.crashes.append(f"after {kind}: {exc}"[:600])
                self.say(f"  {kind}: a process did not come back: {str(exc)[:300]}")
            self.done[kind] += 1

    async def inject(self, kind: str) -> None:
        """One fault, and the restart that ends it."""
        cluster, rng = self.cluster, self.rng
        if kind == "host_kill":
            n = rng.randrange(len(cluster.hosts))
            cluster.kill_host(n)
            await asyncio.sleep(rng.uniform(0.2, 1.5))
            await cluster.start_host(n)
        elif kind == "host_stall":
            n = rng.randrange(len(cluster.hosts))
            await cluster.stall_host(n, rng.uniform(2.0, 6.0))
        elif kind == "qstash_restart":
            cluster.kill_qstash()
            await asyncio.sleep(rng.uniform(0.2, 1.0))
            await cluster.start_qstash()
        elif kind == "pg_restart_fast":
            await cluster.pg.restart("fast", rng.uniform(0.3, 3.0))
        elif kind == "pg_restart_immediate":
            await cluster.pg.restart("immediate", rng.uniform(0.3, 3.0))
        else:
            raise ValueError(f"unknown fault {kind!r}; known: {', '.join(FAULT_KINDS)}")


class Duplicator:
    """Delivers jobs' current dispatches to the host again, signed as QStash signs."""

    def __init__(self, store: EventStore, cluster: Cluster, rng: random.Random) -> None:
        self.store, self.cluster, self.rng = store, cluster, rng
        self.sent = 0
        self.statuses: Counter[str] = Counter()
        """Answers by status (``unreachable`` while the host is down)."""
        self.internal_errors: list[str] = []

    async def run(self, jobs: Sequence[str], per_second: float, stop: asyncio.Event) -> None:
        """Send duplicates of random recent ``jobs`` until ``stop`` is set."""
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            while not stop.is_set():
                await asyncio.sleep(self.rng.expovariate(per_second))
                if jobs:
                    recent = jobs[-200:]
                    await self.once(session, recent[self.rng.randrange(len(recent))])

    async def once(self, session: aiohttp.ClientSession, job_id: str) -> None:
        """Deliver ``job_id``'s current dispatch again (once, or the same request twice)."""
        try:
            events = await self.store.read_stream(job_state.stream_id(job_id))
            message_id = await self.store.pool.fetchval(
                "SELECT message_id FROM jobtrail.relay_messages WHERE job_id = $1"
                " ORDER BY dispatch DESC LIMIT 1",
                job_id,
            )
        except Exception:  # the database is restarting: skip this one
            return
        dispatched = [r.event for r in events if isinstance(r.event, JobDispatched)]
        state = job_state.fold(events)
        if not dispatched or state is None:
            return
        current = dispatched[-1]
        due = current.options.not_before
        if state.attempt == 0 and due is not None and due > time.time():
            return  # QStash has not delivered it yet, so it cannot deliver it twice
        body = orjson.dumps(jobstore.envelope.job_body(current))
        url = self.rng.choice(self.cluster.host_urls) + app.ENDPOINT
        headers = {
            "Content-Type": "application/json",
            "Upstash-Retried": str(self.rng.randint(0, 2)),
            "Upstash-Signature": signature.sign(
                key=qstash_local.DEV_CURRENT_SIGNING_KEY,
                url=url,
                body_sha=signature.body_hash(body),
                now=int(time.time()),
                jti=signature.new_jti(),
            ),
        }
        if message_id:
            headers["Upstash-Message-Id"] = message_id
        copies = 2 if self.rng.random() < 0.3 else 1
        await asyncio.gather(*(self._post(session, url, body, headers) for _ in range(copies)))

    async def _post(
        self, session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str]
    ) -> None:
        self.sent += 1
        try:
            async with session.post(url, data=body, headers=headers) as response:
                text = await response.text()
                self.statuses[str(response.status)] += 1
                if response.status == 500 and "internal error" in text:
                    self.internal_errors.append(text[:200])
        except (aiohttp.ClientError, TimeoutError):
            self.statuses["unreachable"] += 1


class Operator:
    """Cancels and replays jobs now and then, half through the HTTP API, half directly."""

    def __init__(
        self, dispatcher: Dispatcher, cluster: Cluster, rng: random.Random, say: Say
    ) -> None:
        self.dispatcher, self.cluster, self.rng, self.say = dispatcher, cluster, rng, say
        self.outcomes: Counter[str] = Counter()
        """``cancel``/``replay`` × ``done``/``refused``/``unavailable``/``error``."""
        self.internal_errors: list[str] = []
        self.unclassified: Counter[str] = Counter()
        """Errors the dispatcher raised that are neither a refusal nor DatabaseUnavailable."""

    async def run(self, jobs: Sequence[str], per_second: float, stop: asyncio.Event) -> None:
        """Act on random ``jobs`` until ``stop`` is set."""
        headers = {"Authorization": f"Bearer {self.cluster.api_token}"}
        async with aiohttp.ClientSession(
            headers=headers, timeout=aiohttp.ClientTimeout(total=30)
        ) as session:
            while not stop.is_set():
                await asyncio.sleep(self.rng.expovariate(per_second))
                if jobs:
                    await self.once(session, jobs)

    async def once(self, session: aiohttp.ClientSession, jobs: Sequence[str]) -> None:
        """One cancel of a recent job, or one replay of a failed or cancelled job."""
        api = self.rng.random() < 0.5
        if self.rng.random() < 0.5:
            recent = jobs[-100:]
            await self._act("cancel", recent[self.rng.randrange(len(recent))], api, session)
            return
        job_id = await self._replayable([self.rng.choice(jobs) for _ in range(30)])
        if job_id is not None:
            await self._act("replay", job_id, api, session)

    async def _replayable(self, candidates: list[str]) -> str | None:
        for job_id in candidates:
            try:
                state = await self.dispatcher.load(job_id)
            except Exception:
                return None
            if state is not None and state.status.value in ("failed", "cancelled"):
                return job_id
        return None

    async def _act(
        self, action: str, job_id: str, api: bool, session: aiohttp.ClientSession
    ) -> None:
        fixed = self.rng.random() < 0.5  # a replay with a corrected payload completes
        payload = {"tag": f"replay-of-{job_id}", "fail_times": 0} if fixed else None
        if api:
            host = self.rng.choice(self.cluster.host_urls)
            url = f"{host}/api/v1/jobs/{job_id}/{action}"
            body: dict[str, object] = {"reason": "chaos operator"}
            if payload is not None and action == "replay":
                body["payload"] = payload
            try:
                async with session.post(url, json=body) as response:
                    text = await response.text()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError):
                self.outcomes[f"{action} unavailable"] += 1
                return
            if status == 500:
                self.internal_errors.append(f"{action} {job_id}: {text[:200]}")
            label = {200: "done", 409: "refused", 503: "unavailable"}.get(status, f"http {status}")
            self.outcomes[f"{action} {label}"] += 1
            return
        try:
            if action == "cancel":
                await self.dispatcher.cancel(job_id, "chaos operator")
            else:
                await self.dispatcher.replay_job(job_id, "chaos operator", payload=payload)
        except JobError:
            self.outcomes[f"{action} refused"] += 1
        except jobstore.DatabaseUnavailableError:
            self.outcomes[f"{action} unavailable"] += 1
        except Exception as exc:
            self.outcomes[f"{action} error {type(exc).__name__}"] += 1
            self.unclassified[f"{type(exc).__name__}: {exc}"[:160]] += 1
        else:
            self.outcomes[f"{action} done"] += 1
