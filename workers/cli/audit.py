"""``jobtrail audit verify|export|anchor``: prove the event log was not altered.

``verify`` exits 0 when the log is intact, 3 when something is broken (the first broken
place is printed: stream, version, position), 4 when nothing is broken but some anchors
are signed by keys not set here (JOBTRAIL_AUDIT_PREVIOUS_KEYS), so they could not be
checked, 1 when it cannot verify at all.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Final

import orjson
import typer
from rich.console import Console
from rich.markup import escape

from jobstore import audit, audit_verify
from workers.cli import database, runtime
from workers.cli.progress import CountProgress

audit_app = typer.Typer(
    help="The tamper-evident log: verify it, export its signed anchors, anchor now.",
    no_args_is_help=True,
)

BROKEN: Final = 3
UNCHECKED: Final = 4


def register(app: typer.Typer) -> None:
    """Add the ``audit`` command group to ``app``."""
    app.add_typer(audit_app, name="audit")


@audit_app.command("verify")
def verify(
    from_position: int = typer.Option(
        0,
        "--from",
        metavar="POSITION",
        min=0,
        help="Verify from this log position on (earlier events are taken as they are).",
    ),
    anchors_file: str | None = typer.Option(
        None,
        "--anchors",
        metavar="FILE",
        help="Anchors exported earlier (jobtrail audit export): each must still be in the "
        "database, unchanged, so anchors cut back are noticed.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the whole report as JSON."),
) -> None:
    """Check every event's hash, the signed anchors and that every anchored stream is there.

    Prints "intact", or the first broken place (stream, version, position) and how many
    there are.  Needs JOBTRAIL_AUDIT_KEY, the key the anchors were signed with, and
    JOBTRAIL_AUDIT_PREVIOUS_KEYS, the keys it replaced, for the anchors signed before.
    """
    settings = database.load_settings()
    key = audit.AuditKey.from_settings(settings)
    exported = _read_export(Path(anchors_file)) if anchors_file is not None else None
    err = Console(stderr=True, soft_wrap=True)
    if key.is_dev_default or any(k.is_dev_default for k in key.previous):
        err.print(
            "[yellow]warning:[/] JOBTRAIL_AUDIT_KEY or a previous key is the public "
            "development key: anchors it signed prove nothing to anyone else"
        )

    async def main() -> audit_verify.Report:
        async with database.open_database(settings) as db:
            with CountProgress(
                err, quiet=as_json, doing="verifying", did="verified", unit="events"
            ) as progress:
                return await audit_verify.verify(
                    db.pool, key, from_position=from_position, exported=exported, progress=progress
                )

    report = database.run(main)
    if as_json:
        runtime.print_json(report.to_json())
    else:
        _print(database.console(), report)
    if not report.intact:
        raise typer.Exit(code=UNCHECKED if report.unchecked_only else BROKEN)


@audit_app.command("export")
def export(
    out: str | None = typer.Option(
        None, "--out", metavar="FILE", help="Write to FILE (appending) instead of stdout."
    ),
    after: int = typer.Option(
        0, "--after", metavar="SEQ", min=0, help="Only anchors after this one (incremental)."
    ),
) -> None:
    """Print the signed anchors as JSON Lines, to keep outside the database.

    Keep the export where a database administrator cannot change it (another machine, a
    write-once bucket); ``jobtrail audit verify --anchors FILE`` checks the database against it.
    """
    settings = database.load_settings()

    async def main() -> list[audit.Anchor]:
        async with database.open_database(settings) as db:
            return await audit.anchors(db.pool, after)

    anchors = database.run(main)
    lines = b"".join(orjson.dumps(a.to_json()) + b"\n" for a in anchors)
    if out is None:
        sys.stdout.buffer.write(lines)
    else:
        with Path(out).open("ab") as file:
            file.write(lines)
        typer.echo(f"{len(anchors)} anchor(s) appended to {out}", err=True)


@audit_app.command("anchor")
def anchor() -> None:
    """Anchor the log's stream heads now (a running host does it every interval).

    Waits for events a running transaction holds back, so every event committed before
    the command is anchored when it returns.
    """
    settings = database.load_settings()
    key = audit.AuditKey.from_settings(settings)

    async def main() -> list[audit.Anchor]:
        async with database.open_database(settings) as db:
            anchorer = audit.Anchorer(db.pool, db.dsn, key)
            async with anchorer.election.lead(give_up_after=30.0):
                return await anchorer.anchor_through()

    made = database.run(main)
    if not made:
        typer.echo("nothing new to anchor")
        return
    events = sum(a.content()["events"] for a in made)
    typer.echo(f"anchor(s) #{made[0].seq}–#{made[-1].seq}: {events} event(s)")


def _read_export(path: Path) -> list[audit.Anchor]:
    try:
        with path.open("rb") as file:
            return audit.load_export(file)
    except OSError as exc:
        runtime.fail(f"cannot read the anchors file {path}: {exc.strerror}", database.BAD_INPUT)
    except audit.AuditError as exc:
        runtime.fail(f"{path}: {exc}", database.BAD_INPUT)


def _print(out: Console, report: audit_verify.Report) -> None:
    checked = (
        f"{report.events_checked:,} event(s), {report.archived_checked:,} archived, "
        f"{report.anchors_checked:,} anchor(s)"
    )
    if report.last_anchor is not None:
        checked += f"; last anchor #{report.last_anchor} at {report.last_anchor_at}"
    if report.unanchored_events:
        checked += f"; {report.unanchored_events:,} event(s) since it, not anchored yet"
        if report.unchained_events:
            checked += f" ({report.unchained_events:,} of them not chained yet)"
    if report.intact:
        out.print(f"intact: {checked}")
        return
    first = report.first
    assert first is not None
    count = len(report.breaks) + report.more_breaks
    if report.unchecked_only:
        unchecked = ", ".join(f"#{seq}" for seq in report.unchecked_anchors)
        out.print(f"[yellow]not verified[/]: anchor(s) {unchecked} could not be checked")
        for found in sorted(report.breaks, key=audit_verify.break_order)[:20]:
            out.print(f"  {escape(str(found))}")
        out.print(f"nothing else found broken; checked {checked}")
        return
    out.print(f"[red]broken[/] at {escape(str(first))}")
    out.print(f"{count:,} broken place(s) in all; checked {checked}")
    for found in sorted(report.breaks, key=audit_verify.break_order)[1:20]:
        out.print(f"  also: {escape(str(found))}")
