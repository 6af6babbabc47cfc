-- An archived stream keeps its place: its versions still count, so it is never created anew.
--
-- A job's id may be derived from (organization, idempotency key), and enqueue appends its
-- first event expecting "no stream yet".  Until now a stream's version was read from
-- jobtrail.events alone, so once archiving had moved a job's stream out, the same key
-- created `job-<id>` again at version 1, and archiving that new stream later collided
-- with the archived rows (UNIQUE (stream_id, version)) and failed its whole batch: the
-- key's "forever" ended at the retention window.  The dispatcher looks in the archive
-- before it enqueues, but between its look and its append an archiving could still move
-- the stream; only the database, under the stream's lock, can say for sure.
--
-- From here on a stream's current version is its last version in the log, or, when the
-- log holds none of it, its last archived version (0 only for a stream that never
-- existed).  So "no stream yet" fails with a conflict for an archived stream (enqueue
-- then returns the archived job), and any other append would continue after the
-- archived versions instead of colliding with them.  The archive is read only when the
-- log has nothing of the stream (coalesce stops at its first non-null argument): appends
-- to live streams cost what they did; a new stream costs one more index probe.
--
-- Archiving itself now leaves out any stream whose versions would collide with archived
-- rows (streams created anew before this migration): the rest of the batch moves.

-- A stream's current version, archive included.  SQL and without SET options, so that the
-- planner inlines it into the queries that call it (names are qualified instead).
CREATE FUNCTION jobtrail.stream_version(sid text) RETURNS integer
LANGUAGE sql STABLE
AS $$
    SELECT coalesce((SELECT max(e.version) FROM jobtrail.events e WHERE e.stream_id = sid),
                    (SELECT max(a.version) FROM jobtrail.events_archive a
                      WHERE a.stream_id = sid),
                    0);
$$;

-- As in 0019, reading each stream's version through the archive too (see the header).
CREATE OR REPLACE FUNCTION jobtrail.append_events(
    check_streams   text[],
    check_versions  integer[],
    stream_ids      text[],
    event_types     text[],
    schema_versions smallint[],
    datas           json[],
    metadatas       json[],
    announce_after_commit boolean
) RETURNS TABLE (out_position bigint, out_stream_id text, out_version integer)
LANGUAGE plpgsql AS $$
DECLARE
    i      integer;
    actual integer;
    late   text;
    -- Whether this transaction got its id before the streams' locks (see 0019).
    early  boolean := pg_current_xact_id_if_assigned() IS NOT NULL;
BEGIN
    IF announce_after_commit THEN
        PERFORM set_config('jobtrail.announce', 'after_commit', true);
    END IF;
    PERFORM jobtrail.lock_for_append(
        array_cat(check_streams, stream_ids), ARRAY[]::text[]);
    IF early THEN
        SELECT d.sid INTO late
          FROM (SELECT DISTINCT unnest(stream_ids) AS sid) d
         WHERE (SELECT e.xid FROM jobtrail.events e WHERE e.stream_id = d.sid
                 ORDER BY e.version DESC LIMIT 1) > pg_current_xact_id()
         LIMIT 1;
        IF late IS NOT NULL THEN
            actual := jobtrail.stream_version(late);
            RAISE EXCEPTION 'stream % was appended to by a transaction younger than this one', late
                USING ERRCODE = 'JT001',
                      HINT = 'retry the append in a new transaction',
                      DETAIL = json_build_object(
                          'stream_id', late, 'actual', actual,
                          'expected', 'no append by a transaction younger than its own')::text;
        END IF;
    END IF;
    FOR i IN 1 .. coalesce(array_length(check_streams, 1), 0) LOOP
        actual := jobtrail.stream_version(check_streams[i]);
        IF check_versions[i] IS NOT NULL AND actual <> check_versions[i] THEN
            RAISE EXCEPTION 'stream % is at version %, expected %',
                check_streams[i], actual, check_versions[i]
                USING ERRCODE = 'JT001',
                      DETAIL = json_build_object('stream_id', check_streams[i],
                                                 'expected', check_versions[i],
                                                 'actual', actual)::text;
        END IF;
    END LOOP;

    RETURN QUERY
    WITH input AS (
        SELECT u.sid, u.etype, u.sver, u.dat, u.meta, u.ord
          FROM unnest(stream_ids, event_types, schema_versions, datas, metadatas)
               WITH ORDINALITY AS u(sid, etype, sver, dat, meta, ord)
    ), current_versions AS (
        SELECT s.sid, jobtrail.stream_version(s.sid) AS v
          FROM (SELECT DISTINCT input.sid FROM input) s
    ), numbered AS (
        SELECT input.*, cv.v + row_number() OVER (PARTITION BY input.sid ORDER BY input.ord)
                   AS new_version
          FROM input JOIN current_versions cv USING (sid)
    ), inserted AS (
        INSERT INTO jobtrail.events (stream_id, version, event_type, schema_version, data, metadata)
        SELECT n.sid, n.new_version, n.etype, n.sver, n.dat, n.meta
          FROM numbered n ORDER BY n.ord
        RETURNING position, stream_id, version
    )
    SELECT ins.position, ins.stream_id, ins.version FROM inserted ins ORDER BY ins.position;
