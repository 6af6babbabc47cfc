-- name: finished_before
-- params: cutoff, limit
-- Finished jobs whose end is older than the cutoff (the database checks each again).
SELECT job_id FROM jobtrail.job_executions
 WHERE status IN ('completed', 'failed', 'cancelled')
   AND coalesce(completed_at, failed_at, cancelled_at) < $1
 ORDER BY coalesce(completed_at, failed_at, cancelled_at)
 LIMIT $2;
