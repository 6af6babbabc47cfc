"""The dispatcher: enqueue, schedule, cancel and replay jobs by appending events.

Nothing here talks to QStash: ``enqueue`` commits ``JobDispatched`` and returns; the relay
(``relay.py``) publishes what the log holds.  So enqueue works while QStash is down, and a
crash anywhere loses nothing.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog
from pydantic import BaseModel
from pydantic.alias_generators import to_snake

from jobstore import actor as actor_of
from jobstore import (
    change,
    codec,
    envelope,
    errors,
    job_state,
    protect,
    redaction,
    tracing,
    transition,
)
from jobstore.address import CONTEXT_KEY, STRICT, AddressPolicy
from jobstore.duration import to_seconds
from jobstore.event import Event
from jobstore.ids import is_uuid
from jobstore.job import BaseJobMetadata, EnqueueJobOptions
from jobstore.job_events import JobDispatched
from jobstore.options import DispatchOptions, FlowControl, flow_control
from jobstore.registry import JobConfig, JobRegistry, shared_registry
from jobstore.schedule import Schedules
from jobstore.store import NO_STREAM, EventStore, StreamAppend
from jobstore.validation import validate_model

log = structlog.get_logger("jobtrail.dispatcher")

MAX_PAYLOAD_BYTES = 512 * 1024
MAX_MESSAGE_BYTES = 1024 * 1024
"""The largest body QStash accepts for one message (1 MiB): a job's whole wire envelope."""
MAX_JSON_DEPTH = 32
"""How deeply a job's payload and metadata may nest lists and objects."""
# The SDK's json.dumps escapes non-ASCII and adds spaces, at most 6 bytes for each byte of
# orjson's compact UTF-8; an envelope under a sixth of the limit needs no exact count.
_WORST_EXPANSION = 6
MAX_UNIQUE_GENERATIONS = 10_000
"""How many windows' jobs one idempotency key may have (a guard, not a business rule)."""
_IDEMPOTENCY_NAMESPACE = uuid.UUID("6f0c7a52-3c1e-4d43-9a57-6a1f3f1d2b10")
_EXECUTION_FIELDS = (
    "job_id",
    "job_type",
    "status",
    "payload",
    "metadata",
    "user_id",
    "organization_id",
)
"""The fields :meth:`Dispatcher.dispatch_job_execution` takes (the seed's, camelCase too)."""


@dataclass(frozen=True, slots=True)
class Enqueued:
    """The outcome of an enqueue: the job id, its log position, and whether it is new.

    ``archived``: the idempotency key's job was archived (retention); its history is in
    the archive (``EventStore.read_archived_stream``), and it can no longer be replayed.
    """

    job_id: str
    position: int | None
    created: bool
    archived: bool = False


@dataclass(frozen=True, slots=True)
class Cancelled:
    """The outcome of a cancel: where it was recorded, and whether an attempt was running.

    A cancel stops future attempts only: an attempt already running still records its
    outcome, so a job cancelled while it runs may yet end ``completed``.
    """

    job_id: str
    position: int
    attempt_running: bool

    @property
    def message(self) -> str:
        """What the cancel did, in words."""
        if self.attempt_running:
            return "cancel recorded; the running attempt may still finish"
        return "cancelled; no further attempt will run"


@dataclass(frozen=True, slots=True)
class JobRequest:
    """One job of an ``enqueue_many`` call."""

    type: str
    payload: Mapping[str, Any] | BaseModel
    metadata: Mapping[str, Any] | BaseJobMetadata | None = None
    options: Mapping[str, Any] | EnqueueJobOptions | None = None


