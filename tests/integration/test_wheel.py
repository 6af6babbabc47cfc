"""The migrations ship inside the wheel, and an installed wheel finds them."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_installed_wheel_finds_and_applies_its_migrations(tmp_path: Path, db_dsn: str) -> None:
    built = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    (wheel,) = tmp_path.glob("jobtrail-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "jobstore/_sql/0001_create_event_log.sql" in names
    assert not any(n.startswith("sql/") for n in names)

    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    script = (
        "import asyncio, jobstore\n"
        "from jobstore import migrations\n"
        "print(jobstore.__file__)\n"
        "print(migrations.migrations_dir())\n"
        "asyncio.run(jobstore.migrate(__import__('os').environ['TEST_DSN']))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(site), "TEST_DSN": db_dsn}
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    assert out[0].startswith(str(site)), "the wheel's jobstore was imported"
    assert out[1] == str(site / "jobstore" / "_sql")
