-- The job_buckets projection's minute rows get a table of their own.  Minute rows are most
-- of the rows and most of the writes; interleaved in one heap with the hour rows, a week's
-- chart (4,500 hour rows at the 1M-job bench set) read them from ~800 pages.  Apart, the
-- hour and day rows stay packed in the order they were written, and a week reads a few
-- dozen pages.  Same columns and rules as 0030 (width 60 always).
CREATE TABLE jobtrail.job_bucket_minutes (
    bucket      timestamptz NOT NULL,
    job_type    text        NOT NULL,
    from_status text        NOT NULL,
    to_status   text        NOT NULL,
    count       bigint      NOT NULL,
    PRIMARY KEY (bucket, job_type, from_status, to_status)
);

INSERT INTO jobtrail.job_bucket_minutes (bucket, job_type, from_status, to_status, count)
SELECT bucket, job_type, from_status, to_status, count
  FROM jobtrail.job_buckets
 WHERE width = 60;
DELETE FROM jobtrail.job_buckets WHERE width = 60;
ALTER TABLE jobtrail.job_buckets DROP CONSTRAINT job_buckets_width_check;
ALTER TABLE jobtrail.job_buckets ADD CONSTRAINT job_buckets_width_check
    CHECK (width IN (3600, 86400));

INSERT INTO jobtrail.projection_tables (table_name, projection) VALUES
    ('job_bucket_minutes', 'job_buckets');
