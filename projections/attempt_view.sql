-- Table names are unqualified on purpose: the transaction's search_path picks the live
-- view or a rebuild's shadow copy (projections/projection.py).

-- name: load_attempts
-- params: job_ids
SELECT job_id, dispatch, attempt, outcome, message_id, started_at, finished_at, lease_until,
       duration_seconds, error_type, error_message, will_retry, abandoned
  FROM job_attempts
 WHERE job_id = ANY($1::text[]);

-- name: upsert_attempts
-- params: rows (a JSON array of objects keyed by column name)
INSERT INTO job_attempts
SELECT * FROM json_populate_recordset(NULL::job_attempts, $1::json)
ON CONFLICT (job_id, dispatch, attempt) DO UPDATE SET
       outcome = excluded.outcome, message_id = excluded.message_id,
       started_at = excluded.started_at, finished_at = excluded.finished_at,
       lease_until = excluded.lease_until, duration_seconds = excluded.duration_seconds,
       error_type = excluded.error_type, error_message = excluded.error_message,
       will_retry = excluded.will_retry, abandoned = excluded.abandoned;

-- name: delete_attempts
-- params: job_ids
DELETE FROM job_attempts WHERE job_id = ANY($1::text[]);
