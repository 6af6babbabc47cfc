"""The data keys of crypto-shredding: one AES-256-GCM key per job (and per recurring
schedule whose job type declares personal fields), wrapped by a master key.

Keys live in ``jobtrail.data_keys`` (``sql/0028``, ``sql/0036``), indexed by job (or
schedule), user and organization, wrapped with the master key from settings
(``JOBTRAIL_DATA_KEY``: 32 random bytes, base64); keys wrapped by a master key it replaced
(``JOBTRAIL_DATA_PREVIOUS_KEYS``) still open, until :mod:`jobstore.rotation` rewraps them.
The event store seals what it appends (:meth:`KeyRing.seal`); readers allowed to see
personal data open it (:meth:`KeyRing.reveal`); erasure destroys keys
(:mod:`jobstore.erasure`).  Keys are never cached: an erasure in another process takes
effect at the next read.  One read serves a
whole delivery: the key read with the job's stream opens the payload for the handler and
seals the attempt's outcome (erased meanwhile, what it sealed opens nowhere).

No key costs a round trip of its own on a job's way: a first dispatch's key is stored by
the statement appending the dispatch (:class:`NewKey`), and a delivery reads the key with
the job's stream (:func:`delivery_keys`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import asyncpg
import structlog
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import BaseModel

from jobstore import database, errors, protect, query
from jobstore.event import Event, RecordedEvent
from jobstore.ids import is_uuid
from jobstore.job_events import JobDispatched
from jobstore.schedule_events import ScheduleCreated
from jobstore.settings import DATA_KEY_FORMAT, DEV_DATA_KEY, Settings, decode_data_key

log = structlog.get_logger("jobtrail.keyring")
_Q = query.load("jobstore", "keyring.sql")
_JOB_STREAM: Final = "job-"
_SCHEDULE_STREAM: Final = "schedule-"
_SCHEDULE_KEYS: Final = uuid.UUID("6f1d7a52-3c0e-4b8e-9a57-2f4c1e8b0d93")
_NONCE_BYTES: Final = 12
M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


class DataKeyError(errors.JobstoreError):
    """A data key cannot be used with this process's master key (JOBTRAIL_DATA_KEY)."""


class MasterKey:
    """The key that wraps every data key (``JOBTRAIL_DATA_KEY``: 32 bytes, base64), with the
    keys it replaced (``JOBTRAIL_DATA_PREVIOUS_KEYS``).

    New data keys are always wrapped by the current key; a stored one is unwrapped by the key
    its row names (``master_key_id``), current or previous, so a rotation is transparent to
    readers until ``jobtrail keys rewrap`` has wrapped every data key with the current key.
    """

    def __init__(self, encoded: str, previous: Sequence[str] = ()) -> None:
        self.key_id, self._aead = _aead(encoded)
        """A fingerprint of the current key, stored with each data key it wraps (not secret)."""
        earlier = [_aead(k) for k in previous]
        self.previous_ids = tuple(key_id for key_id, _ in earlier)
        """The fingerprints of the previous keys, in the order given."""
        self._held = {self.key_id: self._aead, **dict(earlier)}

    def holds(self, key_id: str) -> bool:
        """Whether this process can unwrap a data key wrapped by master key ``key_id``."""
        return key_id in self._held

    def wrap(self, data_key: bytes, job_id: str) -> bytes:
        """``data_key`` encrypted for storage by the current key, bound to ``job_id``."""
        nonce = os.urandom(_NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, data_key, job_id.encode())

    def unwrap(self, wrapped: bytes, job_id: str, key_id: str) -> AESGCM:
        """The data key of ``job_id`` from its stored form, wrapped by master key ``key_id``."""
        return AESGCM(self._open(wrapped, job_id, key_id))

    def rewrap(self, wrapped: bytes, job_id: str, key_id: str) -> bytes:
        """The data key of ``job_id``, wrapped by master key ``key_id``, wrapped anew by the
        current key."""
        return self.wrap(self._open(wrapped, job_id, key_id), job_id)

    def not_held(self, key_id: str, what: str) -> DataKeyError:
        """The error for ``what`` (the data key of a job, or a count of them) wrapped by a
        master key this process does not hold: which keys it holds, and what to set."""
        held = ", ".join(
            [f"{self.key_id} (JOBTRAIL_DATA_KEY)"]
            + [f"{k} (JOBTRAIL_DATA_PREVIOUS_KEYS)" for k in self.previous_ids]
        )
        return DataKeyError(
            f"master key {key_id} wrapped {what}, and this process does not hold it (it holds "
            f"{held}): set JOBTRAIL_DATA_KEY to the key the data keys were made with, or list "
            "that key in JOBTRAIL_DATA_PREVIOUS_KEYS"
        )

    def _open(self, wrapped: bytes, job_id: str, key_id: str) -> bytes:
        aead = self._held.get(key_id)
        if aead is None:
            raise self.not_held(key_id, f"the data key of job {job_id}")
        try:
            nonce, sealed = wrapped[:_NONCE_BYTES], wrapped[_NONCE_BYTES:]
            return aead.decrypt(nonce, sealed, job_id.encode())
        except InvalidTag:
            raise DataKeyError(f"the stored data key of job {job_id} is damaged") from None


