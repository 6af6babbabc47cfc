"""``jobtrail keys status|rewrap``: rotate the master data key (JOBTRAIL_DATA_KEY).

``rewrap`` exits 1 with one line when a data key is wrapped by a master key this process
does not hold (the line names it); nothing is rewrapped then.
"""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from jobstore import Settings, keyring, rotation
from jobstore.settings import DEV_DATA_KEY
from workers.cli import database, runtime
from workers.cli.progress import CountProgress

keys_app = typer.Typer(
    help="The master data key: which keys wrap the data keys, and rewrapping them.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Add the ``keys`` command group to ``app``."""
    app.add_typer(keys_app, name="keys")


@keys_app.command("status")
def status(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Count the data keys by the master key that wrapped them, and the erased ones.

    A previous key (JOBTRAIL_DATA_PREVIOUS_KEYS) wrapping no data key any more may be
    dropped from the settings.
    """
    settings = database.load_settings()

    async def main() -> rotation.KeyStatus:
        async with database.open_database(settings) as db:
            return await rotation.status(db.pool)

    found = database.run(main)
    if as_json:
        runtime.print_json(_status_json(found))
        return
    out = database.console()
    out.print(_status_table(found))
    left = sum(found.to_rewrap.values())
    if left:
        out.print(
            f"{left:,} data key(s) not wrapped by the current key: run `jobtrail keys rewrap`"
        )
    else:
        out.print("every data key is wrapped by the current key")
    if found.droppable:
        out.print(
            f"no data key needs previous key(s) {', '.join(found.droppable)} any more: "
            "they may be removed from JOBTRAIL_DATA_PREVIOUS_KEYS"
        )


@keys_app.command("rewrap")
def rewrap(
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Count the keys to rewrap by master key; change nothing."
    ),
    batch_size: int = typer.Option(
        rotation.BATCH_SIZE, min=1, max=10_000, help="Data keys rewrapped per transaction."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the outcome as JSON."),
) -> None:
    """Wrap every data key with JOBTRAIL_DATA_KEY, then VACUUM the key table.

    Keys wrapped by a previous master key (JOBTRAIL_DATA_PREVIOUS_KEYS) are unwrapped and
    wrapped again, a batch per transaction, safe alongside running hosts and erasures (an
    erased key stays erased).  Afterwards ``jobtrail keys status`` says which previous keys
    may be dropped.
    """
    settings = database.load_settings()
    if settings.data_key.get_secret_value() == DEV_DATA_KEY and not as_json:
        database.warn("JOBTRAIL_DATA_KEY is the public development key: set a key of your own")
    if dry_run:
        _dry_run(settings, as_json=as_json)
        return

    async def main(progress: rotation.Progress | None) -> rotation.Rewrapped:
        async with database.open_database(settings) as db:
            return await rotation.rewrap(db.pool, batch_size=batch_size, progress=progress)

    with CountProgress(
        Console(stderr=True), quiet=as_json, doing="rewrapping", did="rewrapped", unit="data keys"
    ) as progress:
        done = database.run(lambda: main(progress))
    if as_json:
        runtime.print_json(
            {
                "master_key_id": done.master_key_id,
                "rewrapped": done.count,
                "by_master_key": done.by_master_key,
                "vacuumed": done.vacuumed,
            }
        )
        return
    if not done.count:
        typer.echo(f"nothing to rewrap: every data key is wrapped by {done.master_key_id}")
    else:
        before = ", ".join(f"{n:,} by {k}" for k, n in done.by_master_key.items())
        typer.echo(
            f"rewrapped {done.count:,} data key(s) with master key {done.master_key_id} "
            f"(wrapped before: {before})"
        )
    if not done.vacuumed:
        typer.echo(
            "note: this role may not VACUUM jobtrail.data_keys; the old wrapped keys' row "
            "versions stay in its pages until autovacuum (or run VACUUM as its owner)"
        )


def _dry_run(settings: Settings, *, as_json: bool) -> None:
    """Count what a rewrap would do; exit 1 when it would be refused (a key not held)."""

    async def main() -> rotation.KeyStatus:
        async with database.open_database(settings) as db:
            return await rotation.status(db.pool)

    found = database.run(main)
    pending = found.to_rewrap
    if as_json:
        runtime.print_json(_status_json(found))
    elif not pending:
        typer.echo(f"nothing to rewrap: every data key is wrapped by {found.current}")
    else:
        counts = ", ".join(f"{n:,} by {k} ({found.held_as(k)})" for k, n in pending.items())
        typer.echo(
            f"would rewrap {sum(pending.values()):,} data key(s) with master key "
            f"{found.current} (wrapped now: {counts}); nothing changed"
        )
    try:
        rotation.check_held(found)
    except keyring.DataKeyError as exc:
        runtime.fail(str(exc))


def _status_json(found: rotation.KeyStatus) -> dict[str, Any]:
    return {
        "current": found.current,
        "previous": list(found.previous),
        "by_master_key": [
            {"master_key_id": k, "keys": n, "held": found.held_as(k)}
            for k, n in found.by_master_key.items()
        ],
        "erased": found.erased,
        "to_rewrap": sum(found.to_rewrap.values()),
        "droppable": list(found.droppable),
    }


def _status_table(found: rotation.KeyStatus) -> Table:
    table = Table(title="data keys by master key")
    table.add_column("master key id", no_wrap=True)
    table.add_column("data keys", justify="right")
    table.add_column("held here as")
    for key_id in dict.fromkeys([found.current, *found.previous, *found.by_master_key]):
        held = found.held_as(key_id)
        style = "red" if held == "not held" else ""
        count = found.by_master_key.get(key_id, 0)
        table.add_row(key_id, f"{count:,}", f"[{style}]{held}[/]" if style else held)
    table.add_row("(erased)", f"{found.erased:,}", "")
    return table
