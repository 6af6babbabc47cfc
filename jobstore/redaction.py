"""Redaction of secrets: the one rule the logs, the API and the CLI all apply.

The logs also never carry personal data in plaintext (:func:`structlog_processor`): the
values of fields any job type declares personal (``jobstore.protect.Personal``) and email
addresses inside any text are masked as ``[personal]``.

A value is masked when its key looks secret (key names are normalised first, so
``X-API-Key``, ``api_key`` and ``apiKey`` are one name), and inside any text: the values
of secret-looking ``key=value`` pairs (``?token=…`` in a URL, ``password=…`` in an error),
a URL's password, a ``Bearer`` credential, and card-like numbers (13–19 digits passing the
Luhn check).  Subtrees nested past ``MAX_DEPTH`` are replaced by a marker, never passed on.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, MutableMapping
from typing import Any, Final

import orjson

from jobstore import protect

REDACTED: Final = "[redacted]"
PERSONAL: Final = protect.PERSONAL
_EMAIL: Final = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}")
TOO_DEEP: Final = "[redacted: nested too deep]"
MAX_DEPTH: Final = 20

# Matched anywhere in the key with separators removed ("x-api-key" -> "xapikey").
_SECRET_WORDS: Final = re.compile(
    r"pass(word|wd|phrase)|secret|token|authori[sz]ation|apikey|privatekey|signingkey|"
    r"accesskey|secretkey|signature|cookie|credential|bearer|reseturl|resetlink|cardnumber|"
    r"creditcard|iban"
)
# Matched as whole words of the key ("session_id" yes, "possession" no).
_SECRET_PARTS: Final = frozenset(
    {"pass", "pwd", "pin", "auth", "session", "sessionid", "ssn", "cvv", "cvc", "otp", "jwt"}
)
_CAMEL: Final = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_SEPARATORS: Final = re.compile(r"[^a-z0-9]+")
_PAIR: Final = re.compile(r"(?P<key>[A-Za-z][A-Za-z0-9_.\-\[\]]{0,63})=(?P<value>[^&\s#;,\"'<>]+)")
_URL_PASSWORD: Final = re.compile(r"(?P<head>[a-z][a-z0-9+.\-]*://[^:/@\s]*:)[^@/\s]+(?=@)", re.I)
_BEARER: Final = re.compile(r"\b(?P<scheme>Bearer|Basic)\s+[A-Za-z0-9._~+/=\-]{8,}", re.I)
# A run of 13-19 digits, optionally grouped by spaces or dashes, that stands alone: no
# letter, digit or dash glued to either end (so the digits of a UUID or a hex id never
# count, whatever their Luhn sum).
_CARD: Final = re.compile(r"(?<![\w-])(?<![\d-][ -])\d(?:[ -]?\d){12,18}(?![ -]?\d)(?!\w)")


def _words(key: str) -> list[str]:
    return [w for w in _SEPARATORS.split(_CAMEL.sub("_", key).lower()) if w]


def is_secret_key(key: str) -> bool:
    """Whether a field named ``key`` looks like it holds a secret (any spelling)."""
    words = _words(key)
    return bool(_SECRET_WORDS.search("".join(words))) or any(w in _SECRET_PARTS for w in words)


def _luhn(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _card(match: re.Match[str]) -> str:
    digits = re.sub(r"[ -]", "", match.group(0))
    return REDACTED if _luhn(digits) else match.group(0)


def _pair(match: re.Match[str]) -> str:
    if is_secret_key(match.group("key")):
        return f"{match.group('key')}={REDACTED}"
    return match.group(0)


def redact_text(text: str) -> str:
    """``text`` with secrets inside it masked (query values, URL passwords, cards…)."""
    if "=" in text:
        text = _PAIR.sub(_pair, text)
    if "://" in text:
        text = _URL_PASSWORD.sub(lambda m: m.group("head") + REDACTED, text)
    if " " in text:
        text = _BEARER.sub(lambda m: f"{m.group('scheme')} {REDACTED}", text)
    if sum(c.isdigit() for c in text) >= 13:
        text = _CARD.sub(_card, text)
    return text


def redact(value: Any, depth: int = 0) -> Any:
    """A copy of ``value`` with secrets masked, at any depth (past ``MAX_DEPTH``: a marker)."""
    if depth > MAX_DEPTH:
        return TOO_DEEP
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {
            k: REDACTED if isinstance(k, str) and is_secret_key(k) else redact(v, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(v, depth + 1) for v in value]
    return value


def redact_personal(value: Any, depth: int = 0) -> Any:
    """A copy of ``value`` with declared personal fields and email addresses masked."""
    if depth > MAX_DEPTH:
        return TOO_DEEP
    if isinstance(value, str):
        return _EMAIL.sub(PERSONAL, value) if "@" in value else value
    if isinstance(value, Mapping):
        names = protect.declared_names()
        return {
            k: PERSONAL if k in names else redact_personal(v, depth + 1) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact_personal(v, depth + 1) for v in value]
    return value


def structlog_processor(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A structlog processor masking secrets and personal data in every log line."""
    redacted: MutableMapping[str, Any] = redact(redact_personal(event_dict))
    return redacted


def shape(value: Any, name: str = "payload") -> dict[str, Any]:
    """What a log line may say about ``value``: its top-level keys and its size, no values."""
    keys = sorted(str(k) for k in value) if isinstance(value, Mapping) else []
    try:
        size = len(orjson.dumps(value))
    except (TypeError, orjson.JSONEncodeError):
        size = -1
    return {f"{name}_keys": [redact_text(k) for k in keys[:50]], f"{name}_bytes": size}
