"""``jobtrail enqueue TYPE --payload JSON``: record a job; the relay hands it to QStash."""

from __future__ import annotations

from typing import Any

import orjson
import typer

import jobstore
from jobstore.duration import to_seconds
from workers.cli import database, operator, runtime


def register(app: typer.Typer) -> None:
    """Add the ``enqueue`` command to ``app``."""
    app.command("enqueue")(enqueue)


def enqueue(
    job_type: str = typer.Argument(..., metavar="TYPE", help="Job type, e.g. send-email."),
    payload: str = typer.Option("{}", metavar="JSON", help="The job's payload: a JSON object."),
    delay: str | None = typer.Option(
        None, metavar="DURATION", help="Run no earlier than this from now: seconds, or 5m, 2h."
    ),
    retries: int | None = typer.Option(
        None, metavar="N", help="Retries after a failed attempt (default: the type's)."
    ),
    retry_delay: str | None = typer.Option(
        None,
        metavar="DURATION",
        help="Wait this long before each retry (the base of --backoff); host-decided.",
    ),
    backoff: str = typer.Option(
        "fixed", help="How --retry-delay grows: fixed, linear or exponential (x2, capped 1h)."
    ),
    timeout: str | None = typer.Option(
        None, metavar="DURATION", help="This job's timeout, within its type's bounds."
    ),
    rate: int | None = typer.Option(
        None, metavar="N", help="Start at most N jobs of the flow key per --period."
    ),
    period: str | None = typer.Option(None, metavar="DURATION", help="The rate's period (1s)."),
    parallelism: int | None = typer.Option(
        None, metavar="N", help="Run at most N attempts of the flow key at once."
    ),
    flow_key: str | None = typer.Option(
        None,
        metavar="TEMPLATE",
        help="Whom the limits are per, e.g. '{job_type}-org-{organization_id}'.",
    ),
    idempotency_key: str | None = typer.Option(
        None, metavar="K", help="Enqueue once per key and organization; a repeat changes nothing."
    ),
    unique_for: str | None = typer.Option(
        None, metavar="DURATION", help="With a key: once per this long (e.g. 1h), not forever."
    ),
    heartbeat: str | None = typer.Option(
        None,
        metavar="DURATION",
        help="The handler calls job.heartbeat() this often: the lease is two of them (e.g. 30s).",
    ),
    user_id: int | None = typer.Option(None, help="The user the job is for."),
    organization_id: int | None = typer.Option(None, help="The organization the job is for."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Validate and record a job; print its id and log position."""
    data = parse_payload(payload)
    settings = database.load_settings()
    registry = application_registry(settings)
    metadata = _given(
        user_id=user_id, organization_id=organization_id, idempotency_key=idempotency_key
    )
    options = _given(
        delay=_duration(delay),
        retries=retries,
        timeout=_duration(timeout),
        rate=rate,
        period=_duration(period),
        parallelism=parallelism,
        flow_key=flow_key,
        unique_for=_duration(unique_for),
        heartbeat=_duration(heartbeat),
        backoff=None if retry_delay is None else _backoff(backoff, retry_delay),
    )

    async def main() -> jobstore.Enqueued:
        registry.get(job_type)  # an unknown type fails before any database is opened
        async with database.open_database(settings) as db:
            policy = jobstore.AddressPolicy.from_settings(settings)
            dispatcher = jobstore.Dispatcher(jobstore.EventStore(db.pool), registry, policy)
            return await dispatcher.enqueue_with_position(
                job_type, data, metadata, options, actor=operator.actor()
            )

    enqueued = database.run(main)
    if as_json:
        runtime.print_json(
            {"job_id": enqueued.job_id, "position": enqueued.position, "created": enqueued.created}
        )
    elif enqueued.created:
        database.console().print(
            f"enqueued {job_type} job [bold]{enqueued.job_id}[/] (log position {enqueued.position})"
        )
    else:
        database.console().print(
            f"job [bold]{enqueued.job_id}[/] already exists for idempotency key "
            f"{idempotency_key!r}; nothing new was enqueued"
        )


def parse_payload(text: str, option: str = "--payload") -> dict[str, Any]:
    """``option`` as a JSON object, or one line saying what is wrong with it (exit 2)."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        runtime.fail(f"{option} is not valid JSON: {exc}", database.BAD_INPUT)
    if not isinstance(value, dict):
        runtime.fail(
            f'{option} must be a JSON object such as \'{{"key": "value"}}\', '
            f"not a JSON {_json_kind(value)}",
            database.BAD_INPUT,
        )
    return value


def application_registry(settings: jobstore.Settings) -> jobstore.JobRegistry:
    """The job types the host serves: JOBTRAIL_APP's registry, else the built-in one."""
    return runtime.application_registry(settings)


def _backoff(kind: str, base: str) -> dict[str, object]:
    """``--backoff KIND --retry-delay DURATION`` as the options' backoff."""
    try:
        seconds = to_seconds(_duration(base))
    except ValueError as exc:
        runtime.fail(f"--retry-delay: {exc}", database.BAD_INPUT)
    return {"kind": kind, "base": seconds}


def _duration(text: str | None) -> float | str | None:
    """A duration option: plain seconds as a number, QStash's text ('5m') as it is."""
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        return text


def _given(**values: object) -> dict[str, object]:
    return {name: value for name, value in values.items() if value is not None}


def _json_kind(value: object) -> str:
    match value:
        case list():
            return "array"
        case str():
            return "string"
        case bool():
            return "boolean"
        case int() | float():
            return "number"
        case _:
            return "null"
