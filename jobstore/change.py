"""The one way to change a job: read its stream, decide, append at its version, retry.

Every writer of a job's stream (the dispatcher's cancel and replay, the host starting and
recording attempts, QStash's failure callback, the sweeper) goes through :func:`change`:
a decision is a pure function of the job's state returning the events to append (and
whatever else the caller needs, such as an HTTP answer).  The append is made against the
version the decision saw; when another writer got there first, the state is folded again
and the decision taken again (DESIGN.md, delivery rule 2), a bounded number of times.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from jobstore import errors, job_state, protect
from jobstore.event import Event
from jobstore.job_state import JobState
from jobstore.keyring import DeliveryKeys
from jobstore.store import DeliveryToken, EventStore

T = TypeVar("T")
MAX_ROUNDS = 10
Decide = Callable[[JobState], tuple[Sequence[Event], T]]
"""A decision: the events to append to the job, and what the caller gets back."""


@dataclass(frozen=True, slots=True)
class Change(Generic[T]):
    """What a change did: the state it was decided on, the events appended, the result."""

    state: JobState
    events: Sequence[Event]
    result: T
    positions: Sequence[int] = ()

    @property
    def version(self) -> int:
        """The job stream's version after the change."""
        return self.state.version + len(self.events)


def is_job_id(value: object) -> bool:
    """Whether ``value`` is a job id (a UUID string)."""
    try:
        uuid.UUID(str(value))
    except (ValueError, TypeError, AttributeError):
        return False
    return isinstance(value, str)


async def load(store: EventStore, job_id: str) -> JobState | None:
    """The folded state of a job, or None when the log has no such job."""
    if not is_job_id(job_id):
        return None
    return job_state.fold(await store.read_stream(job_state.stream_id(job_id)))


@dataclass(slots=True)
class JobKey:
    """A job's data key, read by :func:`change` with the job's stream (one statement, so no
    round trip of its own): given to :func:`change`, every read of the stream also reads the
    key into ``read``, and an append against a state whose current dispatch is the one the
    key was read with is sealed with it, without reading it again (the rule:
    :meth:`jobstore.keyring.KeyRing.seal`).  A delivery holds one for its start and its
    outcome."""

    read: DeliveryKeys | None = None

    @property
    def keys(self) -> protect.Keys:
        """The key by job id, for opening (empty before the first read)."""
        return {} if self.read is None else self.read.keys


async def load_with_key(store: EventStore, job_id: str) -> tuple[JobState, DeliveryKeys] | None:
    """The folded state of a job and its data key, read in one statement; None: no job."""
    if not is_job_id(job_id):
        return None
    events, keys = await store.read_job(job_state.stream_id(job_id), job_id)
    state = job_state.fold(events)
    if state is None:
        return None
    return state, dataclasses.replace(keys, dispatch=state.dispatch)


async def change(
    store: EventStore,
    job_id: str,
    decide: Decide[T],
    *,
    known: JobState | None = None,
    token: DeliveryToken | None = None,
    metadata: Mapping[str, Any] | None = None,
    rounds: int = MAX_ROUNDS,
    key: JobKey | None = None,
) -> Change[T] | None:
    """Decide on the job's current state and append what the decision says; None: no job.

    ``known`` is a state the caller already holds (the first round decides on it without
    reading the stream again).  ``token`` is a one-time delivery token recorded with the
    events (TokenUsedError when it was used before).  After ``rounds`` lost races the job
    is too contended: JobError ``CONTENDED``.  ``key``: every read of the stream reads the
    job's key with it, and an append against a state whose current dispatch is the one the
    key was read with is sealed with it (:class:`JobKey`; the rule: ``KeyRing.seal``).
    """
    state = known
    for _ in range(rounds):
        if state is None and key is not None:
            read = await load_with_key(store, job_id)
            if read is None:
                return None
            state, key.read = read
        elif state is None:
            state = await load(store, job_id)
            if state is None:
                return None
        events, result = decide(state)
        if not events:
            return Change(state, (), result)
        try:
            positions = await store.append(
                job_state.stream_id(job_id),
                events,
                state.version,
                metadata=metadata,
                token=token,
                key=_sealing_key(key, state),
            )
        except errors.ConcurrencyError:
            state = None  # someone wrote in between: fold again and decide again
            continue
        return Change(state, events, result, positions)
    raise errors.JobError(f"job {job_id} is changing too fast to decide", "CONTENDED", job_id)


def _sealing_key(key: JobKey | None, state: JobState) -> DeliveryKeys | None:
    """The key read with the stream, if the append is made while its dispatch is current."""
    if key is None or key.read is None or key.read.dispatch != state.dispatch:
        return None
    return key.read
