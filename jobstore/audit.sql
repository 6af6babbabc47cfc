-- name: last_anchor
-- params:
SELECT seq, cursor_xid, cursor_position, body, digest, key_id, signature
  FROM jobtrail.audit_anchors ORDER BY seq DESC LIMIT 1;

-- name: log_head
-- params:
-- The newest event in the followers' order (as EventStore.head).
SELECT xid, position FROM jobtrail.events ORDER BY xid DESC, position DESC LIMIT 1;

-- name: anchors
-- params: after_seq, limit
SELECT seq, body, digest, key_id, signature
  FROM jobtrail.audit_anchors WHERE seq > $1 ORDER BY seq LIMIT $2;

-- name: unanchored_heads
-- params: after_xid, after_position, limit
-- The events an anchor covers next: after the last anchor's cursor, in the followers' order,
-- as far as the chain has reached (jobtrail.chain_events reads below the followers' horizon,
-- sql/0019, so no event can commit behind either cursor).
SELECT e.xid, e.position, e.stream_id, e.version, h.hash
  FROM jobtrail.events e
  JOIN jobtrail.event_hashes h ON h.position = e.position
 WHERE (e.xid, e.position) > ($1::xid8, $2::bigint)
   AND (e.xid, e.position) <= (SELECT p.cursor_xid, p.cursor_position
                                 FROM jobtrail.chain_progress p)
 ORDER BY e.xid, e.position
 LIMIT $3;

-- name: chain_events
-- params: max_events
-- Chain the next events (sql/0045); how many.
SELECT jobtrail.chain_events($1);

-- name: chain_cursor
-- params:
-- How far the chain has reached, in the followers' order.
SELECT cursor_xid, cursor_position FROM jobtrail.chain_progress;

-- name: insert_anchor
-- params: seq, cursor_xid, cursor_position, events, body, digest, key_id, signature
-- Two anchorers at once (an election changing hands) cannot both extend the chain: the
-- second finds the seq taken and writes nothing.
INSERT INTO jobtrail.audit_anchors
    (seq, cursor_xid, cursor_position, events, body, digest, key_id, signature)
VALUES ($1, $2::xid8, $3, $4, $5, $6, $7, $8)
ON CONFLICT (seq) DO NOTHING
RETURNING seq;

-- name: scan_events
-- params: after_position, limit
-- The log in position order, each event with its hash (NULL: not chained) and with its
-- stream's previous event: whether it is there, and its hash (in the log, else in the
-- archive: a stream continued after archiving, sql/0024).  Stored fields come as stored:
-- json as its text, the time in microseconds (the hash's own encoding).
SELECT e.position, e.xid, e.stream_id, e.version, e.event_type, e.schema_version,
       e.data::text AS data, e.metadata::text AS metadata,
       CASE WHEN isfinite(e.recorded_at)
            THEN (extract(epoch FROM e.recorded_at) * 1000000)::bigint END AS recorded_us,
       h.hash,
       p.found IS NOT NULL AS previous_found,
       p.hash AS previous_hash
  FROM jobtrail.events e
  LEFT JOIN jobtrail.event_hashes h ON h.position = e.position
  LEFT JOIN LATERAL (
        (SELECT true AS found, ph.hash
           FROM jobtrail.events pe
           LEFT JOIN jobtrail.event_hashes ph ON ph.position = pe.position
          WHERE pe.stream_id = e.stream_id AND pe.version = e.version - 1)
        UNION ALL
        (SELECT true, a.hash FROM jobtrail.events_archive a
          WHERE a.stream_id = e.stream_id AND a.version = e.version - 1)
        LIMIT 1) p ON e.version > 1
 WHERE e.position > $1
 ORDER BY e.position
 LIMIT $2;

-- name: scan_archive
-- params: after_position, limit
-- The archive, as scan_events reads the log (a stream's events are in one or the other).
SELECT a.position, a.xid, a.stream_id, a.version, a.event_type, a.schema_version,
       a.data::text AS data, a.metadata::text AS metadata,
       CASE WHEN isfinite(a.recorded_at)
            THEN (extract(epoch FROM a.recorded_at) * 1000000)::bigint END AS recorded_us,
       a.hash,
       p.found IS NOT NULL AS previous_found,
       p.hash AS previous_hash
  FROM jobtrail.events_archive a
  LEFT JOIN LATERAL (
        SELECT true AS found, pa.hash FROM jobtrail.events_archive pa
         WHERE pa.stream_id = a.stream_id AND pa.version = a.version - 1) p ON a.version > 1
 WHERE a.position > $1
 ORDER BY a.position
 LIMIT $2;

-- name: log_extent
-- params: after_position
-- Where the log and the archive end, and how many events verification will read.
SELECT coalesce((SELECT max(position) FROM jobtrail.events), 0) AS last_event,
       coalesce((SELECT max(position) FROM jobtrail.events_archive), 0) AS last_archived,
       (SELECT count(*) FROM jobtrail.events WHERE position > $1)
       + (SELECT count(*) FROM jobtrail.events_archive WHERE position > $1) AS total;

-- name: first_anchor_signed_by
-- params: key_id
-- Whether a key already signed an anchor (rare: asked only when the key changes).
SELECT min(seq) FROM jobtrail.audit_anchors WHERE key_id = $1;

-- name: audit_lag
-- params: limit
-- How far the chain and the anchors are behind the log (each count stops at the limit: a
-- scrape must stay cheap however far behind), when the oldest event no anchor covers was
-- written, and when the last anchor was made.
WITH anchored AS (
    SELECT coalesce((SELECT a.cursor_xid FROM jobtrail.audit_anchors a
                      ORDER BY a.seq DESC LIMIT 1), '0'::xid8) AS xid,
           coalesce((SELECT a.cursor_position FROM jobtrail.audit_anchors a
                      ORDER BY a.seq DESC LIMIT 1), 0) AS position
)
SELECT (SELECT count(*) FROM (
            SELECT 1 FROM jobtrail.events e
             WHERE (e.xid, e.position) > (SELECT p.cursor_xid, p.cursor_position
                                            FROM jobtrail.chain_progress p)
             LIMIT $1) c) AS unchained,
       (SELECT count(*) FROM (
            SELECT 1 FROM jobtrail.events e, anchored
             WHERE (e.xid, e.position) > (anchored.xid, anchored.position)
             LIMIT $1) u) AS unanchored,
       (SELECT e.recorded_at FROM jobtrail.events e, anchored
         WHERE (e.xid, e.position) > (anchored.xid, anchored.position)
         ORDER BY e.xid, e.position LIMIT 1) AS oldest_unanchored_at,
       (SELECT a.recorded_at FROM jobtrail.audit_anchors a
         ORDER BY a.seq DESC LIMIT 1) AS last_anchor_at;
