"""A tamper-evident log: each event's hash chains to its stream's previous one; signed anchors.

* **The chain** (``sql/0026_chain_event_hashes.sql``): the database stores for every event
  ``sha256(previous hash || the event as stored)`` in ``jobtrail.event_hashes``, computed
  in bulk off the append path by :func:`chain_pending` (``jobtrail.chain_events``,
  ``sql/0045_chain_off_the_append_path.sql``) just before each anchor: appends pay nothing
  for it, and an event is protected from the moment an anchor covers it, as before.
  :func:`event_hash` is the same definition in Python: the verifier recomputes every hash.
* **Anchors**: one host at a time (an :class:`jobstore.election.Election`) chains what was
  appended since, in the followers' order below their horizon, and every ``interval``
  seconds records an anchor: the heads (stream, version, position, hash) of the streams
  that changed since the previous anchor, the cursor it read up to, and the previous
  anchor's digest, signed with HMAC-SHA256 under ``JOBTRAIL_AUDIT_KEY``, a key that never
  goes into the database.  Anyone who rewrites a stream, even recomputing its hashes,
  cannot make a valid anchor for it.  Anchors are exported (``jobtrail audit export``) to
  be kept outside the database, so that cutting anchors back is noticed too.
* **Rotation**: each anchor names its key by key id.  With the old key among
  ``JOBTRAIL_AUDIT_PREVIOUS_KEYS``, the first anchor under a new key records a hand-over,
  an HMAC by the old key over the last old anchor's digest and the new key id, so nobody
  without the old key can switch the chain to a key of their own.
* **Verification** (:mod:`jobstore.audit_verify`) checks the anchors, every event's hash,
  that every anchored head is still there (or archived and purged on record), and that no
  event the anchors cover is missing from them; it reports each broken place.

What it cannot prove is written in README.md ("A tamper-evident log").
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import math
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import asyncpg
import orjson
import structlog

from jobstore import errors, query
from jobstore.checkpoint import Connection
from jobstore.cursor import START, Cursor
from jobstore.election import Election
from jobstore.settings import DEV_AUDIT_KEY, Settings

log = structlog.get_logger("jobtrail.audit")
_Q = query.load("jobstore", "audit.sql")

GENESIS: Final = bytes(32)
"""The "previous hash" of a stream's first event, and the previous digest of anchor #1."""
ANCHOR_ROLE: Final = "audit-anchor"
HELD_BACK_RETRY: Final = 0.05
"""Seconds between looks while events wait behind a running transaction."""
ARCHIVE_HEADS: Final = "audit_heads"
"""The metadata key under which archiving records the heads of the streams it moves."""
_FIXED = struct.Struct(">qqihq")  # position, xid, version, schema_version, recorded_at (µs)
_LENGTH = struct.Struct(">i")
_HANDOVER: Final = b"jobtrail audit key hand-over\n"
MAX_EVENTS: Final = 10_000
"""Events one anchor, and one chaining transaction, cover at most (by default)."""


class AuditError(errors.JobstoreError):
    """The audit trail cannot be extended or read as asked."""


class AnchoringRefusedError(AuditError, errors.MisconfiguredError):
    """The last anchor must not be extended by this host (its key, or the anchor itself):
    anchoring stops until the settings are mended; the chain goes on."""


def event_hash(
    previous: bytes | None,
    position: int,
    xid: int,
    stream_id: str,
    version: int,
    event_type: str,
    schema_version: int,
    data: str,
    metadata: str,
    recorded_us: int,
) -> bytes:
    """The hash of one stored event, chained to ``previous`` (see sql/0026 for the layout)."""
    digest = hashlib.sha256(previous or GENESIS)
    digest.update(_FIXED.pack(position, xid, version, schema_version, recorded_us))
    for text in (stream_id, event_type, data, metadata):
        raw = text.encode()
        digest.update(_LENGTH.pack(len(raw)))
        digest.update(raw)
    return digest.digest()


