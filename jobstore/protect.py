"""Personal data, sealed: the field marker, the sealed-value format, sealing and revealing.

A job type marks the payload fields that hold personal data on its model::

    class SendEmailPayload(Payload):
        to: Annotated[EmailStr, Personal]

Each job has its own data key (AES-256-GCM, :mod:`jobstore.keyring`), and so has each
recurring schedule of such a type (its runs' payload).  Sealed, a value becomes a small
self-describing JSON object, ``{"$enc": "v1", "kid": <key id: the job's id>, "ct":
<base64 of nonce + ciphertext>}``; inside a text field (an error message, a traceback) the
same object is stored as its compact JSON text.  Readers holding the key see the value;
once the key is erased they see ``[erased]``.  This module is pure: keys come in as
arguments.
"""

from __future__ import annotations

import base64
import functools
import os
import re
from collections.abc import Mapping
from typing import Any, Final, Literal

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import BaseModel

from jobstore import codec
from jobstore.event import Event
from jobstore.job_events import JobDispatched
from jobstore.schedule_events import ScheduleCreated

FORMAT: Final = "v1"
ERASED: Final = "[erased]"
"""What a reader sees in place of a sealed value whose key was erased."""
PERSONAL: Final = "[personal]"
"""What a reader not allowed to see personal data sees in place of a sealed value."""
UNREADABLE: Final = "[unreadable]"
"""What a reader sees in place of a sealed value its key does not open (tampered)."""
_NONCE_BYTES: Final = 12
_TAG_BYTES: Final = 16
_SEALED_TEXT: Final = re.compile(
    r'\{"\$enc":"v1","kid":"([0-9a-f-]{1,64})","ct":"([A-Za-z0-9+/=]+)"\}'
)

SEALED_FIELDS: Final[dict[str, tuple[tuple[str, ...], tuple[str, ...]]]] = {
    "job.attempt_failed": (("error_message", "traceback"), ()),
    "job.failed": (("reason", "error_message"), ()),
    "job.completed": ((), ("result",)),
    "job.outcome_late": (("error_message",), ("result",)),
}
"""Per event type, the text fields and the JSON value fields sealed with the job's key: the
job's error texts, tracebacks and results (the personal payload fields are declared on the
job type's model).  Only jobs that have a key are sealed: those whose type declares personal
fields (their errors may quote them: an SMTP refusal names the address)."""

Keys = Mapping[str, AESGCM | None]
"""Data keys by key id (a job id); None: the key was erased."""


class _Personal:
    """The marker of a personal payload field: ``Annotated[str, Personal]``."""

    def __repr__(self) -> str:
        return "Personal"


Personal: Final = _Personal()
"""Marks a payload field as personal data: stored and published sealed, erasable."""

_DECLARED: dict[str, frozenset[str]] = {}


def personal_fields(model: type[BaseModel]) -> frozenset[str]:
    """The names of ``model``'s fields marked ``Personal`` (top-level fields only)."""
    return _personal_fields(model)


@functools.cache
def _personal_fields(model: type[BaseModel]) -> frozenset[str]:
    return frozenset(
        name
        for name, info in model.model_fields.items()
        if any(isinstance(m, _Personal) for m in info.metadata)
    )


def declare(job_type: str, model: type[BaseModel]) -> None:
    """Record the personal fields of ``job_type`` (the registry calls this on register)."""
    fields = personal_fields(model)
    _DECLARED[job_type] = _DECLARED.get(job_type, frozenset()) | fields


def declared(job_type: str) -> frozenset[str]:
    """The personal fields declared for ``job_type`` by any registered model."""
    return _DECLARED.get(job_type, frozenset())


def declared_names() -> frozenset[str]:
    """Every field name any registered job type declares personal (the logs mask them)."""
    return frozenset().union(*_DECLARED.values())


def seal(value: Any, key: AESGCM, kid: str) -> dict[str, str]:
    """``value`` (any JSON value) encrypted with ``key``, as the sealed object."""
    nonce = os.urandom(_NONCE_BYTES)
    # The log's own rules (no NUL, no NaN) apply to the plaintext, sealed or not.
    ct = key.encrypt(nonce, codec.dumps(value, what="a personal field"), kid.encode())
    return {"$enc": FORMAT, "kid": kid, "ct": base64.b64encode(nonce + ct).decode()}


def seal_text(text: str, key: AESGCM, kid: str) -> str:
    """``text`` encrypted with ``key``, as the sealed object's JSON text."""
    return orjson.dumps(seal(text, key, kid)).decode()


def is_sealed(value: Any) -> bool:
    """Whether ``value`` is a sealed object (or the JSON text of one)."""
    if isinstance(value, dict):
        return value.get("$enc") == FORMAT and "kid" in value and "ct" in value
    return isinstance(value, str) and _SEALED_TEXT.fullmatch(value) is not None


