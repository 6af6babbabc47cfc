"""What a publish asks for: the ``Upstash-*`` request headers parsed into a frozen Spec."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping

from qstash_local import duration, expression
from qstash_local.error import BadRequest

METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
DEFAULT_RETRIES = 3
MAX_PERIOD_S = 7 * 86400
_NAME = re.compile(r"[A-Za-z0-9._-]+")
# Not forwarded even with Upstash-Header-Forward: true (UNVERIFIED which ones QStash drops).
_NEVER_FORWARDED = frozenset(
    {
        "authorization",
        "host",
        "content-length",
        "connection",
        "transfer-encoding",
        "accept-encoding",
        "keep-alive",
        "upgrade",
        "te",
        "trailer",
        "proxy-authorization",
    }
)
_CALLBACK_CONFIG = ("method", "timeout", "retries", "retry-delay", "delay")


def canonical(name: str) -> str:
    """Return a header name in Go's canonical form (``x-job-id`` -> ``X-Job-Id``)."""
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


def check_name(value: str, *, what: str) -> str:
    """Return ``value`` if it is a valid id/name (letters, digits, ``.``, ``_``, ``-``)."""
    if not _NAME.fullmatch(value):
        raise BadRequest(
            f"invalid {what} {value!r}: only letters, digits, '.', '_' and '-' are allowed"
        )
    return value


def check_url(value: str, *, what: str) -> str:
    """Return ``value`` if it is an absolute http(s) URL, else raise QStash's scheme error."""
    if not value.startswith(("http://", "https://")) or len(value) <= len("https://"):
        raise BadRequest(
            f"invalid {what} url: endpoint has invalid scheme, add http:// or https:// "
            f"(got {value!r})"
        )
    return value


@dataclasses.dataclass(frozen=True, slots=True)
class FlowControl:
    """A flow-control key with the limits a message brought (None = not given)."""

    key: str
    parallelism: int | None = None
    rate: int | None = None
    period_s: int = 1


@dataclasses.dataclass(frozen=True, slots=True)
class Redact:
    """Which fields the API and logs show as ``REDACTED:<sha256>``."""

    body: bool = False
    all_headers: bool = False
    headers: frozenset[str] = frozenset()


