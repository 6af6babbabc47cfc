-- Filters: $1 status, $2 job_type, $3 user_id, $4 organization_id, $5 created_from,
-- $6 created_to, $7 ILIKE pattern of error_contains; NULL means "any".  The caller plans
-- each execution for its actual values (plan_cache_mode = force_custom_plan), so the
-- NULL tests fold away and the index of the filter given serves the query.

-- name: list_job_executions
-- params: status, job_type, user_id, organization_id, created_from, created_to, error_pattern, after_created_at, after_job_id, limit
SELECT job_id, job_type, status, payload, metadata, user_id, organization_id, dispatch,
       attempt, attempts, max_retries, cancel_requested, ever_completed, last_error, result,
       created_at, started_at, completed_at, failed_at, cancelled_at, duration_seconds,
       message_id, schedule_id, replay_count, source, version, position
  FROM jobtrail.job_executions
 WHERE ($1::text IS NULL OR status = $1)
   AND ($2::text IS NULL OR job_type = $2)
   AND ($3::bigint IS NULL OR user_id = $3)
   AND ($4::bigint IS NULL OR organization_id = $4)
   AND ($5::timestamptz IS NULL OR created_at >= $5)
   AND ($6::timestamptz IS NULL OR created_at <= $6)
   AND ($7::text IS NULL OR last_error ILIKE $7)
   AND ($8::timestamptz IS NULL OR (created_at, job_id) < ($8, $9::text))
 ORDER BY created_at DESC, job_id DESC
 LIMIT $10;

-- name: force_custom_plan
-- params:
SET LOCAL plan_cache_mode = force_custom_plan;

-- name: get_job_execution
-- params: job_id
SELECT job_id, job_type, status, payload, metadata, user_id, organization_id, dispatch,
       attempt, attempts, max_retries, cancel_requested, ever_completed, last_error, result,
       created_at, started_at, completed_at, failed_at, cancelled_at, duration_seconds,
       message_id, schedule_id, replay_count, source, version, position
  FROM jobtrail.job_executions
 WHERE job_id = $1;

-- name: get_job_attempts
-- params: job_id
SELECT job_id, dispatch, attempt, outcome, message_id, started_at, finished_at, lease_until,
       duration_seconds, error_type, error_message, will_retry, abandoned
  FROM jobtrail.job_attempts
 WHERE job_id = $1
 ORDER BY dispatch, attempt;

-- name: read_stats
-- params:
SELECT job_type, status, count FROM jobtrail.job_stats WHERE count <> 0;

-- name: read_durations
-- params:
SELECT job_type, bucket, count FROM jobtrail.job_durations WHERE count <> 0;
