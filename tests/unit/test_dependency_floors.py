"""No dependency older than the release that fixed its known security advisories.

The floors live in one table, the ``# floor`` lines at the top of constraints.txt (each
with the advisories it answers); this test holds the installed packages, the pins and
pyproject.toml's own floors to it.
"""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
_FLOOR = re.compile(r"^# floor (?P<name>[A-Za-z0-9._-]+) (?P<version>\S+)\s+\S")


def floors() -> dict[str, Version]:
    """The security floors of constraints.txt, by canonical package name."""
    lines = (ROOT / "constraints.txt").read_text().splitlines()
    found = [m for m in map(_FLOOR.match, lines) if m]
    return {canonicalize_name(m["name"]): Version(m["version"]) for m in found}


def pins() -> dict[str, Version]:
    """constraints.txt's ``name==version`` pins."""
    lines = (ROOT / "constraints.txt").read_text().splitlines()
    pins = [line.split(";")[0] for line in lines if "==" in line and not line.startswith("#")]
    pairs = [pin.split("==", 1) for pin in pins]  # a pin may end with "; <environment marker>"
    return {canonicalize_name(name): Version(version.strip()) for name, version in pairs}


def test_the_floor_table_names_the_advisory_packages() -> None:
    table = floors()
    for name in ("aiohttp", "orjson", "pyjwt", "jinja2", "urllib3", "requests", "h11"):
        assert name in table
    assert "aiosmtpd" in table


@pytest.mark.parametrize("name", sorted(floors()))
def test_installed_version_is_at_or_past_its_floor(name: str) -> None:
    try:
        installed = Version(metadata.version(name))
    except metadata.PackageNotFoundError:
        pytest.skip(f"{name} is not installed")
    assert installed >= floors()[name], f"{name} {installed} is below its floor {floors()[name]}"


def test_pins_are_at_or_past_their_floors() -> None:
    table, pinned = floors(), pins()
    low = {n: str(v) for n, v in pinned.items() if n in table and v < table[n]}
    assert low == {}


def test_direct_dependencies_declare_floors_at_or_past_the_advisories() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = [*project["dependencies"], *project["optional-dependencies"]["dev"]]
    table = floors()
    for text in declared:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        if name not in table:
            continue
        lowest = [Version(s.version) for s in requirement.specifier if s.operator == ">="]
        assert lowest, f"{text}: a dependency with advisories needs a >= floor"
        assert max(lowest) >= table[name], f"{text} allows versions below {table[name]}"
