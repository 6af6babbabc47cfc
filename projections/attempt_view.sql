-- Table names are unqualified on purpose: the transaction's search_path picks the live
-- view or a rebuild's shadow copy (projections/projection.py).

-- name: load_attempts
-- params: job_ids
SELECT job_id, dispatch, attempt, outcome, message_id, started_at, finished_at, lease_until,
       duration_seconds, error_type, error_message, will_retry, abandoned
  FROM job_attempts
 WHERE job_id = ANY($1::text[]);

-- name: upsert_attempts
-- params: one array per column, in load_attempts' order
INSERT INTO job_attempts (
       job_id, dispatch, attempt, outcome, message_id, started_at, finished_at, lease_until,
       duration_seconds, error_type, error_message, will_retry, abandoned)
SELECT * FROM unnest($1::text[], $2::integer[], $3::integer[], $4::text[], $5::text[],
                     $6::timestamptz[], $7::timestamptz[], $8::double precision[],
                     $9::double precision[], $10::text[], $11::text[], $12::boolean[],
                     $13::boolean[])
ON CONFLICT (job_id, dispatch, attempt) DO UPDATE SET
       outcome = excluded.outcome, message_id = excluded.message_id,
       started_at = excluded.started_at, finished_at = excluded.finished_at,
       lease_until = excluded.lease_until, duration_seconds = excluded.duration_seconds,
       error_type = excluded.error_type, error_message = excluded.error_message,
       will_retry = excluded.will_retry, abandoned = excluded.abandoned;

-- name: delete_attempts
-- params: job_ids
DELETE FROM job_attempts WHERE job_id = ANY($1::text[]);