def _aead(encoded: str) -> tuple[str, AESGCM]:
    """A master key's fingerprint and cipher, from its base64 form."""
    try:
        raw = decode_data_key(encoded)
    except ValueError:
        raise DataKeyError(
            f"JOBTRAIL_DATA_KEY must be {DATA_KEY_FORMAT}, e.g. "
            'the output of: python -c "import os,base64;print(base64.b64encode('
            'os.urandom(32)).decode())"'
        ) from None
    return hashlib.sha256(b"jobtrail master key\x00" + raw).hexdigest()[:16], AESGCM(raw)


_master = MasterKey(DEV_DATA_KEY)
DEV_MASTER_KEY_ID: Final = _master.key_id
"""The fingerprint of the public development key (DEV_DATA_KEY)."""


def configure(settings: Settings) -> None:
    """Use the master keys of ``settings`` in this process (called once, at the edge)."""
    global _master
    _master = MasterKey(
        settings.data_key.get_secret_value(),
        [k.get_secret_value() for k in settings.data_previous_keys],
    )


def master_key() -> MasterKey:
    """The master key this process wraps and unwraps data keys with."""
    return _master


def schedule_key_id(schedule_id: str) -> str:
    """The id of a schedule's data key (the ``kid`` of what it seals): a UUID derived from
    the schedule id, so the key table and the sealed-value format need no second kind of id."""
    return str(uuid.uuid5(_SCHEDULE_KEYS, schedule_id))


@dataclass(frozen=True, slots=True)
class _Wanted:
    job_id: str
    """The key's id: the job's id, or :func:`schedule_key_id` of the schedule."""
    user_id: int | None
    organization_id: int | None
    schedule_id: str | None = None


@dataclass(frozen=True, slots=True)
class DeliveryKeys:
    """A job's data key as read at the start of a delivery of its current dispatch.

    ``keys`` open the payload for the handler; ``exists``: the job has a key row (a key, or
    the tombstone of an erased one).  Without one, the job has no key while its current
    dispatch is the one delivered (see :meth:`KeyRing.seal`): the delivery's outcome is
    appended knowing that (``known``), and the key table is not read a second time.
    """

    keys: dict[str, AESGCM | None]
    exists: bool
    dispatch: int | None = None
    """The job's current dispatch in the state read together with the key (one statement,
    one snapshot: :func:`jobstore.change.load_with_key`); None: not known, and then the key
    is never used for sealing in place of a read."""


def delivery_keys(job_id: str, rows: Sequence[asyncpg.Record]) -> DeliveryKeys:
    """The key of ``job_id`` from the rows of a read of its stream that carried its key row
    (columns ``job_id`` (NULL: no key row), ``wrapped_key``, ``master_key_id``, ``erased``);
    the reader sets ``dispatch`` once it has folded the events."""
    found = [rows[0]] if rows and rows[0]["job_id"] is not None else []
    return DeliveryKeys(_keys_of(found) or {job_id: None}, bool(found))


