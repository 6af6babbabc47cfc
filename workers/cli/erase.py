"""``jobtrail erase --job-id ID | --user-id N | --organization-id N``: erase personal data."""

from __future__ import annotations

import orjson
import typer

import jobstore
from workers.cli import database, operator


def register(app: typer.Typer) -> None:
    """Add the ``erase`` command to ``app``."""
    app.command("erase")(erase)


def erase(
    job_id: str | None = typer.Option(None, "--job-id", help="Erase one job's personal data."),
    user_id: str | None = typer.Option(
        None, "--user-id", help="Erase the personal data of every job of this user."
    ),
    organization_id: str | None = typer.Option(
        None, "--organization-id", help="Erase the personal data of every job of this organization."
    ),
    reason: str | None = typer.Option(None, "--reason", help="Why (kept in subject.erased)."),
    as_json: bool = typer.Option(False, "--json", help="Print the outcome as JSON."),
) -> None:
    """Destroy the data keys of a job, a user's jobs or an organization's jobs, for good.

    Every event stays; the jobs' personal fields, error texts and results become
    unreadable everywhere (log, views, archive, exports, QStash), and ``subject.erased``
    records the erasure.  Erased jobs cannot be replayed.
    """
    given = [
        (kind, value)
        for kind, value in (("job", job_id), ("user", user_id), ("organization", organization_id))
        if value is not None
    ]
    if len(given) != 1:
        typer.secho(
            "error: give exactly one of --job-id, --user-id or --organization-id",
            err=True,
            fg=typer.colors.RED,
        )
        raise typer.Exit(code=database.BAD_INPUT)
    ((kind, value),) = given
    settings = database.load_settings()

    async def main() -> jobstore.erasure.Erasure:
        async with database.open_database(settings) as db:
            return await jobstore.erasure.erase(
                jobstore.EventStore(db.pool),
                kind,  # type: ignore[arg-type]  # one of the three literals above
                value,
                reason=reason,
                actor=operator.actor(),
            )

    done = database.run(main)
    if as_json:
        typer.echo(
            orjson.dumps(
                {
                    "subject": done.subject,
                    "subject_id": done.subject_id,
                    "job_ids": done.job_ids,
                    "schedule_ids": done.schedule_ids,
                    "position": done.position,
                    "vacuumed": done.vacuumed,
                }
            ).decode()
        )
        return
    if done.position is None:
        typer.echo(f"nothing to erase: no {kind} {value} with personal data left")
        return
    schedules = (
        f" and {len(done.schedule_ids)} schedule(s), now deleted," if done.schedule_ids else ""
    )
    typer.echo(
        f"erased the personal data of {len(done.job_ids)} job(s){schedules} of {kind} {value}; "
        f"recorded as subject.erased at log position {done.position}"
    )
    if not done.vacuumed:
        typer.echo(
            "note: this role may not VACUUM jobtrail.data_keys; the destroyed keys' old row "
            "versions stay in its pages until autovacuum (or run VACUUM as its owner)"
        )
