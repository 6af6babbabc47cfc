"""send-email: render a Jinja2 template (HTML and text) and send it over SMTP.

The email's ``Message-ID`` is derived from the job's idempotency key, so every attempt of
one dispatch sends the same Message-ID and receivers can drop duplicates.  A permanent
refusal (a 5xx answer to the sender, a recipient or the message) fails the job at once;
anything else (a connection refused, a timeout, a temporary 4xx) is retried.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate

import aiosmtplib
import jinja2
import structlog

from jobstore import BaseJob, NonRetryableJobError, Settings, payloads
from workers.handlers import error

SendEmailHandler = Callable[[payloads.SendEmailPayload, BaseJob], Awaitable[dict[str, str]]]

TEMPLATE_NAMES: tuple[str, ...] = tuple(payloads.EMAIL_TEMPLATE_DATA)
SMTP_TIMEOUT_SECONDS = 30.0
_WHITESPACE = re.compile(r"\s+")
log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class RenderedEmail:
    """One email's subject, plain-text body and HTML body."""

    subject: str
    text: str
    html: str


@dataclass(frozen=True)
class _TemplateSet:
    subject: jinja2.Template
    text: jinja2.Template
    html: jinja2.Template


@functools.cache
def _templates() -> dict[str, _TemplateSet]:
    """Load and compile every template once (file reads happen here, not per email)."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("workers.handlers", "templates"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    return {
        name: _TemplateSet(
            subject=env.get_template(f"{name}.subject.txt"),
            text=env.get_template(f"{name}.txt"),
            html=env.get_template(f"{name}.html"),
        )
        for name in TEMPLATE_NAMES
    }


def render_email(payload: payloads.SendEmailPayload) -> RenderedEmail:
    """Render the payload's template with its data (HTML autoescaped, subject on one line)."""
    templates = _templates()[payload.template]
    data = {key: str(value) for key, value in payload.template_data()}
    subject = _WHITESPACE.sub(" ", templates.subject.render(data)).strip()
    return RenderedEmail(subject, templates.text.render(data), templates.html.render(data))


def message_id_for(idempotency_key: str) -> str:
    """The Message-ID of a job's email: the same for every attempt of one dispatch."""
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]
    return f"<{digest}@jobtrail>"


def build_message(
    settings: Settings, payload: payloads.SendEmailPayload, job: BaseJob
) -> EmailMessage:
    """The multipart/alternative email (text, then HTML) for one attempt of ``job``."""
    rendered = render_email(payload)
    message = EmailMessage()
    message["Subject"] = rendered.subject
    message["From"] = settings.email_from
    message["To"] = payload.to
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = message_id_for(job.idempotency_key)
    message["X-Jobtrail-Job-Id"] = job.job_id
    message.set_content(rendered.text)
    message.add_alternative(rendered.html, subtype="html")
    return message


async def send_message(settings: Settings, message: EmailMessage) -> None:
    """Send ``message`` with the SMTP server, TLS mode and credentials of ``settings``."""
    password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
    try:
        await aiosmtplib.send(
            message,
            hostname=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_username,
            password=password,
            use_tls=settings.smtp_tls == "tls",
            start_tls=settings.smtp_tls == "starttls",
            timeout=SMTP_TIMEOUT_SECONDS,
        )
    except aiosmtplib.SMTPException as exc:
        raise _translate(settings, exc) from exc
    except OSError as exc:
        raise error.EmailDeliveryError(_server_problem(settings, exc)) from exc


def _translate(settings: Settings, exc: aiosmtplib.SMTPException) -> Exception:
    """Turn an aiosmtplib error into a retryable or a non-retryable job error."""
    codes: list[int] = []
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [refused.code for refused in exc.recipients]
    elif isinstance(exc, aiosmtplib.SMTPSenderRefused | aiosmtplib.SMTPDataError):
        codes = [exc.code]
    if codes and all(code >= 500 for code in codes):
        return NonRetryableJobError(
            f"the SMTP server {settings.smtp_host}:{settings.smtp_port} permanently "
            f"refused the email ({exc}); a retry would be refused too"
        )
    return error.EmailDeliveryError(_server_problem(settings, exc))


def _server_problem(settings: Settings, exc: BaseException) -> str:
    return (
        f"could not send through the SMTP server {settings.smtp_host}:{settings.smtp_port} "
        f"(TLS mode {settings.smtp_tls!r}): {type(exc).__name__}: {exc}"
    )


def send_email_handler(settings: Settings) -> SendEmailHandler:
    """The send-email handler: render the template, send it, return its Message-ID."""
    _templates()  # load the templates now, at start-up, not on the event loop per email

    async def send_email(payload: payloads.SendEmailPayload, job: BaseJob) -> dict[str, str]:
        message = build_message(settings, payload, job)
        await send_message(settings, message)
        message_id = str(message["Message-ID"])
        log.info("email sent", template=payload.template, email_message_id=message_id)
        return {"message_id": message_id}

    return send_email
