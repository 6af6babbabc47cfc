"""Replay with a corrected payload or options: validated, recorded, the original kept."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

import jobstore
from jobstore import job_events
from tests.cli_support import jobtrail, one_line_error
from tests.host_support import Host, running_host

TOKEN = "ops-token-0123456789abcdef"


@pytest.fixture
async def host(db_dsn: str) -> AsyncIterator[Host]:
    async with running_host(db_dsn, api_token=TOKEN) as running:
        yield running


async def _failed(host: Host) -> str:
    job_id = await host.dispatcher.enqueue(
        "test-job", {"fail_times": 9, "tag": "typo"}, None, {"retries": 0}
    )
    await host.wait_status(job_id, "failed")
    return job_id


async def _dispatches(host: Host, job_id: str) -> list[job_events.JobDispatched]:
    return [e for e in await host.events(job_id) if isinstance(e, job_events.JobDispatched)]


async def _api(host: Host, method: str, path: str, body: Any) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, host.url + "/api/v1" + path, json=body, headers=headers) as r,
    ):
        return r.status, await r.json()


async def test_a_replay_with_a_corrected_payload_runs_it_and_keeps_the_original(
    host: Host,
) -> None:
    job_id = await _failed(host)

    await host.dispatcher.replay_job(
        job_id,
        "the tag had a typo",
        payload={"tag": "fixed"},
        options={"retries": 2},
        actor="cli:ada",
    )
    await host.wait_status(job_id, "completed")

    first, second = await _dispatches(host, job_id)
    assert first.payload["tag"] == "typo"  # the history keeps the original
    assert (second.payload["tag"], second.payload["fail_times"]) == ("fixed", 0)
    assert (second.source, second.reason) == ("replay", "the tag had a typo")
    assert (first.options.retries, second.options.retries) == (0, 2)
    assert second.options.endpoint == first.options.endpoint  # what was not given stays
    assert host.handler.calls[-1].payload.tag == "fixed"
    history = await host.ctx.store.read_stream(f"job-{job_id}")
    replayed = next(r for r in history if r.event == second)
    assert replayed.metadata["actor"] == "cli:ada"


async def test_an_invalid_corrected_payload_is_refused_and_changes_nothing(host: Host) -> None:
    job_id = await _failed(host)
    before = await host.types(job_id)

    with pytest.raises(jobstore.JobValidationError) as refused:
        await host.dispatcher.replay_job(job_id, "oops", payload={"fail_times": "many"})

    assert any("fail_times" in line for line in refused.value.validation_errors)
    assert await host.types(job_id) == before


async def test_the_api_replays_with_a_corrected_payload_and_names_bad_fields(host: Host) -> None:
    job_id = await _failed(host)

    bad, answer = await _api(host, "POST", f"/jobs/{job_id}/replay", {"payload": {"sleep": "x"}})
    assert bad == 400
    assert "sleep" in str(answer)
    wrong, answer = await _api(host, "POST", f"/jobs/{job_id}/replay", {"payload": [1]})
    assert (wrong, answer["parameter"]) == (400, "payload")
    ok, _ = await _api(
        host, "POST", f"/jobs/{job_id}/replay", {"payload": {"tag": "api"}, "reason": "fixed"}
    )
    assert ok == 200
    await host.wait_status(job_id, "completed")
    assert (await _dispatches(host, job_id))[-1].payload["tag"] == "api"


async def test_the_cli_replays_one_job_with_a_corrected_payload(
    host: Host, db_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBTRAIL_APP", "tests.serve_app:with_test_job")  # knows test-job
    job_id = await _failed(host)

    bulk = await jobtrail(db_dsn, "jobs", "replay", "--status", "failed", "--payload", "{}")
    one_line_error(bulk, 2, "--payload and --options replay one job")
    not_json = await jobtrail(db_dsn, "jobs", "replay", job_id, "--payload", "{nope")
    one_line_error(not_json, 2, "--payload is not valid JSON")
    done = await jobtrail(
        db_dsn, "jobs", "replay", job_id, "--payload", '{"tag": "cli"}', "--reason", "typo"
    )

    assert done.code == 0, done
    await host.wait_status(job_id, "completed")
    assert (await _dispatches(host, job_id))[-1].payload["tag"] == "cli"
