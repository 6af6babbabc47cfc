"""Erasure of personal data (crypto-shredding): destroy the data keys, record that it was done.

Every event stays in the log; what a job's key sealed (its personal payload fields, error
texts, tracebacks, results) can no longer be opened anywhere it was copied to: the log,
the views, the archive, exports, QStash.  The erasure itself is recorded as
``subject.erased`` in a stream of its own (``erasure-<uuid>``), in the same transaction
that destroys the keys.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Final, Literal, cast

import asyncpg
import structlog

from jobstore import actor as actor_of
from jobstore import errors, query
from jobstore.event import Event
from jobstore.store import NO_STREAM, EventStore

log = structlog.get_logger("jobtrail.erasure")
_Q = query.load("jobstore", "keyring.sql")
ERASURE_STREAM_PREFIX: Final = "erasure-"

SubjectKind = Literal["job", "user", "organization"]


class SubjectErased(Event, type_name="subject.erased"):
    """The data keys of a subject (a job, a user's jobs, an organization's jobs) were destroyed.

    ``job_ids`` are the jobs whose keys this erasure destroyed (keys destroyed earlier are
    not listed again).
    """

    subject: SubjectKind
    subject_id: str
    job_ids: list[str]
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Erasure:
    """What an erasure did: the jobs whose keys it destroyed, where it was recorded."""

    subject: SubjectKind
    subject_id: str
    job_ids: list[str]
    position: int | None
    vacuumed: bool


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
    async with store.pool.acquire() as proxy:
        conn = cast(asyncpg.Connection, proxy)  # the pool's proxy behaves as its connection
        try:
            async with conn.transaction():
                rows = await conn.fetch(_Q["erase_keys"], job_id, user_id, organization_id)
                job_ids = sorted(r["job_id"] for r in rows)
                position = None
                if job_ids:
                    event = SubjectErased(
                        subject=subject, subject_id=shown, job_ids=job_ids, reason=reason
                    )
                    (position,) = await store.append(
                        f"{ERASURE_STREAM_PREFIX}{uuid.uuid4()}",
                        [event],
                        NO_STREAM,
                        metadata=actor_of.metadata(actor),
                        connection=conn,
                    )
        except asyncpg.PostgresError as exc:
            raise errors.EventStoreError(f"the erasure failed, nothing erased: {exc}") from None
        vacuumed = await _vacuum(conn) if job_ids else False
    log.info("subject erased", subject=subject, jobs=len(job_ids), vacuumed=vacuumed)
    return Erasure(subject, shown, job_ids, position, vacuumed)


async def _vacuum(conn: asyncpg.Connection) -> bool:
    """VACUUM the key table; False when this role may not (PostgreSQL only warns then)."""
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
