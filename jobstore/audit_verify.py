"""Verification of the tamper-evident log (:mod:`jobstore.audit`): every place it is broken.

:func:`verify` checks the anchors' signatures and their chain (against an export kept
outside the database, when given), recomputes every event's hash from its stored fields
and its stream's previous hash (in the log and the archive), and checks that every
anchored head is still there with the hash the anchor signed (or was archived, with its
head recorded by the archive event, and purged on record), and that no event the anchors
cover is missing from them.  It reports each broken place, the first one first.  Each
anchor is checked with the key its key id names (current or previous), each change of key
against the hand-over the old key signed; an anchor under a key not set here is reported
as unchecked, and its heads still count when a later checked anchor holds it through the
chain of digests (docs/concepts/audit-chain.md, "Rotating the audit key").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import asyncpg
import orjson

from jobstore import query
from jobstore.audit import (
    ARCHIVE_HEADS,
    GENESIS,
    Anchor,
    AnchorProblem,
    AuditError,
    AuditKey,
    Head,
    anchor_problem,
    event_hash,
    handover_problem,
)
from jobstore.cursor import START, Cursor

_Q = query.load("jobstore", "audit.sql")


@dataclass(frozen=True, slots=True)
class Break:
    """One place where the log is not what its hashes and anchors say."""

    problem: str
    stream_id: str | None = None
    version: int | None = None
    position: int | None = None
    anchor: int | None = None
    unchecked: bool = False
    """An anchor signed by a key not set here: neither proven nor disproven."""

    def to_json(self) -> dict[str, Any]:
        """The break as JSON-compatible values."""
        return {
            "stream_id": self.stream_id,
            "version": self.version,
            "position": self.position,
            "anchor": self.anchor,
            "problem": self.problem,
            "unchecked": self.unchecked,
        }

    def __str__(self) -> str:
        if self.stream_id is None:
            return f"anchor #{self.anchor}: {self.problem}"
        where = f"stream {self.stream_id!r}, version {self.version}"
        if self.position is not None:
            where = f"position {self.position}, {where}"
        return f"{where}: {self.problem}"


@dataclass(slots=True)
class Report:
    """What :func:`verify` found."""

    events_checked: int = 0
    archived_checked: int = 0
    anchors_checked: int = 0
    last_anchor: int | None = None
    last_anchor_at: str | None = None
    unanchored_events: int = 0
    unchained_events: int = 0
    """Events after the chain's cursor: appended since the last chaining, no hash yet."""
    breaks: list[Break] = field(default_factory=list)
    more_breaks: int = 0

    @property
    def intact(self) -> bool:
        """Whether everything was checked and nothing is broken."""
        return not self.breaks

    @property
    def unchecked_only(self) -> bool:
        """Whether the only findings are anchors whose keys are not set here."""
        return bool(self.breaks) and not self.more_breaks and all(b.unchecked for b in self.breaks)

    @property
    def unchecked_anchors(self) -> list[int]:
        """The anchors whose signature (or hand-over) could not be checked, in order."""
        return sorted({b.anchor for b in self.breaks if b.unchecked and b.anchor is not None})

    @property
    def first(self) -> Break | None:
        """The first broken place: anchors first, then by position."""
        if not self.breaks:
            return None
        return min(self.breaks, key=break_order)

    def to_json(self) -> dict[str, Any]:
        """The report as JSON-compatible values."""
        first = self.first
        return {
            "intact": self.intact,
            "first_break": first.to_json() if first else None,
            "breaks": [b.to_json() for b in sorted(self.breaks, key=break_order)],
            "more_breaks": self.more_breaks,
            "events_checked": self.events_checked,
            "archived_events_checked": self.archived_checked,
            "anchors_checked": self.anchors_checked,
            "last_anchor": self.last_anchor,
            "last_anchor_at": self.last_anchor_at,
            "unanchored_events": self.unanchored_events,
            "unchained_events": self.unchained_events,
            "unchecked_anchors": self.unchecked_anchors,
        }

    def add(self, found: Break) -> None:
        """Record ``found``; past ``MAX_BREAKS``, only count it."""
        if len(self.breaks) < MAX_BREAKS:
            self.breaks.append(found)
        else:
            self.more_breaks += 1


MAX_BREAKS: Final = 1000
Progress = Callable[[int, int], None]
"""Called with (events checked so far, events to check in all)."""


def break_order(b: Break) -> tuple[int, int]:
    """Sort key of a report's breaks: anchor breaks first, then by log position."""
    if b.stream_id is None:
        return (0, b.anchor or 0)
    return (1, b.position if b.position is not None else 2**63)


@dataclass(slots=True)
class _Anchored:
    version: int
    position: int
    hash: bytes
    seq: int


