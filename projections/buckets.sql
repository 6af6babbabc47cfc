-- Table names are unqualified on purpose: the transaction's search_path picks the live
-- tables or a rebuild's shadow copies (projections/projection.py).  The archive is the
-- log's, never a projection's: always jobtrail.events_archive.

-- name: load_jobs
-- params: job_ids
SELECT job_id, job_type, status, dispatch, attempt, attempts, cancel_requested, ever_completed
  FROM job_bucket_jobs
 WHERE job_id = ANY($1::text[]);

-- name: upsert_jobs
-- params: rows (a JSON array of objects keyed by column name)
INSERT INTO job_bucket_jobs
SELECT * FROM json_populate_recordset(NULL::job_bucket_jobs, $1::json)
ON CONFLICT (job_id) DO UPDATE SET
       job_type = excluded.job_type, status = excluded.status, dispatch = excluded.dispatch,
       attempt = excluded.attempt, attempts = excluded.attempts,
       cancel_requested = excluded.cancel_requested, ever_completed = excluded.ever_completed;

-- name: delete_jobs
-- params: job_ids
DELETE FROM job_bucket_jobs WHERE job_id = ANY($1::text[]);

-- name: read_clock
-- params:
SELECT latest FROM job_bucket_clock;

-- name: set_clock
-- params: latest
INSERT INTO job_bucket_clock (one, latest) VALUES (true, $1)
ON CONFLICT (one) DO UPDATE SET latest = excluded.latest;

-- name: add_buckets
-- params: widths, buckets, job_types, from_statuses, to_statuses, deltas
-- Hour and day rows.
INSERT INTO job_buckets (width, bucket, job_type, from_status, to_status, count)
SELECT * FROM unnest($1::integer[], $2::timestamptz[], $3::text[], $4::text[], $5::text[],
                     $6::bigint[])
ON CONFLICT (width, bucket, job_type, from_status, to_status)
DO UPDATE SET count = job_buckets.count + excluded.count;

-- name: add_minutes
-- params: buckets, job_types, from_statuses, to_statuses, deltas
INSERT INTO job_bucket_minutes (bucket, job_type, from_status, to_status, count)
SELECT * FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::bigint[])
ON CONFLICT (bucket, job_type, from_status, to_status)
DO UPDATE SET count = job_bucket_minutes.count + excluded.count;

-- name: prune_minutes
-- params: before
-- Minute rows past the horizon: the hour and day rows hold the same transitions.
DELETE FROM job_bucket_minutes WHERE bucket < $1;

-- name: add_archive
-- params: position, archived_at, finished_before, retention_days, jobs, missing
INSERT INTO job_bucket_archives
       (position, archived_at, finished_before, retention_days, jobs, missing)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (position) DO NOTHING;

-- name: read_archived_events
-- params: stream_ids
-- The events of streams archived before this projection saw them (a rebuild, or the
-- projection's first run over a log that retention had already thinned).
SELECT position, stream_id, version, event_type, schema_version, data, metadata, recorded_at
  FROM jobtrail.events_archive
 WHERE stream_id = ANY($1::text[])
 ORDER BY stream_id, version;
