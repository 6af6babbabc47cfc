"""URL groups (``/v2/topics``): named sets of endpoints a publish fans out to (protocol §7)."""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(slots=True, frozen=True)
class Endpoint:
    """One URL in a group, optionally named."""

    url: str
    name: str | None = None


@dataclasses.dataclass(slots=True, eq=False)
class UrlGroup:
    """A URL group and its endpoints, in the order they were added."""

    name: str
    created_ms: int
    updated_ms: int
    endpoints: list[Endpoint] = dataclasses.field(default_factory=list)

    def upsert(self, endpoints: list[Endpoint], now_ms: int) -> None:
        """Add endpoints, replacing any with the same URL."""
        for endpoint in endpoints:
            self.endpoints = [e for e in self.endpoints if e.url != endpoint.url]
            self.endpoints.append(endpoint)
        self.updated_ms = now_ms

    def remove(self, urls: set[str], names: set[str], now_ms: int) -> None:
        """Remove endpoints matching any of the URLs or names."""
        self.endpoints = [
            e
            for e in self.endpoints
            if e.url not in urls and (e.name is None or e.name not in names)
        ]
        self.updated_ms = now_ms


def url_group_json(group: UrlGroup) -> dict[str, Any]:
    """Render a URL group as ``GET /v2/topics/{name}`` returns it."""
    endpoints: list[dict[str, str]] = []
    for endpoint in group.endpoints:
        item = {"url": endpoint.url}
        if endpoint.name is not None:
            item["name"] = endpoint.name
        endpoints.append(item)
    return {
        "name": group.name,
        "createdAt": group.created_ms,
        "updatedAt": group.updated_ms,
        "endpoints": endpoints,
    }
