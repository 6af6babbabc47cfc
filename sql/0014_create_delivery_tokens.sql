-- One-time delivery tokens: a captured signed delivery re-sent within its validity window
-- must run nothing.  The JWT id (jti) of the delivery that started an attempt is recorded
-- in the same transaction as that attempt's JobStarted, so "this token already started an
-- attempt" and "the attempt started" can never disagree (a crash between two writes
-- cannot exist).  Rows are kept until the token expires (the JWT's exp claim); after that
-- the signature check refuses the token anyway and the row is pruned.
CREATE TABLE jobtrail.delivery_tokens (
    token_id   text        PRIMARY KEY CHECK (length(token_id) BETWEEN 1 AND 200),
    stream_id  text        NOT NULL,
    expires_at timestamptz NOT NULL
);

CREATE INDEX delivery_tokens_expires_at ON jobtrail.delivery_tokens (expires_at);

-- append_events_each gains one optional token per stream (token_ids/token_expiries, aligned
-- with check_streams, NULL for none).  A stream whose token is already recorded is
-- skipped and reported (out_token_used) like a stream at the wrong version; an accepted
-- stream's token is recorded with its events.  The log's append lock is held while the
-- token table is read and written, so the check and the insert see the same state.
DROP FUNCTION jobtrail.append_events_each(
    text[], integer[], text[], text[], smallint[], json[], json[]);

CREATE FUNCTION jobtrail.append_events_each(
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
    -- The log's append lock, taken before reading versions and tokens
    -- (see jobtrail.serialize_appends).
    PERFORM pg_advisory_xact_lock(7244012501);
    RETURN QUERY
    WITH checks AS (
        SELECT c.sid, c.expected, c.tok, c.texp,
               (SELECT coalesce(max(e.version), 0) FROM jobtrail.events e
                 WHERE e.stream_id = c.sid) AS actual,
               (c.tok IS NOT NULL AND EXISTS (
                    SELECT 1 FROM jobtrail.delivery_tokens t WHERE t.token_id = c.tok))
                   AS token_used
          FROM unnest(check_streams, check_versions, token_ids, token_expiries)
               AS c(sid, expected, tok, texp)
    ), accepted AS (
        SELECT checks.sid, checks.actual, checks.tok, checks.texp FROM checks
         WHERE (checks.expected IS NULL OR checks.expected = checks.actual)
           AND NOT checks.token_used
    ), tokens AS (
        INSERT INTO jobtrail.delivery_tokens (token_id, stream_id, expires_at)
        SELECT accepted.tok, accepted.sid, accepted.texp FROM accepted
         WHERE accepted.tok IS NOT NULL
        ON CONFLICT DO NOTHING
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
