"""MkDocs hook: the configuration reference, rendered from ``jobstore.Settings`` itself.

Each field's environment variable (its first alias), default and description come from the
settings class, the one place they are defined; the page below the ``<!-- settings -->``
marker of docs/reference/configuration.md is generated on every build.
"""

from __future__ import annotations

from typing import Any

from pydantic import AliasChoices, SecretStr
from pydantic_core import PydanticUndefined

import jobstore

MARKER = "<!-- settings -->"


def _variable(name: str, alias: Any) -> str:
    if isinstance(alias, AliasChoices) and isinstance(alias.choices[0], str):
        return alias.choices[0]
    return alias if isinstance(alias, str) else name.upper()


def _default(field: Any) -> str:
    if field.default is PydanticUndefined:
        return "computed (see the description)"
    if isinstance(field.default, SecretStr):
        return "a development value (refused off loopback)"
    if field.default is None:
        return "unset"
    return f"`{field.default}`"


def render() -> str:
    """One row per setting: variable, default, meaning."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in jobstore.Settings.model_fields.items():
        meaning = (field.description or "").replace("|", "\\|").replace("\n", " ")
        variable = _variable(name, field.validation_alias)
        lines.append(f"| `{variable}` | {_default(field)} | {meaning} |")
    return "\n".join(lines)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Fill the configuration page from the settings class."""
    return markdown.replace(MARKER, render()) if MARKER in markdown else markdown
