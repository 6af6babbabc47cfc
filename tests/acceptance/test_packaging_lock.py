"""constraints.txt is the lock: every dependency pinned, and make lock-check notices when the
lock and pyproject.toml part ways."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]


def _pins(text: str) -> dict[str, str]:
    lines = [line.split(";")[0].strip() for line in text.splitlines()]
    pairs = [line.split("==", 1) for line in lines if "==" in line and not line.startswith("#")]
    return {canonicalize_name(name): version for name, version in pairs}


def test_every_declared_dependency_is_pinned_in_the_lock() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = [*project["dependencies"]]
    for extra in project["optional-dependencies"].values():
        declared += extra
    pinned = _pins((ROOT / "constraints.txt").read_text())
    names = {canonicalize_name(Requirement(text).name) for text in declared}
    assert names - {"jobtrail"} - set(pinned) == set(), "run make lock"


def _lock_copy(tmp_path: Path, constraints: str) -> Path:
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "lock.py", tmp_path / "scripts" / "lock.py")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "constraints.txt").write_text(constraints)
    return tmp_path / "scripts" / "lock.py"


@pytest.mark.slow
def test_lock_check_fails_when_a_pin_is_missing_and_lock_puts_it_back(tmp_path: Path) -> None:
    original = (ROOT / "constraints.txt").read_text()
    assert re.search(r"^twine==", original, re.MULTILINE)
    stale = re.sub(r"^twine==.*\n", "", original, flags=re.MULTILINE)
    script = _lock_copy(tmp_path, stale)
    check = [sys.executable, str(script), "--check"]

    refused = subprocess.run(check, capture_output=True, text=True, timeout=300)
    assert refused.returncode == 1
    assert "constraints.txt is stale: run `make lock`" in refused.stderr
    assert "+twine==" in refused.stdout

    subprocess.run([sys.executable, str(script)], check=True, capture_output=True, timeout=300)
    assert (tmp_path / "constraints.txt").read_text() == original, "make lock restores it"
    accepted = subprocess.run(check, capture_output=True, text=True, timeout=300)
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
