-- Filters as in reader.sql ($1..$7), over the jobs a replay accepts.

-- name: replayable_jobs
-- params: status, job_type, user_id, organization_id, created_from, created_to, error_pattern, after_created_at, after_job_id, limit
-- Failed jobs, and cancelled jobs that never completed (jobstore.job_state.decide_replay).
SELECT job_id, created_at
  FROM jobtrail.job_executions
 WHERE (status = 'failed' OR (status = 'cancelled' AND NOT ever_completed))
   AND ($1::text IS NULL OR status = $1)
   AND ($2::text IS NULL OR job_type = $2)
   AND ($3::bigint IS NULL OR user_id = $3)
   AND ($4::bigint IS NULL OR organization_id = $4)
   AND ($5::timestamptz IS NULL OR created_at >= $5)
   AND ($6::timestamptz IS NULL OR created_at <= $6)
   AND ($7::text IS NULL OR last_error ILIKE $7)
   AND ($8::timestamptz IS NULL OR (created_at, job_id) < ($8, $9::text))
 ORDER BY created_at DESC, job_id DESC
 LIMIT $10;

-- name: count_replayable
-- params: status, job_type, user_id, organization_id, created_from, created_to, error_pattern
SELECT count(*)
  FROM jobtrail.job_executions
 WHERE (status = 'failed' OR (status = 'cancelled' AND NOT ever_completed))
   AND ($1::text IS NULL OR status = $1)
   AND ($2::text IS NULL OR job_type = $2)
   AND ($3::bigint IS NULL OR user_id = $3)
   AND ($4::bigint IS NULL OR organization_id = $4)
   AND ($5::timestamptz IS NULL OR created_at >= $5)
   AND ($6::timestamptz IS NULL OR created_at <= $6)
   AND ($7::text IS NULL OR last_error ILIKE $7);