@dataclass(frozen=True, slots=True)
class NewKey:
    """A key made by :meth:`KeyRing.seal` for a job's first dispatch and not stored yet: the
    append carrying the dispatch stores it in its own statement (``store.sql``
    ``append_events_each_making_keys``), which appends nothing to a stream whose key exists
    already."""

    stream_id: str
    key_id: str
    user_id: int | None
    organization_id: int | None
    wrapped_key: bytes
    master_key_id: str


class KeyRing:
    """Makes, reads and destroys the data keys of jobs, in one database."""

    def __init__(self, pool: asyncpg.Pool, runner: database.Runner | None = None) -> None:
        self._pool = pool
        self._runner = runner or database.Runner(pool)

    async def keys(
        self, kids: Iterable[str], connection: asyncpg.Connection | None = None
    ) -> dict[str, AESGCM | None]:
        """The data keys of these jobs; None for an erased job (or one with no key)."""
        ids = sorted({k for k in kids if is_uuid(k)})
        if not ids:
            return {}
        rows = await self._fetch(connection, _Q["read_keys"], ids)
        found = _keys_of(rows)
        return {k: found.get(k) for k in ids}

    async def reveal(self, value: Any, connection: asyncpg.Connection | None = None) -> Any:
        """``value`` with every sealed value opened (``[erased]`` where the key is gone)."""
        kids = protect.kids_in(value)
        if not kids:
            return value
        return protect.reveal(value, await self.keys(kids, connection))

    async def reveal_fields(self, model: M) -> M:
        """``model`` with the sealed values of its fields opened (a copy, when any are)."""
        (opened,) = await self.reveal_all([model])
        return opened

    async def reveal_all(self, items: Sequence[T], *, masked: bool = False) -> list[T]:
        """``items`` (models, dataclasses, recorded events) with their sealed fields opened.

        One read of the key table for all of them; ``[erased]`` where a key is gone.  With
        ``masked``, ``[personal]`` instead of each value a reader may not see.
        """
        kids: set[str] = set()
        for item in items:
            protect.kids_in(_fields(item), kids)
        if not kids:
            return list(items)
        keys = await self.keys(kids)
        show = protect.mask if masked else protect.reveal
        return [_opened(item, keys, show) for item in items]

    async def seal(
        self,
        streams: Sequence[tuple[str, Sequence[Event]]],
        connection: asyncpg.Connection | None = None,
        *,
        known: Mapping[str, DeliveryKeys] | None = None,
        new_keys: list[NewKey] | None = None,
    ) -> list[Sequence[Event]]:
        """Each stream's events with their personal data sealed by its job's (or schedule's) key.

        A dispatch (or a ``schedule.created``) carrying personal fields makes the key of its
        job (schedule), with its user and organization; a job without a key (its type declares
        no personal field) is stored as given; a later dispatch of an erased job is refused
        with JobError ``ERASED``.

        The key table is read only when an event needs a key that this append does not make,
        and not for a job known to have none: one whose first dispatch, without personal
        fields, is in the same append, or one whose key the caller read (``known``, by
        stream: :class:`DeliveryKeys`).  A caller may give the key it read with the job's
        stream, for an append without a dispatch, when it read the key table after the job's
        current dispatch was committed and the append is made against a state whose current
        dispatch is still that one: a key is made only by a dispatch's append and committed
        no later than that dispatch, so the read saw every key the job's dispatches so far
        made (a new dispatch changes the job's version, so an append against the old one is
        refused and decided again).  No row: the job is keyless; else its events are sealed
        with that key, not read again (the key a read found stays the job's key; if it was
        erased since, what it seals opens nowhere, like the ``[erased]`` a fresh read would
        have stored).

        With ``new_keys``, the keys of jobs whose first dispatch is in the append are made
        here and not stored: they are added to ``new_keys`` for the append's own statement to
        store, in its transaction (the caller appends no stream whose key was found to exist
        already, and seals it again without ``new_keys``).
        """
        made: dict[str, _Wanted] = {}
        fresh: dict[str, str] = {}  # key id -> stream id, keys the caller's append stores
        read: set[str] = set()
        keys: dict[str, AESGCM | None] = {}
        for stream_id, events in streams:
            owner = _owner(stream_id)
            if owner is None:
                continue
            kid, schedule_id = owner
            uses = {protect.key_use(e) for e in events}
            given = (known or {}).get(stream_id)
            if "make" in uses:
                made[kid] = _wanted(kid, schedule_id, events)
                if new_keys is not None and schedule_id is None and _first_dispatch(events):
                    fresh[kid] = stream_id
            elif "read" not in uses or _first_dispatch(events):  # it made none: keyless
                continue
            elif given is not None and given.dispatch is not None and not _dispatches(events):
                if given.exists:
                    keys[kid] = given.keys.get(kid)
            else:
                read.add(kid)
        if not made and not read and not keys:
            return [events for _, events in streams]
        if fresh and new_keys is not None:
            new_keys += _fresh([made.pop(k) for k in sorted(fresh)], fresh, keys)
        if made:
            keys.update(await self._create(list(made.values()), connection))
        if read:
            keys.update(_keys_of(await self._fetch(connection, _Q["read_keys"], sorted(read))))
        out: list[Sequence[Event]] = []
        for stream_id, events in streams:
            owner = _owner(stream_id)
            if owner is None or owner[0] not in keys:
                out.append(events)
                continue
            kid = owner[0]
            key = keys[kid]
            if key is None:
                _refuse_redispatch(kid, events)
            out.append([protect.sealed_event(e, key, kid) for e in events])
        return out

    async def erased(self, job_id: str) -> bool:
        """Whether the personal data of ``job_id`` was erased."""
        if not is_uuid(job_id):
            return False
        rows = await self._fetch(None, _Q["erased_at"], job_id)
        return bool(rows) and rows[0]["erased_at"] is not None

    async def _create(
        self, wanted: list[_Wanted], connection: asyncpg.Connection | None
    ) -> dict[str, AESGCM | None]:
        master = master_key()
        wanted = sorted(wanted, key=lambda w: w.job_id)  # one lock order for every writer
        fresh = [os.urandom(32) for _ in wanted]
        args = (
            [w.job_id for w in wanted],
            [w.user_id for w in wanted],
            [w.organization_id for w in wanted],
            [master.wrap(k, w.job_id) for k, w in zip(fresh, wanted, strict=True)],
            master.key_id,
            [w.schedule_id for w in wanted],
        )
        rows = await self._fetch(connection, _Q["create_keys"], *args)
        if any(not r["known"] for r in rows):  # made concurrently, committed after we looked
            rows = await self._fetch(connection, _Q["read_keys"], args[0])
        return _keys_of(rows)

    async def _fetch(
        self, connection: asyncpg.Connection | None, sql: str, *args: Any
    ) -> list[asyncpg.Record]:
        async def fetch(conn: Any) -> list[asyncpg.Record]:
            return list(await conn.fetch(sql, *args))

        try:  # every statement here may run again: create_keys keeps existing keys
            return await self._runner.run(fetch, connection, what="the data key table")
        except asyncpg.PostgresError as exc:
            raise errors.EventStoreError(f"the data key table failed: {exc}") from None


