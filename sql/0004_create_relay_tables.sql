-- Followers of the log (the outbox relay, later the projections) remember how far they
-- got.  A follower writes its effects and its checkpoint in one transaction.
CREATE TABLE jobtrail.checkpoints (
    name       text PRIMARY KEY,
    position   bigint      NOT NULL CHECK (position >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- The QStash message of each published dispatch, kept by the relay (not in the log:
-- publishing is bookkeeping, not a fact about the job), for cancellation and the sweeper.
CREATE TABLE jobtrail.relay_messages (
    job_id       text        NOT NULL,
    dispatch     integer     NOT NULL CHECK (dispatch >= 1),
    message_id   text        NOT NULL,
    published_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, dispatch)
);

-- Schedules are few; listing them must not scan the whole log.
CREATE INDEX events_schedule_streams ON jobtrail.events (stream_id text_pattern_ops, version)
    WHERE stream_id LIKE 'schedule-%';
