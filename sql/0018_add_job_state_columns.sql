-- job_executions holds the whole of a job's folded state (jobstore.job_state.JobState), so
-- the view folds a job's next event with the host's own rules instead of a copy of them:
-- add what only the host's fold kept, the current dispatch's options and the running
-- attempt's lease.  max_retries stays, as the column to read (it is options.retries).
ALTER TABLE jobtrail.job_executions
    ADD COLUMN options     jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN lease_until double precision;

-- Fill them for the jobs the view already holds, from the events it has applied (up to the
-- row's version): the options of the last dispatch, and the lease of the last attempt when
-- nothing since (a dispatch or an outcome; a cancel leaves it) has ended it.  A rebuild
-- writes the same values.
UPDATE jobtrail.job_executions AS v
   SET options = coalesce(
           (SELECT e.data -> 'options'
              FROM jobtrail.events AS e
             WHERE e.stream_id = 'job-' || v.job_id AND e.version <= v.version
               AND e.event_type = 'job.dispatched'
             ORDER BY e.version DESC
             LIMIT 1)::jsonb,
           '{}'),
       lease_until = (
           SELECT CASE WHEN e.event_type = 'job.started'
                       THEN (e.data ->> 'lease_until')::double precision END
             FROM jobtrail.events AS e
            WHERE e.stream_id = 'job-' || v.job_id AND e.version <= v.version
              AND e.event_type <> 'job.cancelled'
            ORDER BY e.version DESC
            LIMIT 1);

ALTER TABLE jobtrail.job_executions ALTER COLUMN options DROP DEFAULT;
