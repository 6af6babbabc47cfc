"""``jobtrail demo`` in a subprocess: the newcomer's first command."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

JOBTRAIL = [sys.executable, "-c", "from workers.cli import main; main()"]


def _run_demo(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*JOBTRAIL, "demo"], env=env, capture_output=True, text=True, timeout=300)


def _check(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "enqueued 300 jobs across the six job types" in out
    assert "after the first run" in out
    assert "history of job" in out
    assert "job.attempt_failed" in out
    assert "replayed" in out
    assert "final" in out
    assert "demo finished" in out
    assert "dashboard: http://127.0.0.1:" in out
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_demo_runs_the_whole_story_and_exits_zero(server_dsn: str) -> None:
    env = {**os.environ, "DATABASE_URL": server_dsn, "COLUMNS": "100"}
    result = _run_demo(env)
    _check(result)
    final = result.stdout.split("final")[1]
    assert "process-webhook" in final


@pytest.mark.slow
@pytest.mark.embedded
def test_demo_on_the_embedded_defaults() -> None:
    """No DATABASE_URL, no QSTASH_TOKEN: everything starts by itself and stops after."""
    folder = Path(tempfile.mkdtemp(prefix="jobtrail-demo-test-"))
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "QSTASH_TOKEN", "QSTASH_URL")
    }
    env["JOBTRAIL_DATA_DIR"] = str(folder)
    try:
        _check(_run_demo(env))
        postmaster = folder / "pgdata" / "postmaster.pid"
        assert not postmaster.exists(), "the embedded PostgreSQL was stopped"
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow
def test_demo_keep_leaves_the_dashboard_up_until_ctrl_c(server_dsn: str) -> None:
    env = {**os.environ, "DATABASE_URL": server_dsn, "COLUMNS": "200", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [*JOBTRAIL, "demo", "--keep"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        seen: list[str] = []
        deadline = time.monotonic() + 240
        while not any(line.startswith("--keep:") for line in seen):
            assert time.monotonic() < deadline, "".join(seen)[-3000:]
            line = proc.stdout.readline()
            assert line, "".join(seen)[-3000:]
            seen.append(line)
        url = next(line for line in seen if line.startswith("dashboard:")).split()[1]
        with urllib.request.urlopen(url, timeout=10) as page:  # the sign-in page
            assert page.status == 200
            assert "sign in" in page.read().decode().lower()
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, out[-3000:]
        assert "demo finished" in out
    finally:
        if proc.poll() is None:
            proc.kill()
