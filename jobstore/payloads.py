"""Payload models of the six built-in job types (the seed's job types)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from jobstore import errors
from jobstore.address import TargetUrl
from jobstore.protect import Personal


class Payload(BaseModel):
    """Base of every payload model: unknown fields are errors, not silently dropped."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class WelcomeEmailData(Payload):
    """Template data of the welcome email."""

    recipient_name: str = Field(min_length=1, max_length=200)


class PasswordResetEmailData(Payload):
    """Template data of the password-reset email."""

    recipient_name: str = Field(min_length=1, max_length=200)
    reset_url: AnyHttpUrl


class TeamInvitationEmailData(Payload):
    """Template data of the team-invitation email."""

    recipient_name: str = Field(min_length=1, max_length=200)
    inviter_name: str = Field(min_length=1, max_length=200)
    organization_name: str = Field(min_length=1, max_length=200)
    invitation_url: AnyHttpUrl


EmailTemplate = Literal["welcome", "password-reset", "team-invitation"]
EMAIL_TEMPLATE_DATA: dict[str, type[Payload]] = {
    "welcome": WelcomeEmailData,
    "password-reset": PasswordResetEmailData,
    "team-invitation": TeamInvitationEmailData,
}


class SendEmailPayload(Payload):
    """send-email: render ``template`` with ``data`` and send it to ``to``."""

    template: EmailTemplate
    to: Annotated[EmailStr, Personal]
    data: Annotated[dict[str, Any], Personal] = Field(default_factory=dict)
    """The template's data (names, reset and invitation URLs): personal, sealed as a whole."""

    @field_validator("data")
    @classmethod
    def _data_fits_template(cls, data: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        template = info.data.get("template")
        if template is None:  # the template itself is invalid; that error is reported
            return data
        try:
            EMAIL_TEMPLATE_DATA[template].model_validate(data)
        except ValidationError as exc:
            problems = errors.describe_validation_errors(exc)
            raise ValueError(f"for the {template!r} template, {'; '.join(problems)}") from None
        return data

    def template_data(self) -> Payload:
        """The typed data of this email's template."""
        return EMAIL_TEMPLATE_DATA[self.template].model_validate(self.data)


class ProcessWebhookPayload(Payload):
    """process-webhook: POST ``body`` as JSON to ``url``, signed with HMAC-SHA256."""

    url: TargetUrl
    event: str = Field(min_length=1, max_length=200)
    body: Annotated[dict[str, Any], Personal] = Field(default_factory=dict)
    headers: dict[str, str] = Field(default_factory=dict)


class ProcessStripeWebhookPayload(Payload):
    """process-stripe-webhook: verify ``signature`` over the raw ``payload`` and route it."""

    payload: Annotated[str, Personal] = Field(min_length=2, max_length=512 * 1024)
    signature: str = Field(min_length=1, max_length=2000)


class ExportDataPayload(Payload):
    """export-data: write a user's or an organization's job history as JSON Lines."""

    user_id: int | None = Field(default=None, ge=1)
    organization_id: int | None = Field(default=None, ge=1)
    since: datetime | None = None

    @model_validator(mode="after")
    def _one_owner(self) -> Self:
        if (self.user_id is None) == (self.organization_id is None):
            raise ValueError("give exactly one of user_id or organization_id")
        return self


class GenerateReportPayload(Payload):
    """generate-report: job statistics for a period, as JSON and CSV."""

    period_start: datetime
    period_end: datetime
    organization_id: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.period_end <= self.period_start:
            raise ValueError("period_end must be after period_start")
        return self


class CleanupOldDataPayload(Payload):
    """cleanup-old-data: archive finished jobs older than ``retention`` days."""

    retention: int = Field(ge=1, le=36500, description="days to keep finished jobs")
