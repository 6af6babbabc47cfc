-- What each host's background tasks (relay, projections, sweeper, notifier…) are doing:
-- running, restarting after a failure (since when, and why), or stopped.  Each host
-- writes its own rows when a task changes state and every few seconds while it lives
-- (seen_at), so `jobtrail projections status` and `jobtrail relay status` can show them
-- and tell a live report from the last word of a host that is gone.
CREATE TABLE jobtrail.host_tasks (
    host        text        NOT NULL,
    task        text        NOT NULL,
    required    boolean     NOT NULL,
    state       text        NOT NULL CHECK (state IN ('running', 'restarting', 'stopped')),
    since       timestamptz NOT NULL,
    last_error  text,
    restarts    integer     NOT NULL DEFAULT 0,
    detail      jsonb       NOT NULL DEFAULT '{}',
    seen_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (host, task)
);
