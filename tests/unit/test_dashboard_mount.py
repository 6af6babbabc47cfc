"""The dashboard mounted at ``/`` answers only the paths it has a route for."""

from __future__ import annotations

from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from workers.dashboard.app import _KnownPath


async def _ok(request: web.Request) -> web.Response:
    return web.Response()


def _dashboard(*paths: str) -> web.Application:
    app = web.Application()
    for path in paths:
        app.router.add_get(path, _ok)
    return app


async def test_paths_the_dashboard_has_match_and_others_go_to_the_host() -> None:
    rule = _KnownPath(_dashboard("/", "/jobs", "/jobs/{id}"))
    assert await rule.match(make_mocked_request("GET", "/"))
    assert await rule.match(make_mocked_request("GET", "/jobs/42"))
    assert not await rule.match(make_mocked_request("GET", "/jobs/42/nope"))  # same first segment
    assert not await rule.match(make_mocked_request("POST", "/jobs"))  # method not routed
    assert not await rule.match(make_mocked_request("POST", "/api/jobs/send-email"))


async def test_a_variable_first_segment_resolves_every_path() -> None:
    rule = _KnownPath(_dashboard("/{page}"))
    assert await rule.match(make_mocked_request("GET", "/anything"))
    assert not await rule.match(make_mocked_request("GET", "/anything/deeper"))
