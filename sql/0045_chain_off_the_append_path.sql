-- The chain's hashes are computed beside the log, in bulk, no longer while appending
-- (issue 17: computed in the append functions, sql/0039, the chain still cost batch appends
-- 15-28 %; the goal is 10 %).
--
-- What the chain protects does not change.  An event is protected from a database
-- superuser once a signed anchor covers it (sql/0027): before that, whoever can edit the
-- log can also recompute the (unkeyed) hashes after the edit, so a hash computed at append
-- time proved nothing more than one computed at the next anchor.  The window was and stays
-- the anchor interval (JOBTRAIL_AUDIT_ANCHOR_INTERVAL).  So the hashes are now computed
-- where they are first needed, just before each anchor, like a transparency log's
-- sequencer integrating queued entries in batches:
--
-- * jobtrail.event_hashes (position, hash): one row per chained event, insert-only.  The
--   rule is unchanged (jobtrail.event_hash, sql/0026; jobstore/audit.py is the Python twin
--   that the verifier uses): sha256 of the stream's previous hash and the event as stored.
-- * jobtrail.chain_events(max_events): chains the next events in the followers' order
--   (xid, position), below their horizon (sql/0019): an event can never commit behind the
--   chain's cursor, and within a stream that order is version order, so each stream's
--   previous event is chained already (or in the same batch).  Set-wise: each stream's
--   previous hash is read once, the batch is chained with jobtrail.chain (sql/0039) used as
--   a window function.  jobtrail.chain_progress holds the cursor; chain_events locks it, so
--   two hosts (an election changing hands) never chain the same events.  SECURITY DEFINER:
--   only it writes event_hashes; application roles may execute it and read the table, not
--   write it (grant_app_role below), so no application can store a hash of its choosing.
-- * Every insert into the log is chained the same way, whoever makes it (the append
--   functions, archiving's and retention's records, a session inserting directly): there
--   is no trigger to skip any more.
-- * The append functions are as they were before the chain (sql/0035) plus 0039's one read
--   of each stream's head: no hash, no SECURITY DEFINER, the column defaults give position,
--   xid and recorded_at again.
-- * Archiving moves only streams whose events are all chained (a stream is archived days
--   after it finished; retention chains what is pending first), copying each event's hash
--   into the archive as before (events_archive.hash).
--
-- The existing events' hashes move to event_hashes and the chain's cursor starts after the
-- last of them; the log's hash column and the row trigger go.

LOCK TABLE jobtrail.events IN ACCESS EXCLUSIVE MODE;

CREATE TABLE jobtrail.event_hashes (
    position bigint PRIMARY KEY,
    hash     bytea  NOT NULL CHECK (octet_length(hash) = 32)
);

CREATE TABLE jobtrail.chain_progress (
    only_row        boolean     PRIMARY KEY DEFAULT true CHECK (only_row),
    cursor_xid      xid8        NOT NULL,
    cursor_position bigint      NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT clock_timestamp()
);

INSERT INTO jobtrail.event_hashes (position, hash)
SELECT e.position, e.hash FROM jobtrail.events e;

INSERT INTO jobtrail.chain_progress (cursor_xid, cursor_position)
SELECT coalesce((SELECT e.xid FROM jobtrail.events e ORDER BY e.xid DESC, e.position DESC
                  LIMIT 1), '0'::xid8),
       coalesce((SELECT e.position FROM jobtrail.events e ORDER BY e.xid DESC, e.position DESC
                  LIMIT 1), 0);

DROP TRIGGER events_chain_hash ON jobtrail.events;
DROP FUNCTION jobtrail.chain_event();
ALTER TABLE jobtrail.events DROP COLUMN hash;

-- The log's guard (sql/0015) names the table it guards: it now guards event_hashes too.
CREATE OR REPLACE FUNCTION jobtrail.forbid_event_changes() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- Only archiving deletes, and only as the table's owner (see sql/0015).
    IF TG_OP = 'DELETE'
       AND pg_catalog.current_setting('jobtrail.archiving', true) = 'on'
       AND EXISTS (SELECT 1
                     FROM pg_catalog.pg_class c
                     JOIN pg_catalog.pg_roles r ON r.oid = c.relowner
                    WHERE c.oid = TG_RELID AND r.rolname = current_user) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'jobtrail.% is append-only: % is not allowed', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'JT002',
              HINT = 'append a new event instead of changing a recorded one';
END;
$$;

CREATE TRIGGER event_hashes_forbid_update_delete
    BEFORE DELETE OR UPDATE ON jobtrail.event_hashes
    FOR EACH STATEMENT EXECUTE FUNCTION jobtrail.forbid_event_changes();

