-- name: ensure_checkpoint
-- params: name
INSERT INTO jobtrail.checkpoints (name, position) VALUES ($1, 0)
ON CONFLICT (name) DO NOTHING;

-- name: read_checkpoint
-- params: name
SELECT position FROM jobtrail.checkpoints WHERE name = $1;

-- name: advance_checkpoint
-- params: name, expected_position, new_position
-- Compare-and-set: the row lock it takes is held to commit, so of two appliers starting
-- from the same position only one commits; the other finds the position moved.
UPDATE jobtrail.checkpoints SET position = $3, updated_at = now()
 WHERE name = $1 AND position = $2;

-- name: set_checkpoint
-- params: name, position
INSERT INTO jobtrail.checkpoints (name, position) VALUES ($1, $2)
ON CONFLICT (name) DO UPDATE SET position = excluded.position, updated_at = now();

-- name: record_failure
-- params: name, position, stream_id, event_type, error
INSERT INTO jobtrail.projection_failures (name, position, stream_id, event_type, error)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (name) DO UPDATE
   SET position = excluded.position, stream_id = excluded.stream_id,
       event_type = excluded.event_type, error = excluded.error, failed_at = now();

-- name: clear_failure
-- params: name
DELETE FROM jobtrail.projection_failures WHERE name = $1;

-- name: read_states
-- params: names
SELECT n.name, c.position, c.updated_at, f.position AS failed_position,
       f.stream_id AS failed_stream_id, f.event_type AS failed_event_type,
       f.error, f.failed_at
  FROM unnest($1::text[]) AS n(name)
  LEFT JOIN jobtrail.checkpoints c ON c.name = n.name
  LEFT JOIN jobtrail.projection_failures f ON f.name = n.name
 ORDER BY n.name;

-- name: min_position
-- params: names
SELECT min(coalesce(c.position, 0))
  FROM unnest($1::text[]) AS n(name)
  LEFT JOIN jobtrail.checkpoints c ON c.name = n.name;

-- name: next_event
-- params: after_position
-- Where a batch that could not be read begins: the event after the checkpoint.
SELECT position, stream_id, event_type FROM jobtrail.events
 WHERE position > $1 ORDER BY position LIMIT 1;
