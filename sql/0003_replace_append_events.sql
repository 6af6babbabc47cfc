-- append_events looked up current versions with a join that the generic plan of a
-- PL/pgSQL query may run as a hash join over the whole log, so appends slowed down as the
-- log grew.  A per-stream subquery is always an index lookup of (stream_id, version).
CREATE OR REPLACE FUNCTION jobtrail.append_events(
    check_streams   text[],
    check_versions  integer[],
    stream_ids      text[],
    event_types     text[],
    schema_versions smallint[],
    datas           json[],
    metadatas       json[]
) RETURNS TABLE (out_position bigint, out_stream_id text, out_version integer)
LANGUAGE plpgsql AS $$
DECLARE
    i      integer;
    actual integer;
BEGIN
    -- Take the log's append lock before reading versions, so the check and the insert
    -- see the same state (see jobtrail.serialize_appends).
    PERFORM pg_advisory_xact_lock(7244012501);
    FOR i IN 1 .. coalesce(array_length(check_streams, 1), 0) LOOP
        SELECT coalesce(max(e.version), 0) INTO actual
          FROM jobtrail.events e WHERE e.stream_id = check_streams[i];
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
        SELECT s.sid,
               (SELECT coalesce(max(e.version), 0) FROM jobtrail.events e
                 WHERE e.stream_id = s.sid) AS v
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
