-- name: read_checkpoint
-- params: name
SELECT xid, position FROM jobtrail.checkpoints WHERE name = $1;

-- name: advance_checkpoint
-- params: name, expected_xid, expected_position, new_xid, new_position
-- Compare-and-set on the cursor (xid, position), where a checkpoint never saved is at
-- (0, 0): the row lock the update takes (or the unique index the insert waits on) is held
-- to commit, so of two followers starting from the same cursor only one commits; the
-- other finds it moved (0 rows).
WITH updated AS (
    UPDATE jobtrail.checkpoints SET xid = $4::xid8, position = $5, updated_at = now()
     WHERE name = $1 AND xid = $2::xid8 AND position = $3
    RETURNING 1
), inserted AS (
    INSERT INTO jobtrail.checkpoints (name, xid, position)
    SELECT $1, $4::xid8, $5
     WHERE $2::xid8 = '0'::xid8 AND $3 = 0
       AND NOT EXISTS (SELECT FROM jobtrail.checkpoints WHERE name = $1)
    ON CONFLICT (name) DO NOTHING
    RETURNING 1
)
SELECT (SELECT count(*) FROM updated) + (SELECT count(*) FROM inserted);

-- name: set_checkpoint
-- params: name, xid, position
INSERT INTO jobtrail.checkpoints (name, xid, position) VALUES ($1, $2::xid8, $3)
ON CONFLICT (name) DO UPDATE
   SET xid = excluded.xid, position = excluded.position, updated_at = now();

-- name: record_failure
-- params: name, position, stream_id, event_type, error
-- The table predates followers other than projections; it holds any follower's failure.
INSERT INTO jobtrail.projection_failures (name, position, stream_id, event_type, error)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (name) DO UPDATE
   SET position = excluded.position, stream_id = excluded.stream_id,
       event_type = excluded.event_type, error = excluded.error, failed_at = now();

-- name: clear_failure
-- params: name
DELETE FROM jobtrail.projection_failures WHERE name = $1;

-- name: next_event
-- params: after_xid, after_position
-- Where a batch that could not be read begins: the readable event after the checkpoint
-- (the followers' order and horizon, as in store.sql's read_after).
SELECT position, stream_id, event_type FROM jobtrail.events
 WHERE (xid, position) > ($1::xid8, $2::bigint)
   AND xid < pg_snapshot_xmin(pg_current_snapshot())
 ORDER BY xid, position LIMIT 1;
