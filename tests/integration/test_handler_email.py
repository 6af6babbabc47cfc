"""send-email against a real SMTP server (aiosmtpd on 127.0.0.1)."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
import structlog
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from pydantic import SecretStr

from jobstore import BaseJob, BaseJobMetadata, NonRetryableJobError, Settings, payloads
from workers import handlers

RESET_URL = "https://app.example.com/reset?token=s3cr3t-t0ken"
TEMPLATES: dict[str, dict[str, Any]] = {
    "welcome": {"recipient_name": "Ada <script>alert(1)</script>"},
    "password-reset": {"recipient_name": "Ada <script>alert(1)</script>", "reset_url": RESET_URL},
    "team-invitation": {
        "recipient_name": "Ada <script>alert(1)</script>",
        "inviter_name": "Grace & Co",
        "organization_name": "Analytical Engines",
        "invitation_url": "https://app.example.com/invite/abc",
    },
}
SUBJECTS = {
    "welcome": "Welcome, Ada <script>alert(1)</script>!",
    "password-reset": "Reset your password",
    "team-invitation": "Grace & Co invited you to join Analytical Engines",
}
SENDER = "Jobtrail <noreply@jobtrail.test>"


@dataclass
class Mailbox:
    """An aiosmtpd handler that keeps what it receives (and can refuse on cue)."""

    messages: list[EmailMessage] = field(default_factory=list)
    logins: list[tuple[bytes, bytes]] = field(default_factory=list)
    rcpt_reply: str | None = None
    data_reply: str | None = None

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if self.rcpt_reply:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.data_reply:
            return self.data_reply
        parsed = message_from_bytes(envelope.original_content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        return "250 Message accepted"

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        self.logins.append((auth_data.login, auth_data.password))
        return AuthResult(success=auth_data.password == b"right-password", handled=False)


@dataclass
class SmtpServer:
    mailbox: Mailbox
    port: int

    def settings(self, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "smtp_host": "127.0.0.1",
            "smtp_port": self.port,
            "smtp_tls": "none",
            "email_from": SENDER,
        }
        return Settings(**(values | overrides))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    """A real SMTP server in aiosmtpd's thread, stopped when the test ends."""
    mailbox = Mailbox()
    port = free_port()
    controller = Controller(
        mailbox,
        hostname="127.0.0.1",
        port=port,
        authenticator=mailbox.authenticate,
        auth_require_tls=False,
    )
    controller.start()
    try:
        yield SmtpServer(mailbox, port)
    finally:
        controller.stop()


def make_job(payload: payloads.SendEmailPayload, *, dispatch: int = 1, attempt: int = 1) -> BaseJob:
    return BaseJob(
        job_id=str(uuid.UUID(int=42)),
        type="send-email",
        payload=payload.model_dump(mode="json"),
        metadata=BaseJobMetadata(),
        dispatch=dispatch,
        attempt=attempt,
    )


def email_payload(template: str = "welcome") -> payloads.SendEmailPayload:
    return payloads.SendEmailPayload.model_validate(
        {"template": template, "to": "ada@example.com", "data": TEMPLATES[template]}
    )


@pytest.mark.parametrize("template", sorted(TEMPLATES))
async def test_each_template_arrives_with_text_and_escaped_html(
    smtp: SmtpServer, template: str
) -> None:
    send = handlers.send_email_handler(smtp.settings())
    payload = email_payload(template)

    result = await send(payload, make_job(payload))

    [message] = smtp.mailbox.messages
    assert message["Subject"] == SUBJECTS[template]
    assert message["To"] == "ada@example.com"
    assert message["From"] == SENDER
    assert message.get_content_type() == "multipart/alternative"
    assert message["Message-ID"] == result["message_id"]
    text_part, html_part = message.get_body(("plain",)), message.get_body(("html",))
    assert text_part is not None
    assert html_part is not None
    text, html = text_part.get_content(), html_part.get_content()
    assert "Hi Ada <script>alert(1)</script>" in text
    assert "Ada &lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>" not in html
    for value in TEMPLATES[template].values():
        if value.startswith("https://"):
            assert value in text
            assert value.replace("&", "&amp;") in html


