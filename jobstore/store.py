"""The event store: append to streams against an expected version, read, and subscribe.

Ordering guarantee: every insert into the log takes one transaction-scoped advisory lock
(see ``sql/0001_create_event_log.sql``), so positions are assigned and committed one
transaction at a time and a reader tailing ``read_all(after_position)`` never skips an
event that commits later with a lower position.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal

import asyncpg
import orjson

from jobstore import codec, errors, query
from jobstore.batcher import AppendBatcher
from jobstore.event import Event, RecordedEvent, decode

ANY: Final = "any"
NO_STREAM: Final = "no_stream"
ExpectedVersion = int | Literal["any", "no_stream"]

MAX_STREAM_ID_LENGTH: Final = 200
NOTIFY_CHANNEL: Final = "jobtrail_events"

_Q = query.load("jobstore", "store.sql")
_CONNECTION_ERRORS = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.CannotConnectNowError,
    asyncpg.InterfaceError,
    asyncpg.AdminShutdownError,
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


class EventStore:
    """The append-only event log in PostgreSQL."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._batcher = AppendBatcher(self._append_each)

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
    ) -> list[int]:
        """Append ``events`` to one stream in one transaction; return their positions.

        With ``token``, the token is recorded in the same transaction, and the append is
        refused with TokenUsedError (nothing written) when the token was recorded before.
        """
        request = StreamAppend(stream_id, events, expected_version, metadata or {}, token)
        if connection is not None:
            if token is not None:
                raise errors.InvalidEventError("a delivery token cannot go with a connection")
            (positions,) = await self.append_streams([request], connection=connection)
            return positions
        encoded = _encode(request)
        if not encoded.types:
            return []
        return await self._batcher.submit(encoded)

    async def append_streams(
        self, requests: Sequence[StreamAppend], *, connection: asyncpg.Connection | None = None
    ) -> list[list[int]]:
        """Append to many streams in one transaction; positions come back per request.

        If any stream is not at its expected version, ConcurrencyError is raised and
        nothing at all is written.
        """
        encoded = [_encode(r) for r in _dedupe(requests)]
        if not any(e.types for e in encoded):
            return [[] for _ in requests]
        rows = await self._run(self._append_rows, _arguments(encoded), connection)
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
        encoded = [_encode(r) for r in _dedupe(requests)]
        if not encoded:
            return []
        outcomes = await self._append_each(encoded)
        return [
            o
            if isinstance(o, list)
            else errors.ConcurrencyError(
                r.stream_id, r.expected_version, getattr(o, "actual", None)
            )
            for o, r in zip(outcomes, requests, strict=True)
        ]

    async def archive_streams(
        self, stream_ids: Sequence[str], finished_before: datetime, retention_days: int
    ) -> list[str]:
        """Move whole finished job streams to the archive (retention); return those moved.

        The database checks each stream again: only job streams whose last event finished
        the job before ``finished_before`` move.  A ``log.streams_archived`` event records
        them in the same transaction.
        """
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

    async def read_all(self, after_position: int = 0, limit: int = 1000) -> list[RecordedEvent]:
        """Up to ``limit`` events of all streams after ``after_position``, in position order."""
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

    async def _append_rows(
        self, conn: asyncpg.Connection, args: tuple[list[Any], ...]
    ) -> list[asyncpg.Record]:
        return list(await conn.fetch(_Q["append_events"], *args))

    async def _append_each(self, encoded: Sequence[_Encoded]) -> list[list[int] | BaseException]:
        """Commit independent single-stream appends together (group commit)."""

        async def run(conn: asyncpg.Connection, a: tuple[Any, ...]) -> list[asyncpg.Record]:
            return list(await conn.fetch(_Q["append_events_each"], *a))

        rows: list[asyncpg.Record] = await self._run(run, _arguments_each(encoded), None)
        positions: dict[str, list[int]] = {}
        conflicts: dict[str, int] = {}
        used: set[str] = set()
        for row in rows:
            if row["out_position"] is not None:
                positions.setdefault(row["out_stream_id"], []).append(row["out_position"])
            elif row["out_token_used"]:
                used.add(row["out_stream_id"])
            else:
                conflicts[row["out_stream_id"]] = row["out_version"]
        return [_each_outcome(e, positions, conflicts, used) for e in encoded]

    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        async def run(conn: asyncpg.Connection, a: tuple[Any, ...]) -> list[asyncpg.Record]:
            return list(await conn.fetch(sql, *a))

        rows: list[asyncpg.Record] = await self._run(run, args, None)
        return rows

    async def _run(self, fn: Any, args: Any, connection: asyncpg.Connection | None) -> Any:
        try:
            if connection is not None:
                return await fn(connection, args)
            async with self._pool.acquire() as conn:
                return await fn(conn, args)
        except asyncpg.PostgresError as exc:
            raise _translate(exc) from None
        except _CONNECTION_ERRORS as exc:
            raise errors.DatabaseUnavailableError(
                f"the event store lost its database connection: {exc}"
            ) from None


def _dedupe(requests: Sequence[StreamAppend]) -> Sequence[StreamAppend]:
    stream_ids = [r.stream_id for r in requests]
    if len(set(stream_ids)) != len(stream_ids):
        raise errors.InvalidEventError(
            "a stream appears twice in one append_streams call; put its events in one request"
        )
    return requests


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


def _encode(request: StreamAppend) -> _Encoded:
    _check_stream_id(request.stream_id)
    expected = _expected(request.expected_version)
    meta = codec.dumps(dict(request.metadata), what=f"metadata of {request.stream_id!r}")
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
    return _Encoded(request.stream_id, expected, types, versions, datas, meta, request.token)


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
    if isinstance(exc, asyncpg.CannotConnectNowError | asyncpg.AdminShutdownError):
        return errors.DatabaseUnavailableError(f"PostgreSQL is not accepting work: {exc}")
    return errors.EventStoreError(f"the event store failed: {exc}")


def _stream_from(exc: asyncpg.PostgresError) -> str:
    detail = getattr(exc, "detail", None) or ""
    # detail reads: Key (stream_id, version)=(job-1, 3) already exists.
    inside = detail.partition(")=(")[2].rpartition(", ")[0]
    return inside or "?"