@dataclass(frozen=True, slots=True)
class AuditKey:
    """The anchors' signing key (``JOBTRAIL_AUDIT_KEY``): HMAC-SHA256, never stored.

    ``previous``: the keys it replaced (``JOBTRAIL_AUDIT_PREVIOUS_KEYS``), which check the
    anchors they signed and sign the hand-over to this key (see "Rotating the audit key" in
    docs/concepts/audit-chain.md).
    """

    secret: bytes = field(repr=False)
    previous: tuple[AuditKey, ...] = field(default=(), repr=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> AuditKey:
        """The key the settings name, with the previous keys they list."""
        return cls(
            settings.audit_key.get_secret_value().encode(),
            tuple(cls(k.get_secret_value().encode()) for k in settings.audit_previous_keys),
        )

    @property
    def is_dev_default(self) -> bool:
        """Whether this is the public development key (refused off loopback)."""
        return self.secret == DEV_AUDIT_KEY.encode()

    @property
    def key_id(self) -> str:
        """A short fingerprint naming the key in anchors (it reveals nothing of the key)."""
        return hashlib.sha256(b"jobtrail audit key id\n" + self.secret).hexdigest()[:16]

    def named(self, key_id: str) -> AuditKey | None:
        """This key or the previous one whose key id is ``key_id``, or None."""
        return next((k for k in (self, *self.previous) if k.key_id == key_id), None)

    def described(self) -> str:
        """The key ids this key verifies, for messages: current first, then previous."""
        text = f"JOBTRAIL_AUDIT_KEY has key id {self.key_id}"
        if self.previous:
            text += ", JOBTRAIL_AUDIT_PREVIOUS_KEYS " + ", ".join(k.key_id for k in self.previous)
        return text

    def sign(self, digest: bytes) -> bytes:
        """The signature of an anchor's digest."""
        return hmac.new(self.secret, digest, hashlib.sha256).digest()

    def verifies(self, digest: bytes, signature: bytes) -> bool:
        """Whether ``signature`` was made by this key over ``digest``."""
        return hmac.compare_digest(self.sign(digest), signature)

    def sign_handover(self, previous_digest: bytes, to_key_id: str) -> bytes:
        """This (old) key's consent that the anchor after ``previous_digest`` be signed by
        the key ``to_key_id``: only a holder of this key can make it."""
        message = _HANDOVER + previous_digest + to_key_id.encode()
        return hmac.new(self.secret, message, hashlib.sha256).digest()


@dataclass(frozen=True, slots=True)
class AnchorProblem:
    """What is wrong with one anchor; ``unchecked`` when it is signed by a key not held here,
    so it is neither proven nor disproven (the key was dropped from the settings, or it is
    someone else's)."""

    text: str
    unchecked: bool = False

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True, slots=True)
class Head:
    """A stream's last event as an anchor saw it."""

    stream_id: str
    version: int
    position: int
    hash: bytes


