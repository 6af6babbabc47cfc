-- name: report_rows
-- params: period_start, period_end, organization_id
-- Job statistics for jobs created in a period: counts per type and status, durations.
SELECT job_type, status, count(*) AS jobs,
       avg(duration_seconds) AS avg_seconds,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_seconds) AS p50_seconds,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_seconds) AS p95_seconds,
       max(duration_seconds) AS max_seconds,
       sum(attempts) AS attempts
  FROM jobtrail.job_executions
 WHERE created_at >= $1 AND created_at < $2
   AND ($3::bigint IS NULL OR organization_id = $3)
 GROUP BY job_type, status
 ORDER BY job_type, status;
