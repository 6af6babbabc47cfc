"""The wheel and sdist are what people install: built, checked with twine, installed into a
fresh virtualenv with no source tree in sight, and run from there."""

from __future__ import annotations

import email.parser
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("jobstore", "workers", "projections", "qstash_local")
VENV_BIN = Path(sys.executable).parent


def _run(command: list[str], cwd: Path, **env: str) -> str:
    environment = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    done = subprocess.run(
        command,
        cwd=cwd,
        env={**environment, **env},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, (command, done.stdout[-3000:], done.stderr[-3000:])
    return done.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel and sdist, built from this checkout as CI builds them."""
    out = tmp_path_factory.mktemp("dist")
    build = [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out)]
    _run(build, ROOT)
    return out


def _wheel(dist: Path) -> Path:
    (wheel,) = dist.glob("jobtrail-*.whl")
    return wheel


def _sdist(dist: Path) -> Path:
    (sdist,) = dist.glob("jobtrail-*.tar.gz")
    return sdist


@pytest.mark.slow
def test_twine_accepts_the_wheel_and_the_sdist(dist: Path) -> None:
    out = _run([str(VENV_BIN / "twine"), "check", "--strict", *map(str, dist.iterdir())], ROOT)
    assert out.count("PASSED") == 2, out


@pytest.mark.slow
def test_the_wheel_is_typed_and_describes_itself(dist: Path) -> None:
    wheel = zipfile.ZipFile(_wheel(dist))
    names = set(wheel.namelist())
    assert {f"{package}/py.typed" for package in PACKAGES} <= names
    (meta_name,) = [n for n in names if n.endswith(".dist-info/METADATA")]
    meta = email.parser.Parser().parsestr(wheel.read(meta_name).decode())
    urls = dict(url.split(", ", 1) for url in meta.get_all("Project-URL", []))
    assert {"Homepage", "Documentation", "Source", "Issues", "Changelog"} <= set(urls)
    assert "Typing :: Typed" in meta.get_all("Classifier", [])
    assert "qstash" in meta["Keywords"].split(",")
    assert meta["License-Expression"] == "MIT"
    entry_points = wheel.read(meta_name.replace("METADATA", "entry_points.txt")).decode()
    assert "jobtrail = workers.cli:main" in entry_points
    assert "[pytest11]\njobtrail = workers.testing" in entry_points, "the testing plugin"


@pytest.mark.slow
def test_the_sdist_rebuilds_the_same_wheel(dist: Path, tmp_path: Path) -> None:
    """Everything the wheel holds comes from the sdist alone (no file only in git)."""
    with tarfile.open(_sdist(dist)) as sdist:
        sdist.extractall(tmp_path, filter="data")
    (source,) = tmp_path.iterdir()
    for name in ("CHANGELOG.md", "LICENSE", "README.md", "sql/0001_create_event_log.sql"):
        assert (source / name).is_file(), name
    _run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", "out"], source)
    rebuilt = set(zipfile.ZipFile(_wheel(source / "out")).namelist())
    assert rebuilt == set(zipfile.ZipFile(_wheel(dist)).namelist())


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_the_installed_wheel_runs_the_demo_without_the_source_tree(
    dist: Path, tmp_path: Path, server_dsn: str
) -> None:
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], tmp_path)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    _run([*pip, "-c", str(ROOT / "constraints.txt"), str(_wheel(dist))], tmp_path)

    where = _run(
        [str(venv / "bin" / "python"), "-c", "import workers; print(workers.__file__)"], tmp_path
    )
    assert where.startswith(str(venv)), "imported from the installed wheel, not the checkout"
    version = _run([str(venv / "bin" / "jobtrail"), "--version"], tmp_path)
    assert version.strip() == f"jobtrail {_wheel(dist).name.split('-')[1]}", "the wheel's version"

    user_code = tmp_path / "user_code.py"
    user_code.write_text(
        "import jobstore\n\n"
        "def job_type(config: jobstore.JobConfig) -> str:\n"
        "    return config.type\n"
    )
    mypy = [str(VENV_BIN / "mypy"), "--strict", "--python-executable", str(venv / "bin" / "python")]
    checked = _run([*mypy, "--no-incremental", str(user_code)], tmp_path)
    assert "Success" in checked, "mypy reads the installed package's types (py.typed)"

    demo = _run([str(venv / "bin" / "jobtrail"), "demo"], tmp_path, DATABASE_URL=server_dsn)
    assert "enqueued 300 jobs across the six job types" in demo
    assert "demo finished" in demo
