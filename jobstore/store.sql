-- name: append_events
-- params: check_streams, check_versions, stream_ids, event_types, schema_versions, datas, metadatas, announce_after_commit
SELECT out_position, out_stream_id, out_version
  FROM jobtrail.append_events($1::text[], $2::integer[], $3::text[], $4::text[],
                              $5::smallint[], $6::json[], $7::json[], $8::boolean);

-- name: read_stream
-- params: stream_id, from_version
SELECT position, stream_id, version, event_type, schema_version, data, metadata, recorded_at,
       xid
  FROM jobtrail.events
 WHERE stream_id = $1 AND version >= $2
 ORDER BY version;

-- name: read_all
-- params: after_position, limit
SELECT position, stream_id, version, event_type, schema_version, data, metadata, recorded_at,
       xid
  FROM jobtrail.events
 WHERE position > $1
 ORDER BY position
 LIMIT $2;

-- name: read_after
-- params: after_xid, after_position, limit, event_types
-- The followers' read (see store.py): after the cursor in (xid, position) order, and only
-- below the horizon, the oldest transaction still running.  Both use this statement's one
-- snapshot.  Always one row at least: held_back says whether committed events wait at or
-- above the horizon: whether the newest transaction id in the log is at or above it, one
-- probe of the end of events_read_order.  (Written as EXISTS (… WHERE xid >= horizon), it
-- was planned as a sequential scan of the whole log whenever the log had outgrown its
-- statistics, a young or fast-growing log: every read of every follower then cost
-- O(log size), 17 ms at 39,000 events; tests/integration/test_ordering.py.)
-- With event_types (NULL: every type) the page still covers every event up to its end, so
-- a follower's cursor moves past events of other types; of those only their place in the
-- reading order is sent, not their data (the follower would not decode them).
SELECT h.held_back, p.handled, p.position, p.xid, p.stream_id, p.version, p.event_type,
       p.schema_version, p.data, p.metadata, p.recorded_at
  FROM (SELECT coalesce((SELECT w.xid >= pg_snapshot_xmin(pg_current_snapshot())
                           FROM jobtrail.events w ORDER BY w.xid DESC LIMIT 1), false)
                   AS held_back) h
  LEFT JOIN LATERAL (
      SELECT t.handled, e.position, e.xid,
             CASE WHEN t.handled THEN e.stream_id END AS stream_id,
             CASE WHEN t.handled THEN e.version END AS version,
             CASE WHEN t.handled THEN e.event_type END AS event_type,
             CASE WHEN t.handled THEN e.schema_version END AS schema_version,
             CASE WHEN t.handled THEN e.data END AS data,
             CASE WHEN t.handled THEN e.metadata END AS metadata,
             CASE WHEN t.handled THEN e.recorded_at END AS recorded_at
        FROM jobtrail.events e
       CROSS JOIN LATERAL (SELECT $4::text[] IS NULL OR e.event_type = ANY ($4::text[])
                                  AS handled) t
       WHERE (e.xid, e.position) > ($1::xid8, $2::bigint)
         AND e.xid < pg_snapshot_xmin(pg_current_snapshot())
       ORDER BY e.xid, e.position
       LIMIT $3) p ON true
 ORDER BY p.xid, p.position;

-- name: head
-- params:
SELECT xid, position FROM jobtrail.events ORDER BY xid DESC, position DESC LIMIT 1;

-- name: cursor_of
-- params: position
-- The event at the position, else the nearest one before it (archived events included).
SELECT xid, position FROM (
    (SELECT xid, position FROM jobtrail.events WHERE position <= $1
      ORDER BY position DESC LIMIT 1)
    UNION ALL
    (SELECT xid, position FROM jobtrail.events_archive WHERE position <= $1
      ORDER BY position DESC LIMIT 1)
) c ORDER BY position DESC LIMIT 1;

-- name: reader_lag
-- params:
-- Committed events followers cannot read yet (counted up to 100,000), how long the oldest
-- has waited, and the transaction holding the horizon when this role may see it (a
-- session of another role shows no xid; a prepared transaction shows its age).
WITH h AS MATERIALIZED (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS horizon),
held AS (
    SELECT e.recorded_at FROM jobtrail.events e, h WHERE e.xid >= h.horizon LIMIT 100000
), blocker AS (
    SELECT a.pid, a.xact_start AS since FROM pg_stat_activity a, h
     WHERE a.backend_xid = xid(h.horizon)
    UNION ALL
    SELECT NULL, p.prepared FROM pg_prepared_xacts p, h WHERE p.transaction = xid(h.horizon)
)
SELECT h.horizon,
       (SELECT count(*) FROM held) AS held_back_events,
       extract(epoch FROM clock_timestamp() - (SELECT min(held.recorded_at) FROM held))::float8
           AS held_back_seconds,
       extract(epoch FROM clock_timestamp() - (SELECT min(b.since) FROM blocker b))::float8
           AS oldest_transaction_seconds,
       (SELECT b.pid FROM blocker b ORDER BY b.since LIMIT 1) AS oldest_transaction_pid
  FROM h;

