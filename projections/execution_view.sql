-- Table names are unqualified on purpose: the transaction's search_path picks the live
-- views or a rebuild's shadow copies (projections/projection.py).

-- name: load_executions
-- params: job_ids
-- Every field of a job's state (projections/execution.py COLUMNS).
SELECT job_id, job_type, status, payload, metadata, user_id, organization_id, options,
       max_retries, dispatch, source, created_at, version, position, attempt, attempts,
       lease_until, ever_completed, cancel_requested, started_at, completed_at, failed_at,
       cancelled_at, duration_seconds, last_error, result, message_id, replay_count,
       schedule_id
  FROM job_executions
 WHERE job_id = ANY($1::text[]);

-- name: upsert_executions
-- params: rows (a JSON array of objects keyed by column name)
-- One JSON document, not one array per column: asyncpg checks every element of an array
-- parameter, which cost more than the rest of the projection.
INSERT INTO job_executions
SELECT * FROM json_populate_recordset(NULL::job_executions, $1::json)
ON CONFLICT (job_id) DO UPDATE SET
       job_type = excluded.job_type, status = excluded.status, payload = excluded.payload,
       metadata = excluded.metadata, user_id = excluded.user_id,
       organization_id = excluded.organization_id, dispatch = excluded.dispatch,
       attempt = excluded.attempt, attempts = excluded.attempts,
       max_retries = excluded.max_retries, cancel_requested = excluded.cancel_requested,
       ever_completed = excluded.ever_completed, last_error = excluded.last_error,
       result = excluded.result, created_at = excluded.created_at,
       started_at = excluded.started_at, completed_at = excluded.completed_at,
       failed_at = excluded.failed_at, cancelled_at = excluded.cancelled_at,
       duration_seconds = excluded.duration_seconds, message_id = excluded.message_id,
       schedule_id = excluded.schedule_id, replay_count = excluded.replay_count,
       source = excluded.source, version = excluded.version, position = excluded.position,
       options = excluded.options, lease_until = excluded.lease_until;

-- name: delete_executions
-- params: job_ids
DELETE FROM job_executions WHERE job_id = ANY($1::text[]);

-- name: add_stats
-- params: job_types, statuses, deltas
INSERT INTO job_stats (job_type, status, count)
SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[])
ON CONFLICT (job_type, status) DO UPDATE SET count = job_stats.count + excluded.count;

-- name: prune_stats
-- params:
DELETE FROM job_stats WHERE count = 0;

-- name: add_durations
-- params: job_types, buckets, deltas
INSERT INTO job_durations (job_type, bucket, count)
SELECT * FROM unnest($1::text[], $2::smallint[], $3::bigint[])
ON CONFLICT (job_type, bucket) DO UPDATE SET count = job_durations.count + excluded.count;

-- name: prune_durations
-- params:
DELETE FROM job_durations WHERE count = 0;