def kids_in(value: Any, found: set[str] | None = None) -> set[str]:
    """The key ids of every sealed value inside ``value`` (objects, lists, texts)."""
    found = set() if found is None else found
    if isinstance(value, dict):
        if is_sealed(value):
            found.add(str(value["kid"]))
        else:
            for item in value.values():
                kids_in(item, found)
    elif isinstance(value, list | tuple):
        for item in value:
            kids_in(item, found)
    elif isinstance(value, str) and '{"$enc"' in value:
        found.update(m.group(1) for m in _SEALED_TEXT.finditer(value))
    return found


def reveal(value: Any, keys: Keys) -> Any:
    """A copy of ``value`` with every sealed value opened, or ``[erased]`` without its key."""
    if isinstance(value, dict):
        if is_sealed(value):
            return _open(str(value["kid"]), str(value["ct"]), keys)
        return {k: reveal(v, keys) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [reveal(v, keys) for v in value]
    if isinstance(value, str) and '{"$enc"' in value:
        return _SEALED_TEXT.sub(lambda m: _as_text(_open(m.group(1), m.group(2), keys)), value)
    return value


def mask(value: Any, keys: Keys) -> Any:
    """A copy of ``value`` with every sealed value replaced by ``[personal]`` or ``[erased]``."""
    if isinstance(value, dict):
        if is_sealed(value):
            return PERSONAL if keys.get(str(value["kid"])) is not None else ERASED
        return {k: mask(v, keys) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask(v, keys) for v in value]
    if isinstance(value, str) and '{"$enc"' in value:
        return _SEALED_TEXT.sub(
            lambda m: PERSONAL if keys.get(m.group(1)) is not None else ERASED, value
        )
    return value


def opened(payload: dict[str, Any], keys: Keys) -> dict[str, Any] | None:
    """``payload`` with its sealed fields opened; None when a key it needs was erased."""
    kids = kids_in(payload)
    if not kids:
        return payload
    if any(keys.get(kid) is None for kid in kids):
        return None
    plain: dict[str, Any] = reveal(payload, keys)
    return plain


def _open(kid: str, ct: str, keys: Keys) -> Any:
    key = keys.get(kid)
    if key is None:
        return ERASED
    try:
        raw = base64.b64decode(ct, validate=True)
        return orjson.loads(key.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], kid.encode()))
    except (InvalidTag, ValueError):
        return UNREADABLE


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def sealed_event(event: Event, key: AESGCM | None, kid: str) -> Event:
    """``event`` with its personal fields, error texts and result sealed with ``key``.

    The personal fields are those its job type declares, in a dispatch's payload or a
    schedule's (``schedule.created``).  ``key`` None (erased): those values are stored as
    ``[erased]``.  Values already sealed (a replay's copied payload) are kept as they are.
    Events with nothing to seal are returned unchanged.
    """
    changes: dict[str, Any] = {}
    if isinstance(event, JobDispatched | ScheduleCreated):
        fields = declared(event.job_type) & event.payload.keys()
        if fields:
            payload = dict(event.payload)
            for name in fields:
                payload[name] = _sealed(payload[name], key, kid)
            changes["payload"] = payload
    else:
        texts, values = SEALED_FIELDS.get(event.type_name, ((), ()))
        for name in texts:
            changes[name] = _sealed_text(getattr(event, name), key, kid)
        for name in values:
            changes[name] = _sealed(getattr(event, name), key, kid)
    return event.model_copy(update=changes) if changes else event


KeyUse = Literal["make", "read"]


def stand_in(event: JobDispatched) -> JobDispatched:
    """``event`` with each personal field replaced by a stand-in of its sealed form's exact
    size: what a size check before sealing (the store seals on append) must measure."""
    fields = declared(event.job_type) & event.payload.keys()
    if not fields:
        return event
    payload = dict(event.payload)
    for name in fields:
        sealed_bytes = _NONCE_BYTES + len(orjson.dumps(payload[name])) + _TAG_BYTES
        ct = "A" * (4 * ((sealed_bytes + 2) // 3))  # base64's length
        payload[name] = {"$enc": FORMAT, "kid": event.job_id, "ct": ct}
    return event.model_copy(update={"payload": payload})


def key_use(event: Event) -> KeyUse | None:
    """How appending ``event`` needs its stream's key: ``make`` it (a dispatch or a schedule
    carrying personal fields), ``read`` it (an outcome to seal if the job has a key; a later
    dispatch, refused if the key was erased), or not at all."""
    if isinstance(event, JobDispatched):
        if declared(event.job_type) & event.payload.keys():
            return "make"
        return "read" if event.dispatch > 1 else None
    if isinstance(event, ScheduleCreated):
        return "make" if declared(event.job_type) & event.payload.keys() else None
    return "read" if event.type_name in SEALED_FIELDS else None


def _sealed(value: Any, key: AESGCM | None, kid: str) -> Any:
    if value is None or is_sealed(value):
        return value
    return ERASED if key is None else seal(value, key, kid)


def _sealed_text(text: str | None, key: AESGCM | None, kid: str) -> str | None:
    if text is None or is_sealed(text):
        return text
    return ERASED if key is None else seal_text(text, key, kid)
