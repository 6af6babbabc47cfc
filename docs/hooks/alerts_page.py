"""MkDocs hook: the runbook's alert table, rendered from the alerting rules jobtrail ships.

``workers/monitoring/alerts.yml`` (what ``jobtrail monitoring alerts`` prints) is the one
place each alert, its threshold and its description live; the ``<!-- alerts -->`` marker of
docs/runbook.md is replaced by one section per alert on every build.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

MARKER = "<!-- alerts -->"
RULES = Path(__file__).resolve().parents[2] / "workers" / "monitoring" / "alerts.yml"


def render() -> str:
    """One section per alert: severity, how long it must hold, what it means, the rule."""
    lines: list[str] = []
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            notes = rule.get("annotations", {})
            severity = rule.get("labels", {}).get("severity", "warning")
            held = f", after {rule['for']}" if rule.get("for") else ""
            lines += [
                f"### {rule['alert']}",
                "",
                f"*{severity}{held}* — {notes.get('summary', '')}",
                "",
                " ".join(notes.get("description", "").split()),
                "",
                "```promql",
                rule["expr"].strip(),
                "```",
                "",
            ]
    return "\n".join(lines)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Fill the runbook's alert section from the shipped rules."""
    return markdown.replace(MARKER, render()) if MARKER in markdown else markdown