END;
$$;

-- As in 0019, reading each stream's version through the archive too (see the header).
CREATE OR REPLACE FUNCTION jobtrail.append_events_each(
    check_streams   text[],
    check_versions  integer[],
    token_ids       text[],
    token_expiries  timestamptz[],
    stream_ids      text[],
    event_types     text[],
    schema_versions smallint[],
    datas           json[],
    metadatas       json[]
) RETURNS TABLE (out_position bigint, out_stream_id text, out_version integer,
                 out_token_used boolean)
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('jobtrail.announce', 'after_commit', true);
    PERFORM jobtrail.lock_for_append(array_cat(check_streams, stream_ids), token_ids);
    RETURN QUERY
    WITH checks AS (
        SELECT c.sid, c.expected, c.tok, c.texp,
               jobtrail.stream_version(c.sid) AS actual,
               (c.tok IS NOT NULL AND (
                    EXISTS (SELECT 1 FROM jobtrail.delivery_tokens t WHERE t.token_id = c.tok)
                    OR EXISTS (SELECT 1 FROM unnest(token_ids) WITH ORDINALITY AS p(tok, ord)
                                WHERE p.tok = c.tok AND p.ord < c.ord)))
                   AS token_used
          FROM unnest(check_streams, check_versions, token_ids, token_expiries)
               WITH ORDINALITY AS c(sid, expected, tok, texp, ord)
    ), accepted AS (
        SELECT checks.sid, checks.actual, checks.tok, checks.texp FROM checks
         WHERE (checks.expected IS NULL OR checks.expected = checks.actual)
           AND NOT checks.token_used
    ), tokens AS (
        INSERT INTO jobtrail.delivery_tokens (token_id, stream_id, expires_at)
        SELECT accepted.tok, accepted.sid, accepted.texp FROM accepted
         WHERE accepted.tok IS NOT NULL
    ), input AS (
        SELECT u.sid, u.etype, u.sver, u.dat, u.meta, u.ord
          FROM unnest(stream_ids, event_types, schema_versions, datas, metadatas)
               WITH ORDINALITY AS u(sid, etype, sver, dat, meta, ord)
    ), numbered AS (
        SELECT input.*, accepted.actual
                   + row_number() OVER (PARTITION BY input.sid ORDER BY input.ord) AS new_version
          FROM input JOIN accepted USING (sid)
    ), inserted AS (
        INSERT INTO jobtrail.events (stream_id, version, event_type, schema_version, data, metadata)
        SELECT n.sid, n.new_version, n.etype, n.sver, n.dat, n.meta
          FROM numbered n ORDER BY n.ord
        RETURNING position, stream_id, version
    )
    SELECT ins.position, ins.stream_id, ins.version, false FROM inserted ins
    UNION ALL
    SELECT NULL::bigint, checks.sid, checks.actual, checks.token_used FROM checks
     WHERE NOT (checks.expected IS NULL OR checks.expected = checks.actual)
        OR checks.token_used
    ORDER BY 1 NULLS LAST;
END;
$$;

-- As in 0021, leaving out streams whose versions are archived already (see the header).
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
    SELECT pg_catalog.array_agg(c.sid ORDER BY c.sid) INTO moved
      FROM (SELECT DISTINCT pg_catalog.unnest(candidates) AS sid) c
     WHERE c.sid LIKE 'job-%'
       AND (SELECT e.event_type IN ('job.completed', 'job.failed', 'job.cancelled')
                   AND e.recorded_at < finished_before
              FROM jobtrail.events e
             WHERE e.stream_id = c.sid
               AND e.event_type NOT IN ('job.notified', 'job.outcome_late', 'job.heartbeat')
             ORDER BY e.version DESC LIMIT 1)
       AND NOT EXISTS (SELECT 1 FROM jobtrail.events e
                         JOIN jobtrail.events_archive a
                           ON a.stream_id = e.stream_id AND a.version = e.version
                        WHERE e.stream_id = c.sid);
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