CREATE TRIGGER event_hashes_forbid_truncate
    BEFORE TRUNCATE ON jobtrail.event_hashes
    FOR EACH STATEMENT EXECUTE FUNCTION jobtrail.forbid_event_changes();

-- Chain the next events (see the header); returns how many.  The caller reads the heads it
-- anchors separately (jobstore/audit.sql), so nothing per event is sent back.
CREATE FUNCTION jobtrail.chain_events(max_events integer) RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    from_xid      xid8;
    from_position bigint;
    chained       integer;
BEGIN
    IF max_events IS NULL OR max_events < 1 THEN
        RAISE EXCEPTION 'chain_events needs a batch size of at least 1, got %', max_events
            USING ERRCODE = '22023';
    END IF;
    SELECT p.cursor_xid, p.cursor_position INTO STRICT from_xid, from_position
      FROM jobtrail.chain_progress p
       FOR UPDATE;
    WITH batch AS MATERIALIZED (
        SELECT e.position, e.xid, e.stream_id, e.version, e.event_type, e.schema_version,
               e.data, e.metadata, e.recorded_at
          FROM jobtrail.events e
         WHERE (e.xid, e.position) > (from_xid, from_position)
           AND e.xid < pg_snapshot_xmin(pg_current_snapshot())
         ORDER BY e.xid, e.position
         LIMIT max_events
    ), heads AS MATERIALIZED (
        -- Each stream's hash before the batch: its previous event's, in the log (chained
        -- earlier: it comes earlier in reading order) or in the archive.
        SELECT s.stream_id,
               CASE WHEN s.first_version > 1 THEN
                   coalesce((SELECT h.hash
                               FROM jobtrail.events p
                               JOIN jobtrail.event_hashes h ON h.position = p.position
                              WHERE p.stream_id = s.stream_id
                                AND p.version = s.first_version - 1),
                            (SELECT a.hash FROM jobtrail.events_archive a
                              WHERE a.stream_id = s.stream_id
                                AND a.version = s.first_version - 1))
               END AS prev
          FROM (SELECT b.stream_id, min(b.version) AS first_version
                  FROM batch b GROUP BY b.stream_id) s
    ), hashed AS (
        SELECT b.position,
               jobtrail.chain(h.prev, b.position, b.xid, b.stream_id, b.version, b.event_type,
                              b.schema_version, b.data, b.metadata, b.recorded_at)
                   OVER (PARTITION BY b.stream_id ORDER BY b.version) AS hash
          FROM batch b JOIN heads h USING (stream_id)
    ), stored AS (
        INSERT INTO jobtrail.event_hashes (position, hash)
        SELECT hashed.position, hashed.hash FROM hashed
        RETURNING 1
    ), moved AS (
        UPDATE jobtrail.chain_progress p
           SET cursor_xid = l.xid, cursor_position = l.position, updated_at = clock_timestamp()
          FROM (SELECT b.xid, b.position FROM batch b
                 ORDER BY b.xid DESC, b.position DESC LIMIT 1) l
    )
    SELECT count(*) INTO chained FROM stored;
    RETURN chained;
END;
$$;

REVOKE ALL ON FUNCTION jobtrail.chain_events(integer) FROM PUBLIC;

-- As in 0039, without the chain: no hash, the column defaults, invoker's rights.
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
        -- Each stream's version, once: in the log, else in the archive.
        SELECT s.sid, coalesce(h.version, 0) AS v
          FROM (SELECT DISTINCT input.sid FROM input) s
          LEFT JOIN LATERAL (
                (SELECT e.version FROM jobtrail.events e
                  WHERE e.stream_id = s.sid ORDER BY e.version DESC LIMIT 1)
                UNION ALL
                (SELECT a.version FROM jobtrail.events_archive a
                  WHERE a.stream_id = s.sid ORDER BY a.version DESC LIMIT 1)
                LIMIT 1) h ON true
    ), inserted AS (
        INSERT INTO jobtrail.events (stream_id, version, event_type, schema_version, data,
                                     metadata)
        SELECT input.sid,
               (heads.v + row_number() OVER (PARTITION BY input.sid ORDER BY input.ord))::integer,
               input.etype, input.sver, input.dat, input.meta
          FROM input JOIN heads USING (sid)
         ORDER BY input.ord
        RETURNING position, stream_id, version
    )
    SELECT ins.position, ins.stream_id, ins.version FROM inserted ins ORDER BY ins.position;
END;
$$;