@dataclass(slots=True)
class _Scan:
    """What the verifier learns while it reads the log and the archive."""

    anchored: dict[str, _Anchored]
    covered: Cursor
    from_position: int
    chained: Cursor = START
    """How far every event must have a hash: the chain's cursor, or the anchors' when they
    reach further (the cursor row is in the database too: it cannot excuse an event the
    anchors cover)."""
    reached: set[str] = field(default_factory=set)
    archived_heads: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    purged: list[tuple[int, int]] = field(default_factory=list)


async def verify(
    pool: asyncpg.Pool,
    key: AuditKey,
    *,
    from_position: int = 0,
    exported: Sequence[Anchor] | None = None,
    progress: Progress | None = None,
    batch_size: int = 5000,
) -> Report:
    """Check the log's chain and anchors (from ``from_position`` on); report what is broken.

    ``exported``: anchors kept outside the database (``jobtrail audit export``); each must
    still be in the database unchanged, so cutting anchors back is noticed.  With
    ``from_position``, events before it are taken as they are (their hashes are trusted as
    the chain's start) and anchored heads before it are not looked for.
    """
    report = Report()
    try:
        async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            in_db = [Anchor.from_row(r) for r in await conn.fetch(_Q["anchors"], 0, None)]
            anchored, covered = _check_anchors(report, key, in_db, exported)
            chain = await conn.fetchrow(_Q["chain_cursor"])
            reached = START if chain is None else Cursor(int(chain[0]), int(chain[1]))
            scan = _Scan(anchored, covered, from_position, max(reached, covered))
            extent = await conn.fetchrow(_Q["log_extent"], from_position - 1)
            assert extent is not None
            done = 0
            for name, last in (("scan_events", "last_event"), ("scan_archive", "last_archived")):
                after = from_position - 1
                while after < extent[last]:
                    rows = await conn.fetch(_Q[name], after, batch_size)
                    if not rows:
                        break
                    for row in rows:
                        _check_event(report, scan, row, archived=name == "scan_archive")
                    after = rows[-1]["position"]
                    done += len(rows)
                    if progress is not None:
                        progress(done, int(extent["total"]))
            _check_heads_present(report, scan)
    except asyncpg.PostgresError as exc:
        raise AuditError(f"cannot read the log to verify it: {exc}") from None
    return report


def _check_anchors(
    report: Report, key: AuditKey, in_db: list[Anchor], exported: Sequence[Anchor] | None
) -> tuple[dict[str, _Anchored], Cursor]:
    """Check the anchors' own chain; return the latest anchored head of each stream."""
    chain = {a.seq: a for a in in_db}
    for kept in exported or ():
        problem = anchor_problem(kept, key)
        if problem is not None and not problem.unchecked:  # unchecked: reported in the chain
            report.add(Break(f"in the export: {problem}", anchor=kept.seq))
            continue
        found = chain.get(kept.seq)
        if found is None:
            report.add(Break("is in the export but gone from the database", anchor=kept.seq))
        elif found != kept:
            report.add(Break("differs from the exported one", anchor=kept.seq))
        chain[kept.seq] = kept  # the export is the reference
    checked = _check_each(report, key, chain)
    _hold_unchecked(checked)
    anchored: dict[str, _Anchored] = {}
    covered = START
    for one in checked:
        if one.problem is not None:
            text = one.problem.text
            if one.held_by is not None:
                text += (
                    f"; its content is held by the chain of digests up to anchor "
                    f"#{one.held_by}, whose signature was checked"
                )
            report.add(Break(text, anchor=one.anchor.seq, unchecked=one.problem.unchecked))
            if not one.problem.unchecked or not (one.signed or one.held_by is not None):
                continue
        for head in one.heads:
            anchored[head.stream_id] = _Anchored(head.version, head.position, head.hash, one.seq)
        covered = max(covered, one.cursor)
        report.last_anchor, report.last_anchor_at = one.seq, one.created_at
    return anchored, covered


@dataclass(slots=True)
class _Checked:
    """One anchor as :func:`_check_each` found it."""

    anchor: Anchor
    problem: AnchorProblem | None
    signed: bool = False
    """Whether its signature was checked (its hand-over may still be unchecked)."""
    follows: bool = False
    """Whether its body names the digest of the anchor just before it."""
    heads: list[Head] = field(default_factory=list)
    cursor: Cursor = START
    created_at: str | None = None
    held_by: int | None = None
    """For an unchecked anchor: the checked anchor whose chain of digests holds it."""

    @property
    def seq(self) -> int:
        return self.anchor.seq


