"""The demo's workload: a realistic mix of jobs across the six built-in types."""

from __future__ import annotations

import hashlib
import hmac
import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from jobstore import JobConfig, JobRegistry, JobRequest, default_registry
from workers.demo.services import BOUNCE_PREFIX

STRIPE_SECRET = "whsec_jobtrail_demo"

# Demo-sized configurations: short timeouts and few retries, so the story fits in a minute.
_DEMO_CONFIG = {
    "send-email": {"retries": 2, "timeout": 10.0},
    "process-webhook": {"retries": 2, "timeout": 2.0},
    "process-stripe-webhook": {"retries": 2, "timeout": 10.0},
    "export-data": {"retries": 1, "timeout": 30.0},
    "generate-report": {"retries": 1, "timeout": 30.0},
    "cleanup-old-data": {"retries": 1, "timeout": 30.0},
}


def demo_registry() -> JobRegistry:
    """The six built-in job types with demo-sized retries and timeouts."""
    registry = default_registry()
    for job_type, overrides in _DEMO_CONFIG.items():
        spec = registry.get(job_type)
        config = JobConfig.model_validate({**spec.config.model_dump(), **overrides})
        registry.register(config, spec.payload_model, replace=True)
    return registry


def job_mix(webhook_base: str, seed: int = 7) -> list[JobRequest]:
    """About three hundred jobs: mostly fine, some failing once, some for good, one slow."""
    rng = random.Random(seed)
    jobs = _emails(rng) + _webhooks(webhook_base) + _stripe_events(rng) + _reports()
    rng.shuffle(jobs)
    return jobs


def _emails(rng: random.Random) -> list[JobRequest]:
    jobs = []
    for i in range(120):
        user = rng.randint(1, 5)
        to = f"{BOUNCE_PREFIX}{i}@example.com" if i % 40 == 0 else f"user{i}@example.com"
        template, data = [
            ("welcome", {"recipient_name": f"User {i}"}),
            (
                "password-reset",
                {"recipient_name": f"User {i}", "reset_url": f"https://app.example.com/reset/{i}"},
            ),
            (
                "team-invitation",
                {
                    "recipient_name": f"User {i}",
                    "inviter_name": "Ada",
                    "organization_name": "Acme",
                    "invitation_url": f"https://app.example.com/join/{i}",
                },
            ),
        ][i % 3]
        jobs.append(
            JobRequest(
                "send-email",
                {"template": template, "to": to, "data": data},
                {"user_id": user, "organization_id": 42},
            )
        )
    return jobs


def _webhooks(base: str) -> list[JobRequest]:
    kinds = ["ok"] * 60 + ["flaky"] * 25 + ["broken"] * 14 + ["slow"]
    return [
        JobRequest(
            "process-webhook",
            {
                "url": f"{base}/hooks/{kind}",
                "event": "order.paid",
                "body": {"order": i, "amount": 1000 + i},
            },
            {"user_id": 1 + i % 5, "organization_id": 42},
        )
        for i, kind in enumerate(kinds)
    ]


def _stripe_events(rng: random.Random) -> list[JobRequest]:
    jobs = []
    for i in range(60):
        event = {
            "id": f"evt_{i:04d}",
            "object": "event",
            "type": rng.choice(["invoice.paid", "customer.created"]),
            "data": {"object": {"id": f"in_{i:04d}"}},
        }
        payload = orjson.dumps(event).decode()
        secret = STRIPE_SECRET if i % 20 else "whsec_wrong"  # a few forged deliveries
        jobs.append(
            JobRequest(
                "process-stripe-webhook",
                {"payload": payload, "signature": _stripe_signature(payload, secret)},
                {"organization_id": 42},
            )
        )
    return jobs


def _stripe_signature(payload: str, secret: str) -> str:
    timestamp = int(time.time())
    mac = hmac.new(secret.encode(), f"{timestamp}.{payload}".encode(), hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def _reports() -> list[JobRequest]:
    now = datetime.now(UTC)
    period = {
        "period_start": (now - timedelta(hours=1)).isoformat(),
        "period_end": (now + timedelta(hours=1)).isoformat(),
        "organization_id": 42,
    }
    jobs: list[JobRequest] = [JobRequest("export-data", {"user_id": u}) for u in range(1, 11)]
    jobs += [JobRequest("generate-report", period) for _ in range(6)]
    jobs += [JobRequest("cleanup-old-data", {"retention": 30}) for _ in range(4)]
    return jobs


def schedule_spec() -> tuple[str, str, dict[str, Any]]:
    """The demo's one schedule: nightly cleanup."""
    return "cleanup-old-data", "0 3 * * *", {"retention": 30}
