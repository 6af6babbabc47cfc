-- name: set_statement_timeout
-- params: timeout
SELECT set_config('statement_timeout', $1, true);

-- name: recent_events
-- params: before_position, event_type, stream_id, limit
SELECT position, stream_id, version, event_type, data::text AS data, metadata::text AS metadata,
       recorded_at
FROM jobtrail.events
WHERE ($1::bigint IS NULL OR position < $1)
  AND ($2::text IS NULL OR event_type = $2)
  AND ($3::text IS NULL OR stream_id = $3)
ORDER BY position DESC
LIMIT $4;
