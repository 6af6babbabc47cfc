-- name: candidates
-- params: older_than_seconds, horizon_seconds, limit
-- Published dispatches old enough to have been delivered, whose job has not finished.
SELECT m.job_id, m.dispatch, m.message_id
  FROM jobtrail.relay_messages m
 WHERE m.published_at < now() - make_interval(secs => $1)
   AND m.published_at > now() - make_interval(secs => $2)
   AND NOT EXISTS (SELECT 1 FROM jobtrail.relay_messages later
                    WHERE later.job_id = m.job_id AND later.dispatch > m.dispatch)
   AND (SELECT e.event_type FROM jobtrail.events e
         WHERE e.stream_id = 'job-' || m.job_id
           -- records that change no status (see sql/0021)
           AND e.event_type NOT IN ('job.notified', 'job.outcome_late', 'job.heartbeat')
         ORDER BY e.version DESC LIMIT 1)
       NOT IN ('job.completed', 'job.failed', 'job.cancelled')
 ORDER BY m.published_at
 LIMIT $3;

-- name: scheduled_candidates
-- params: older_than_seconds, limit
-- Jobs minted from scheduled runs (never published by the relay) that stopped moving.
SELECT job_id, dispatch, message_id
  FROM jobtrail.job_executions
 WHERE status IN ('processing', 'retrying')
   AND source = 'schedule'
   AND message_id IS NOT NULL
   AND coalesce(started_at, created_at) < now() - make_interval(secs => $1)
 ORDER BY created_at
 LIMIT $2;