def _fields(item: Any) -> list[Any]:
    """The field values of a model, a dataclass or a recorded event (its event's fields)."""
    if isinstance(item, RecordedEvent):
        return _fields(item.event)
    if isinstance(item, BaseModel):
        return list(item.__dict__.values())
    if dataclasses.is_dataclass(item) and not isinstance(item, type):
        return [getattr(item, f.name) for f in dataclasses.fields(item)]
    return [item]


def _opened(item: T, keys: protect.Keys, show: Callable[[Any, protect.Keys], Any]) -> T:
    if isinstance(item, RecordedEvent):
        return dataclasses.replace(item, event=_opened(item.event, keys, show))
    if isinstance(item, BaseModel):
        sealed = {k: v for k, v in item.__dict__.items() if protect.kids_in(v)}
        return item.model_copy(update={k: show(v, keys) for k, v in sealed.items()})
    if dataclasses.is_dataclass(item) and not isinstance(item, type):
        changes = {
            f.name: show(getattr(item, f.name), keys)
            for f in dataclasses.fields(item)
            if protect.kids_in(getattr(item, f.name))
        }
        return dataclasses.replace(item, **changes)
    opened: T = show(item, keys)
    return opened


def _keys_of(rows: Iterable[asyncpg.Record]) -> dict[str, AESGCM | None]:
    master = master_key()
    keys: dict[str, AESGCM | None] = {}
    for row in rows:
        wrapped = row["wrapped_key"]
        if row["erased"] or wrapped is None:
            keys[row["job_id"]] = None
        else:
            keys[row["job_id"]] = master.unwrap(bytes(wrapped), row["job_id"], row["master_key_id"])
    return keys