async def test_retried_attempt_resends_the_same_message_id(smtp: SmtpServer) -> None:
    send = handlers.send_email_handler(smtp.settings())
    payload = email_payload()

    first = await send(payload, make_job(payload, dispatch=1, attempt=1))
    retry = await send(payload, make_job(payload, dispatch=1, attempt=2))
    replay = await send(payload, make_job(payload, dispatch=2, attempt=1))

    ids = [message["Message-ID"] for message in smtp.mailbox.messages]
    assert ids == [first["message_id"], retry["message_id"], replay["message_id"]]
    assert ids[0] == ids[1]
    assert ids[2] != ids[0]
    assert ids[0].startswith("<")
    assert ids[0].endswith("@jobtrail>")
    assert all(m["X-Jobtrail-Job-Id"] == str(uuid.UUID(int=42)) for m in smtp.mailbox.messages)


async def test_refused_connection_is_a_retryable_error() -> None:
    settings = Settings(smtp_host="127.0.0.1", smtp_port=free_port(), smtp_tls="none")
    send = handlers.send_email_handler(settings)
    payload = email_payload()

    with pytest.raises(handlers.EmailDeliveryError, match=r"127\.0\.0\.1") as caught:
        await send(payload, make_job(payload))
    assert not isinstance(caught.value, NonRetryableJobError)


@pytest.mark.parametrize(
    ("stage", "reply"),
    [("rcpt_reply", "550 5.1.1 No such user"), ("data_reply", "554 5.7.1 Message rejected")],
)
async def test_permanent_smtp_refusal_fails_without_retry(
    smtp: SmtpServer, stage: str, reply: str
) -> None:
    setattr(smtp.mailbox, stage, reply)
    send = handlers.send_email_handler(smtp.settings())
    payload = email_payload()

    with pytest.raises(NonRetryableJobError, match="permanently refused"):
        await send(payload, make_job(payload))
    assert smtp.mailbox.messages == []


async def test_temporary_smtp_refusal_is_retryable(smtp: SmtpServer) -> None:
    smtp.mailbox.rcpt_reply = "451 4.3.0 Try again later"
    send = handlers.send_email_handler(smtp.settings())
    payload = email_payload()

    with pytest.raises(handlers.EmailDeliveryError) as caught:
        await send(payload, make_job(payload))
    assert not isinstance(caught.value, NonRetryableJobError)


async def test_credentials_from_settings_are_used_to_log_in(smtp: SmtpServer) -> None:
    settings = smtp.settings(smtp_username="mailer", smtp_password=SecretStr("right-password"))
    send = handlers.send_email_handler(settings)
    payload = email_payload()

    await send(payload, make_job(payload))

    assert smtp.mailbox.logins == [(b"mailer", b"right-password")]
    assert len(smtp.mailbox.messages) == 1


async def test_wrong_smtp_password_sends_nothing(smtp: SmtpServer) -> None:
    settings = smtp.settings(smtp_username="mailer", smtp_password=SecretStr("wrong"))
    send = handlers.send_email_handler(settings)
    payload = email_payload()

    with pytest.raises(handlers.EmailDeliveryError, match="SMTPAuthenticationError"):
        await send(payload, make_job(payload))
    assert smtp.mailbox.messages == []


async def test_logs_never_contain_the_body_or_the_reset_url(smtp: SmtpServer) -> None:
    send = handlers.send_email_handler(smtp.settings())
    payload = email_payload("password-reset")

    with structlog.testing.capture_logs() as logs:
        await send(payload, make_job(payload))

    assert logs, "the handler logs that it sent the email"
    assert "s3cr3t-t0ken" not in repr(logs)
    assert "Ada" not in repr(logs)
