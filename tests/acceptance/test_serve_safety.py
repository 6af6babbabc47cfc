"""Safe by default: `serve` and `qstash-dev` refuse to trust published secrets off loopback."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path

import aiohttp
import orjson
import pytest

import jobstore
import qstash_local
from jobstore.settings import DEV_AUDIT_KEY
from qstash_local import signature
from tests.host_support import free_port
from tests.processes import Process, env_for, processes, wait_http

JOBTRAIL = [sys.executable, "-c", "from workers.cli import main; main()"]
REAL_LOOKING = {
    "QSTASH_TOKEN": "eyJVc2VySUQiOiJwcm9kLXVzZXIiLCJQYXNzd29yZCI6InMzY3JldCJ9",
    "QSTASH_CURRENT_SIGNING_KEY": "sig_ProdCurrentKeyProdCurrentKey1",
    "QSTASH_NEXT_SIGNING_KEY": "sig_ProdNextKeyProdNextKeyProdNe",
}


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*JOBTRAIL, *args], env=env, capture_output=True, text=True, timeout=60)


def refused(result: subprocess.CompletedProcess[str], *names: str) -> str:
    """The one error line of a refused start, which names every variable in ``names``."""
    assert result.returncode != 0, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "refusing" in line]
    assert len(errors) == 1, result.stderr[-2000:]
    for name in names:
        assert name in errors[0]
    return errors[0]


def production_env(**values: str) -> dict[str, str]:
    return env_for(DATABASE_URL="postgresql://nobody@127.0.0.1:1/never-reached", **values)


@pytest.mark.parametrize(
    ("case", "env", "args", "names"),
    [
        (
            "Upstash with no signing keys",
            {"QSTASH_TOKEN": REAL_LOOKING["QSTASH_TOKEN"]},
            ["--no-qstash"],
            ["QSTASH_CURRENT_SIGNING_KEY", "QSTASH_NEXT_SIGNING_KEY"],
        ),
        (
            "a remote QStash with the dev keys set explicitly",
            {
                "QSTASH_URL": "https://qstash.example.com",
                "QSTASH_TOKEN": REAL_LOOKING["QSTASH_TOKEN"],
                "QSTASH_CURRENT_SIGNING_KEY": qstash_local.DEV_CURRENT_SIGNING_KEY,
                "QSTASH_NEXT_SIGNING_KEY": REAL_LOOKING["QSTASH_NEXT_SIGNING_KEY"],
            },
            ["--no-qstash"],
            ["QSTASH_CURRENT_SIGNING_KEY"],
        ),
        (
            "a loopback qstash-dev but a public URL",
            {"QSTASH_URL": "http://127.0.0.1:8080", "JOBTRAIL_PUBLIC_URL": "https://jobs.example"},
            ["--no-qstash"],
            ["QSTASH_CURRENT_SIGNING_KEY"],
        ),
        (
            "a loopback qstash-dev but listening on every interface",
            {"QSTASH_URL": "http://127.0.0.1:8080"},
            ["--no-qstash", "--host", "0.0.0.0"],
            ["QSTASH_CURRENT_SIGNING_KEY"],
        ),
        (
            "real keys but the dev token",
            {
                "QSTASH_URL": "https://qstash.example.com",
                "QSTASH_CURRENT_SIGNING_KEY": REAL_LOOKING["QSTASH_CURRENT_SIGNING_KEY"],
                "QSTASH_NEXT_SIGNING_KEY": REAL_LOOKING["QSTASH_NEXT_SIGNING_KEY"],
            },
            ["--no-qstash"],
            ["QSTASH_TOKEN"],
        ),
        (
            "real QStash secrets but the public webhook secret",
            {"QSTASH_URL": "https://qstash.example.com", **REAL_LOOKING},
            ["--no-qstash"],
            ["JOBTRAIL_WEBHOOK_SECRET"],
        ),
        (
            "real QStash and webhook secrets but the public audit key",
            {
                "QSTASH_URL": "https://qstash.example.com",
                "JOBTRAIL_WEBHOOK_SECRET": "a-long-random-webhook-secret-of-ours",
                "JOBTRAIL_DATA_KEY": "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=",
                **REAL_LOOKING,
            },
            ["--no-qstash"],
            ["JOBTRAIL_AUDIT_KEY"],
        ),
        (
            "a key of our own, but the public audit key kept as a previous one",
            {
                "QSTASH_URL": "https://qstash.example.com",
                "JOBTRAIL_WEBHOOK_SECRET": "a-long-random-webhook-secret-of-ours",
                "JOBTRAIL_DATA_KEY": "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=",
                "JOBTRAIL_AUDIT_KEY": "a-long-random-audit-key-of-ours",
                "JOBTRAIL_AUDIT_PREVIOUS_KEYS": f"an-older-audit-key-of-ours,{DEV_AUDIT_KEY}",
                **REAL_LOOKING,
            },
            ["--no-qstash"],
            ["JOBTRAIL_AUDIT_PREVIOUS_KEYS"],
        ),
        (
            "real QStash and webhook secrets but the public data key",
            {
                "QSTASH_URL": "https://qstash.example.com",
                "JOBTRAIL_WEBHOOK_SECRET": "a-long-random-webhook-secret-of-ours",
                **REAL_LOOKING,
            },
            ["--no-qstash"],
            ["JOBTRAIL_DATA_KEY"],
        ),
        (
            "the in-process qstash_local on every interface, public webhook secret",
            {},
            ["--host", "0.0.0.0"],
            ["JOBTRAIL_WEBHOOK_SECRET"],
        ),
    ],
)
def test_serve_refuses_an_unsafe_configuration_with_one_line(
    case: str, env: dict[str, str], args: list[str], names: list[str]
) -> None:
    values = production_env(**env)  # with QStash's dev token unless the case sets one
    if "--no-qstash" not in args:
        del values["QSTASH_TOKEN"]  # the in-process qstash_local
    result = run(["serve", "--port", str(free_port()), *args], values)
    line = refused(result, *names)
    assert REAL_LOOKING["QSTASH_TOKEN"] not in result.stderr, case
    assert "s3cret" not in line


def test_serve_starts_with_real_secrets_off_loopback_until_the_database(tmp_path: Path) -> None:
    """The safety check passes; the start then fails on the (unreachable) database only."""
    values = production_env(
        QSTASH_URL="https://qstash.example.com",
        JOBTRAIL_WEBHOOK_SECRET="a-long-random-webhook-secret-of-ours",
        JOBTRAIL_AUDIT_KEY="a-long-random-audit-key-of-ours",
        JOBTRAIL_DATA_KEY="AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=",
        **REAL_LOOKING,
    )
    result = run(["serve", "--port", str(free_port()), "--no-qstash", "--host", "0.0.0.0"], values)
    assert "refusing" not in result.stderr
    assert "cannot connect to PostgreSQL" in result.stderr


async def test_the_in_process_qstash_uses_private_keys_so_dev_signed_requests_are_refused(
    db_dsn: str, tmp_path: Path
) -> None:
    port = free_port()
    env = env_for(DATABASE_URL=db_dsn, JOBTRAIL_DATA_DIR=str(tmp_path))
    del env["QSTASH_TOKEN"]  # the in-process qstash_local
    url = f"http://127.0.0.1:{port}"
    body = orjson.dumps(
        {
            "job_id": str(uuid.uuid4()),
            "dispatch": 1,
            "type": "cleanup-old-data",
            "payload": {},
            "metadata": {},
        }
    )
    forged = signature.sign(
        key=qstash_local.DEV_CURRENT_SIGNING_KEY,
        url=url + "/api/jobs/cleanup-old-data",
        body_sha=signature.body_hash(body),
        now=int(time.time()),
        jti=signature.new_jti(),
    )
    with processes() as running:
        serve = Process(["serve", "--port", str(port)], env, tmp_path / "serve.log")
        running.append(serve.start())
        await wait_http(url + "/readyz")
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                url + "/api/jobs/cleanup-old-data",
                data=body,
                headers={"Upstash-Signature": forged, "Content-Type": "application/json"},
            ) as response,
        ):
            assert response.status == 401
            assert await response.json() == {"error": "signature verification failed"}
        assert serve.terminate() == 0


def test_qstash_dev_refuses_a_public_address_with_published_credentials() -> None:
    result = run(["qstash-dev", "--host", "0.0.0.0", "--port", str(free_port())], env_for())
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.strip()]
    assert "refusing to listen on 0.0.0.0" in line
    assert "--token" in line


async def test_qstash_dev_on_a_public_address_starts_with_fresh_secrets(tmp_path: Path) -> None:
    port = free_port()
    token = "a-fresh-token-nobody-else-knows-0123"
    args = [
        "qstash-dev",
        "--host",
        "0.0.0.0",
        "--port",
        str(port),
        "--token",
        token,
        "--current-signing-key",
        qstash_local.new_signing_key(),
        "--next-signing-key",
        qstash_local.new_signing_key(),
    ]
    with processes() as running:
        dev = Process(args, env_for(), tmp_path / "qstash.log")
        running.append(dev.start())
        await wait_http(f"http://127.0.0.1:{port}/v2/keys?qstash_token={token}")
        assert dev.terminate() == 0


def test_make_app_refuses_dev_keys_for_a_public_listening_address() -> None:
    """Library users who build the host themselves get the same refusal as `serve`."""
    from workers.app import HostOptions, make_app
    from workers.safety import UnsafeConfigurationError

    settings = jobstore.Settings(database_url="postgresql://unused@127.0.0.1:1/x")

    with pytest.raises(UnsafeConfigurationError, match="QSTASH_CURRENT_SIGNING_KEY"):
        make_app(settings, options=HostOptions(listen_host="0.0.0.0"))
    assert make_app(settings, options=HostOptions(listen_host="127.0.0.1")) is not None


def test_malformed_keys_are_refused_in_one_line_before_anything_starts() -> None:
    """A bad JOBTRAIL_DATA_KEY (before: refused only after migrating the database) and a
    short JOBTRAIL_AUDIT_KEY are named together on one line, their values never shown; the
    database (unreachable here) is never contacted."""
    result = run(
        ["serve", "--no-qstash"],
        production_env(JOBTRAIL_DATA_KEY="not-base64-leaky", JOBTRAIL_AUDIT_KEY="leaky-7"),
    )

    assert result.returncode != 0 and "Traceback" not in result.stderr
    (line,) = [x for x in result.stderr.splitlines() if x.strip()]
    assert line == (
        "error: invalid configuration: JOBTRAIL_DATA_KEY: is not 32 random bytes in base64 "
        '(44 characters); make one with: python -c "import os,base64;'
        'print(base64.b64encode(os.urandom(32)).decode())"; JOBTRAIL_AUDIT_KEY: has 7 '
        "characters; an audit key needs at least 16"
    )
    assert "leaky" not in result.stderr + result.stdout
