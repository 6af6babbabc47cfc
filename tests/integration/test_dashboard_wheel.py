"""The dashboard's templates, stylesheet, scripts and the vendored htmx's licence ship in the
wheel (hatch takes every file of the package folders)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = (
    "workers/dashboard/queries.sql",
    "workers/dashboard/templates/base.html",
    "workers/dashboard/templates/_job_live.html",
    "workers/dashboard/static/dashboard.css",
    "workers/dashboard/static/live.js",
    "workers/dashboard/static/vendor/htmx-2.0.11.min.js",
    "workers/dashboard/static/vendor/htmx-2.0.11.LICENSE",
)


@pytest.mark.slow
def test_the_wheel_ships_the_dashboards_files(tmp_path: Path) -> None:
    built = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    (wheel,) = tmp_path.glob("jobtrail-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert set(SHIPPED) <= names, set(SHIPPED) - names