class Dispatcher:
    """Enqueues, cancels and replays jobs (the seed's JobDispatcher), on the event log."""

    def __init__(
        self,
        store: EventStore,
        registry: JobRegistry | None = None,
        policy: AddressPolicy = STRICT,
    ) -> None:
        """``policy`` judges callback and webhook URLs at enqueue (strict unless given)."""
        self.store = store
        self.registry = registry or shared_registry
        self.schedules = Schedules(store, self.registry, policy)
        self.policy = policy
        self._context = {CONTEXT_KEY: policy}

    async def schedule(
        self,
        type: str,
        cron: str,
        payload: Mapping[str, Any] | BaseModel,
        metadata: Mapping[str, Any] | BaseJobMetadata | None = None,
        *,
        actor: str | None = None,
    ) -> str:
        """Record a recurring job (the relay creates it in QStash); return the schedule id."""
        return await self.schedules.create(type, cron, payload, metadata, actor=actor)

    async def send_welcome_email_async(
        self, payload: Mapping[str, Any], metadata: Mapping[str, Any] | None = None
    ) -> str:
        """Enqueue the welcome email: payload ``to``, ``recipient_name``."""
        return await self._email("welcome", payload, metadata)

    async def send_password_reset_email_async(
        self, payload: Mapping[str, Any], metadata: Mapping[str, Any] | None = None
    ) -> str:
        """Enqueue the password-reset email: payload ``to``, ``recipient_name``, ``reset_url``."""
        return await self._email("password-reset", payload, metadata)

    async def send_team_invitation_email_async(
        self, payload: Mapping[str, Any], metadata: Mapping[str, Any] | None = None
    ) -> str:
        """Enqueue the team invitation: ``to``, ``recipient_name``, ``inviter_name``,
        ``organization_name``, ``invitation_url``."""
        return await self._email("team-invitation", payload, metadata)

    async def _email(
        self, template: str, payload: Mapping[str, Any], metadata: Mapping[str, Any] | None
    ) -> str:
        data = {k: v for k, v in payload.items() if k != "to"}
        email = {"template": template, "to": payload.get("to"), "data": data}
        return await self.enqueue("send-email", email, metadata)

    async def dispatch_job_execution(
        self, data: Mapping[str, Any], *, actor: str | None = None
    ) -> job_state.JobExecution:
        """Record a new job from the seed's execution fields and dispatch it, as enqueue does.

        The relay publishes it to QStash and the job runs: the seed's ``createJobExecution``
        only wrote a row, but here a job exists only as its ``JobDispatched``.  Fields:
        ``job_type``, ``payload``, ``job_id`` (a UUID; new if left out), ``status`` (only
        ``pending``), ``metadata``, ``user_id``, ``organization_id``, each also under the
        seed's camelCase name (``jobType``).  Any other field is a JobValidationError.
        """
        fields = _execution_fields(data)
        job_id = str(fields.get("job_id") or uuid.uuid4())
        if not is_uuid(job_id):
            raise errors.JobValidationError("invalid job", [f"job_id: {job_id!r} is not a UUID"])
        if fields.get("status", "pending") != "pending":
            raise errors.JobError("a new job starts pending", "INVALID_TRANSITION", job_id)
        event = self._dispatched(
            JobRequest(
                str(fields.get("job_type")), fields.get("payload") or {}, fields["metadata"], None
            )
        )
        event = event.model_copy(update={"job_id": job_id})
        try:
            with _as_validation_error():
                positions = await self.store.append(
                    job_state.stream_id(job_id),
                    [event],
                    NO_STREAM,
                    metadata=actor_of.metadata(actor),
                )
        except errors.ConcurrencyError:
            raise errors.JobError(f"job {job_id} already exists", "JOB_EXISTS", job_id) from None
        _log_dispatch(event, positions[0])
        execution = await self.get_job_execution_by_job_id(job_id)
        assert execution is not None
        return execution

    create_job_execution = dispatch_job_execution
    """The seed's name for :meth:`dispatch_job_execution` (it dispatches the job too)."""

    async def update_job_execution(self, job_id: str, updates: Mapping[str, Any]) -> None:
        """Seed compatibility: a status change, recorded as the event that means it."""
        await self._decide(job_id, lambda s: transition.decide_update(s, updates))

    async def enqueue(
        self,
        type: str,
        payload: Mapping[str, Any] | BaseModel,
        metadata: Mapping[str, Any] | BaseJobMetadata | None = None,
        options: Mapping[str, Any] | EnqueueJobOptions | None = None,
        *,
        actor: str | None = None,
    ) -> str:
        """Validate and record a job; return its id. Never waits on QStash.

        ``actor`` (``api:<token>``, ``cli:<user>``) is recorded in the event's metadata.
        """
        return (
            await self.enqueue_with_position(type, payload, metadata, options, actor=actor)
        ).job_id

    @tracing.produces
    async def enqueue_with_position(
        self,
        type: str,
        payload: Mapping[str, Any] | BaseModel,
        metadata: Mapping[str, Any] | BaseJobMetadata | None = None,
        options: Mapping[str, Any] | EnqueueJobOptions | None = None,
        *,
        actor: str | None = None,
    ) -> Enqueued:
        """Like :meth:`enqueue`, also telling the log position (for read-your-writes).

        With an idempotency key, the key's job is returned instead of a new one while it
        exists (archived or not: ``Enqueued.archived`` says which) and, when a
        ``unique_for`` window is set (per enqueue or per type), while it was created less
        than that long ago; after the window a new job gets the next id of the key's chain.
        The database refuses to create an archived job's stream again, so an archiving
        between the look into the archive and the append cannot start the key anew.
        """
        request = JobRequest(type, payload, metadata, options)
        event = self._dispatched(request)
        window = self._unique_window(request)
        key = event.metadata.get("idempotency_key")
        for generation in range(MAX_UNIQUE_GENERATIONS):
            if key is not None and generation:
                event = event.model_copy(update={"job_id": _job_id_of(event, generation)})
            stream = job_state.stream_id(event.job_id)
            created_at = await self._archived_at(stream) if key is not None else None
            archived = created_at is not None
            if created_at is None:
                try:
                    with _as_validation_error():
                        positions = await self.store.append(
                            stream, [event], NO_STREAM, metadata=actor_of.metadata(actor)
                        )
                except errors.ConcurrencyError:
                    created_at = await self._created_at(stream)
                    if created_at is None:  # archived since we looked
                        created_at = await self._archived_at(stream)
                        archived = created_at is not None
                else:
                    _log_dispatch(event, positions[0])
                    return Enqueued(event.job_id, positions[0], created=True)
            if window is None or created_at is None or _age(created_at) < window:
                log.info("enqueue deduplicated", job_id=event.job_id, archived=archived)
                return Enqueued(event.job_id, None, created=False, archived=archived)
        raise errors.JobError(
            f"idempotency key {key!r} has {MAX_UNIQUE_GENERATIONS} jobs already", "CONTENDED"
        )

    def _unique_window(self, request: JobRequest) -> float | None:
        options = validate_model(EnqueueJobOptions, request.options or {}, "options")
        given = options.unique_for
        if given is None:
            given = self.registry.get(request.type).config.unique_for
        return None if given is None else to_seconds(given)

    async def _created_at(self, stream: str) -> datetime | None:
        events = await self.store.read_stream(stream, 1)
        return events[0].recorded_at if events else None

    async def _archived_at(self, stream: str) -> datetime | None:
        """When an archived job of this stream was created (its key stays taken)."""
        events = await self.store.read_archived_stream(stream)
        return events[0].recorded_at if events else None

    async def enqueue_many(self, jobs: Sequence[JobRequest]) -> list[str]:
        """Validate every job, then record them all in one transaction; return their ids.

        If any job is invalid, JobValidationError lists every problem and nothing is
        written. A job whose idempotency key already exists keeps its existing id; a key
        given twice in the batch gets the first request's job (as across calls).
        """
        events, problems = [], []
        for index, request in enumerate(jobs):
            try:
                events.append(self._dispatched(request))
            except errors.JobValidationError as exc:
                problems += [f"jobs[{index}] {line}" for line in exc.validation_errors]
        for index, request in enumerate(jobs):
            if self._unique_window(request) is not None:
                problems.append(
                    f"jobs[{index}] options.unique_for: unique windows need enqueue(), one by "
                    "one (enqueue_many dedupes by idempotency key for good)"
                )
        if problems:
            raise errors.JobValidationError(f"{len(problems)} problem(s) in the batch", problems)
        unique: dict[str, JobDispatched] = {}
        for event in events:  # the first request of a key wins, as across calls
            unique.setdefault(event.job_id, event)
        with _as_validation_error():
            outcomes = await self.store.append_each(
                [
                    StreamAppend(job_state.stream_id(e.job_id), [e], NO_STREAM)
                    for e in unique.values()
                ]
            )
        created = sum(isinstance(o, list) for o in outcomes)
        log.info("jobs dispatched in bulk", count=len(events), created=created)
        return [e.job_id for e in events]

    async def cancel(
        self, job_id: str, reason: str | None = None, *, actor: str | None = None
    ) -> Cancelled:
        """Stop future attempts of a job; a finished job is a JobError.

        An attempt already running is not stopped: it still records its outcome, which the
        result says (``attempt_running``, ``message``).  ``actor`` (``api:<token>``,
        ``cli:<user>``) is recorded in the event's metadata.
        """
        changed = await change.change(
            self.store,
            job_id,
            lambda s: (job_state.decide_cancel(s, reason), s.lease_until is not None),
            metadata=actor_of.metadata(actor),
        )
        if changed is None:
            raise await self._missing(job_id)
        return Cancelled(job_id, changed.positions[-1], attempt_running=changed.result)

    async def replay_job(
        self,
        job_id: str,
        reason: str | None = None,
        *,
        payload: Mapping[str, Any] | BaseModel | None = None,
        options: Mapping[str, Any] | EnqueueJobOptions | None = None,
        actor: str | None = None,
    ) -> int:
        """Dispatch a failed (or never-completed cancelled) job again, keeping its history.

        ``payload`` (validated against the job type's model) replaces the job's payload, and
        ``options`` (``retries``, ``delay``, ``callback``, ``failure_callback``, ``headers``)
        replace those of its previous dispatch; what is not given stays as it was.  The
        replay's ``JobDispatched`` records the new values, the reason and ``actor``.
        """

        def decide(state: job_state.JobState) -> list[Event]:
            new_payload = None if payload is None else self._replay_payload(state, payload)
            new_options = None if options is None else self._replay_options(state, options)
            return job_state.decide_replay(state, reason, new_payload, new_options)

        position = await self._decide(job_id, decide, actor=actor)
        log.info(
            "job replayed",
            job_id=job_id,
            reason=reason,
            actor=actor,
            payload_changed=payload is not None,
            options_changed=options is not None,
        )
        return position

    def _replay_payload(
        self, state: job_state.JobState, payload: Mapping[str, Any] | BaseModel
    ) -> dict[str, Any]:
        _check_depth(payload, "payload")
        spec = self.registry.get(state.job_type)
        valid = validate_model(spec.payload_model, payload, "payload", self._context)
        return _dump(valid, "payload")

    def _replay_options(
        self, state: job_state.JobState, given: Mapping[str, Any] | EnqueueJobOptions
    ) -> DispatchOptions:
        options = validate_model(EnqueueJobOptions, given, "options", self._context)
        config = self.registry.get(state.job_type).config
        changes: dict[str, Any] = {
            "not_before": state.options.remaining_delay(time.time()).not_before
        }
        if options.timeout is not None:
            changes["timeout"] = _timeout(config, options)
        if options.model_fields_set & {"rate", "period", "parallelism", "flow_key"}:
            metadata = BaseJobMetadata.model_validate(state.metadata)
            changes["flow_control"] = _flow_control(config, options, metadata)
        for name in options.model_fields_set:
            if name == "delay":
                delay = options.delay_seconds
                changes["not_before"] = time.time() + delay if delay else None
            elif name in ("callback", "failure_callback"):
                value = getattr(options, name)
                changes[name] = str(value) if value else None
            elif name == "headers":
                changes["headers"] = dict(options.headers or {})
            elif name == "retries" and options.retries is not None:
                changes["retries"] = options.retries
            elif name == "backoff":
                changes["backoff"] = options.backoff
            elif name == "heartbeat":
                changes["heartbeat"] = options.heartbeat
        return DispatchOptions.model_validate(state.options.model_dump() | changes)

    async def get_job_execution_by_job_id(self, job_id: str) -> job_state.JobExecution | None:
        """The job's execution record, folded from its events (always current)."""
        state = await self.load(job_id)
        if state is None:
            return None
        return await self.store.keys.reveal_fields(job_state.JobExecution.from_state(state))

    async def load(self, job_id: str) -> job_state.JobState | None:
        """The folded state of a job, or None if the log has no such job."""
        return await change.load(self.store, job_id)

    async def _decide(
        self,
        job_id: str,
        decide: Callable[[job_state.JobState], list[Event]],
        *,
        actor: str | None = None,
    ) -> int:
        changed = await change.change(
            self.store, job_id, lambda s: (decide(s), None), metadata=actor_of.metadata(actor)
        )
        if changed is None:
            raise await self._missing(job_id)
        return changed.positions[-1]

    async def _missing(self, job_id: str) -> errors.JobError:
        """The error for a job the log does not hold: archived (read-only) or unknown.

        An archived job is not brought back: its history stays in the archive as it was
        (a replay would have to re-append it under new positions, behind every reader),
        so replaying or cancelling it is refused with ``JOB_ARCHIVED``.
        """
        archived = await self.store.read_archived_stream(job_state.stream_id(job_id))
        if not archived:
            return errors.JobError(f"no job with id {job_id!r}", "JOB_NOT_FOUND", job_id)
        return errors.JobError(
            f"job {job_id} finished on {archived[-1].recorded_at:%Y-%m-%d} and was archived "
            "(retention): an archived job is read-only history and cannot be replayed or "
            "cancelled; enqueue a new job with its payload instead",
            "JOB_ARCHIVED",
            job_id,
        )

    def _dispatched(self, request: JobRequest) -> JobDispatched:
        spec = self.registry.get(request.type)
        _check_depth(request.payload, "payload")
        _check_depth(request.metadata, "metadata")
        payload = validate_model(spec.payload_model, request.payload, "payload", self._context)
        metadata = validate_model(BaseJobMetadata, request.metadata or {}, "metadata")
        options = validate_model(EnqueueJobOptions, request.options or {}, "options", self._context)
        config = spec.config
        event_options = DispatchOptions.for_job(
            config,
            retries=options.retries,
            timeout=_timeout(config, options),
            not_before=time.time() + options.delay_seconds if options.delay_seconds else None,
            callback=str(options.callback) if options.callback else None,
            failure_callback=str(options.failure_callback) if options.failure_callback else None,
            headers=dict(options.headers) if options.headers else None,
            flow_control=_flow_control(config, options, metadata),
            backoff=options.backoff,
            heartbeat=None if options.heartbeat is None else to_seconds(options.heartbeat),
        )
        # Every field comes from a validated model above: build without validating again.
        event = JobDispatched.model_construct(
            job_id=_job_id(metadata),
            dispatch=1,
            job_type=config.type,
            payload=_dump(payload, "payload"),
            metadata=_dump(metadata, "metadata", exclude_none=True),
            options=event_options,
            source="api",
            reason=None,
        )
        _check_size(event)
        return event


