"""Named SQL queries loaded from ``.sql`` files that sit next to the code running them.

Each query starts with ``-- name: <name>`` and a ``-- params: a, b`` line, so a grep for
the name finds the SQL and its one Python caller.
"""

from __future__ import annotations

from importlib import resources


def load(package: str, filename: str) -> dict[str, str]:
    """Read ``filename`` from ``package`` into a name → SQL map."""
    text = resources.files(package).joinpath(filename).read_text(encoding="utf-8")
    queries: dict[str, str] = {}
    name: str | None = None
    lines: list[str] = []
    for line in text.splitlines():
        if line.startswith("-- name:"):
            if name is not None:
                queries[name] = "\n".join(lines).strip()
            name, lines = line.removeprefix("-- name:").strip(), []
        elif name is not None and not line.startswith("-- params:"):
            lines.append(line)
    if name is not None:
        queries[name] = "\n".join(lines).strip()
    return queries
