-- A job's history may end with records that change no status: a callback call
-- (job.notified), a handler's outcome that came after its attempt was closed
-- (job.outcome_late) and a running attempt's lease extension (job.heartbeat).  Archiving
-- judges a stream by its last *status* event, skipping all three; otherwise as in 0020.
CREATE OR REPLACE FUNCTION jobtrail.archive_streams(
    candidates     text[],
    finished_before timestamptz,
    retention_days integer
) RETURNS TABLE (archived_stream_id text)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    moved text[];
BEGIN
    -- The candidates' locks: no event can join a stream while it is checked and moved.
    PERFORM jobtrail.lock_for_append(candidates, ARRAY[]::text[]);
    -- Only job streams whose last status event finished the job before the cutoff
    -- qualify, whatever the caller (and the possibly stale view it asked) believed.
    SELECT pg_catalog.array_agg(c.sid ORDER BY c.sid) INTO moved
      FROM (SELECT DISTINCT pg_catalog.unnest(candidates) AS sid) c
     WHERE c.sid LIKE 'job-%'
       AND (SELECT e.event_type IN ('job.completed', 'job.failed', 'job.cancelled')
                   AND e.recorded_at < finished_before
              FROM jobtrail.events e
             WHERE e.stream_id = c.sid
               AND e.event_type NOT IN ('job.notified', 'job.outcome_late', 'job.heartbeat')
             ORDER BY e.version DESC LIMIT 1);
    IF moved IS NULL THEN
        RETURN;
    END IF;
    PERFORM pg_catalog.set_config('jobtrail.archiving', 'on', true);
    WITH gone AS (
        DELETE FROM jobtrail.events e WHERE e.stream_id = ANY (moved) RETURNING e.*
    )
    INSERT INTO jobtrail.events_archive
        (position, stream_id, version, event_type, schema_version, data, metadata,
         recorded_at, xid)
    SELECT g.position, g.stream_id, g.version, g.event_type, g.schema_version, g.data,
           g.metadata, g.recorded_at, g.xid
      FROM gone g;
    PERFORM pg_catalog.set_config('jobtrail.archiving', 'off', true);
    INSERT INTO jobtrail.events (stream_id, version, event_type, schema_version, data)
    VALUES ('archive-' || pg_catalog.gen_random_uuid(), 1, 'log.streams_archived', 1,
            pg_catalog.json_build_object(
                'stream_ids', moved,
                'job_ids', (SELECT pg_catalog.array_agg(pg_catalog.substr(s, 5))
                              FROM pg_catalog.unnest(moved) AS s),
                'finished_before', finished_before,
                'retention_days', retention_days));
    RETURN QUERY SELECT pg_catalog.unnest(moved);
END;
$$;