def _timeout(config: JobConfig, options: EnqueueJobOptions) -> float | None:
    """The per-enqueue timeout, checked against the type's bound (None: the type's own)."""
    if options.timeout is None:
        return None
    timeout = to_seconds(options.timeout)
    bound = config.max_timeout or config.timeout
    if not 0 < timeout <= bound:
        raise errors.JobValidationError(
            "invalid options",
            [
                f"options.timeout: {timeout:g} s is outside this type's bounds: more than 0 "
                f"and at most {bound:g} s (set max_timeout on {config.type!r} to allow more)"
            ],
        )
    return timeout


def _flow_control(
    config: JobConfig, options: EnqueueJobOptions, metadata: BaseJobMetadata
) -> FlowControl | None:
    """The job's limits: its type's, each replaced by the enqueue's own where given."""
    period = options.period if options.period is not None else config.period
    return flow_control(
        options.flow_key or config.flow_key,
        config.type,
        metadata.model_dump(),
        rate=options.rate if options.rate is not None else config.rate,
        period=to_seconds(period),
        parallelism=options.parallelism if options.parallelism is not None else config.parallelism,
    )


@contextlib.contextmanager
def _as_validation_error() -> Iterator[None]:
    """Data the log cannot hold (NUL, NaN…) is the caller's invalid input, said so."""
    try:
        yield
    except errors.InvalidEventError as exc:
        raise errors.JobValidationError("invalid job", [str(exc)]) from None


