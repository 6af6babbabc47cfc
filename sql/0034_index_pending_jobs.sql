-- jobtrail stats and every /metrics scrape count the pending jobs per type, those under a
-- flow-control limit, and the oldest one's age (projections/reader.sql read_pending).  They
-- read the view alone (its options are the current dispatch's, sql/0018), and this partial
-- index holds every figure they need: the scan reads the pending jobs' entries, in type
-- order, without touching the table (an index-only scan where the visibility map allows),
-- instead of the whole view or one log lookup per pending job.  The options are included,
-- not an expression on them: the planner uses an index-only scan only when the columns
-- themselves are in the index.
CREATE INDEX job_executions_pending ON jobtrail.job_executions (job_type, created_at)
    INCLUDE (options)
 WHERE status = 'pending';