@dataclass(frozen=True, slots=True)
class Anchor:
    """One signed anchor: ``body`` (canonical JSON) is what its digest and signature cover."""

    seq: int
    body: str
    digest: bytes
    key_id: str
    signature: bytes

    def content(self) -> dict[str, Any]:
        """The body, parsed: seq, previous, created_at, cursor, events, heads."""
        value = orjson.loads(self.body)
        if not isinstance(value, dict):
            raise AuditError(f"anchor #{self.seq}: its body is not a JSON object")
        return value

    def heads(self) -> list[Head]:
        """The stream heads this anchor records."""
        return [
            Head(str(sid), int(version), int(position), bytes.fromhex(str(hexhash)))
            for sid, version, position, hexhash in self.content().get("heads", [])
        ]

    def handover(self) -> tuple[str, bytes] | None:
        """The hand-over this anchor records (the previous key's id and its signature), if
        it is the first anchor signed by a new key."""
        value = self.content().get("handover")
        if value is None:
            return None
        return str(value["from"]), bytes.fromhex(str(value["signature"]))

    def cursor(self) -> Cursor:
        """How far in the followers' order the log was read for this anchor."""
        xid, position = self.content()["cursor"]
        return Cursor(int(xid), int(position))

    def to_json(self) -> dict[str, Any]:
        """The anchor as an export line."""
        return {
            "seq": self.seq,
            "body": self.body,
            "digest": self.digest.hex(),
            "key_id": self.key_id,
            "signature": self.signature.hex(),
        }

    @classmethod
    def from_json(cls, value: Any) -> Anchor:
        """An anchor read back from an export line."""
        try:
            return cls(
                int(value["seq"]),
                str(value["body"]),
                bytes.fromhex(value["digest"]),
                str(value["key_id"]),
                bytes.fromhex(value["signature"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise AuditError(
                f"not an exported anchor (needs seq, body, digest, key_id, signature): {exc}"
            ) from None

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Anchor:
        """An anchor as the database holds it."""
        return cls(row["seq"], row["body"], bytes(row["digest"]), row["key_id"], row["signature"])


def make_anchor(
    key: AuditKey,
    seq: int,
    previous: bytes,
    cursor: Cursor,
    events: int,
    heads: Iterable[Head],
    created_at: datetime,
    handover_from: AuditKey | None = None,
) -> Anchor:
    """Build and sign anchor ``seq`` chained to the previous anchor's digest.

    ``handover_from``: the previous anchor's key, when it is not ``key``; it signs the
    hand-over, which the anchor's body records (and ``key`` signs with the rest).
    """
    extra: dict[str, Any] = {}
    if handover_from is not None:
        signature = handover_from.sign_handover(previous, key.key_id)
        extra["handover"] = {"from": handover_from.key_id, "signature": signature.hex()}
    body = orjson.dumps(
        {
            **extra,
            "v": 1,
            "seq": seq,
            "previous": previous.hex(),
            "created_at": created_at.astimezone(UTC).isoformat(),
            "cursor": [cursor.transaction, cursor.position],
            "events": events,
            "heads": [
                [h.stream_id, h.version, h.position, h.hash.hex()]
                for h in sorted(heads, key=lambda h: h.stream_id)
            ],
        },
        option=orjson.OPT_SORT_KEYS,
    ).decode()
    digest = hashlib.sha256(body.encode()).digest()
    return Anchor(seq, body, digest, key.key_id, key.sign(digest))


def load_export(lines: Iterable[str | bytes]) -> list[Anchor]:
    """Anchors from an export (JSON Lines), in seq order."""
    anchors: list[Anchor] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            anchors.append(Anchor.from_json(orjson.loads(line)))
        except (orjson.JSONDecodeError, AuditError) as exc:
            raise AuditError(f"line {number} of the anchors file: {exc}") from None
    return sorted(anchors, key=lambda a: a.seq)


async def anchors(pool: asyncpg.Pool, after_seq: int = 0, limit: int | None = None) -> list[Anchor]:
    """The anchors in the database after ``after_seq`` (up to ``limit``), in order."""
    return [Anchor.from_row(r) for r in await pool.fetch(_Q["anchors"], after_seq, limit)]


@dataclass(frozen=True, slots=True)
class AnchorConfig:
    """How often the anchorer chains and anchors, and how many events one anchor (and one
    chaining transaction) covers at most."""

    interval: float = 30.0
    max_events: int = MAX_EVENTS
    leader_retry: float = 1.0


class Anchorer:
    """Records signed anchors of the log's stream heads, on one host at a time."""

    def __init__(
        self, pool: asyncpg.Pool, dsn: str, key: AuditKey, config: AnchorConfig | None = None
    ) -> None:
        self.pool = pool
        self.key = key
        self.config = config or AnchorConfig()
        self.election = Election(dsn, ANCHOR_ROLE, self.config.leader_retry)

    async def run(self) -> None:
        """Chain and anchor every ``interval`` seconds while holding the role, until
        cancelled or anchoring is refused (:class:`AnchoringRefusedError`, raised after the
        chain was brought up to date: the host's supervisor reports the task down with that
        error and runs it again after a delay, so the chain goes on while anchoring cannot)."""
        while True:
            try:
                async with self.election.lead() as lease:
                    while lease.held:
                        await chain_pending(self.pool, self.config.max_events)
                        await self.anchor_pending()
                        await asyncio.sleep(self.config.interval)
            except AnchoringRefusedError:
                raise
            except AuditError as exc:  # an anchor that cannot be made now: say so, try later
                log.error("audit anchors stopped", error=str(exc))
                await asyncio.sleep(self.config.interval)
            except Exception as exc:  # the database went away: start over
                log.warning("audit anchorer interrupted", error=str(exc)[:300])
                await asyncio.sleep(self.config.leader_retry)

    async def anchor_pending(self) -> list[Anchor]:
        """Anchor everything readable now (several anchors when there is a lot)."""
        made: list[Anchor] = []
        while (anchor := await self.anchor_once()) is not None:
            made.append(anchor)
            if anchor.content()["events"] < self.config.max_events:
                break
        return made

    async def anchor_through(self, target: Cursor | None = None) -> list[Anchor]:
        """Chain and anchor up to ``target`` (default: every event committed now), waiting
        for events a running transaction holds back (see sql/0019).  For tools and tests."""
        await chain_through(self.pool, target, wait=math.inf)
        return await self.anchor_pending()  # everything chained: through ``target``

    async def anchor_once(self) -> Anchor | None:
        """One anchor of up to ``max_events`` events after the last; None if none."""
        async with self.pool.acquire() as conn, conn.transaction():
            last = await conn.fetchrow(_Q["last_anchor"])
            seq, previous, cursor = 1, GENESIS, START
            handover_from: AuditKey | None = None
            if last is not None:
                anchor = Anchor.from_row(last)
                handover_from = await self._handover_from(conn, anchor)
                seq, previous = anchor.seq + 1, anchor.digest
                cursor = _cursor(last, "cursor_xid", "cursor_position")
            rows = await conn.fetch(_Q["unanchored_heads"], *cursor, self.config.max_events)
            if not rows:
                return None
            heads = {r["stream_id"]: r for r in rows}  # reading order: the last one wins
            end = _cursor(rows[-1], "xid", "position")
            anchor = make_anchor(
                self.key,
                seq,
                previous,
                end,
                len(rows),
                (
                    Head(sid, r["version"], r["position"], bytes(r["hash"]))
                    for sid, r in heads.items()
                ),
                datetime.now(UTC),
                handover_from,
            )
            written = await conn.fetchval(
                _Q["insert_anchor"],
                anchor.seq,
                end.transaction,
                end.position,
                len(rows),
                anchor.body,
                anchor.digest,
                anchor.key_id,
                anchor.signature,
            )
            if written is None:
                return None
            if handover_from is not None:
                log.warning(
                    "audit key handed over",
                    anchor=anchor.seq,
                    from_key_id=handover_from.key_id,
                    to_key_id=self.key.key_id,
                )
            return anchor

    async def _handover_from(self, conn: Connection, last: Anchor) -> AuditKey | None:
        """The previous key to hand over from, if ``last`` was signed by one; raise if the
        chain must not be extended (a bad last anchor, or a key this host does not hold)."""
        problem = anchor_problem(last, self.key)
        if problem is not None and problem.unchecked:
            raise AnchoringRefusedError(
                f"the last anchor #{last.seq} is signed by key id {last.key_id}, which is "
                f"neither JOBTRAIL_AUDIT_KEY (key id {self.key.key_id}) nor in "
                "JOBTRAIL_AUDIT_PREVIOUS_KEYS: add the key it was signed with to "
                "JOBTRAIL_AUDIT_PREVIOUS_KEYS to hand over to the new key, or set "
                "JOBTRAIL_AUDIT_KEY back to it"
            )
        if problem is not None:
            raise AnchoringRefusedError(f"the last anchor #{last.seq} {problem}: not extending it")
        if last.key_id == self.key.key_id:
            return None
        later = await conn.fetchval(_Q["first_anchor_signed_by"], self.key.key_id)
        if later is not None:
            raise AnchoringRefusedError(
                f"the last anchor #{last.seq} is signed by the previous key id {last.key_id} "
                f"although anchor #{later} was already signed by JOBTRAIL_AUDIT_KEY: a key is "
                "handed over forward only (run jobtrail audit verify)"
            )
        return self.key.named(last.key_id)


async def chain_pending(pool: asyncpg.Pool, max_events: int = MAX_EVENTS) -> int:
    """Chain every event readable now (``jobtrail.chain_events``, ``max_events`` per
    transaction); return how many were chained.  Any host may call it: the chain's cursor
    row is locked while a batch is chained, so two callers never chain the same events."""
    chained = 0
    while True:
        done = int(await pool.fetchval(_Q["chain_events"], max_events))
        chained += done
        if done < max_events:
            return chained


async def chain_through(
    pool: asyncpg.Pool, target: Cursor | None = None, *, wait: float = 5.0
) -> bool:
    """Chain up to ``target`` (default: the log's newest event now), waiting up to
    ``wait`` seconds for events a running transaction holds back (see sql/0019); return
    whether the chain got there."""
    if target is None:
        target = _cursor(await pool.fetchrow(_Q["log_head"]), "xid", "position")
    clock = asyncio.get_running_loop().time
    deadline = clock() + wait
    while await chain_cursor(pool) < target:  # usually reached already: nothing to lock
        await chain_pending(pool)
        if await chain_cursor(pool) >= target:
            break
        if clock() >= deadline:
            return False
        await asyncio.sleep(HELD_BACK_RETRY)
    return True


@dataclass(frozen=True, slots=True)
class AuditLag:
    """How far the chain and the anchors are behind the log, now."""

    unchained: int
    """Events appended since the last chaining (no hash yet), up to the count's limit."""
    unanchored: int
    """Events after the last anchor's cursor (not protected yet), up to the count's limit."""
    last_anchor_at: datetime | None
    """When the last anchor was made; None: none yet."""
    oldest_unanchored_at: datetime | None = None
    """When the oldest event no anchor covers was written; None: every event is anchored."""

    def waited(self, now: datetime) -> timedelta:
        """How long the oldest event no anchor covers has waited (zero: none waits)."""
        at = self.oldest_unanchored_at
        return timedelta(0) if at is None else max(timedelta(0), now - at)


LAG_COUNT_LIMIT: Final = 100_000
"""Where :func:`lag` stops counting: a scrape or a page must stay cheap however far behind
(both counts at the limit: 29 ms on the project's machine, bench/audit.py); more reads as
this many."""


async def lag(pool: asyncpg.Pool, limit: int = LAG_COUNT_LIMIT) -> AuditLag:
    """How far the chain and the anchors are behind the log (for ``/metrics``)."""
    row = await pool.fetchrow(_Q["audit_lag"], limit)
    assert row is not None
    return AuditLag(
        int(row["unchained"]),
        int(row["unanchored"]),
        row["last_anchor_at"],
        row["oldest_unanchored_at"],
    )


async def chain_cursor(pool: asyncpg.Pool) -> Cursor:
    """How far the chain has reached, in the followers' order."""
    row = await pool.fetchrow(_Q["chain_cursor"])
    return _cursor(row, "cursor_xid", "cursor_position")


def _cursor(row: asyncpg.Record | None, xid: str, position: str) -> Cursor:
    return START if row is None else Cursor(int(row[xid]), int(row[position]))


def anchor_problem(anchor: Anchor, key: AuditKey) -> AnchorProblem | None:
    """What is wrong with one anchor on its own (digest, key, signature), or None.

    The signature is checked with the key its key id names: ``key`` or a previous one.
    """
    if hashlib.sha256(anchor.body.encode()).digest() != anchor.digest:
        return AnchorProblem("does not match its digest (its body was changed)")
    signer = key.named(anchor.key_id)
    if signer is None:
        if any(k.verifies(anchor.digest, anchor.signature) for k in (key, *key.previous)):
            return AnchorProblem(f"names key id {anchor.key_id}, not the key that signed it")
        return AnchorProblem(
            f"is signed by key id {anchor.key_id}, which is not among the keys set here "
            f"({key.described()}): cannot check it; if that key is yours, add it to "
            "JOBTRAIL_AUDIT_PREVIOUS_KEYS (or make it JOBTRAIL_AUDIT_KEY if it replaced "
            "yours), else this anchor was made by someone else",
            unchecked=True,
        )
    if not signer.verifies(anchor.digest, anchor.signature):
        return AnchorProblem(
            f"has a signature that its key (key id {anchor.key_id}) did not make "
            "(forged or changed)"
        )
    return None


def handover_problem(before: Anchor | None, anchor: Anchor, key: AuditKey) -> AnchorProblem | None:
    """What is wrong with the key change (or its absence) from ``before`` to ``anchor``.

    A new key may sign an anchor only if that anchor records a hand-over signed by the key
    of the anchor before it: a database superuser cannot rotate to a key of their own.
    """
    try:
        handover = anchor.handover()
    except (AuditError, orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        return AnchorProblem(f"has a hand-over that cannot be read: {exc}")
    if before is None or before.key_id == anchor.key_id:
        if handover is None:
            return None
        return AnchorProblem("records a hand-over although its key did not change (changed)")
    change = (
        f"changes the key from key id {before.key_id} (anchor #{before.seq}) to {anchor.key_id}"
    )
    if handover is None or handover[0] != before.key_id:
        return AnchorProblem(
            f"{change} without a hand-over signed by the old key: a forged rotation"
        )
    old = key.named(before.key_id)
    if old is None:
        return AnchorProblem(
            f"{change}; that hand-over cannot be checked without the old key (add it to "
            "JOBTRAIL_AUDIT_PREVIOUS_KEYS)",
            unchecked=True,
        )
    if not hmac.compare_digest(old.sign_handover(before.digest, anchor.key_id), handover[1]):
        return AnchorProblem(f"{change} with a hand-over the old key did not sign: forged")
    return None