-- As in 0039, without the chain: no hash, the column defaults, invoker's rights.
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
SET plan_cache_mode = force_generic_plan
AS $$
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
                -- The stream's version in the log; the archive only when the log has none
                -- of it.  A stream accepted here has its head in the log or is new: one
                -- with its events in the archive only is refused (moved).
                SELECT h.version AS live,
                       CASE WHEN h.version IS NULL THEN
                           (SELECT max(a.version) FROM jobtrail.events_archive a
                             WHERE a.stream_id = c.sid) END AS archived
                  FROM (VALUES (1)) AS one(x)
                  LEFT JOIN LATERAL (SELECT e.version FROM jobtrail.events e
                                      WHERE e.stream_id = c.sid
                                      ORDER BY e.version DESC LIMIT 1) h ON true) v
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
    ), inserted AS (
        INSERT INTO jobtrail.events (stream_id, version, event_type, schema_version, data,
                                     metadata)
        SELECT input.sid,
               (accepted.actual + row_number() OVER (PARTITION BY input.sid
                                                     ORDER BY input.ord))::integer,
               input.etype, input.sver, input.dat, input.meta
          FROM input JOIN accepted USING (sid)
         ORDER BY input.ord
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

-- Archiving keeps the function's own settings (sql/0044 may have set wal_compression on it;
-- CREATE OR REPLACE would drop them): read before, put back after.
SELECT pg_catalog.set_config(
    'jobtrail.migration_archive_config',
    coalesce((SELECT pg_catalog.array_to_string(p.proconfig, E'\n')
                FROM pg_catalog.pg_proc p
               WHERE p.oid = 'jobtrail.archive_streams(text[], timestamptz, integer)'
                             ::regprocedure), ''),
    true);

-- As in 0027, moving only chained streams and their hashes from event_hashes (see the
-- header).
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
    heads json;
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
                        WHERE e.stream_id = c.sid)
       AND NOT EXISTS (SELECT 1 FROM jobtrail.events e
                        WHERE e.stream_id = c.sid
                          AND NOT EXISTS (SELECT 1 FROM jobtrail.event_hashes h
                                           WHERE h.position = e.position));
    IF moved IS NULL THEN
        RETURN;
    END IF;
    PERFORM pg_catalog.set_config('jobtrail.archiving', 'on', true);
    WITH gone AS (
        DELETE FROM jobtrail.events e WHERE e.stream_id = ANY (moved) RETURNING e.*
    ), unhashed AS (
        DELETE FROM jobtrail.event_hashes h USING gone g
         WHERE h.position = g.position
        RETURNING h.position, h.hash
    ), kept AS (
        INSERT INTO jobtrail.events_archive
            (position, stream_id, version, event_type, schema_version, data, metadata,
             recorded_at, xid, hash)
        SELECT g.position, g.stream_id, g.version, g.event_type, g.schema_version, g.data,
               g.metadata, g.recorded_at, g.xid, u.hash
          FROM gone g JOIN unhashed u ON u.position = g.position
        RETURNING stream_id, version, position, hash
    )
    SELECT pg_catalog.json_agg(
               pg_catalog.json_build_array(h.stream_id, h.version, h.position,
                                           pg_catalog.encode(h.hash, 'hex'))
               ORDER BY h.stream_id)
      INTO heads
      FROM (SELECT DISTINCT ON (k.stream_id) k.stream_id, k.version, k.position, k.hash
              FROM kept k ORDER BY k.stream_id, k.version DESC) h;
    PERFORM pg_catalog.set_config('jobtrail.archiving', 'off', true);
    INSERT INTO jobtrail.events (stream_id, version, event_type, schema_version, data, metadata)
    VALUES ('archive-' || pg_catalog.gen_random_uuid(), 1, 'log.streams_archived', 1,
            pg_catalog.json_build_object(
                'stream_ids', moved,
                'job_ids', (SELECT pg_catalog.array_agg(pg_catalog.substr(s, 5))
                              FROM pg_catalog.unnest(moved) AS s),
                'finished_before', finished_before,
                'retention_days', retention_days),
            pg_catalog.json_build_object('audit_heads', heads));
    RETURN QUERY SELECT pg_catalog.unnest(moved);
END;
$$;

DO $$
DECLARE
    setting text;
BEGIN
    FOREACH setting IN ARRAY pg_catalog.string_to_array(
            pg_catalog.current_setting('jobtrail.migration_archive_config'), E'\n') LOOP
        IF pg_catalog.split_part(setting, '=', 1) NOT IN ('search_path') THEN
            EXECUTE pg_catalog.format(
                'ALTER FUNCTION jobtrail.archive_streams(text[], timestamptz, integer) '
                'SET %I = %L', pg_catalog.split_part(setting, '=', 1),
                pg_catalog.substr(setting, pg_catalog.strpos(setting, '=') + 1));
        END IF;
    END LOOP;