def _check_each(report: Report, key: AuditKey, chain: dict[int, Anchor]) -> list[_Checked]:
    """Check every anchor's digest, signature, hand-over and link to the one before it."""
    checked: list[_Checked] = []
    before: Anchor | None = None
    for expected, seq in enumerate(sorted(chain), 1):
        anchor = chain[seq]
        report.anchors_checked += 1
        if seq != expected:
            report.add(Break(f"is missing (the next anchor is #{seq})", anchor=expected))
        problem = anchor_problem(anchor, key)
        one = _Checked(anchor, problem, signed=problem is None)
        try:
            content = anchor.content()
            one.heads, one.cursor = anchor.heads(), anchor.cursor()
            one.created_at = content.get("created_at")
        except (AuditError, orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            one.problem = AnchorProblem(f"cannot be read: {exc}")
        if one.problem is None or one.problem.unchecked:
            change = handover_problem(before, anchor, key)
            if change is not None and (one.problem is None or not change.unchecked):
                one.problem = change  # a forged hand-over outweighs an unknown key
        if one.problem is None or one.problem.unchecked:
            previous = before.digest if before is not None else GENESIS
            one.follows = content.get("previous") == previous.hex() and seq == expected
            if not one.follows and seq == expected:
                report.add(Break("does not follow the anchor before it", anchor=seq))
        before = anchor
        checked.append(one)
    return checked


def _hold_unchecked(checked: list[_Checked]) -> None:
    """Mark each unchecked anchor held by a later checked one through unbroken digest links:
    its content cannot have changed since that anchor was signed."""
    holder: int | None = None
    for one in reversed(checked):
        if one.problem is not None and not one.problem.unchecked:
            holder = None  # broken: it holds nothing, and nothing holds what is before it
            continue
        if one.problem is not None and not one.signed:
            one.held_by = holder
        if one.signed:
            holder = one.seq
        if not one.follows:
            holder = None


def _check_event(report: Report, scan: _Scan, row: asyncpg.Record, *, archived: bool) -> None:
    """Check one stored event against its hash, its predecessor and the anchors."""
    sid, version, position = row["stream_id"], row["version"], row["position"]
    if archived:
        report.archived_checked += 1
    else:
        report.events_checked += 1
    stored = bytes(row["hash"]) if row["hash"] is not None else None
    problem, place = None, version
    unchained = stored is None and Cursor(int(row["xid"]), position) > scan.chained
    if row["recorded_us"] is None:
        problem = "its time is not a finite timestamp (changed)"
    elif version > 1 and not row["previous_found"]:
        problem = f"is missing (removed); version {version} follows it at this position"
        place = version - 1
    elif unchained:
        report.unchained_events += 1
    elif stored is None:
        problem = (
            "has no hash although the chain has passed its place in the log: inserted "
            "behind the chain, or its hash was removed"
        )
    elif stored != event_hash(
        row["previous_hash"],
        position,
        int(row["xid"]),
        sid,
        version,
        row["event_type"],
        row["schema_version"],
        row["data"],
        row["metadata"],
        row["recorded_us"],
    ):
        problem = (
            "the event does not match its hash: it was changed or inserted "
            "(or the one before it was changed and its hash recomputed)"
        )
    if problem is not None:
        report.add(Break(problem, sid, place, position))
    anchored = scan.anchored.get(sid)
    if anchored is not None and anchored.version == version:
        scan.reached.add(sid)
        if stored != anchored.hash and problem is None:
            report.add(
                Break(
                    f"differs from the hash anchor #{anchored.seq} recorded: this stream was "
                    f"rewritten at or before version {version} (hashes recomputed)",
                    sid,
                    version,
                    position,
                    anchored.seq,
                )
            )
    if archived:
        return
    if Cursor(int(row["xid"]), position) <= scan.covered:
        if anchored is None or version > anchored.version:
            report.add(
                Break(
                    "is not in any anchor although the anchors cover its place in the log: "
                    "inserted after they were made",
                    sid,
                    version,
                    position,
                )
            )
    else:
        report.unanchored_events += 1
    if problem is None:
        _note_removals(scan, row)


def _note_removals(scan: _Scan, row: asyncpg.Record) -> None:
    """Remember the heads archiving recorded, and the positions a purge deleted."""
    if row["event_type"] == "log.streams_archived":
        metadata = orjson.loads(row["metadata"])
        for sid, version, _position, hexhash in metadata.get(ARCHIVE_HEADS) or []:
            scan.archived_heads[sid] = (int(version), bytes.fromhex(hexhash))
    elif row["event_type"] == "log.archive_purged":
        data = orjson.loads(row["data"])
        scan.purged.append((int(data["first_position"]), int(data["last_position"])))


def _check_heads_present(report: Report, scan: _Scan) -> None:
    """Every anchored head must still be there, or have been archived (and purged) on record."""
    for sid, anchored in scan.anchored.items():
        if sid in scan.reached or anchored.position < scan.from_position:
            continue
        archived = scan.archived_heads.get(sid)
        on_record = archived is not None and (
            archived[0] > anchored.version or archived == (anchored.version, anchored.hash)
        )
        if on_record and any(lo <= anchored.position <= hi for lo, hi in scan.purged):
            continue
        problem = (
            "was archived, then deleted from the archive without a purge record"
            if on_record
            else f"was anchored at this version by anchor #{anchored.seq} and is gone from "
            "the log and the archive: the stream was removed or cut back"
        )
        report.add(Break(problem, sid, anchored.version, anchored.position, anchored.seq))
