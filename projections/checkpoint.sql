-- name: read_states
-- params: names
SELECT n.name, c.xid, c.position, c.updated_at, f.position AS failed_position,
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
