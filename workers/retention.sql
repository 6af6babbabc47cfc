-- name: wal_position
-- params:
-- Where the server's WAL is written up to, in bytes (archiving pays for a batch's WAL by
-- pausing; see workers/retention.py Pace).
SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn;

-- name: finished_before
-- params: cutoff, after_finished_at, after_job_id, limit
-- Finished jobs whose end is older than the cutoff, after the last one seen (a keyset, so
-- a job the database declines to move is never asked about again in the same run).  The
-- database checks each candidate again (jobtrail.archive_streams).
SELECT job_id, coalesce(completed_at, failed_at, cancelled_at) AS finished_at
  FROM jobtrail.job_executions
 WHERE status IN ('completed', 'failed', 'cancelled')
   AND coalesce(completed_at, failed_at, cancelled_at) < $1
   AND (coalesce(completed_at, failed_at, cancelled_at), job_id) > ($2, $3)
 ORDER BY coalesce(completed_at, failed_at, cancelled_at), job_id
 LIMIT $4;

-- name: purge_candidates
-- params: archived_before, limit
-- Streams archived before the cutoff, oldest first; about ``limit`` events' worth.
SELECT DISTINCT stream_id
  FROM (SELECT stream_id FROM jobtrail.events_archive
         WHERE archived_at < $1
         ORDER BY archived_at, stream_id
         LIMIT $2) oldest;

-- name: archived_rows
-- params: stream_ids
-- Every archived event of the streams, each as one JSON object with all its columns (data
-- and metadata embedded exactly as stored), in position order: the export's lines.
SELECT a.position, a.stream_id, row_to_json(a)::text AS line
  FROM jobtrail.events_archive a
 WHERE a.stream_id = ANY ($1::text[])
 ORDER BY a.position;

-- name: purge_archive
-- params: stream_ids, positions, sha256, file, file_bytes, archived_before, archive_days
SELECT jobtrail.purge_archive($1::text[], $2::bigint[], $3, $4, $5, $6, $7);

-- name: run_started
-- params: host
INSERT INTO jobtrail.retention_runs (host) VALUES ($1) RETURNING run_id;

-- name: run_finished
-- params: run_id, archived_jobs, purged_events, removed_files, next_run_at, error
UPDATE jobtrail.retention_runs
   SET finished_at = clock_timestamp(), archived_jobs = $2, purged_events = $3,
       removed_files = $4, next_run_at = $5, error = $6
 WHERE run_id = $1;

-- name: next_run
-- params:
-- When the schedule wants the next run: as the last finished run said (any host's).
SELECT next_run_at FROM jobtrail.retention_runs
 WHERE finished_at IS NOT NULL
 ORDER BY run_id DESC LIMIT 1;

-- name: status_log
-- params: cutoff
-- What the log keeps: jobs by status in the views, and finished jobs already past the
-- retention (the next run archives them; NULL cutoff: retention is off).
SELECT (SELECT count(*) FROM jobtrail.job_executions) AS jobs,
       (SELECT count(*) FROM jobtrail.job_executions
         WHERE status NOT IN ('completed', 'failed', 'cancelled')) AS unfinished_jobs,
       (SELECT min(created_at) FROM jobtrail.job_executions) AS oldest_job_at,
       (SELECT count(*) FROM jobtrail.job_executions
         WHERE status IN ('completed', 'failed', 'cancelled')
           AND coalesce(completed_at, failed_at, cancelled_at) < $1) AS due_jobs;

-- name: status_archive
-- params: purge_cutoff
SELECT (SELECT count(*) FROM jobtrail.events_archive) AS archived_events,
       (SELECT min(archived_at) FROM jobtrail.events_archive) AS oldest_archived_at,
       (SELECT max(archived_at) FROM jobtrail.events_archive) AS newest_archived_at,
       (SELECT count(*) FROM jobtrail.events_archive WHERE archived_at < $1) AS due_events;

-- name: status_runs
-- params:
SELECT (SELECT coalesce(sum(archived_jobs), 0) FROM jobtrail.retention_runs) AS archived_jobs,
       (SELECT coalesce(sum(purged_events), 0) FROM jobtrail.retention_runs) AS purged_events,
       (SELECT max(finished_at) FROM jobtrail.retention_runs WHERE purged_events > 0)
           AS last_purge_at,
       (SELECT coalesce(sum(removed_files), 0) FROM jobtrail.retention_runs) AS removed_files,
       (SELECT max(finished_at) FROM jobtrail.retention_runs WHERE removed_files > 0)
           AS last_removal_at;

-- name: last_run
-- params:
SELECT run_id, host, started_at, finished_at, next_run_at, archived_jobs, purged_events,
       removed_files, error
  FROM jobtrail.retention_runs
 ORDER BY run_id DESC LIMIT 1;
