-- Reads of the job_buckets projection (projections/buckets.py, sql/0030).

-- name: read_series
-- params: width, from, to, job_type
-- One scan of a window's rows in [from, to), two groupings: transitions per bucket (of one
-- type, or of all when $4 is NULL: "count"), and per type and target status over the
-- whole window (every type: "all_count"); by_type is 1 on the rows of the second.
SELECT bucket, job_type, from_status, to_status, GROUPING(job_type) = 0 AS by_type,
       coalesce(sum(count) FILTER (WHERE $4::text IS NULL OR job_type = $4), 0)::bigint
           AS count,
       sum(count)::bigint AS all_count
  FROM jobtrail.job_buckets
 WHERE width = $1 AND bucket >= $2 AND bucket < $3
 GROUP BY GROUPING SETS ((bucket, from_status, to_status), (job_type, to_status));

-- name: read_series_minutes
-- params: width, from, to, job_type
-- As read_series, over the minute rows.
-- One scan of a window's rows in [from, to), two groupings: transitions per bucket (of one
-- type, or of all when $4 is NULL: "count"), and per type and target status over the
-- whole window (every type: "all_count"); by_type is 1 on the rows of the second.
SELECT bucket, job_type, from_status, to_status, GROUPING(job_type) = 0 AS by_type,
       coalesce(sum(count) FILTER (WHERE $4::text IS NULL OR job_type = $4), 0)::bigint
           AS count,
       sum(count)::bigint AS all_count
  FROM jobtrail.job_bucket_minutes
 WHERE $1::integer = 60 AND bucket >= $2 AND bucket < $3
 GROUP BY GROUPING SETS ((bucket, from_status, to_status), (job_type, to_status));

-- name: read_before
-- params: day, hour, moment
-- Every transition before a moment: whole days before its day, whole hours of its day
-- before its hour, minutes of its hour before it (three index ranges, few rows).
SELECT job_type, from_status, to_status, sum(count)::bigint AS count
  FROM (SELECT job_type, from_status, to_status, count FROM jobtrail.job_buckets
         WHERE width = 86400 AND bucket < $1
        UNION ALL
        SELECT job_type, from_status, to_status, count FROM jobtrail.job_buckets
         WHERE width = 3600 AND bucket >= $1 AND bucket < $2
        UNION ALL
        SELECT job_type, from_status, to_status, count FROM jobtrail.job_bucket_minutes
         WHERE bucket >= $2 AND bucket < $3) t
 GROUP BY job_type, from_status, to_status;

-- name: read_range
-- params:
-- The first day with a transition, and the newest minute the projection has met.
SELECT (SELECT min(bucket) FROM jobtrail.job_buckets WHERE width = 86400) AS first_day,
       (SELECT latest FROM jobtrail.job_bucket_clock) AS latest;

-- name: read_archives
-- params: limit
SELECT position, archived_at, finished_before, retention_days, jobs, missing
  FROM jobtrail.job_bucket_archives
 ORDER BY position DESC
 LIMIT $1;

-- name: read_archive_totals
-- params:
SELECT count(*) AS runs, coalesce(sum(jobs), 0)::bigint AS jobs,
       coalesce(sum(missing), 0)::bigint AS missing,
       max(finished_before) AS finished_before
  FROM jobtrail.job_bucket_archives;
