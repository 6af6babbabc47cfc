-- Group commit: many independent appends in one transaction.  Like append_events, but
-- each stream stands alone: a stream that is not at its expected version is skipped and
-- reported (a row with a NULL position and the stream's actual version) while the other
-- streams are written.  The event store uses it to commit concurrent single-stream
-- appends together, so they share one lock hold and one WAL flush.
CREATE FUNCTION jobtrail.append_events_each(
    check_streams   text[],
    check_versions  integer[],
    stream_ids      text[],
    event_types     text[],
    schema_versions smallint[],
    datas           json[],
    metadatas       json[]
) RETURNS TABLE (out_position bigint, out_stream_id text, out_version integer)
LANGUAGE plpgsql AS $$
BEGIN
    -- The log's append lock, taken before reading versions (see jobtrail.serialize_appends).
    PERFORM pg_advisory_xact_lock(7244012501);
    RETURN QUERY
    WITH checks AS (
        SELECT c.sid, c.expected,
               (SELECT coalesce(max(e.version), 0) FROM jobtrail.events e
                 WHERE e.stream_id = c.sid) AS actual
          FROM unnest(check_streams, check_versions) AS c(sid, expected)
    ), accepted AS (
        SELECT checks.sid, checks.actual FROM checks
         WHERE checks.expected IS NULL OR checks.expected = checks.actual
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
    SELECT ins.position, ins.stream_id, ins.version FROM inserted ins
    UNION ALL
    SELECT NULL::bigint, checks.sid, checks.actual FROM checks
     WHERE NOT (checks.expected IS NULL OR checks.expected = checks.actual)
    ORDER BY 1 NULLS LAST;
END;
$$;
