-- The one rule that selects jobs for a list, a count or a bulk replay (projections/filter.py
-- validates the values; projections/reader.sql passes them here).  NULL means "any".  A plain
-- SQL function of scalars: the planner inlines it into each query, and with the query
-- planned for its actual values (plan_cache_mode = force_custom_plan) the NULL tests fold
-- away and the index of the filter given serves the query.  It names no table, so a
-- rebuild's swapped-in views need nothing from it.
CREATE FUNCTION jobtrail.job_matches(
    status text, job_type text, user_id bigint, organization_id bigint,
    created_at timestamptz, last_error text, schedule_id text, source text,
    ever_completed boolean,
    want_status text, want_type text, want_user_id bigint, want_organization_id bigint,
    created_from timestamptz, created_to timestamptz, error_pattern text,
    want_schedule_id text, want_source text, replayable_only boolean
) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
SELECT (want_status IS NULL OR status = want_status)
   AND (want_type IS NULL OR job_type = want_type)
   AND (want_user_id IS NULL OR user_id = want_user_id)
   AND (want_organization_id IS NULL OR organization_id = want_organization_id)
   AND (created_from IS NULL OR created_at >= created_from)
   AND (created_to IS NULL OR created_at <= created_to)
   AND (error_pattern IS NULL OR last_error ILIKE error_pattern)
   AND (want_schedule_id IS NULL OR schedule_id = want_schedule_id)
   AND (want_source IS NULL OR source = want_source)
   -- What a replay accepts (jobstore.job_state.decide_replay): failed jobs, and cancelled
   -- jobs that never completed.
   AND (replayable_only IS NOT TRUE
        OR status = 'failed' OR (status = 'cancelled' AND NOT ever_completed))
$$;

-- Lists by schedule and by dispatch source, newest first like every other filter.  Most
-- jobs come from the API and have no schedule: partial indexes keep those rows out, and
-- a list of API jobs is served by the (created_at, job_id) index, since most rows match.
CREATE INDEX ON jobtrail.job_executions (schedule_id, created_at, job_id)
    WHERE schedule_id IS NOT NULL;
CREATE INDEX ON jobtrail.job_executions (source, created_at, job_id)
    WHERE source <> 'api';
