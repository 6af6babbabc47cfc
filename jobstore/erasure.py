"""Erasure of personal data (crypto-shredding): destroy the data keys, record that it was done.

Every event stays in the log; what a job's key sealed (its personal payload fields, error
texts, tracebacks, results) can no longer be opened anywhere it was copied to: the log,
the views, the archive, exports, QStash.  The erasure itself is recorded as
``subject.erased`` in a stream of its own (``erasure-<uuid>``), in the same transaction
that destroys the keys.  Erasing a user or an organization also destroys the keys of its
recurring schedules and deletes them (``schedule.deleted``, same transaction): the relay
then deletes them from QStash, taking their sealed bodies with them.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, cast

import asyncpg
import structlog
from pydantic import Field

from jobstore import actor as actor_of
from jobstore import errors, keyring, query
from jobstore.event import Event
from jobstore.schedule_events import ScheduleDeleted, fold_schedule, schedule_stream
from jobstore.store import ANY, NO_STREAM, EventStore, StreamAppend

log = structlog.get_logger("jobtrail.erasure")
_Q = query.load("jobstore", "keyring.sql")
ERASURE_STREAM_PREFIX: Final = "erasure-"

SubjectKind = Literal["job", "user", "organization"]


class SubjectErased(Event, type_name="subject.erased"):
    """The data keys of a subject (a job, a user's jobs, an organization's jobs) were destroyed.

    ``job_ids`` are the jobs whose keys this erasure destroyed, ``schedule_ids`` the
    recurring schedules (deleted by it); keys destroyed earlier are not listed again.
    """

    subject: SubjectKind
    subject_id: str
    job_ids: list[str]
    schedule_ids: list[str] = Field(default_factory=list)
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Erasure:
    """What an erasure did: the jobs and schedules whose keys it destroyed (those schedules
    it deleted), where it was recorded."""

    subject: SubjectKind
    subject_id: str
    job_ids: list[str]
    position: int | None
    vacuumed: bool
    schedule_ids: list[str] = dataclasses.field(default_factory=list)


async def erase(
    store: EventStore,
    subject: SubjectKind,
    subject_id: str | int,
    *,
    reason: str | None = None,
    actor: str | None = None,
) -> Erasure:
    """Destroy the data keys of ``subject`` and record ``subject.erased``; idempotent.

    A job id must be a UUID, a user or organization id a whole number >= 1 (JobValidationError
    otherwise, nothing changed).  With no key left to destroy nothing is recorded
    (``position`` None).  Afterwards the key table is vacuumed so the destroyed keys' old row
    versions are not kept in its pages; a role that may not vacuum it (not its owner) leaves
    that to autovacuum, and ``vacuumed`` says so.
    """
    job_id, user_id, organization_id = _subject(subject, subject_id)
    shown = str(subject_id)
    async with store.transaction("the erasure failed, nothing erased") as conn:
        rows = await conn.fetch(_Q["erase_keys"], job_id, user_id, organization_id)
        job_ids = sorted(r["job_id"] for r in rows if r["schedule_id"] is None)
        schedule_ids = sorted(r["schedule_id"] for r in rows if r["schedule_id"])
        position = None
        if rows:
            event = SubjectErased(
                subject=subject,
                subject_id=shown,
                job_ids=job_ids,
                schedule_ids=schedule_ids,
                reason=reason,
            )
            metadata = actor_of.metadata(actor) or {}
            appends = [
                StreamAppend(
                    f"{ERASURE_STREAM_PREFIX}{uuid.uuid4()}", [event], NO_STREAM, metadata
                ),
                *await _deletions(store, schedule_ids, metadata),
            ]
            position = (await store.append_streams(appends, connection=conn))[0][0]
    vacuumed = False
    if rows:
        async with store.pool.acquire() as proxy:
            vacuumed = await keyring.vacuum_keys(cast(asyncpg.Connection, proxy))
    log.info(
        "subject erased",
        subject=subject,
        jobs=len(job_ids),
        schedules=len(schedule_ids),
        vacuumed=vacuumed,
    )
    return Erasure(subject, shown, job_ids, position, vacuumed, schedule_ids)


async def _deletions(
    store: EventStore, schedule_ids: list[str], metadata: Mapping[str, Any]
) -> list[StreamAppend]:
    """``schedule.deleted`` for each of these schedules not deleted yet.

    Their key was made with their ``schedule.created``, in one transaction, so each has its
    stream; whether it is deleted is read outside the erasure's transaction (deleted is for
    good), and the deletion is appended at any version (a pause racing it changes nothing).
    """
    appends = []
    for schedule_id in schedule_ids:
        stream = schedule_stream(schedule_id)
        state = fold_schedule(await store.read_stream(stream))
        if state is not None and not state.deleted:
            appends.append(StreamAppend(stream, [ScheduleDeleted()], ANY, metadata))
    return appends


def _subject(subject: str, subject_id: str | int) -> tuple[str | None, int | None, int | None]:
    if subject == "job":
        text = str(subject_id)
        try:
            return str(uuid.UUID(text)), None, None
        except ValueError:
            raise errors.JobValidationError(
                "invalid erasure", [f"job id {text!r:.80} is not a UUID"]
            ) from None
    if subject in ("user", "organization"):
        try:
            number = int(subject_id)
        except (TypeError, ValueError):
            number = 0
        if number < 1 or str(subject_id).strip() != str(number):
            raise errors.JobValidationError(
                "invalid erasure",
                [f"{subject} id {str(subject_id)!r:.80} is not a whole number >= 1"],
            )
        return (None, number, None) if subject == "user" else (None, None, number)
    raise errors.JobValidationError(
        "invalid erasure", [f"subject {subject!r:.40} is not one of job, user, organization"]
    )