def _check_depth(value: Any, what: str) -> None:
    """Refuse JSON nested past MAX_JSON_DEPTH before anything recursive walks it."""
    if value is None or isinstance(value, BaseModel):
        return  # a model is dumped, and its dump checked, in _dump
    if codec.depth(value, stop_after=MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        raise errors.JobValidationError(
            f"invalid {what}",
            [
                f"{what} nests lists/objects more than {MAX_JSON_DEPTH} levels deep; "
                f"the limit is {MAX_JSON_DEPTH}"
            ],
        )


def _dump(model: BaseModel, what: str, *, exclude_none: bool = False) -> dict[str, Any]:
    """``model`` as JSON-ready data, no deeper than MAX_JSON_DEPTH."""
    try:
        data = model.model_dump(mode="json", exclude_none=exclude_none)
    except ValueError as exc:  # pydantic's own serialization depth guard
        raise errors.JobValidationError(
            f"invalid {what}", [f"{what} cannot be encoded as JSON: {exc}"]
        ) from None
    _check_depth(data, what)
    return data


def _check_size(event: JobDispatched) -> None:
    """Refuse a job QStash could not take: its payload, and its whole published message."""
    try:
        size = len(orjson.dumps(event.payload))
        published = protect.stand_in(event)  # personal fields as sealed: a third larger
        compact = (
            len(orjson.dumps(envelope.job_body(published))) if size <= MAX_PAYLOAD_BYTES else 0
        )
    except orjson.JSONEncodeError as exc:
        raise errors.JobValidationError("invalid job", [f"not JSON: {exc}"]) from None
    if size > MAX_PAYLOAD_BYTES:
        raise errors.JobValidationError(
            "invalid payload", [f"payload is {size} bytes; the limit is {MAX_PAYLOAD_BYTES}"]
        )
    if compact * _WORST_EXPANSION <= MAX_MESSAGE_BYTES:
        return
    # Exactly what the qstash SDK sends: json.dumps with its defaults (ASCII, spaced).
    message = len(json.dumps(envelope.job_body(published)))
    if message > MAX_MESSAGE_BYTES:
        raise errors.JobValidationError(
            "invalid job",
            [
                f"the job's QStash message (job_id, dispatch, type, payload, metadata as "
                f"published) would be {message} bytes; QStash accepts at most "
                f"{MAX_MESSAGE_BYTES} bytes (1 MiB) per message: make the payload or "
                "metadata smaller (non-ASCII text counts 6 bytes a character)"
            ],
        )


def _job_id_of(event: JobDispatched, generation: int) -> str:
    """The id of the ``generation``-th job of the event's idempotency key (0: the first)."""
    metadata = event.metadata
    scope = f"{metadata.get('organization_id') or ''}:{metadata['idempotency_key']}"
    suffix = f"#{generation}" if generation else ""
    return str(uuid.uuid5(_IDEMPOTENCY_NAMESPACE, scope + suffix))


def _age(created_at: datetime) -> float:
    return (datetime.now(UTC) - created_at).total_seconds()


def _job_id(metadata: BaseJobMetadata) -> str:
    """A fresh id, or one derived from (organization, idempotency key).

    Deriving the id makes the log's own uniqueness of (stream, version) the judge of
    duplicate enqueues: the second writer of the same stream's first event loses.
    """
    if metadata.idempotency_key is None:
        return str(uuid.uuid4())
    scope = f"{metadata.organization_id or ''}:{metadata.idempotency_key}"
    return str(uuid.uuid5(_IDEMPOTENCY_NAMESPACE, scope))


def _execution_fields(data: Mapping[str, Any]) -> dict[str, Any]:
    """The seed's execution fields by their snake_case names, metadata merged into one."""
    fields: dict[str, Any] = {}
    spelled: dict[str, str] = {}
    for key, value in data.items():
        name = to_snake(str(key))
        if name not in _EXECUTION_FIELDS:
            raise errors.JobValidationError(
                "invalid job",
                [f"{key}: not a field of a new job; known: {', '.join(_EXECUTION_FIELDS)}"],
            )
        if name in fields and fields[name] != value:
            first = f"{spelled[name]}={fields[name]!r}"
            raise errors.JobValidationError(
                "invalid job", [f"{key}={value!r} and {first} disagree; give one of them"]
            )
        fields[name], spelled[name] = value, str(key)
    metadata = fields.get("metadata") or {}
    if not isinstance(metadata, Mapping):
        raise errors.JobValidationError("invalid job", ["metadata: must be an object"])
    metadata = dict(metadata)
    for name in ("user_id", "organization_id"):
        if fields.get(name) is None:
            continue
        if metadata.get(name, fields[name]) != fields[name]:
            raise errors.JobValidationError(
                "invalid job", [f"{name}: disagrees with metadata.{name}={metadata[name]!r}"]
            )
        metadata[name] = fields[name]
    fields["metadata"] = metadata
    return fields


def _log_dispatch(event: JobDispatched, position: int) -> None:
    log.info(
        "job dispatched",
        job_id=event.job_id,
        job_type=event.job_type,
        dispatch=event.dispatch,
        source=event.source,
        position=position,
        **redaction.shape(event.payload, "payload"),
    )
