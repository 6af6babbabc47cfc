-- The job_buckets projection (projections/buckets.py): how many jobs moved from one status
-- to another, per time bucket and job type, for the dashboard's charts over time and its
-- time travel (the counts by type and status at a past moment are the sum of every
-- transition before it).  Table names follow 0010's rule: PostgreSQL's default index
-- names, so a rebuild's copies keep them.

-- Transitions per (width, bucket, job type, from status, to status).  Each transition is
-- counted at three widths at once: minutes (60), hours (3600) and days (86400, UTC), so a
-- week's chart reads hour rows and a sum up to a moment reads days, then hours, then
-- minutes.  from_status '' is a job's creation, to_status '' its archiving (retention).
-- Minute rows older than two days before the newest event are pruned (the hours keep them).
CREATE TABLE jobtrail.job_buckets (
    width       integer     NOT NULL CHECK (width IN (60, 3600, 86400)),
    bucket      timestamptz NOT NULL,
    job_type    text        NOT NULL,
    from_status text        NOT NULL,
    to_status   text        NOT NULL,
    count       bigint      NOT NULL,
    PRIMARY KEY (width, bucket, job_type, from_status, to_status)
);

-- The part of each job's folded state the status rules read, so the next event's
-- transition comes from jobstore's own fold (projections/buckets.py says which fields).
CREATE TABLE jobtrail.job_bucket_jobs (
    job_id           text    NOT NULL PRIMARY KEY,
    job_type         text    NOT NULL,
    status           text    NOT NULL,
    dispatch         integer NOT NULL,
    attempt          integer NOT NULL,
    attempts         integer NOT NULL,
    cancel_requested boolean NOT NULL,
    ever_completed   boolean NOT NULL
);

-- Each archiving (log.streams_archived) as the projection met it: where the log's
-- history of those jobs went, for the page that says so.  missing: jobs the projection
-- had not seen in the log (archived before it first ran, or a rebuild) whose events were
-- not in jobtrail.events_archive either, so no count holds them.
CREATE TABLE jobtrail.job_bucket_archives (
    position        bigint      NOT NULL PRIMARY KEY,
    archived_at     timestamptz NOT NULL,
    finished_before timestamptz NOT NULL,
    retention_days  integer     NOT NULL,
    jobs            integer     NOT NULL,
    missing         integer     NOT NULL
);

-- The newest minute the projection has met: minute rows older than two days before it are
-- pruned, and an event that old counts in hours and days only (the same rule incremental
-- and rebuilt, so both reach the same rows).  One row.
CREATE TABLE jobtrail.job_bucket_clock (
    one    boolean     NOT NULL PRIMARY KEY DEFAULT true CHECK (one),
    latest timestamptz NOT NULL
);

INSERT INTO jobtrail.projection_tables (table_name, projection) VALUES
    ('job_buckets', 'job_buckets'),
    ('job_bucket_jobs', 'job_buckets'),
    ('job_bucket_archives', 'job_buckets'),
    ('job_bucket_clock', 'job_buckets');
