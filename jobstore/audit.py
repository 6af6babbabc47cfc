"""A tamper-evident log: each event's hash chains to its stream's previous one; signed anchors.

* **The chain** (``sql/0026_chain_event_hashes.sql``): the database stores with every event
  ``sha256(previous hash || the event as stored)``, computed set-wise by the append
  functions (``sql/0039_setwise_chain.sql``) or, for any other insert, by a row trigger,
  under the stream's append lock, so it needs no lock of its own.  :func:`event_hash` is
  the same definition in Python: the verifier recomputes every hash itself.
* **Anchors**: one host at a time (an :class:`jobstore.election.Election`) reads the log in
  the followers' order, below their horizon, and every ``interval`` seconds records an
  anchor: the heads (stream, version, position, hash) of the streams that changed since the
  previous anchor, the cursor it read up to, and the previous anchor's digest, signed with
  HMAC-SHA256 under ``JOBTRAIL_AUDIT_KEY``, a key that never goes into the database.  Anyone
  who rewrites a stream, even recomputing its hashes, cannot make a valid anchor for it.
  Anchors are exported (``jobtrail audit export``) to be kept outside the database, so
  that cutting anchors back is noticed too.
* **Verification** (:mod:`jobstore.audit_verify`) checks the anchors, every event's hash,
  that every anchored head is still there (or archived and purged on record), and that no
  event the anchors cover is missing from them; it reports each broken place.

What it cannot prove is written in README.md ("A tamper-evident log").
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import asyncpg
import orjson
import structlog

from jobstore import errors, query
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


class AuditError(errors.JobstoreError):
    """The audit trail cannot be extended or read as asked."""


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
    """The anchors' signing key (``JOBTRAIL_AUDIT_KEY``): HMAC-SHA256, never stored."""

    secret: bytes = field(repr=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> AuditKey:
        """The key the settings name."""
        return cls(settings.audit_key.get_secret_value().encode())

    @property
    def is_dev_default(self) -> bool:
        """Whether this is the public development key (refused off loopback)."""
        return self.secret == DEV_AUDIT_KEY.encode()

    @property
    def key_id(self) -> str:
        """A short fingerprint naming the key in anchors (it reveals nothing of the key)."""
        return hashlib.sha256(b"jobtrail audit key id\n" + self.secret).hexdigest()[:16]

    def sign(self, digest: bytes) -> bytes:
        """The signature of an anchor's digest."""
        return hmac.new(self.secret, digest, hashlib.sha256).digest()

    def verifies(self, digest: bytes, signature: bytes) -> bool:
        """Whether ``signature`` was made by this key over ``digest``."""
        return hmac.compare_digest(self.sign(digest), signature)


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
) -> Anchor:
    """Build and sign anchor ``seq`` chained to the previous anchor's digest."""
    body = orjson.dumps(
        {
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
    """How often the anchorer anchors, and how many events one anchor covers at most."""

    interval: float = 30.0
    max_events: int = 10_000
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
        """Anchor every ``interval`` seconds while holding the role, until cancelled."""
        while True:
            try:
                async with self.election.lead() as lease:
                    while lease.held:
                        await self.anchor_pending()
                        await asyncio.sleep(self.config.interval)
            except AuditError as exc:  # a chain we must not extend: say so, try later
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
        """Anchor up to ``target`` (default: every event committed now), waiting for events
        a running transaction holds back (see sql/0019).  For tools and tests."""
        made: list[Anchor] = []
        if target is None:
            row = await self.pool.fetchrow(_Q["log_head"])
            target = START if row is None else Cursor(int(row["xid"]), int(row["position"]))
        while True:
            made += await self.anchor_pending()
            row = await self.pool.fetchrow(_Q["last_anchor"])
            reached = (
                START if row is None else Cursor(int(row["cursor_xid"]), row["cursor_position"])
            )
            if reached >= target:
                return made
            await asyncio.sleep(HELD_BACK_RETRY)

    async def anchor_once(self) -> Anchor | None:
        """One anchor of up to ``max_events`` events after the last; None if none."""
        async with self.pool.acquire() as conn, conn.transaction():
            last = await conn.fetchrow(_Q["last_anchor"])
            seq, previous, cursor = 1, GENESIS, START
            if last is not None:
                anchor = Anchor.from_row(last)
                problem = anchor_problem(anchor, self.key)
                if problem is not None:
                    raise AuditError(f"the last anchor #{anchor.seq} {problem}: not extending it")
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
            return anchor if written is not None else None


def _cursor(row: asyncpg.Record | None, xid: str, position: str) -> Cursor:
    return START if row is None else Cursor(int(row[xid]), int(row[position]))


def anchor_problem(anchor: Anchor, key: AuditKey) -> str | None:
    """What is wrong with one anchor on its own (digest, key, signature), or None."""
    if hashlib.sha256(anchor.body.encode()).digest() != anchor.digest:
        return "does not match its digest (its body was changed)"
    if anchor.key_id != key.key_id:
        return f"was signed with another key (key id {anchor.key_id}, ours {key.key_id})"
    if not key.verifies(anchor.digest, anchor.signature):
        return "has a signature that JOBTRAIL_AUDIT_KEY did not make (forged or changed)"
    return None
