"""Safe by default: a configuration that would trust public development secrets refuses.

QStash's dev signing keys and token are published; so is the default webhook signing
secret.  They are safe only while nothing outside this machine can reach the host or the
QStash it trusts: QStash, the address the host listens on and the URL QStash calls all on
loopback.  Any other configuration must bring its own secrets, or the host does not start.
"""

from __future__ import annotations

import ipaddress

import yarl

from jobstore import Settings
from jobstore.settings import (
    DEV_AUDIT_KEY,
    DEV_CURRENT_SIGNING_KEY,
    DEV_DATA_KEY,
    DEV_NEXT_SIGNING_KEY,
    DEV_QSTASH_TOKEN,
    DEV_WEBHOOK_SECRET,
)

DEV_SIGNING_KEYS = frozenset({DEV_CURRENT_SIGNING_KEY, DEV_NEXT_SIGNING_KEY})


class UnsafeConfigurationError(Exception):
    """The host would trust published development secrets where others can reach it."""


def is_loopback(host: str | None) -> bool:
    """Whether ``host`` (a name or an address, maybe in brackets) is this machine only."""
    if not host:
        return False
    name = host.strip("[]").rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def url_is_loopback(url: str | None) -> bool:
    """Whether ``url`` points at this machine only."""
    if not url:
        return False
    try:
        return is_loopback(yarl.URL(url).host)
    except ValueError:
        return False


def unsafe_configuration(settings: Settings, *, listen_host: str, webhooks: bool) -> str | None:
    """One line naming what to set when ``settings`` would trust public secrets; else None.

    ``listen_host`` is the address the host listens on; ``webhooks`` says whether the
    process-webhook job type (which signs with the webhook secret) is enabled.
    """
    no_qstash = settings.qstash_url is None and settings.qstash_token is None
    if (
        (no_qstash or url_is_loopback(settings.qstash_url))
        and is_loopback(listen_host)
        and url_is_loopback(settings.public_url)
    ):
        return None
    where = (
        f"QStash at {_shown(settings.qstash_url)}, listening on {listen_host}, "
        f"public URL {_shown(settings.public_url)}"
    )
    keys = {
        settings.qstash_current_signing_key.get_secret_value(),
        settings.qstash_next_signing_key.get_secret_value(),
    }
    if keys & DEV_SIGNING_KEYS or "" in keys:
        return (
            f"refusing to start: QStash's public dev signing keys would accept forged "
            f"deliveries ({where}); set QSTASH_CURRENT_SIGNING_KEY and "
            "QSTASH_NEXT_SIGNING_KEY to your QStash signing keys"
        )
    token = settings.qstash_token.get_secret_value() if settings.qstash_token else ""
    if token in ("", DEV_QSTASH_TOKEN):
        return (
            f"refusing to start: no QStash token of your own ({where}); set QSTASH_TOKEN "
            "(and QSTASH_URL unless it is Upstash's)"
        )
    if webhooks and settings.webhook_signing_secret.get_secret_value() == DEV_WEBHOOK_SECRET:
        return (
            "refusing to start: process-webhook would sign with the public default secret "
            f"({where}); set JOBTRAIL_WEBHOOK_SECRET to a long random secret"
        )
    if settings.data_key.get_secret_value() == DEV_DATA_KEY:
        return (
            "refusing to start: personal data would be sealed with the public default key "
            f"({where}); set JOBTRAIL_DATA_KEY to 32 random bytes in base64 and back it up "
            "with the database"
        )
    if any(k.get_secret_value() == DEV_DATA_KEY for k in settings.data_previous_keys):
        return (
            "refusing to start: JOBTRAIL_DATA_PREVIOUS_KEYS lists the public default data "
            f"key ({where}), so data keys it wrapped open for anyone who reads the database; "
            "run `jobtrail keys rewrap` once to wrap them with JOBTRAIL_DATA_KEY, then remove it"
        )
    if settings.audit_key.get_secret_value() == DEV_AUDIT_KEY:
        return (
            "refusing to start: the log's audit anchors would be signed with the public "
            f"default key ({where}); set JOBTRAIL_AUDIT_KEY to a long random secret kept "
            "outside the database"
        )
    if any(k.get_secret_value() == DEV_AUDIT_KEY for k in settings.audit_previous_keys):
        return (
            "refusing to start: JOBTRAIL_AUDIT_PREVIOUS_KEYS lists the public default audit "
            f"key ({where}), so anchors signed with it would verify; run `jobtrail audit "
            "anchor` once (on loopback) to hand the chain over to JOBTRAIL_AUDIT_KEY, then "
            "remove it"
        )
    return None


def _shown(url: str | None) -> str:
    """``url`` without credentials, query or fragment (it may carry a token)."""
    if not url:
        return "Upstash (QSTASH_URL unset)"
    try:
        return str(yarl.URL(url).with_user(None).with_query(None).with_fragment(None))
    except ValueError:
        return "an unreadable QSTASH_URL"