@dataclasses.dataclass(frozen=True, slots=True)
class CallbackOptions:
    """How callback messages are sent: the ``Upstash-Callback-*`` / ``-Failure-Callback-*``."""

    method: str = "POST"
    timeout_s: float | None = None
    retries: int | None = None
    retry_delay: str | None = None
    delay_s: float = 0.0
    headers: tuple[tuple[str, str], ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class Spec:
    """Everything a publish configures, apart from destination, body and ids."""

    method: str = "POST"
    content_type: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    retries: int = DEFAULT_RETRIES
    retry_delay: str | None = None
    retry_delay_fn: expression.Evaluator | None = None
    delay_s: float = 0.0
    not_before_s: int | None = None
    timeout_s: float | None = None
    dedup_id: str | None = None
    content_dedup: bool = False
    callback: str | None = None
    failure_callback: str | None = None
    callback_options: CallbackOptions = CallbackOptions()
    failure_callback_options: CallbackOptions = CallbackOptions()
    flow_control: FlowControl | None = None
    labels: tuple[str, ...] = ()
    redact: Redact = Redact()

    def delivered_headers(self) -> dict[str, list[str]]:
        """The headers sent to the destination, as QStash lists them (``{Name: [values]}``)."""
        out: dict[str, list[str]] = {}
        if self.content_type is not None:
            out["Content-Type"] = [self.content_type]
        for name, value in self.headers:
            out.setdefault(name, []).append(value)
        return out


def _int(value: str, *, name: str, minimum: int = 0) -> int:
    try:
        number = int(value.strip())
    except ValueError:
        number = minimum - 1
    if number < minimum:
        raise BadRequest(f"invalid {name} {value!r}: expected an integer >= {minimum}")
    return number


def _method(value: str, *, name: str) -> str:
    method = value.strip().upper()
    if method not in METHODS:
        raise BadRequest(f"invalid {name} {value!r}: expected one of {', '.join(sorted(METHODS))}")
    return method


def _retry_delay(value: str | None, name: str) -> str | None:
    # UNVERIFIED: QStash's answer to a bad expression; rejecting it at publish time (400)
    # beats discovering it at the first retry.
    if value is not None:
        try:
            expression.compile_expression(value)
        except BadRequest as exc:
            raise BadRequest(exc.message.replace("Upstash-Retry-Delay", name)) from None
    return value


def _flow_control(key: str | None, value: str | None) -> FlowControl | None:
    if key is None:
        if value is not None:
            raise BadRequest("Upstash-Flow-Control-Value needs an Upstash-Flow-Control-Key")
        return None
    key = check_name(key.strip(), what="Upstash-Flow-Control-Key")
    parts: dict[str, str] = {}
    for item in (value or "").split(","):
        if not item.strip():
            continue
        name, sep, raw = item.partition("=")
        name = name.strip().lower()
        if not sep or name not in ("parallelism", "rate", "period"):
            raise BadRequest(
                f"invalid Upstash-Flow-Control-Value {value!r}: expected "
                "parallelism=<n>, rate=<n>, period=<duration>"
            )
        parts[name] = raw.strip()
    return _flow_limits(key, parts)


def _flow_limits(key: str, parts: dict[str, str]) -> FlowControl:
    period = 1
    if "period" in parts:
        raw = parts["period"]
        seconds = float(raw) if raw.isdigit() else duration.parse_duration(raw, name="period")
        period = int(seconds)
        if not 1 <= period <= MAX_PERIOD_S:
            raise BadRequest(f"invalid flow-control period {raw!r}: expected 1s to 7d")
    return FlowControl(
        key=key,
        parallelism=_opt_int(parts.get("parallelism"), "flow-control parallelism"),
        rate=_opt_int(parts.get("rate"), "flow-control rate"),
        period_s=period,
    )


def _opt_int(value: str | None, name: str) -> int | None:
    return None if value is None else _int(value, name=name, minimum=1)


def _redact(value: str | None) -> Redact:
    if not value:
        return Redact()
    body = all_headers = False
    names: set[str] = set()
    for raw in value.split(","):
        item = raw.strip()
        if item == "body":
            body = True
        elif item in ("header", "headers"):
            all_headers = True
        elif (match := re.fullmatch(r"headers?\[(.+)\]", item)) is not None:
            names.add(canonical(match.group(1).strip()))
        elif item:
            raise BadRequest(
                f"invalid Upstash-Redact-Fields item {item!r}: "
                "expected body, header or header[Name]"
            )
    return Redact(body=body, all_headers=all_headers, headers=frozenset(names))


def _callback_options(headers: Mapping[str, str], prefix: str) -> CallbackOptions:
    get = headers.get
    forwarded: list[tuple[str, str]] = []
    lower_prefix = prefix.lower() + "-"
    for name, value in headers.items():
        lower = name.lower()
        if not lower.startswith(lower_prefix):
            continue
        suffix = name[len(lower_prefix) :]
        if suffix.lower() in _CALLBACK_CONFIG:
            continue
        if suffix.lower().startswith("forward-"):
            suffix = suffix[len("forward-") :]
        # UNVERIFIED: the Python SDK turns callback_headers={"K": v} into
        # Upstash-Callback-K (no Forward-); such unknown suffixes are forwarded too.
        if suffix:
            forwarded.append((canonical(suffix), value))
    timeout = get(f"{prefix}-Timeout")
    delay = get(f"{prefix}-Delay")
    retries = get(f"{prefix}-Retries")
    return CallbackOptions(
        method=_method(get(f"{prefix}-Method", "POST"), name=f"{prefix}-Method"),
        timeout_s=None if timeout is None else _seconds(timeout, f"{prefix}-Timeout"),
        retries=None if retries is None else _int(retries, name=f"{prefix}-Retries"),
        retry_delay=_retry_delay(get(f"{prefix}-Retry-Delay"), f"{prefix}-Retry-Delay"),
        delay_s=0.0 if delay is None else _seconds(delay, f"{prefix}-Delay"),
        headers=tuple(forwarded),
    )


def _seconds(value: str, name: str) -> float:
    return duration.parse_duration(value, name=name)


def _forwarded(headers: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    forward_all = headers.get("Upstash-Header-Forward", "").strip().lower() == "true"
    out: list[tuple[str, str]] = []
    for name, value in headers.items():
        lower = name.lower()
        if lower.startswith("upstash-forward-") and len(lower) > len("upstash-forward-"):
            out.append((canonical(name[len("upstash-forward-") :]), value))
        elif (
            forward_all
            and not lower.startswith("upstash-")
            and lower not in _NEVER_FORWARDED
            and lower != "content-type"
        ):
            out.append((canonical(name), value))
    return tuple(out)


_CACHE_SIZE = 512
_cache: dict[tuple[tuple[str, str], ...], Spec] = {}


def parse_spec(headers: Mapping[str, str]) -> Spec:
    """Parse publish headers into a Spec, raising BadRequest naming the first bad header.

    Specs are immutable, so identical header sets (the norm within a batch) share one.
    """
    key = tuple(headers.items())
    spec = _cache.get(key)
    if spec is None:
        spec = _parse(headers)
        if len(_cache) >= _CACHE_SIZE:
            _cache.clear()
        _cache[key] = spec
    return spec


def _parse(headers: Mapping[str, str]) -> Spec:
    get = headers.get
    retry_delay = _retry_delay(get("Upstash-Retry-Delay"), "Upstash-Retry-Delay")
    not_before = get("Upstash-Not-Before")
    delay = get("Upstash-Delay")
    timeout = get("Upstash-Timeout")
    retries = get("Upstash-Retries")
    labels = tuple(x.strip() for x in get("Upstash-Label", "").split(",") if x.strip())
    callback = get("Upstash-Callback")
    failure_callback = get("Upstash-Failure-Callback")
    return Spec(
        method=_method(get("Upstash-Method", "POST"), name="Upstash-Method"),
        content_type=get("Content-Type"),
        headers=_forwarded(headers),
        retries=DEFAULT_RETRIES if retries is None else _int(retries, name="Upstash-Retries"),
        retry_delay=retry_delay,
        retry_delay_fn=None if retry_delay is None else expression.compile_expression(retry_delay),
        delay_s=0.0 if delay is None else _seconds(delay, "Upstash-Delay"),
        not_before_s=None if not_before is None else _int(not_before, name="Upstash-Not-Before"),
        timeout_s=None if timeout is None else _positive(timeout, "Upstash-Timeout"),
        dedup_id=get("Upstash-Deduplication-Id"),
        content_dedup=get("Upstash-Content-Based-Deduplication", "").strip().lower() == "true",
        callback=None if callback is None else check_url(callback, what="Upstash-Callback"),
        failure_callback=None
        if failure_callback is None
        else check_url(failure_callback, what="Upstash-Failure-Callback"),
        callback_options=_callback_options(headers, "Upstash-Callback"),
        failure_callback_options=_callback_options(headers, "Upstash-Failure-Callback"),
        flow_control=_flow_control(
            get("Upstash-Flow-Control-Key"), get("Upstash-Flow-Control-Value")
        ),
        labels=labels,
        redact=_redact(get("Upstash-Redact-Fields")),
    )


def _positive(value: str, name: str) -> float:
    seconds = _seconds(value, name)
    if seconds <= 0:
        raise BadRequest(f"invalid {name} {value!r}: expected a duration above zero, e.g. 30s")
    return seconds
