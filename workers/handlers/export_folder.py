"""The folder export-data and generate-report write into, and safe paths inside it."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from jobstore import NonRetryableJobError


def inside(root: Path, *parts: str) -> Path:
    """``root/parts…``, refusing any result outside ``root`` (no ``..``, no absolute parts)."""
    base = root.resolve()
    target = base.joinpath(*parts).resolve()
    if target != base and base not in target.parents:
        raise NonRetryableJobError(f"refusing to write outside the export folder {base}")
    return target


def write_atomically(path: Path, lines: list[bytes]) -> int:
    """Write ``lines`` to ``path`` via a temporary file and a rename; returns bytes written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    size = 0
    try:
        with os.fdopen(handle, "wb") as out:
            for line in lines:
                out.write(line)
                size += len(line)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return size


def older_than(root: Path, patterns: tuple[str, ...], before: float) -> list[Path]:
    """Files under ``root`` matching ``patterns`` last modified before ``before`` (epoch s).

    Symbolic links are never followed or returned: only files a handler wrote qualify.
    """
    if not root.is_dir():
        return []
    found: list[Path] = []
    for pattern in patterns:
        for path in root.glob(pattern):
            try:
                info = path.lstat()
            except FileNotFoundError:
                continue
            if stat.S_ISREG(info.st_mode) and info.st_mtime < before:
                found.append(path)
    return sorted(found)
