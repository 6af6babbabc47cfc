-- name: append_events
-- params: check_streams, check_versions, stream_ids, event_types, schema_versions, datas, metadatas
SELECT out_position, out_stream_id, out_version
  FROM jobtrail.append_events($1::text[], $2::integer[], $3::text[], $4::text[],
                              $5::smallint[], $6::json[], $7::json[]);

-- name: read_stream
-- params: stream_id, from_version
SELECT position, stream_id, version, event_type, schema_version, data, metadata, recorded_at
  FROM jobtrail.events
 WHERE stream_id = $1 AND version >= $2
 ORDER BY version;

-- name: read_all
-- params: after_position, limit
SELECT position, stream_id, version, event_type, schema_version, data, metadata, recorded_at
  FROM jobtrail.events
 WHERE position > $1
 ORDER BY position
 LIMIT $2;

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

-- name: archive_streams
-- params: candidates, finished_before, retention_days
SELECT archived_stream_id FROM jobtrail.archive_streams($1::text[], $2, $3);

-- name: read_archived_stream
-- params: stream_id
SELECT position, stream_id, version, event_type, schema_version, data, metadata, recorded_at
  FROM jobtrail.events_archive
 WHERE stream_id = $1
 ORDER BY version;
