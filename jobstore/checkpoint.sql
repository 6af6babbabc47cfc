-- name: read_checkpoint
-- params: name
SELECT position FROM jobtrail.checkpoints WHERE name = $1;

-- name: advance_checkpoint
-- params: name, expected_position, new_position
-- Compare-and-set, where a checkpoint never saved is at 0: the row lock the update takes
-- (or the unique index the insert waits on) is held to commit, so of two followers
-- starting from the same position only one commits; the other finds it moved (0 rows).
WITH updated AS (
    UPDATE jobtrail.checkpoints SET position = $3, updated_at = now()
     WHERE name = $1 AND position = $2
    RETURNING 1
), inserted AS (
    INSERT INTO jobtrail.checkpoints (name, position)
    SELECT $1, $3
     WHERE $2 = 0 AND NOT EXISTS (SELECT FROM jobtrail.checkpoints WHERE name = $1)
    ON CONFLICT (name) DO NOTHING
    RETURNING 1
)
SELECT (SELECT count(*) FROM updated) + (SELECT count(*) FROM inserted);

-- name: set_checkpoint
-- params: name, position
INSERT INTO jobtrail.checkpoints (name, position) VALUES ($1, $2)
ON CONFLICT (name) DO UPDATE SET position = excluded.position, updated_at = now();

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
-- params: after_position
-- Where a batch that could not be read begins: the event after the checkpoint.
SELECT position, stream_id, event_type FROM jobtrail.events
 WHERE position > $1 ORDER BY position LIMIT 1;