-- name: announce_appended
-- params:
-- The log's notification, sent by the store after its own appends commit (see sql/0019:
-- NOTIFY in the appending transaction would serialise commits).  A transaction that
-- writes no WAL but its commit record commits asynchronously (PostgreSQL's own rule), so
-- this one never waits for a WAL flush while it holds the notification queue's lock.
SELECT pg_notify('jobtrail_events', '');

-- name: last_position
-- params:
SELECT coalesce(max(position), 0) FROM jobtrail.events;

-- name: stream_version
-- params: stream_id
SELECT coalesce(max(version), 0) FROM jobtrail.events WHERE stream_id = $1;

-- name: append_events_each
-- params: check_streams, check_versions, token_ids, token_expiries, stream_ids, event_types, schema_versions, datas, metadatas
SELECT out_position, out_stream_id, out_version, out_token_used
  FROM jobtrail.append_events_each($1::text[], $2::integer[], $3::text[], $4::timestamptz[],
                                   $5::text[], $6::text[], $7::smallint[], $8::json[],
                                   $9::json[]);

-- name: prune_delivery_tokens
-- params:
WITH gone AS (
    DELETE FROM jobtrail.delivery_tokens WHERE expires_at < now() RETURNING 1
)
SELECT count(*) FROM gone;

-- name: schedule_streams
-- params:
SELECT DISTINCT stream_id FROM jobtrail.events
 WHERE stream_id LIKE 'schedule-%'
 ORDER BY stream_id;

-- name: checkpoint
-- params: name
SELECT position FROM jobtrail.checkpoints WHERE name = $1;

-- name: streams_newest
-- params: stream_ids
-- The newest event of these streams in the followers' order (how far the chain must reach
-- before they can be archived).
SELECT e.xid, e.position FROM jobtrail.events e
 WHERE e.stream_id = ANY($1::text[])
 ORDER BY e.xid DESC, e.position DESC
 LIMIT 1;

-- name: archive_streams
-- params: candidates, finished_before, retention_days
SELECT archived_stream_id FROM jobtrail.archive_streams($1::text[], $2, $3);

-- name: read_archived_stream
-- params: stream_id
SELECT position, stream_id, version, event_type, schema_version, data, metadata, recorded_at,
       xid
  FROM jobtrail.events_archive
 WHERE stream_id = $1
 ORDER BY version;

-- name: read_stream_with_key
-- params: stream_id, key_id
-- A job's events, each with the job's data key row (NULL columns: none), in one statement
-- and so one snapshot: the key read is as late as the newest dispatch read (the rule of
-- jobstore.keyring.KeyRing.seal), without a round trip of its own (a delivery's read).
SELECT e.position, e.stream_id, e.version, e.event_type, e.schema_version, e.data, e.metadata,
       e.recorded_at, e.xid, k.job_id::text AS job_id, k.wrapped_key, k.master_key_id,
       k.erased_at IS NOT NULL AS erased
  FROM jobtrail.events e
  LEFT JOIN jobtrail.data_keys k ON k.job_id = $2::uuid
 WHERE e.stream_id = $1
 ORDER BY e.version;

-- name: read_streams_with_keys
-- params: stream_ids, key_ids
-- read_stream_with_key for several jobs at once (concurrent deliveries' reads, coalesced by
-- the store: jobstore.batcher): one statement, so one snapshot for every job's events and
-- key, under the same rule.
SELECT e.position, e.stream_id, e.version, e.event_type, e.schema_version, e.data, e.metadata,
       e.recorded_at, e.xid, k.job_id::text AS job_id, k.wrapped_key, k.master_key_id,
       k.erased_at IS NOT NULL AS erased
  FROM unnest($1::text[], $2::uuid[]) AS r(stream_id, key_id)
  JOIN jobtrail.events e ON e.stream_id = r.stream_id
  LEFT JOIN jobtrail.data_keys k ON k.job_id = r.key_id
 ORDER BY e.stream_id, e.version;

-- name: append_events_each_making_keys
-- params: check_streams, check_versions, token_ids, token_expiries, stream_ids, event_types, schema_versions, datas, metadatas, key_streams, key_ids, user_ids, organization_ids, wrapped_keys, master_key_id
-- append_events_each storing, in the same statement, the data keys made for the first
-- dispatches it appends (jobstore.keyring.NewKey): a key commits with its dispatch or not
-- at all, and costs no statement of its own.  A key that exists already (made by an earlier
-- try of the same job) is kept, and its stream is not appended, since its events were
-- sealed with the new key: its expected version becomes -1, which no stream has, and
-- out_key_kept tells the store to seal it again with the stored key.  Keys come in key id
-- order, so two appends wanting the same keys wait for each other in one order.
WITH made AS (
    INSERT INTO jobtrail.data_keys AS k (job_id, user_id, organization_id, wrapped_key,
                                         master_key_id)
    SELECT g.job_id, g.user_id, g.organization_id, g.wrapped_key, $15::text
      FROM unnest($11::uuid[], $12::bigint[], $13::bigint[], $14::bytea[])
           WITH ORDINALITY AS g(job_id, user_id, organization_id, wrapped_key, n)
     ORDER BY g.n
    ON CONFLICT (job_id) DO NOTHING
    RETURNING k.job_id
), kept AS (
    SELECT coalesce(array_agg(g.sid), '{}') AS streams
      FROM unnest($10::text[], $11::uuid[]) AS g(sid, job_id)
     WHERE g.job_id NOT IN (SELECT made.job_id FROM made)
)
SELECT a.out_position, a.out_stream_id, a.out_version, a.out_token_used,
       a.out_stream_id = ANY (kept.streams) AS out_key_kept
  FROM kept
 CROSS JOIN LATERAL jobtrail.append_events_each(
           $1::text[],
           ARRAY(SELECT CASE WHEN c.sid = ANY (kept.streams) THEN -1 ELSE c.expected END
                   FROM unnest($1::text[], $2::integer[]) WITH ORDINALITY AS c(sid, expected, n)
                  ORDER BY c.n),
           $3::text[], $4::timestamptz[], $5::text[], $6::text[], $7::smallint[], $8::json[],
           $9::json[]) a;
