-- Retention: the one sanctioned exception to "the log is append-only".  Whole streams of
-- finished jobs move, in one transaction, from jobtrail.events to jobtrail.events_archive,
-- and a log.streams_archived event records which.  Nothing is destroyed silently.
CREATE TABLE jobtrail.events_archive (
    position       bigint      PRIMARY KEY,
    stream_id      text        NOT NULL,
    version        integer     NOT NULL,
    event_type     text        NOT NULL,
    schema_version smallint    NOT NULL,
    data           json        NOT NULL,
    metadata       json        NOT NULL,
    recorded_at    timestamptz NOT NULL,
    archived_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (stream_id, version)
);

CREATE FUNCTION jobtrail.archive_streams(
    candidates     text[],
    finished_before timestamptz,
    retention_days integer
) RETURNS TABLE (archived_stream_id text)
LANGUAGE plpgsql AS $$
DECLARE
    moved text[];
BEGIN
    -- The log's append lock: no event can join a stream while it is being moved.
    PERFORM pg_advisory_xact_lock(7244012501);
    -- Only job streams whose last event finished the job before the cutoff qualify,
    -- whatever the caller (and the possibly stale view it asked) believed.
    SELECT array_agg(c.sid ORDER BY c.sid) INTO moved
      FROM (SELECT DISTINCT unnest(candidates) AS sid) c
     WHERE c.sid LIKE 'job-%'
       AND (SELECT e.event_type IN ('job.completed', 'job.failed', 'job.cancelled')
                   AND e.recorded_at < finished_before
              FROM jobtrail.events e
             WHERE e.stream_id = c.sid
             ORDER BY e.version DESC LIMIT 1);
    IF moved IS NULL THEN
        RETURN;
    END IF;
    PERFORM set_config('jobtrail.archiving', 'on', true);
    WITH gone AS (
        DELETE FROM jobtrail.events e WHERE e.stream_id = ANY (moved) RETURNING e.*
    )
    INSERT INTO jobtrail.events_archive
        (position, stream_id, version, event_type, schema_version, data, metadata, recorded_at)
    SELECT g.position, g.stream_id, g.version, g.event_type, g.schema_version, g.data,
           g.metadata, g.recorded_at
      FROM gone g;
    PERFORM set_config('jobtrail.archiving', 'off', true);
    INSERT INTO jobtrail.events (stream_id, version, event_type, schema_version, data)
    VALUES ('archive-' || gen_random_uuid(), 1, 'log.streams_archived', 1,
            json_build_object(
                'stream_ids', moved,
                'job_ids', (SELECT array_agg(substr(s, 5)) FROM unnest(moved) AS s),
                'finished_before', finished_before,
                'retention_days', retention_days));
    RETURN QUERY SELECT unnest(moved);
END;
$$;
