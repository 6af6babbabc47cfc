-- The read models the projections fold the log into (see projections/).  Views hold jsonb
-- (they are queried by content); the log keeps json.  Index and primary-key names are left
-- to PostgreSQL's default rules on purpose: a rebuild clones these tables with
-- CREATE TABLE ... (LIKE ... INCLUDING ALL), which names its copies by the same rules, so
-- the swapped-in tables keep the names migrations gave.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

-- One row per job: the seed's JobExecution fields, plus the fold state needed to apply
-- the job's next event (dispatch, attempt, cancel_requested, ever_completed, version).
CREATE TABLE jobtrail.job_executions (
    job_id           text             NOT NULL PRIMARY KEY,
    job_type         text             NOT NULL,
    status           text             NOT NULL,
    payload          jsonb            NOT NULL,
    metadata         jsonb            NOT NULL,
    user_id          bigint,
    organization_id  bigint,
    dispatch         integer          NOT NULL,
    attempt          integer          NOT NULL,
    attempts         integer          NOT NULL,
    max_retries      integer          NOT NULL,
    cancel_requested boolean          NOT NULL,
    ever_completed   boolean          NOT NULL,
    last_error       text,
    result           jsonb,
    created_at       timestamptz      NOT NULL,
    started_at       timestamptz,
    completed_at     timestamptz,
    failed_at        timestamptz,
    cancelled_at     timestamptz,
    duration_seconds double precision,
    message_id       text,
    schedule_id      text,
    replay_count     integer          NOT NULL,
    source           text             NOT NULL,
    version          integer          NOT NULL,
    position         bigint           NOT NULL
);

-- Lists are newest first, (created_at, job_id) descending, with a keyset cursor; every
-- filter has an index that yields rows in that order, so a page costs the same at any size.
CREATE INDEX ON jobtrail.job_executions (created_at, job_id);
CREATE INDEX ON jobtrail.job_executions (status, created_at, job_id);
CREATE INDEX ON jobtrail.job_executions (job_type, status, created_at, job_id);
CREATE INDEX ON jobtrail.job_executions (job_type, created_at, job_id);
CREATE INDEX ON jobtrail.job_executions (user_id, created_at, job_id)
    WHERE user_id IS NOT NULL;
CREATE INDEX ON jobtrail.job_executions (organization_id, created_at, job_id)
    WHERE organization_id IS NOT NULL;
-- error_contains is a substring match (ILIKE '%…%'): trigrams make it an index search.
CREATE INDEX ON jobtrail.job_executions USING gin (last_error gin_trgm_ops)
    WHERE last_error IS NOT NULL;

-- One row per attempt of a dispatch.
CREATE TABLE jobtrail.job_attempts (
    job_id           text             NOT NULL,
    dispatch         integer          NOT NULL,
    attempt          integer          NOT NULL,
    outcome          text             NOT NULL
        CHECK (outcome IN ('running', 'completed', 'failed', 'abandoned')),
    message_id       text,
    started_at       timestamptz,
    finished_at      timestamptz,
    lease_until      double precision,
    duration_seconds double precision,
    error_type       text,
    error_message    text,
    will_retry       boolean,
    abandoned        boolean          NOT NULL,
    PRIMARY KEY (job_id, dispatch, attempt)
);

-- Counts per job type and status, kept by adding each job's change as it happens, so
-- reading the totals never counts the executions table.  (No CHECK (count >= 0): the
-- projection adds signed deltas with INSERT ... ON CONFLICT, and PostgreSQL checks the
-- row proposed for insertion, delta and all, before it finds the conflict.)
CREATE TABLE jobtrail.job_stats (
    job_type text   NOT NULL,
    status   text   NOT NULL,
    count    bigint NOT NULL,
    PRIMARY KEY (job_type, status)
);

-- Completed jobs' durations per type in fixed buckets (bounds in projections/histogram.py),
-- from which percentiles are estimated.
CREATE TABLE jobtrail.job_durations (
    job_type text     NOT NULL,
    bucket   smallint NOT NULL CHECK (bucket >= 0),
    count    bigint   NOT NULL,
    PRIMARY KEY (job_type, bucket)
);

-- Which tables each projection owns: the only tables a rebuild may clone and swap.
CREATE TABLE jobtrail.projection_tables (
    table_name text PRIMARY KEY,
    projection text NOT NULL
);
INSERT INTO jobtrail.projection_tables (table_name, projection) VALUES
    ('job_executions', 'job_executions'),
    ('job_stats', 'job_executions'),
    ('job_durations', 'job_executions'),
    ('job_attempts', 'job_attempts');

-- A projection that failed on an event: where, on what, and why.  It stays stopped there
-- (its checkpoint does not move) until the event can be applied.
CREATE TABLE jobtrail.projection_failures (
    name       text        PRIMARY KEY,
    position   bigint      NOT NULL,
    stream_id  text,
    event_type text,
    error      text        NOT NULL,
    failed_at  timestamptz NOT NULL DEFAULT now()
);
