"""``jobtrail qstash-dev``: run qstash_local, the QStash-compatible local server, standalone."""

from __future__ import annotations

import asyncio
import signal

import typer

import qstash_local
from workers import safety


def register(app: typer.Typer) -> None:
    """Add the ``qstash-dev`` command to ``app``."""

    @app.command("qstash-dev")
    def qstash_dev(
        port: int = typer.Option(8080, help="Port to listen on (0 picks a free one)."),
        host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
        retry_delay_scale: float = typer.Option(
            1.0, help="Multiply every retry delay (1.0 = QStash's timing, 0.001 = fast demos)."
        ),
        token: str = typer.Option(qstash_local.DEV_TOKEN, help="Token API calls must send."),
        current_signing_key: str = typer.Option(qstash_local.DEV_CURRENT_SIGNING_KEY),
        next_signing_key: str = typer.Option(qstash_local.DEV_NEXT_SIGNING_KEY),
    ) -> None:
        """Run a QStash-compatible server until Ctrl-C or SIGTERM (all state in memory)."""
        published = {
            qstash_local.DEV_TOKEN,
            qstash_local.DEV_CURRENT_SIGNING_KEY,
            qstash_local.DEV_NEXT_SIGNING_KEY,
        }
        if not safety.is_loopback(host) and {token, current_signing_key, next_signing_key} & (
            published
        ):
            typer.echo(
                f"qstash-dev: refusing to listen on {host} with QStash's published dev token "
                "or signing keys (anyone could publish or sign deliveries); listen on "
                "127.0.0.1, or pass --token, --current-signing-key and --next-signing-key "
                "with fresh secrets",
                err=True,
            )
            raise typer.Exit(code=2)
        try:
            config = qstash_local.Config(
                token=token,
                current_signing_key=current_signing_key,
                next_signing_key=next_signing_key,
                retry_delay_scale=retry_delay_scale,
            )
        except ValueError as exc:
            typer.echo(f"qstash-dev: {exc}", err=True)
            raise typer.Exit(code=2) from None
        try:
            asyncio.run(_serve(config, host, port))
        except OSError as exc:
            typer.echo(f"qstash-dev: cannot listen on {host}:{port}: {exc}", err=True)
            raise typer.Exit(code=1) from None


async def _serve(config: qstash_local.Config, host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with qstash_local.serve(config, host=host, port=port) as server:
        typer.echo(f"qstash_local listening on {server.url} (state in memory; Ctrl-C stops it)")
        typer.echo(f"QSTASH_URL={server.url}")
        typer.echo(f"QSTASH_TOKEN={config.token}")
        typer.echo(f"QSTASH_CURRENT_SIGNING_KEY={config.current_signing_key}")
        typer.echo(f"QSTASH_NEXT_SIGNING_KEY={config.next_signing_key}", nl=True)
        if config.retry_delay_scale != 1.0:
            typer.echo(f"retry delays scaled by {config.retry_delay_scale}")
        await stop.wait()
    typer.echo("qstash_local stopped")
