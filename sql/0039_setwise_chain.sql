-- The chain's hashes of appended events are computed by the append functions, set-wise
-- (issue 17: the row trigger cost appends 15-23 %).
--
-- The rule is unchanged (sql/0026: jobtrail.event_hash, jobstore/audit.py): the same bytes
-- are hashed, chained to each stream's previous event.  What changes is who computes them
-- for the event store's own appends:
--
-- * jobtrail.append_events and jobtrail.append_events_each read each stream's previous hash
--   once, together with its version (one index probe of the stream's head, which they made
--   already for the version), and chain the stream's new events in input order with
--   jobtrail.chain, an aggregate used as a window function (per stream, ordered by input
--   order; its step is jobtrail.event_hash inlined into one PL/pgSQL expression).  The row
--   trigger did, per event, a PL/pgSQL call, the same hash and an index lookup of the
--   previous event (~11 µs of an insert's ~40 µs, sql/0033).
-- * So that the hashed values are exactly the stored ones, the statement itself takes what
--   the column defaults used to give: the position (nextval of the log's identity sequence,
--   in input order, inserted with OVERRIDING SYSTEM VALUE), the xid (pg_current_xact_id(),
--   which the CHECK events_xid_is_writer still checks) and recorded_at (clock_timestamp(),
--   per row, as the default).
-- * Each stream's version is read once per stream (a MATERIALIZED head per stream): 0035
--   let the planner pull jobtrail.stream_version() into the join, once per event.
--
-- Who may skip the trigger.  The trigger (sql/0026, 0032) still chains every other insert:
-- archiving's log.streams_archived record, retention's records, any function or session
-- inserting into the log.  It is skipped only for a row that carries a hash AND is inserted
-- while the effective role (current_user) is the owner of the append functions:
--
-- * The append functions become SECURITY DEFINER (run as their owner, the role that ran the
--   migrations and owns the log), so their inserts, and only theirs among what the
--   application can reach, run as that role.  What they insert is what the caller gave
--   plus what they compute, and the hash is computed from exactly those stored values:
--   the caller chooses content, never a hash.
-- * The application role (jobtrail.grant_app_role) inserts as itself: for its rows the
--   condition is true and the trigger computes the hash over whatever it supplied, as
--   before (tests/integration/test_chain_setwise.py).  It cannot become the owner (that
--   would make it unsafe already: `jobtrail db check-role`), cannot add a trigger of its own
--   (no TRIGGER privilege) and cannot steer what the definer functions resolve: their
--   search_path is pg_catalog, pg_temp (last), every jobtrail name is qualified.
-- * The other definer functions that insert into the log (archive_streams, purge_archive)
--   supply no hash: the trigger chains their rows.
-- * The owner itself (or a superuser) inserting with a hash of its choosing is not stopped;
--   it could disable the trigger anyway (sql/0015: privilege stops the application, not
--   the database's administrator).  The signed anchors (sql/0027) are what catch it.
-- * The owner is named in the trigger's WHEN condition as a constant (a WHEN condition may
--   not read the catalog): the functions' owner when this migration ran.  Should the
--   functions get another owner later, the condition is true for their rows too and the
--   trigger recomputes the same hash (it sees the statement's earlier rows): slower,
--   never wrong.  The condition never yields NULL (current_user is never NULL).
--
-- SECURITY DEFINER and its SET search_path cost one configuration change per call (not per
-- event); the functions keep 0038's plan_cache_mode (a SET clause is part of the
-- definition: CREATE OR REPLACE without it would drop it).  A definer function is a door:
-- EXECUTE is revoked from PUBLIC; application roles hold it by name (grant_app_role).

-- One step of the chain: the hash of an event given the hash before it (state, or
-- first_previous, the stream's stored head, for the first event of the window).
CREATE FUNCTION jobtrail.chain_step(
    state          bytea,
    first_previous bytea,
    "position"     bigint,
    xid            xid8,
    stream_id      text,
    version        integer,
    event_type     text,
    schema_version smallint,
    data           json,
    metadata       json,
    recorded_at    timestamptz
) RETURNS bytea
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
BEGIN
    RETURN jobtrail.event_hash(coalesce(state, first_previous), "position", xid, stream_id,
                               version, event_type, schema_version, data, metadata,
                               recorded_at);
END;
$$;

-- The hash of each event of a stream, in window order: chain(head hash, event fields...)
-- OVER (PARTITION BY stream ORDER BY input order).
CREATE AGGREGATE jobtrail.chain(bytea, bigint, xid8, text, integer, text, smallint, json, json,
                                timestamptz) (
    SFUNC = jobtrail.chain_step,
    STYPE = bytea
);

-- As in 0035, computing each event's hash (see the header).
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
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
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
    ), heads AS MATERIALIZED (
        -- Each stream's head, once: its version and hash, in the log, else in the archive
        -- (an archived stream continued in the log has its head in the log).
        SELECT s.sid, coalesce(h.version, 0) AS v, h.hash AS prev
          FROM (SELECT DISTINCT input.sid FROM input) s
          LEFT JOIN LATERAL (
                (SELECT e.version, e.hash FROM jobtrail.events e
                  WHERE e.stream_id = s.sid ORDER BY e.version DESC LIMIT 1)
                UNION ALL
                (SELECT a.version, a.hash FROM jobtrail.events_archive a
                  WHERE a.stream_id = s.sid ORDER BY a.version DESC LIMIT 1)
                LIMIT 1) h ON true
    ), placed AS (
        -- Positions in input order; xid and recorded_at as the columns' defaults give them.
        SELECT n.*, nextval('jobtrail.events_position_seq'::regclass) AS pos,
               pg_current_xact_id() AS txid, clock_timestamp() AS at
          FROM (SELECT input.*, heads.prev,
                       (heads.v + row_number() OVER (PARTITION BY input.sid
                                                     ORDER BY input.ord))::integer
                           AS new_version
                  FROM input JOIN heads USING (sid)
                 ORDER BY input.ord) n
    ), inserted AS (
        INSERT INTO jobtrail.events (position, stream_id, version, event_type, schema_version,
                                     data, metadata, recorded_at, xid, hash)
        OVERRIDING SYSTEM VALUE
        SELECT p.pos, p.sid, p.new_version, p.etype, p.sver, p.dat, p.meta, p.at, p.txid,
               jobtrail.chain(p.prev, p.pos, p.txid, p.sid, p.new_version, p.etype, p.sver,
                              p.dat, p.meta, p.at) OVER (PARTITION BY p.sid ORDER BY p.ord)
          FROM placed p
        RETURNING position, stream_id, version
    )
    SELECT ins.position, ins.stream_id, ins.version FROM inserted ins ORDER BY ins.position;
END;
$$;

-- As in 0035, computing each event's hash (see the header).
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
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    PERFORM set_config('jobtrail.announce', 'after_commit', true);
    PERFORM jobtrail.lock_for_append(array_cat(check_streams, stream_ids), token_ids);
    RETURN QUERY
    WITH checks AS (
        SELECT c.sid, c.expected, c.tok, c.texp,
               coalesce(v.live, v.archived, 0) AS actual,
               v.prev,
               v.live IS NULL AND v.archived IS NOT NULL AS moved,
               (c.tok IS NOT NULL AND (
                    EXISTS (SELECT 1 FROM jobtrail.delivery_tokens t WHERE t.token_id = c.tok)
                    OR EXISTS (SELECT 1 FROM unnest(token_ids) WITH ORDINALITY AS p(tok, ord)
                                WHERE p.tok = c.tok AND p.ord < c.ord)))
                   AS token_used
          FROM unnest(check_streams, check_versions, token_ids, token_expiries)
               WITH ORDINALITY AS c(sid, expected, tok, texp, ord)
          CROSS JOIN LATERAL (
                -- The stream's head in the log (version and hash); the archive only when
                -- the log has none of it.  A stream accepted here has its head in the log
                -- or is new: one with its events in the archive only is refused (moved).
                SELECT h.version AS live, h.hash AS prev,
                       CASE WHEN h.version IS NULL THEN
                           (SELECT max(a.version) FROM jobtrail.events_archive a
                             WHERE a.stream_id = c.sid) END AS archived
                  FROM (VALUES (1)) AS one(x)
                  LEFT JOIN LATERAL (SELECT e.version, e.hash FROM jobtrail.events e
                                      WHERE e.stream_id = c.sid
                                      ORDER BY e.version DESC LIMIT 1) h ON true) v
    ), accepted AS (
        SELECT checks.sid, checks.actual, checks.prev, checks.tok, checks.texp FROM checks
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
    ), placed AS (
        -- Positions in input order; xid and recorded_at as the columns' defaults give them.
        SELECT n.*, nextval('jobtrail.events_position_seq'::regclass) AS pos,
               pg_current_xact_id() AS txid, clock_timestamp() AS at
          FROM (SELECT input.*, accepted.prev,
                       (accepted.actual + row_number() OVER (PARTITION BY input.sid
                                                             ORDER BY input.ord))::integer
                           AS new_version
                  FROM input JOIN accepted USING (sid)
                 ORDER BY input.ord) n
    ), inserted AS (
        INSERT INTO jobtrail.events (position, stream_id, version, event_type, schema_version,
                                     data, metadata, recorded_at, xid, hash)
        OVERRIDING SYSTEM VALUE
        SELECT p.pos, p.sid, p.new_version, p.etype, p.sver, p.dat, p.meta, p.at, p.txid,
               jobtrail.chain(p.prev, p.pos, p.txid, p.sid, p.new_version, p.etype, p.sver,
                              p.dat, p.meta, p.at) OVER (PARTITION BY p.sid ORDER BY p.ord)
          FROM placed p
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

REVOKE ALL ON FUNCTION jobtrail.append_events(text[], integer[], text[], text[], smallint[],
                                              json[], json[], boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION jobtrail.append_events_each(text[], integer[], text[], timestamptz[],
                                                   text[], text[], smallint[], json[], json[])
    FROM PUBLIC;

-- The trigger skips a row that brings a hash only when the append functions' owner inserts
-- it (see the header).
DO $$
DECLARE
    owner name;
BEGIN
    SELECT pg_catalog.pg_get_userbyid(p.proowner) INTO STRICT owner
      FROM pg_catalog.pg_proc p
     WHERE p.oid = 'jobtrail.append_events(text[], integer[], text[], text[], smallint[], '
                   'json[], json[], boolean)'::regprocedure;
    IF owner IS DISTINCT FROM (
        SELECT pg_catalog.pg_get_userbyid(p.proowner) FROM pg_catalog.pg_proc p
         WHERE p.oid = 'jobtrail.append_events_each(text[], integer[], text[], timestamptz[], '
                       'text[], text[], smallint[], json[], json[])'::regprocedure) THEN
        RAISE EXCEPTION 'append_events and append_events_each have different owners';
    END IF;
    DROP TRIGGER events_chain_hash ON jobtrail.events;
    EXECUTE pg_catalog.format(
        'CREATE TRIGGER events_chain_hash BEFORE INSERT ON jobtrail.events FOR EACH ROW '
        'WHEN (NEW.hash IS NULL OR CURRENT_USER <> %L::name) '
        'EXECUTE FUNCTION jobtrail.chain_event()', owner);
END;
$$;
