"""The README's two commands, from a clean clone, as a newcomer runs them.

``make demo`` in a fresh ``git clone`` creates the virtualenv, installs from the lock and
runs the whole demo; ``make test`` in that clone runs pytest from the clone's own virtualenv
(on one small test file, to keep this bounded: the full suite is what CI's ``make test``
runs). The README and ``.ci/run`` must name the same commands.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _newcomer_env(database_url: str) -> dict[str, str]:
    """The environment of someone who never activated this checkout's virtualenv."""
    venv_bin = str(ROOT / ".venv" / "bin")
    path = [p for p in os.environ["PATH"].split(os.pathsep) if p != venv_bin]
    # Nor runs inside a make: `make test ARGS=…` exports ARGS (and MAKEFLAGS) to the suite.
    outside = ("VIRTUAL_ENV", "PYTHONPATH", "MAKEFLAGS", "MFLAGS", "MAKELEVEL", "ARGS", "PYTHON")
    env = {k: v for k, v in os.environ.items() if k not in outside}
    return {**env, "PATH": os.pathsep.join(path), "DATABASE_URL": database_url, "COLUMNS": "120"}


def _run(command: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, (command, done.stdout[-4000:], done.stderr[-4000:])
    return done


def test_readme_and_ci_name_the_same_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    quick_start = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^(make \w+)", quick_start.split("```bash", 1)[1], re.MULTILINE)
    assert commands[:2] == ["make demo", "make test"]
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    ci_commands = [line for line in ci if line and not line.startswith(("#", " "))]
    assert ci_commands[-1] == "make test", "CI ends with exactly the README's test command"


@pytest.mark.slow
@pytest.mark.timeout(3000)
def test_make_demo_and_make_test_from_a_clean_clone(tmp_path: Path, server_dsn: str) -> None:
    clone = tmp_path / "jobtrail"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    env = _newcomer_env(server_dsn)

    demo = _run(["make", "demo"], clone, env)
    assert ".venv/bin/jobtrail demo" in demo.stdout, "the demo ran from the clone's venv"
    assert (clone / ".venv" / ".installed").exists()
    assert "enqueued 300 jobs across the six job types" in demo.stdout
    assert "demo finished" in demo.stdout

    installed = _run(
        [".venv/bin/python", "-c", "import jobstore; print(jobstore.__file__)"], clone, env
    )
    assert installed.stdout.strip().startswith(str(clone)), "the clone's own code is installed"

    test = _run(
        ["make", "test", "ARGS=tests/unit/test_seed_input.py -q -p no:cacheprovider"], clone, env
    )
    assert ".venv/bin/pytest tests/unit/test_seed_input.py" in test.stdout
    assert re.search(r"^\d+ passed", test.stdout, re.MULTILINE), test.stdout[-2000:]
    assert "pip install" not in test.stdout, "a second target reuses the installed virtualenv"

    dry = _run(["make", "-n", "test"], clone, env)
    assert dry.stdout.splitlines()[-1].strip() == ".venv/bin/pytest", "the full suite, no filter"
