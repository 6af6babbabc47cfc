"""One idempotency key twice in one ``enqueue_many``: the first request wins, as it does
across calls (the later one gets the first one's job id and changes nothing)."""

from __future__ import annotations

import jobstore
from jobstore import job_events
from jobstore.dispatcher import Dispatcher, JobRequest

EMAIL = {"template": "welcome", "to": "ada@example.com", "data": {"recipient_name": "Ada"}}


def _marked(name: str, retries: int = 1) -> dict[str, object]:
    """Options that tell the requests apart in the log (the payload is sealed)."""
    return {"retries": retries, "headers": {"X-Request": name}}


async def test_the_first_request_of_a_key_in_one_batch_wins(store: jobstore.EventStore) -> None:
    dispatcher = Dispatcher(store)
    key = {"idempotency_key": "signup-7"}

    ids = await dispatcher.enqueue_many(
        [
            JobRequest("send-email", EMAIL, key, _marked("first", 1)),
            JobRequest("send-email", EMAIL),
            JobRequest("send-email", EMAIL, key, _marked("second", 5)),
        ]
    )

    assert ids[0] == ids[2] != ids[1]
    (event,) = [r.event for r in await store.read_stream(f"job-{ids[0]}")]
    assert isinstance(event, job_events.JobDispatched)
    assert event.options.headers == {"X-Request": "first"}
    assert event.options.retries == 1


async def test_a_batch_agrees_with_one_by_one_enqueues(store: jobstore.EventStore) -> None:
    dispatcher = Dispatcher(store)
    key = {"idempotency_key": "signup-8"}
    first = await dispatcher.enqueue("send-email", EMAIL, key, _marked("first"))
    again = await dispatcher.enqueue("send-email", EMAIL, key, _marked("second"))

    ids = await dispatcher.enqueue_many([JobRequest("send-email", EMAIL, key, _marked("third"))])

    assert first == again == ids[0]
    (event,) = [r.event for r in await store.read_stream(f"job-{first}")]
    assert isinstance(event, job_events.JobDispatched)
    assert event.options.headers == {"X-Request": "first"}