def _wanted(kid: str, schedule_id: str | None, events: Sequence[Event]) -> _Wanted:
    """The key to make for ``events``: indexed by the user and organization of the job's
    first dispatch (or the schedule's metadata) in them."""
    first = next((e for e in events if isinstance(e, JobDispatched | ScheduleCreated)), None)
    metadata = first.metadata if first is not None else {}
    return _Wanted(
        kid, _id(metadata.get("user_id")), _id(metadata.get("organization_id")), schedule_id
    )


def _id(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _fresh(
    wanted: list[_Wanted], streams: Mapping[str, str], keys: dict[str, AESGCM | None]
) -> list[NewKey]:
    """New keys for ``wanted`` (jobs' keys), added to ``keys``, for the append to store."""
    master = master_key()
    made = []
    for w in wanted:
        raw = os.urandom(32)
        keys[w.job_id] = AESGCM(raw)
        wrapped = master.wrap(raw, w.job_id)
        stream_id = streams[w.job_id]
        made.append(
            NewKey(stream_id, w.job_id, w.user_id, w.organization_id, wrapped, master.key_id)
        )
    return made


def _dispatches(events: Sequence[Event]) -> bool:
    return any(isinstance(e, JobDispatched) for e in events)


def _first_dispatch(events: Sequence[Event]) -> bool:
    """Whether ``events`` hold a job's first dispatch (its key cannot exist unless an
    earlier try of the same dispatch made it: the append's statement finds that)."""
    return any(isinstance(e, JobDispatched) and e.dispatch == 1 for e in events)


def _refuse_redispatch(job_id: str, events: Sequence[Event]) -> None:
    """A replay or recovery of an erased job would run without its personal data."""
    for event in events:
        if isinstance(event, JobDispatched) and event.dispatch > 1:
            raise errors.JobError(
                f"job {job_id}'s personal data was erased: it cannot be dispatched again "
                "(replay or recovery); enqueue a new job with the data instead",
                "ERASED",
                job_id,
            )


def _owner(stream_id: object) -> tuple[str, str | None] | None:
    """The key id of a stream's data key and the schedule it belongs to: a job stream's
    (``job-<uuid>``) key is the job's, a schedule stream's (``schedule-<id>``) the
    schedule's; other streams have none (None)."""
    if not isinstance(stream_id, str):
        return None
    if stream_id.startswith(_JOB_STREAM):
        job_id = stream_id[len(_JOB_STREAM) :]
        return (job_id, None) if is_uuid(job_id) else None
    if stream_id.startswith(_SCHEDULE_STREAM):
        schedule_id = stream_id[len(_SCHEDULE_STREAM) :]
        return schedule_key_id(schedule_id), schedule_id
    return None


async def vacuum_keys(conn: asyncpg.Connection) -> bool:
    """VACUUM the key table, so that no old row version keeps a destroyed or re-wrapped key
    (erasure, rotation); False when this role may not (PostgreSQL only warns then)."""
    warnings: list[str] = []

    def listen(_conn: object, message: object) -> None:
        warnings.append(str(message))

    conn.add_log_listener(listen)
    try:
        await conn.execute(_Q["vacuum_keys"])
    except asyncpg.PostgresError as exc:
        log.warning("could not vacuum the data key table", error=str(exc)[:300])
        return False
    finally:
        conn.remove_log_listener(listen)
    return not any("skipping" in w for w in warnings)