END;
$$;

-- As in 0025, with the chain's tables read-only to applications and chain_events among the
-- functions they may execute.
CREATE OR REPLACE FUNCTION jobtrail.grant_app_role(role_name name) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    app      oid;
    log_owner oid;
    r        record;
BEGIN
    IF role_name !~ '^[a-z_][a-z0-9_]{0,62}$' OR role_name LIKE 'pg\_%' THEN
        RAISE EXCEPTION 'invalid role name %', pg_catalog.quote_literal(role_name)
            USING ERRCODE = 'JT020';
    END IF;
    app := pg_catalog.to_regrole(pg_catalog.quote_ident(role_name));
    IF app IS NULL THEN
        RAISE EXCEPTION 'role % does not exist', role_name USING ERRCODE = 'JT020';
    END IF;
    SELECT c.relowner INTO log_owner FROM pg_catalog.pg_class c
     WHERE c.oid = 'jobtrail.events'::pg_catalog.regclass;
    IF (SELECT a.rolsuper FROM pg_catalog.pg_roles a WHERE a.oid = app) THEN
        RAISE EXCEPTION 'role % is a superuser: an application role must not be', role_name
            USING ERRCODE = 'JT021';
    END IF;
    IF pg_catalog.pg_has_role(app, log_owner, 'MEMBER') THEN
        RAISE EXCEPTION 'role % owns the event log (or may act as its owner %): use a role of its own',
            role_name, pg_catalog.pg_get_userbyid(log_owner)
            USING ERRCODE = 'JT021';
    END IF;

    EXECUTE pg_catalog.format('GRANT USAGE ON SCHEMA jobtrail TO %I', role_name);
    EXECUTE pg_catalog.format(
        'REVOKE ALL ON jobtrail.events, jobtrail.events_archive, jobtrail.schema_migrations, '
        'jobtrail.projection_tables, jobtrail.app_roles, jobtrail.event_hashes, '
        'jobtrail.chain_progress FROM %I', role_name);
    EXECUTE pg_catalog.format('GRANT SELECT, INSERT ON jobtrail.events TO %I', role_name);
    EXECUTE pg_catalog.format(
        'GRANT SELECT ON jobtrail.events_archive, jobtrail.schema_migrations, '
        'jobtrail.projection_tables, jobtrail.event_hashes, jobtrail.chain_progress TO %I',
        role_name);
    FOR r IN SELECT c.oid::pg_catalog.regclass AS rel
               FROM pg_catalog.pg_class c
              WHERE c.relnamespace = 'jobtrail'::pg_catalog.regnamespace
                AND c.relkind IN ('r', 'p')
                AND c.relname NOT IN ('events', 'events_archive', 'schema_migrations',
                                      'projection_tables', 'app_roles', 'event_hashes',
                                      'chain_progress') LOOP
        EXECUTE pg_catalog.format('GRANT SELECT, INSERT, UPDATE, DELETE ON %s TO %I',
                                  r.rel, role_name);
    END LOOP;
    -- Sequences owned by those tables; the log's identity sequence is not among them (an
    -- INSERT draws from it without any privilege on it).
    FOR r IN SELECT s.oid::pg_catalog.regclass AS seq
               FROM pg_catalog.pg_class s
               JOIN pg_catalog.pg_depend d
                 ON d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                AND d.objid = s.oid AND d.deptype IN ('a', 'i')
               JOIN pg_catalog.pg_class t ON t.oid = d.refobjid
              WHERE s.relkind = 'S'
                AND s.relnamespace = 'jobtrail'::pg_catalog.regnamespace
                AND t.relname NOT IN ('events', 'events_archive', 'schema_migrations',
                                      'projection_tables', 'app_roles', 'event_hashes',
                                      'chain_progress') LOOP
        EXECUTE pg_catalog.format('GRANT USAGE, SELECT ON SEQUENCE %s TO %I', r.seq, role_name);
    END LOOP;
    FOR r IN SELECT p.oid::pg_catalog.regprocedure AS fn
               FROM pg_catalog.pg_proc p
              WHERE p.pronamespace = 'jobtrail'::pg_catalog.regnamespace
                AND p.proname IN ('append_events', 'append_events_each', 'archive_streams',
                                  'purge_archive', 'chain_events') LOOP
        EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO %I', r.fn, role_name);
    END LOOP;

    INSERT INTO jobtrail.app_roles AS a (role_name) VALUES (grant_app_role.role_name)
        ON CONFLICT ON CONSTRAINT app_roles_pkey DO UPDATE SET granted_at = pg_catalog.now();
END;
$$;
