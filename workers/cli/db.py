"""``jobtrail db migrate|status|check-role``: the schema, and the role a host runs as."""

from __future__ import annotations

import os
from typing import Final

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

import jobstore
from jobstore import role
from workers.cli import runtime

db_app = typer.Typer(
    help="Database schema and application role: migrate, status, check-role.",
    no_args_is_help=True,
)

PASSWORD_VARIABLE: Final = "JOBTRAIL_APP_ROLE_PASSWORD"
"""Where ``db migrate --app-role`` takes the role's password from (never a command-line
argument: those show in ``ps`` and shell history)."""
BAD_INPUT: Final = 2
INCOMPLETE: Final = 3
UNSAFE: Final = 4


def register(app: typer.Typer) -> None:
    """Add the ``db`` command group to ``app``."""
    app.add_typer(db_app, name="db")


@db_app.command("migrate")
def migrate(
    app_role: str | None = typer.Option(
        None,
        "--app-role",
        metavar="NAME",
        help=(
            "Also create (if missing) and grant the role a host runs as: it may read and "
            "append to the log but never UPDATE, DELETE or TRUNCATE it. NOLOGIN unless "
            f"{PASSWORD_VARIABLE} is set. Exits 4 if the role could still change the log."
        ),
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Apply pending migrations (starting the embedded PostgreSQL if DATABASE_URL is unset).

    Application roles set up before are granted the tables new migrations add.
    """
    settings = runtime.load_settings()
    if app_role is not None:
        _valid_name(app_role)
    password = os.environ.get(PASSWORD_VARIABLE) or None

    async def main() -> tuple[
        list[str], list[jobstore.MigrationState], bool, int, list[str], role.RoleReport | None, bool
    ]:
        async with jobstore.resolve_dsn(settings) as (dsn, embedded):
            applied = await jobstore.migrate(dsn)
            refreshed = await role.refresh_app_roles(dsn)
            report, created = None, False
            if app_role is not None:
                created = await role.ensure_app_role(dsn, app_role, password)
                report = await role.check_app_role(dsn, app_role)
            states = await jobstore.status(dsn)
            async with jobstore.open_database(
                settings.model_copy(update={"database_url": dsn})
            ) as db:
                position = await jobstore.EventStore(db.pool).last_position()
        names = [f"{m.version:04d}_{m.name}" for m in applied]
        return names, states, embedded, position, refreshed, report, created

    applied, states, embedded, position, refreshed, report, created = runtime.run(main)
    where = f"embedded PostgreSQL in {settings.pgdata_dir}" if embedded else "DATABASE_URL"
    if as_json:
        document: dict[str, object] = {
            "database": where,
            "applied": applied,
            "last_position": position,
            "migrations": _states_json(states),
            "app_roles_granted": refreshed,
        }
        if report is not None:
            document["app_role"] = {"created": created, **_report_json(report)}
        runtime.print_json(document)
    else:
        console = Console(soft_wrap=True)
        console.print(f"database: {where}")
        console.print(f"applied now: {', '.join(applied) if applied else 'nothing (up to date)'}")
        console.print(_states_table(states))
        console.print(f"event log: last position {position}")
        if report is not None:
            _print_setup(console, report, created, password is not None)
    if report is not None:
        _exit_for(report)


@db_app.command("status")
def status(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Show every migration and whether it is applied."""
    settings = runtime.load_settings()

    async def main() -> list[jobstore.MigrationState]:
        async with jobstore.resolve_dsn(settings) as (dsn, _embedded):
            return await jobstore.status(dsn)

    states = runtime.run(main)
    if as_json:
        runtime.print_json({"migrations": _states_json(states)})
    else:
        Console().print(_states_table(states))
    if any(s.applied_at is None for s in states):
        raise typer.Exit(code=3)


@db_app.command("check-role")
def check_role(
    name: str = typer.Argument(..., help="The role a host runs as."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Say whether role NAME could change the event log, and what a host running as it lacks.

    Exits 0 when the role is safe and has what a host needs, 4 when it could change or
    remove recorded events, 3 when it is safe but lacks privileges a host needs.
    """
    settings = runtime.load_settings()
    _valid_name(name)

    async def main() -> role.RoleReport:
        async with jobstore.resolve_dsn(settings) as (dsn, _embedded):
            return await role.check_app_role(dsn, name)

    report = runtime.run(main)
    if as_json:
        runtime.print_json(_report_json(report))
    else:
        _print_report(Console(soft_wrap=True), report)
    _exit_for(report)


def _valid_name(name: str) -> None:
    try:
        role.validate_role_name(name)
    except role.AppRoleError as exc:
        runtime.fail(str(exc), BAD_INPUT)


def _exit_for(report: role.RoleReport) -> None:
    if not report.safe:
        raise typer.Exit(code=UNSAFE)
    if not report.complete:
        raise typer.Exit(code=INCOMPLETE)


def _report_json(report: role.RoleReport) -> dict[str, object]:
    return {
        "role": report.role,
        "login": report.login,
        "safe": report.safe,
        "complete": report.complete,
        "unsafe": report.unsafe,
        "missing": report.missing,
    }


def _print_setup(console: Console, report: role.RoleReport, created: bool, password: bool) -> None:
    state = "created" if created else "already existed"
    login = "LOGIN" if report.login else "NOLOGIN"
    console.print(f"application role {escape(report.role)}: {state}, {login}, granted")
    if password:
        console.print(f"  password set from {PASSWORD_VARIABLE}")
    elif not report.login:
        console.print(
            f"  to use it, GRANT {report.role} TO the login role your hosts use, "
            f"or run this again with {PASSWORD_VARIABLE} set"
        )
    _print_report(console, report)


def _print_report(console: Console, report: role.RoleReport) -> None:
    role_name = escape(report.role)
    console.print(f"role {role_name} ({'LOGIN' if report.login else 'NOLOGIN'})")
    if report.safe:
        console.print(f"  ok: {role_name} cannot UPDATE/DELETE/TRUNCATE jobtrail.events")
        console.print(f"  ok: {role_name} cannot change or remove jobtrail.events_archive")
        console.print("  ok: archiving runs only through jobtrail.archive_streams")
    for problem in report.unsafe:
        console.print(f"  [red]UNSAFE[/red]: {role_name} {escape(problem)}")
    for lack in report.missing:
        console.print(f"  [yellow]missing[/yellow]: {escape(lack)}")
    if not report.safe:
        console.print(f"[red]{role_name} could rewrite the event log[/red]")
    elif not report.complete:
        console.print(
            f"[yellow]{role_name} cannot rewrite the event log, but a host running as it "
            f"lacks privileges: run `jobtrail db migrate --app-role {role_name}`[/yellow]"
        )
    else:
        console.print(f"[green]{role_name} cannot rewrite the event log[/green]")


def _states_json(states: list[jobstore.MigrationState]) -> list[dict[str, object]]:
    return [
        {
            "version": s.version,
            "name": s.name,
            "applied_at": s.applied_at.isoformat() if s.applied_at else None,
        }
        for s in states
    ]


def _states_table(states: list[jobstore.MigrationState]) -> Table:
    table = Table(title="migrations")
    table.add_column("version", justify="right")
    table.add_column("name")
    table.add_column("applied at")
    for s in states:
        applied = s.applied_at.isoformat(timespec="seconds") if s.applied_at else "pending"
        table.add_row(f"{s.version:04d}", s.name, applied)
    return table
