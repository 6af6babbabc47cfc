"""Pin every dependency of jobtrail, for every platform, in constraints.txt (the lock).

``make lock`` re-pins after a change to pyproject.toml and keeps every pin that still fits;
``make upgrade`` moves all pins (or ``--upgrade-package NAME`` one) to the newest releases
allowed; ``make lock-check`` fails when the lock no longer matches pyproject.toml (a
package missing, unneeded or at another version; markers alone are left to ``make lock``). uv
resolves (``uv pip compile --universal``); the security floors, the ``# floor`` lines at the
top of constraints.txt, are given to it as constraints, so no pin can fall below them. The
comment lines at the top are kept as they are; every line after them is written by this
script.
"""

from __future__ import annotations

import argparse
import difflib
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "constraints.txt"
FLOOR = re.compile(r"^# floor (?P<name>[A-Za-z0-9._-]+) (?P<version>\S+)\s")


def split(text: str) -> tuple[list[str], list[str]]:
    """The leading comment block and the pins of a lock file's text."""
    lines = text.splitlines()
    n = next((i for i, line in enumerate(lines) if line and not line.startswith("#")), len(lines))
    return lines[:n], [line for line in lines[n:] if line and not line.startswith("#")]


def versions(pins: list[str]) -> set[tuple[str, str]]:
    """The (canonical name, version) pairs of ``pins``, environment markers left aside."""
    pairs = (pin.split(";")[0].strip().split("==", 1) for pin in pins)
    return {(re.sub(r"[-_.]+", "-", name).lower(), version) for name, version in pairs}


def resolve(pins: list[str], header: list[str], options: list[str]) -> list[str]:
    """Run uv on pyproject.toml with ``pins`` as preferences; return the new pins."""
    floors = [f"{m['name']}>={m['version']}" for m in map(FLOOR.match, header) if m]
    with tempfile.TemporaryDirectory() as folder:
        out, constraints = Path(folder) / "out.txt", Path(folder) / "floors.txt"
        out.write_text("\n".join(pins) + "\n")
        constraints.write_text("\n".join(floors) + "\n")
        command = [
            *(sys.executable, "-m", "uv", "pip", "compile", "pyproject.toml"),
            *("--all-extras", "--universal", "--python-version", "3.11"),
            *("--no-header", "--no-annotate", "--quiet"),
            *("-c", str(constraints), "-o", str(out), *options),
        ]
        done = subprocess.run(command, cwd=ROOT, check=False)
        if done.returncode != 0:
            sys.exit(f"uv could not resolve pyproject.toml's dependencies (exit {done.returncode})")
        return split(out.read_text())[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; fail if stale")
    parser.add_argument("--upgrade", action="store_true", help="newest allowed releases")
    parser.add_argument("--upgrade-package", action="append", default=[], metavar="NAME")
    args = parser.parse_args()
    header, pins = split(LOCK.read_text())
    options = ["--upgrade"] if args.upgrade else []
    for name in args.upgrade_package:
        options += ["--upgrade-package", name]
    new = resolve(pins, header, options)
    if args.check:
        if versions(new) == versions(pins):
            note = "" if new == pins else "; only environment markers differ (make lock)"
            print(f"constraints.txt matches pyproject.toml ({len(pins)} pins{note})")
            return 0
        diff = difflib.unified_diff(pins, new, "constraints.txt", "resolved", lineterm="")
        print("\n".join(diff))
        print("constraints.txt is stale: run `make lock` and commit it", file=sys.stderr)
        return 1
    LOCK.write_text("\n".join([*header, *new]) + "\n")
    changed = sorted(set(new) ^ set(pins))
    print(f"constraints.txt: {len(new)} pins, {len(changed)} lines changed")
    for line in changed:
        print(("+ " if line in new else "- ") + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
