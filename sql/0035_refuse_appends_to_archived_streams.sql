-- Nothing joins a stream once archiving moved it.
--
-- Archiving takes the streams' locks, so an append to one of them waits until the move
-- commits.  Since 0024 an archived stream's versions still count, so such an append,
-- expecting the version its writer read before the move (a host recording a late
-- outcome or a callback's job.notified, a racing cancel), found the stream "at" that
-- version and wrote its event into the log: a fragment of a moved stream, which every
-- view then stopped on ("starts with job.notified, not job.dispatched"), and a history
-- split between the archive and the log.  From here on an append to a stream that the
-- log has none of and the archive has is a conflict (JT001, nothing written), whatever
-- version it expected; enqueue's "no stream yet" already was one.  Once its lock is held
-- the check reads the committed move (each statement of these functions takes a new
-- snapshot), so no interleaving gets past it.
--
-- The live stream's version is read once, as before; the archive only when the log has
-- none of the stream: appends to live streams cost what they did.

-- The conflict of an append to an archived stream (``archived``: its last archived
-- version, looked up when not given).
CREATE FUNCTION jobtrail.refuse_archived_stream(sid text, archived integer) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    archived := coalesce(archived, jobtrail.stream_version(sid));
    RAISE EXCEPTION 'stream % was archived (at version %); nothing can be appended to it',
        sid, archived
        USING ERRCODE = 'JT001',
              HINT = 'an archived job stays as it was: enqueue a new job instead',
              DETAIL = json_build_object('stream_id', sid, 'actual', archived,
                                         'expected', 'a stream that is not archived')::text;
END;
$$;

-- As in 0024, refusing archived streams (see the header).
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
    i        integer;
    actual   integer;
    archived integer;
    late     text;
    -- Whether this transaction got its id before the streams' locks (see 0019).
    early    boolean := pg_current_xact_id_if_assigned() IS NOT NULL;
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
    -- Streams written without a version check are checked for archiving too.
    SELECT d.sid INTO late
      FROM (SELECT unnest(stream_ids) EXCEPT SELECT unnest(check_streams)) AS d(sid)
     WHERE NOT EXISTS (SELECT 1 FROM jobtrail.events e WHERE e.stream_id = d.sid)
       AND EXISTS (SELECT 1 FROM jobtrail.events_archive a WHERE a.stream_id = d.sid)
     LIMIT 1;
    IF late IS NOT NULL THEN
        PERFORM jobtrail.refuse_archived_stream(late, NULL);
    END IF;
    FOR i IN 1 .. coalesce(array_length(check_streams, 1), 0) LOOP
        SELECT max(e.version) INTO actual FROM jobtrail.events e
         WHERE e.stream_id = check_streams[i];
        IF actual IS NULL THEN
            SELECT max(a.version) INTO archived FROM jobtrail.events_archive a
             WHERE a.stream_id = check_streams[i];
            IF archived IS NOT NULL THEN
                PERFORM jobtrail.refuse_archived_stream(check_streams[i], archived);
            END IF;
            actual := 0;
        END IF;
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

-- As in 0024, refusing archived streams (see the header): such a stream fails alone, as a
-- conflict at its archived version.
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
               coalesce(v.live, v.archived, 0) AS actual,
               v.live IS NULL AND v.archived IS NOT NULL AS moved,
               (c.tok IS NOT NULL AND (
                    EXISTS (SELECT 1 FROM jobtrail.delivery_tokens t WHERE t.token_id = c.tok)
                    OR EXISTS (SELECT 1 FROM unnest(token_ids) WITH ORDINALITY AS p(tok, ord)
                                WHERE p.tok = c.tok AND p.ord < c.ord)))
                   AS token_used
          FROM unnest(check_streams, check_versions, token_ids, token_expiries)
               WITH ORDINALITY AS c(sid, expected, tok, texp, ord)
          CROSS JOIN LATERAL (
                SELECT l.live,
                       CASE WHEN l.live IS NULL THEN
                           (SELECT max(a.version) FROM jobtrail.events_archive a
                             WHERE a.stream_id = c.sid) END AS archived
                  FROM (SELECT max(e.version) AS live FROM jobtrail.events e
                         WHERE e.stream_id = c.sid) l) v
    ), accepted AS (
        SELECT checks.sid, checks.actual, checks.tok, checks.texp FROM checks
         WHERE (checks.expected IS NULL OR checks.expected = checks.actual)
           AND NOT checks.moved
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
        OR checks.moved
        OR checks.token_used
    ORDER BY 1 NULLS LAST;
END;
$$;
