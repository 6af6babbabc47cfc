"""``jobtrail qstash-dev`` as a user runs it: a subprocess the SDK can publish to."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from qstash import QStash

import qstash_local


def test_qstash_dev_serves_the_sdk_and_stops_cleanly_on_sigterm() -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from workers.cli import main; main()",
            "qstash-dev",
            "--port",
            "0",
            "--retry-delay-scale",
            "0.01",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(5)]
        printed = dict(line.strip().split("=", 1) for line in lines[1:])
        assert printed["QSTASH_TOKEN"] == qstash_local.DEV_TOKEN
        assert printed["QSTASH_CURRENT_SIGNING_KEY"] == qstash_local.DEV_CURRENT_SIGNING_KEY
        client = QStash(printed["QSTASH_TOKEN"], base_url=printed["QSTASH_URL"], retry=False)
        try:
            assert client.signing_key.get().next == qstash_local.DEV_NEXT_SIGNING_KEY
            assert client.queue.list() == []
        finally:
            client.http._client.close()
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=10)
        assert process.returncode == 0, err
        assert "stopped" in out
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def test_qstash_dev_rejects_a_negative_retry_delay_scale() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from workers.cli import main; main()",
            "qstash-dev",
            "--retry-delay-scale",
            "-1",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "retry_delay_scale must be >= 0" in result.stderr
