-- name: report_tasks
-- params: host, tasks, required, states, since, last_errors, restarts, details
-- A host's report on its background tasks (one row per task), written as a whole.
INSERT INTO jobtrail.host_tasks AS t
       (host, task, required, state, since, last_error, restarts, detail, seen_at)
SELECT $1, r.task, r.required, r.state, r.since, r.last_error, r.restarts, r.detail, now()
  FROM unnest($2::text[], $3::boolean[], $4::text[], $5::timestamptz[], $6::text[],
              $7::integer[], $8::jsonb[])
       AS r(task, required, state, since, last_error, restarts, detail)
ON CONFLICT (host, task) DO UPDATE
   SET required = excluded.required, state = excluded.state, since = excluded.since,
       last_error = excluded.last_error, restarts = excluded.restarts,
       detail = excluded.detail, seen_at = excluded.seen_at;

-- name: forget_old_reports
-- params: older_than_seconds
-- The reports of hosts that have been silent for long (stopped or gone).
DELETE FROM jobtrail.host_tasks
 WHERE seen_at < now() - make_interval(secs => $1::double precision);

-- name: task_reports
-- params: tasks
-- The latest report of each host on the named tasks (all of them when tasks is null),
-- with how long ago the host last wrote.
SELECT host, task, required, state, since, last_error, restarts, detail, seen_at,
       extract(epoch FROM now() - seen_at)::double precision AS silent_seconds
  FROM jobtrail.host_tasks
 WHERE $1::text[] IS NULL OR task = ANY($1::text[])
 ORDER BY task, seen_at DESC, host;
