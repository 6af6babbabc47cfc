-- Which jobs: $1..$9 are JobFilter.arguments() (status, job_type, user_id,
-- organization_id, created_from, created_to, the ILIKE pattern of error_contains,
-- schedule_id, source; NULL means "any"), $10 whether only jobs a replay accepts count.
-- The rule itself is jobtrail.job_matches (sql/0017_create_job_filter.sql), written once
-- for lists, bulk replay and counts.  The caller plans each execution for its actual
-- values (force_custom_plan below), so the NULL tests fold away and the index of the
-- filter given serves the query.

-- name: select_jobs
-- params: status, job_type, user_id, organization_id, created_from, created_to, error_pattern, schedule_id, source, replayable_only, after_created_at, after_job_id, limit
SELECT job_id, job_type, status, payload, metadata, user_id, organization_id, dispatch,
       attempt, attempts, max_retries, cancel_requested, ever_completed, last_error, result,
       created_at, started_at, completed_at, failed_at, cancelled_at, duration_seconds,
       message_id, schedule_id, replay_count, source, version, position, options,
       lease_until
  FROM jobtrail.job_executions
 WHERE jobtrail.job_matches(status, job_type, user_id, organization_id, created_at, last_error,
                            schedule_id, source, ever_completed,
                            $1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
   AND ($11::timestamptz IS NULL OR (created_at, job_id) < ($11, $12::text))
 ORDER BY created_at DESC, job_id DESC
 LIMIT $13;

-- name: count_jobs
-- params: status, job_type, user_id, organization_id, created_from, created_to, error_pattern, schedule_id, source, replayable_only
SELECT count(*)
  FROM jobtrail.job_executions
 WHERE jobtrail.job_matches(status, job_type, user_id, organization_id, created_at, last_error,
                            schedule_id, source, ever_completed,
                            $1, $2, $3, $4, $5, $6, $7, $8, $9, $10);

-- name: force_custom_plan
-- params:
SET LOCAL plan_cache_mode = force_custom_plan;

-- name: get_job_execution
-- params: job_id
SELECT job_id, job_type, status, payload, metadata, user_id, organization_id, dispatch,
       attempt, attempts, max_retries, cancel_requested, ever_completed, last_error, result,
       created_at, started_at, completed_at, failed_at, cancelled_at, duration_seconds,
       message_id, schedule_id, replay_count, source, version, position, options,
       lease_until
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

-- name: read_pending
-- params:
-- Per type: pending jobs, those of them under a rate or concurrency limit (QStash holds
-- them back), and when the oldest was created.
-- From the view alone: its options are the current dispatch's (sql/0018), and the partial
-- index job_executions_pending (sql/0034) holds every figure, so a scrape reads only the
-- pending jobs' index entries, never the log.
SELECT job_type,
       count(*) AS pending,
       count(*) FILTER (WHERE jsonb_typeof(options -> 'flow_control') = 'object') AS limited,
       min(created_at) AS oldest
  FROM jobtrail.job_executions
 WHERE status = 'pending'
 GROUP BY job_type;

-- name: read_durations
-- params:
SELECT job_type, bucket, count FROM jobtrail.job_durations WHERE count <> 0;
