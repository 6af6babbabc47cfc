"""MkDocs hook: the HTTP API reference page, rendered from the OpenAPI document the host serves.

``projections.openapi.document()`` is the one description of the API: the page below the
``<!-- openapi -->`` marker of docs/reference/http-api.md is generated from it on every build,
and the document itself is published next to the page as ``openapi.json``.
"""

from __future__ import annotations

import json
from typing import Any

from mkdocs.structure.files import File, Files

from projections import openapi

MARKER = "<!-- openapi -->"
METHODS = ("get", "post", "put", "patch", "delete")


def _schema_text(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return f"[`{name}`](#{name.lower()})"
    text = schema.get("type", "object")
    if "enum" in schema:
        text += ": " + ", ".join(f"`{value}`" for value in schema["enum"])
    if schema.get("format"):
        text += f" ({schema['format']})"
    if schema.get("type") == "array" and "items" in schema:
        text = "array of " + _schema_text(schema["items"])
    return text


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _operation(path: str, method: str, op: dict[str, Any]) -> list[str]:
    lines = [f"### `{method.upper()} /api/v1{path}`", "", f"**{op.get('summary', '')}**", ""]
    if op.get("description"):
        lines += [op["description"], ""]
    params = op.get("parameters", [])
    if params:
        lines += ["| parameter | in | type | meaning |", "|---|---|---|---|"]
        for p in params:
            required = " (required)" if p.get("required") else ""
            kind = _cell(_schema_text(p.get("schema", {})))
            meaning = _cell(p.get("description", ""))
            lines.append(f"| `{p['name']}`{required} | {p['in']} | {kind} | {meaning} |")
        lines.append("")
    body = op.get("requestBody", {}).get("content", {}).get("application/json")
    if body:
        lines += [f"Request body (JSON): {_schema_text(body.get('schema', {}))}", ""]
    lines += ["| status | meaning |", "|---|---|"]
    for status, answer in op.get("responses", {}).items():
        lines.append(f"| {status} | {_cell(answer.get('description', ''))} |")
    return [*lines, ""]


def _schema_section(name: str, schema: dict[str, Any]) -> list[str]:
    lines = [f"### {name}", ""]
    if schema.get("description"):
        lines += [schema["description"], ""]
    properties = schema.get("properties", {})
    if properties:
        required = set(schema.get("required", []))
        lines += ["| field | type | meaning |", "|---|---|---|"]
        for field, spec in properties.items():
            mark = "" if field in required else " (optional)"
            lines.append(
                f"| `{field}`{mark} | {_cell(_schema_text(spec))}"
                f" | {_cell(spec.get('description', ''))} |"
            )
    else:
        lines.append(_schema_text(schema))
    return [*lines, ""]


def render(document: dict[str, Any]) -> str:
    """The Markdown of the API reference: every operation, then every schema."""
    lines = [f"Version {document['info']['version']} of *{document['info']['title']}*.", ""]
    for path, item in document["paths"].items():
        for method in METHODS:
            if method in item:
                lines += _operation(path, method, item[method])
    lines += ["## Schemas", ""]
    for name, schema in document.get("components", {}).get("schemas", {}).items():
        lines += _schema_section(name, schema)
    return "\n".join(lines)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Fill the HTTP API page from the OpenAPI document."""
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, render(openapi.document()))


def on_files(files: Files, config: Any) -> Files:
    """Publish the OpenAPI document itself beside its page, as ``reference/openapi.json``."""
    content = json.dumps(openapi.document(), indent=2) + "\n"
    files.append(File.generated(config, "reference/openapi.json", content=content))
    return files
