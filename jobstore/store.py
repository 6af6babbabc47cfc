"""The event store: append to streams against an expected version, read, and subscribe.

Ordering guarantee (see ``sql/0019_read_by_transaction_order.sql``), the design in short:

* Appends do not serialise.  Each event records the id of the transaction that wrote it
  (``xid8``, 64 bits); the version check is made exact by an advisory lock per stream
  (and per delivery token), held to commit, so only appends to the same stream queue.
* Readers that follow the log read in (transaction, position) order, and only events of
  transactions older than the oldest transaction still running on the server
  (``pg_snapshot_xmin(pg_current_snapshot())``, the *horizon*).  Below the horizon every
  transaction has ended and none can start, so nothing can appear behind a reader's
  cursor (:class:`jobstore.cursor.Cursor`): ``read_after(cursor)`` never skips an event.
  ``position`` stays each event's identity and still grows within a transaction.
* The cost: one write transaction left open anywhere on the server holds every follower
  back until it ends.  :meth:`EventStore.reader_lag` measures it (``/metrics``,
  ``jobtrail projections status``) and followers log a warning while it grows.
* The log's NOTIFY is sent after commit by the store (:class:`_Announcer`), not by the
  appending transaction: PostgreSQL serialises the commits of notifying transactions.

Alternatives weighed (a global lock through commit, which capped the log near one commit
at a time; waiting at position gaps with a timeout, which can skip; a post-commit
sequencer) are in the migration's header.  ``read_all(after_position)`` is kept for
one-off reads by position; it is not a way to follow the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal, cast

import asyncpg
import orjson
import structlog

from jobstore import audit, codec, database, errors, keyring, query, tracing
from jobstore.batcher import AppendBatcher
from jobstore.cursor import START, Cursor, Page
from jobstore.event import Event, RecordedEvent, decode
from jobstore.ids import is_uuid

log = structlog.get_logger("jobtrail.store")

ANY: Final = "any"
NO_STREAM: Final = "no_stream"
ExpectedVersion = int | Literal["any", "no_stream"]

MAX_STREAM_ID_LENGTH: Final = 200
NOTIFY_CHANNEL: Final = "jobtrail_events"

_Q = query.load("jobstore", "store.sql")
_ANNOUNCE_FAILURES: tuple[type[BaseException], ...] = (
    asyncpg.PostgresError,
    *errors.DRIVER_TRANSIENT,
)


_DRIVER_FAILURES: Final[tuple[type[BaseException], ...]] = (
    asyncpg.PostgresError,
    *errors.DRIVER_TRANSIENT,
)


@dataclass(frozen=True, slots=True)
class DeliveryToken:
    """A one-time token (a signed delivery's JWT id) consumed by the append it leads to."""

    token_id: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class StreamAppend:
    """Events to append to one stream, with the version the stream must be at."""

    stream_id: str
    events: Sequence[Event]
    expected_version: ExpectedVersion = ANY
    metadata: Mapping[str, Any] = field(default_factory=dict)
    token: DeliveryToken | None = None
    key: keyring.DeliveryKeys | None = None
    """The job's key as the caller read it with the job's stream (``known`` of
    :meth:`keyring.KeyRing.seal`, under its rule)."""


@dataclass(frozen=True, slots=True)
class ReaderLag:
    """How much of the log followers cannot read yet, because a transaction is still open.

    ``held_back_events``: committed events behind the horizon (capped at 100,000);
    ``held_back_seconds``: since the oldest of them was written (0 when none);
    ``oldest_transaction_seconds``/``oldest_transaction_pid``: the running transaction that
    holds the horizon, when this role may see it (None otherwise).
    """

    horizon: int
    held_back_events: int
    held_back_seconds: float
    oldest_transaction_seconds: float | None = None
    oldest_transaction_pid: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The lag as JSON-compatible values."""
        return {
            "horizon": self.horizon,
            "held_back_events": self.held_back_events,
            "held_back_seconds": round(self.held_back_seconds, 3),
            "oldest_transaction_seconds": self.oldest_transaction_seconds,
            "oldest_transaction_pid": self.oldest_transaction_pid,
        }


class _Announcer:
    """Sends the log's notification after the store's own commits, one at a time.

    A lone commit is announced at once.  Wake-ups that arrive while one is being sent are
    folded into one more, sent ``gap`` seconds after it: under a stream of commits a
    process announces at most 1/``gap`` times a second (each announcement is a
    transaction of its own), at the price of up to ``gap`` seconds of a follower's
    latency.  A notification that fails is only logged: followers also poll.
    """

    def __init__(self, pool: asyncpg.Pool, gap: float = 0.005) -> None:
        self._pool = pool
        self._gap = gap
        self._task: asyncio.Task[None] | None = None
        self._again = False

    def wake(self) -> None:
        if self._task is not None and not self._task.done():
            self._again = True
            return
        self._task = asyncio.get_running_loop().create_task(self._send())

    async def _send(self) -> None:
        while True:
            self._again = False
            try:
                async with self._pool.acquire() as conn:
                    await conn.execute(_Q["announce_appended"])
            except asyncpg.InterfaceError:  # the pool is closing: nobody is left to tell
                return
            except _ANNOUNCE_FAILURES as exc:
                log.warning("could not announce appended events", error=str(exc)[:300])
                return
            if not self._again:
                return
            await asyncio.sleep(self._gap)


class EventStore:
    """The append-only event log in PostgreSQL."""

    def __init__(self, pool: asyncpg.Pool, *, ride_out: float = 0.0) -> None:
        self._pool = pool
        self.runner = database.Runner(pool, ride_out)
        """Runs the store's work, waiting out a database outage for up to ``ride_out``
        seconds (the host: JOBTRAIL_DATABASE_RIDE_OUT_SECONDS) before raising
        DatabaseUnavailableError."""
        self._batcher = AppendBatcher(self._append_each)
        self._job_reads = AppendBatcher(self._read_jobs)
        self._announcer = _Announcer(pool)
        self.keys = keyring.KeyRing(pool, self.runner)
        """The jobs' data keys: appends seal personal data with them (:mod:`jobstore.protect`)."""

    @property
    def pool(self) -> asyncpg.Pool:
        """The connection pool the store uses."""
        return self._pool

    async def append(
        self,
        stream_id: str,
        events: Sequence[Event],
        expected_version: ExpectedVersion = ANY,
        *,
        metadata: Mapping[str, Any] | None = None,
        connection: asyncpg.Connection | None = None,
        token: DeliveryToken | None = None,
        key: keyring.DeliveryKeys | None = None,
    ) -> list[int]:
        """Append ``events`` to one stream in one transaction; return their positions.

        With ``token``, the token is recorded in the same transaction, and the append is
        refused with TokenUsedError (nothing written) when the token was recorded before.
        ``key``: the job's key as the caller read it with its stream (:meth:`read_job`), so
        sealing need not read it again (only under the rule of
        :meth:`keyring.KeyRing.seal`).  A job's first dispatch stores the key it makes in
        the append's own statement.
        """
        request = StreamAppend(stream_id, events, expected_version, metadata or {}, token, key)
        if connection is not None:
            if token is not None:
                raise errors.InvalidEventError("a delivery token cannot go with a connection")
            (positions,) = await self.append_streams([request], connection=connection)
            return positions
        (encoded,) = await self._seal_encoded([request])
        if not encoded.types:
            return []
        try:
            return await self._batcher.submit(encoded)
        except _KeyKept:  # an earlier try of this dispatch made the key: seal with it
            (sealed,) = await self._seal([request], None)
            return await self._batcher.submit(_encode(sealed))

    async def append_streams(
        self, requests: Sequence[StreamAppend], *, connection: asyncpg.Connection | None = None
    ) -> list[list[int]]:
        """Append to many streams in one transaction; positions come back per request.

        If any stream is not at its expected version, ConcurrencyError is raised and
        nothing at all is written.
        """
        sealed = await self._seal(_dedupe(requests), connection)
        encoded = [_encode(r) for r in sealed]
        if not any(e.types for e in encoded):
            return [[] for _ in requests]
        own = connection is None
        rows = await self._run(
            self._append_rows, (*_arguments(encoded), own), connection, rerun=False
        )
        if own:
            self._announcer.wake()
        by_stream: dict[str, list[int]] = {}
        for row in rows:
            by_stream.setdefault(row["out_stream_id"], []).append(row["out_position"])
        return [by_stream.get(r.stream_id, []) for r in requests]

    async def append_each(
        self, requests: Sequence[StreamAppend]
    ) -> list[list[int] | errors.ConcurrencyError]:
        """Append to many streams in one transaction, each stream standing alone.

        A stream not at its expected version gets a ConcurrencyError in its slot of the
        result and nothing written; the other streams are written.
        """
        encoded = await self._seal_encoded(_dedupe(requests))
        if not encoded:
            return []
        outcomes = await self._append_each(encoded)
        again = [i for i, o in enumerate(outcomes) if isinstance(o, _KeyKept)]
        if again:  # earlier tries of these dispatches made their keys: seal with them
            sealed = await self._seal([requests[i] for i in again], None)
            redone = await self._append_each([_encode(r) for r in sealed])
            for i, outcome in zip(again, redone, strict=True):
                outcomes[i] = outcome
        return [
            o
            if isinstance(o, list)
            else errors.ConcurrencyError(
                r.stream_id, r.expected_version, getattr(o, "actual", None)
            )
            for o, r in zip(outcomes, requests, strict=True)
        ]

    @contextlib.asynccontextmanager
    async def transaction(self, what: str) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection in a transaction, for appends (``connection=``) made together
        with the caller's own statements (such appends notify the log's followers themselves,
        when the transaction commits).

        A failure of the database is EventStoreError saying ``what`` was not done
        (DatabaseUnavailableError when it is transient); the store's own errors (a
        ConcurrencyError) pass as they are.
        """
        try:
            async with self.pool.acquire() as proxy:
                conn = cast(asyncpg.Connection, proxy)  # the pool's proxy acts as its connection
                async with conn.transaction():
                    yield conn
        except _DRIVER_FAILURES as exc:
            if errors.is_transient(exc):
                raise errors.unavailable(exc, what) from None
            raise errors.EventStoreError(f"{what}: {exc}") from None

    async def archive_streams(
        self, stream_ids: Sequence[str], finished_before: datetime, retention_days: int
    ) -> list[str]:
        """Move whole finished job streams to the archive (retention); return those moved.

        The database checks each stream again: only job streams whose last event finished
        the job before ``finished_before`` move.  A ``log.streams_archived`` event records
        them in the same transaction.  Only chained streams move (their hashes go with them,
        sql/0045): the chain is first brought up to the candidates' newest event, not left
        for the anchorer's next round (waiting a little for transactions that hold it back).
        """
        newest = await self._fetch(_Q["streams_newest"], list(stream_ids))
        if newest:
            await audit.chain_through(
                self.pool, Cursor(int(newest[0]["xid"]), newest[0]["position"])
            )
        rows = await self._fetch(
            _Q["archive_streams"], list(stream_ids), finished_before, retention_days
        )
        return [row["archived_stream_id"] for row in rows]

    async def read_archived_stream(self, stream_id: str) -> list[RecordedEvent]:
        """The events of an archived stream, as they were in the log."""
        _check_stream_id(stream_id)
        rows = await self._fetch(_Q["read_archived_stream"], stream_id)
        return [_record(row) for row in rows]

    async def prune_delivery_tokens(self) -> int:
        """Forget delivery tokens past their expiry (their signatures no longer verify)."""
        rows = await self._fetch(_Q["prune_delivery_tokens"])
        return int(rows[0][0])

    async def checkpoint(self, name: str) -> int:
        """How far the log follower ``name`` (e.g. ``relay``) has got (0 if it never ran)."""
        rows = await self._fetch(_Q["checkpoint"], name)
        return int(rows[0][0]) if rows else 0

    async def schedule_stream_ids(self) -> list[str]:
        """The ids of every schedule stream in the log."""
        rows = await self._fetch(_Q["schedule_streams"])
        return [row["stream_id"] for row in rows]

    async def read_stream(self, stream_id: str, from_version: int = 0) -> list[RecordedEvent]:
        """The events of ``stream_id`` with version >= ``from_version``, in order."""
        _check_stream_id(stream_id)
        rows = await self._fetch(_Q["read_stream"], stream_id, from_version)
        return [_record(row) for row in rows]

    async def read_after(
        self, cursor: Cursor = START, limit: int = 1000, types: Collection[str] | None = None
    ) -> Page:
        """Up to ``limit`` events after ``cursor`` that followers may read, in reading order.

        Only events of transactions older than every transaction still running are
        returned (see the module's docstring), so a later call never finds an event
        behind the last one returned.  ``Page.held_back`` says whether committed events
        wait behind a running transaction.  With ``types``, the page still covers the next
        ``limit`` events of every type (``Page.covered``, ``Page.end``), but holds only
        those of ``types``: the others are neither sent nor decoded.
        """
        if limit < 1:
            raise errors.EventStoreError(f"limit must be at least 1, got {limit}")
        if isinstance(types, str):
            raise errors.EventStoreError(f"types must be a collection of type names, got {types!r}")
        wanted = None if types is None else sorted(types)
        rows = await self._fetch(
            _Q["read_after"], cursor.transaction, cursor.position, limit, wanted
        )
        held_back = bool(rows[0]["held_back"]) if rows else False
        rows = [r for r in rows if r["position"] is not None]
        if not rows:
            return Page([], held_back, 0, cursor)
        end = Cursor(int(rows[-1]["xid"]), rows[-1]["position"])
        return Page([_record(r) for r in rows if r["handled"]], held_back, len(rows), end)

    async def head(self) -> Cursor:
        """The cursor of the newest event committed now (START when the log is empty).

        A follower that has read up to it has read everything committed before the call.
        """
        rows = await self._fetch(_Q["head"])
        return START if not rows else Cursor(int(rows[0]["xid"]), int(rows[0]["position"]))

    async def cursor_of(self, position: int) -> Cursor:
        """The cursor of the event at ``position`` (or of the nearest one before it)."""
        rows = await self._fetch(_Q["cursor_of"], position)
        return START if not rows else Cursor(int(rows[0]["xid"]), int(rows[0]["position"]))

    async def reader_lag(self) -> ReaderLag:
        """How much of the log followers are held back from by transactions still open."""
        (row,) = await self._fetch(_Q["reader_lag"])
        return ReaderLag(
            horizon=int(row["horizon"]),
            held_back_events=int(row["held_back_events"]),
            held_back_seconds=float(row["held_back_seconds"] or 0.0),
            oldest_transaction_seconds=row["oldest_transaction_seconds"],
            oldest_transaction_pid=row["oldest_transaction_pid"],
        )

    async def read_all(self, after_position: int = 0, limit: int = 1000) -> list[RecordedEvent]:
        """Up to ``limit`` events of all streams after ``after_position``, in position order.

        A one-off read by position: events of transactions still running are not there
        yet and may later appear below ``after_position``.  To follow the log, use
        :meth:`read_after`.
        """
        if limit < 1:
            raise errors.EventStoreError(f"limit must be at least 1, got {limit}")
        rows = await self._fetch(_Q["read_all"], after_position, limit)
        return [_record(row) for row in rows]

    async def last_position(self) -> int:
        """The position of the newest event in the log (0 when empty)."""
        rows = await self._fetch(_Q["last_position"])
        return int(rows[0][0])

    async def stream_version(self, stream_id: str) -> int:
        """The current version of ``stream_id`` (0 when it has no events)."""
        _check_stream_id(stream_id)
        rows = await self._fetch(_Q["stream_version"], stream_id)
        return int(rows[0][0])

    async def _seal(
        self,
        requests: Sequence[StreamAppend],
        connection: asyncpg.Connection | None,
        new_keys: list[keyring.NewKey] | None = None,
    ) -> list[StreamAppend]:
        """The requests with personal data, error texts and results sealed (the one place)."""
        sealed = await self.keys.seal(
            [(r.stream_id, r.events) for r in requests],
            connection,
            known={r.stream_id: r.key for r in requests if r.key is not None},
            new_keys=new_keys,
        )
        return [
            r if events is r.events else dataclasses.replace(r, events=events)
            for r, events in zip(requests, sealed, strict=True)
        ]

    async def _seal_encoded(self, requests: Sequence[StreamAppend]) -> list[_Encoded]:
        """The requests sealed and encoded for :meth:`_append_each`, each carrying the key
        its first dispatch made (stored by the append's own statement)."""
        new_keys: list[keyring.NewKey] = []
        sealed = await self._seal(requests, None, new_keys)
        made = {k.stream_id: k for k in new_keys}
        return [_encode(r, made.get(r.stream_id)) for r in sealed]

    async def read_job(
        self, stream_id: str, job_id: str
    ) -> tuple[list[RecordedEvent], keyring.DeliveryKeys]:
        """The events of a job's stream and its data key, read together in one statement
        (the key's ``dispatch`` is for the caller to set, from the folded events).

        Concurrent calls are read together, in one statement (:mod:`jobstore.batcher`).
        """
        _check_stream_id(stream_id)
        if is_uuid(job_id):
            rows = await self._job_reads.submit(_JobRead(stream_id, job_id))
        else:  # the statement refuses it, for this caller alone
            rows = await self._fetch(_Q["read_stream_with_key"], stream_id, job_id)
        return [_record(row) for row in rows], keyring.delivery_keys(job_id, rows)

    async def _read_jobs(
        self, reads: Sequence[_JobRead]
    ) -> list[list[asyncpg.Record] | BaseException]:
        """The rows of :meth:`read_job` for each of ``reads`` (one per stream), one statement."""
        if len(reads) == 1:  # the one-stream statement: 53 µs of server CPU, against 134 µs
            (read,) = reads  # for the batch one with one element (planning; bench/README)
            return [await self._fetch(_Q["read_stream_with_key"], read.stream_id, read.job_id)]
        rows = await self._fetch(
            _Q["read_streams_with_keys"], [r.stream_id for r in reads], [r.job_id for r in reads]
        )
        by_stream: dict[str, list[asyncpg.Record]] = {}
        for row in rows:
            by_stream.setdefault(row["stream_id"], []).append(row)
        return [by_stream.get(r.stream_id, []) for r in reads]

    async def _append_rows(
        self, conn: asyncpg.Connection, args: tuple[Any, ...]
    ) -> list[asyncpg.Record]:
        return list(await conn.fetch(_Q["append_events"], *args))

    async def _append_each(self, encoded: Sequence[_Encoded]) -> list[list[int] | BaseException]:
        """Commit independent single-stream appends together (group commit)."""

        new_keys = sorted((e.new_key for e in encoded if e.new_key), key=lambda k: k.key_id)
        # With keys to store, the statement that stores them with the dispatches.
        sql = _Q["append_events_each_making_keys" if new_keys else "append_events_each"]
        arguments = _arguments_each(encoded)
        if new_keys:
            arguments = (*arguments, *_key_arguments(new_keys))

        async def run(conn: asyncpg.Connection, a: tuple[Any, ...]) -> list[asyncpg.Record]:
            return list(await conn.fetch(sql, *a))

        rows: list[asyncpg.Record] = await self._run(run, arguments, None, rerun=False)
        self._announcer.wake()
        positions: dict[str, list[int]] = {}
        conflicts: dict[str, int] = {}
        used: set[str] = set()
        kept: set[str] = set()
        for row in rows:
            if new_keys and row["out_key_kept"]:
                kept.add(row["out_stream_id"])
            elif row["out_position"] is not None:
                positions.setdefault(row["out_stream_id"], []).append(row["out_position"])
            elif row["out_token_used"]:
                used.add(row["out_stream_id"])
            else:
                conflicts[row["out_stream_id"]] = row["out_version"]
        return [
            _KeyKept() if e.stream_id in kept else _each_outcome(e, positions, conflicts, used)
            for e in encoded
        ]

    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        async def run(conn: asyncpg.Connection, a: tuple[Any, ...]) -> list[asyncpg.Record]:
            return list(await conn.fetch(sql, *a))

        rows: list[asyncpg.Record] = await self._run(run, args, None)
        return rows

    async def _run(
        self, fn: Any, args: Any, connection: asyncpg.Connection | None, *, rerun: bool = True
    ) -> Any:
        """``fn(conn, args)`` on ``connection`` or a pooled one; driver errors translated.

        A brief outage is ridden out (:class:`jobstore.database.Runner`) for reads, and for
        appends only until one is sent: if the connection broke while an append committed,
        its outcome is unknown, and a second try could record its events twice (an
        ``any``-version append) or report its own first try as a conflict.  The caller
        (QStash, through the host's 503) tries again later instead, under the rules that
        make a repeated delivery harmless.
        """
        try:
            return await self.runner.run(
                lambda conn: fn(conn, args), connection, rerun=rerun, what="the event store"
            )
        except asyncpg.PostgresError as exc:
            raise _translate(exc) from None


def _dedupe(requests: Sequence[StreamAppend]) -> Sequence[StreamAppend]:
    stream_ids = [r.stream_id for r in requests]
    if len(set(stream_ids)) != len(stream_ids):
        raise errors.InvalidEventError(
            "a stream appears twice in one append_streams call; put its events in one request"
        )
    return requests


@dataclass(frozen=True, slots=True)
class _JobRead:
    """One job's stream and data key to read (:meth:`EventStore.read_job`)."""

    stream_id: str
    job_id: str


class _KeyKept(Exception):
    """The stream's first dispatch was sealed with a new key, and its job had one already
    (made by an earlier try): nothing was appended to it; seal it again with the stored key."""


@dataclass(frozen=True, slots=True)
class _Encoded:
    """One stream's append, checked and encoded, ready to join a statement's arrays."""

    stream_id: str
    expected: int | None
    types: list[str]
    versions: list[int]
    datas: list[bytes]
    meta: bytes
    token: DeliveryToken | None = None
    new_key: keyring.NewKey | None = None
    """The data key the stream's first dispatch was sealed with, stored by the append."""


def _encode(request: StreamAppend, new_key: keyring.NewKey | None = None) -> _Encoded:
    _check_stream_id(request.stream_id)
    expected = _expected(request.expected_version)
    metadata = tracing.stamp(request.metadata)  # the current span, when tracing is on
    meta = codec.dumps(dict(metadata), what=f"metadata of {request.stream_id!r}")
    types: list[str] = []
    versions: list[int] = []
    datas: list[bytes] = []
    for event in request.events:
        if not isinstance(event, Event) or not hasattr(type(event), "type_name"):
            raise errors.InvalidEventError(
                f"{event!r} is not a registered Event; declare it with "
                "class X(Event, type_name='...')"
            )
        types.append(event.type_name)
        versions.append(event.schema_version)
        datas.append(codec.dumps(event.to_json_data(), what=event.type_name))
    return _Encoded(
        request.stream_id, expected, types, versions, datas, meta, request.token, new_key
    )


def _arguments(encoded: Sequence[_Encoded]) -> tuple[list[Any], ...]:
    stream_ids: list[str] = []
    types: list[str] = []
    versions: list[int] = []
    datas: list[bytes] = []
    metas: list[bytes] = []
    for item in encoded:
        stream_ids += [item.stream_id] * len(item.types)
        types += item.types
        versions += item.versions
        datas += item.datas
        metas += [item.meta] * len(item.types)
    check_streams = [item.stream_id for item in encoded]
    check_versions = [item.expected for item in encoded]
    return check_streams, check_versions, stream_ids, types, versions, datas, metas


def _arguments_each(encoded: Sequence[_Encoded]) -> tuple[list[Any], ...]:
    check_streams, check_versions, *events = _arguments(encoded)
    token_ids = [e.token.token_id if e.token else None for e in encoded]
    token_expiries = [e.token.expires_at if e.token else None for e in encoded]
    return check_streams, check_versions, token_ids, token_expiries, *events


def _key_arguments(new_keys: Sequence[keyring.NewKey]) -> tuple[Any, ...]:
    """The key columns of ``append_events_each_making_keys`` (one master key per process)."""
    return (
        [k.stream_id for k in new_keys],
        [k.key_id for k in new_keys],
        [k.user_id for k in new_keys],
        [k.organization_id for k in new_keys],
        [k.wrapped_key for k in new_keys],
        new_keys[0].master_key_id,
    )


def _each_outcome(
    e: _Encoded, positions: dict[str, list[int]], conflicts: dict[str, int], used: set[str]
) -> list[int] | errors.EventStoreError:
    if e.stream_id in used:
        assert e.token is not None
        return errors.TokenUsedError(e.stream_id, e.token.token_id)
    if e.stream_id in conflicts:
        return errors.ConcurrencyError(e.stream_id, _describe(e.expected), conflicts[e.stream_id])
    return positions.get(e.stream_id, [])


def _expected(expected: ExpectedVersion) -> int | None:
    if expected == ANY:
        return None
    if expected == NO_STREAM:
        return 0
    if isinstance(expected, int) and not isinstance(expected, bool) and expected >= 0:
        return expected
    raise errors.InvalidEventError(
        f"expected_version must be 'any', 'no_stream' or a version >= 0, got {expected!r}"
    )


def _describe(expected: int | None) -> object:
    return "no stream yet" if expected == 0 else expected


def _check_stream_id(stream_id: str) -> None:
    if not isinstance(stream_id, str) or not stream_id.strip():
        raise errors.InvalidEventError(f"stream id must be a non-empty string, got {stream_id!r}")
    if len(stream_id) > MAX_STREAM_ID_LENGTH:
        raise errors.InvalidEventError(
            f"stream id is {len(stream_id)} characters long; the limit is {MAX_STREAM_ID_LENGTH}"
        )
    if "\x00" in stream_id:
        raise errors.InvalidEventError("stream id contains a NUL character")


def _record(row: asyncpg.Record) -> RecordedEvent:
    return RecordedEvent(
        position=row["position"],
        stream_id=row["stream_id"],
        version=row["version"],
        event=decode(row["event_type"], row["schema_version"], row["data"]),
        metadata=row["metadata"],
        recorded_at=row["recorded_at"],
        transaction=int(row["xid"]),
    )


def _translate(exc: asyncpg.PostgresError) -> errors.JobstoreError:
    sqlstate = getattr(exc, "sqlstate", None)
    if sqlstate == "JT001":
        detail = orjson.loads(getattr(exc, "detail", None) or "{}")
        return errors.ConcurrencyError(
            detail.get("stream_id", "?"), _describe(detail.get("expected")), detail.get("actual")
        )
    if isinstance(exc, asyncpg.UniqueViolationError):
        # Two writers raced past the version check for the same stream: the database's
        # unique (stream_id, version) constraint let only one of them in.
        return errors.ConcurrencyError(_stream_from(exc), "the version read before", None)
    if sqlstate == "JT002":
        return errors.AppendOnlyError(str(exc))
    if errors.is_transient(exc):
        return errors.unavailable(exc, "PostgreSQL is not accepting work")
    return errors.EventStoreError(f"the event store failed: {exc}")


def _stream_from(exc: asyncpg.PostgresError) -> str:
    detail = getattr(exc, "detail", None) or ""
    # detail reads: Key (stream_id, version)=(job-1, 3) already exists.
    inside = detail.partition(")=(")[2].rpartition(", ")[0]
    return inside or "?"
