-- Retention that runs by itself (workers/retention.py): what it needs in the database.
--
-- * jobtrail.retention_runs: one row per scheduled run (which host, when, what it moved,
--   purged and removed, the next run, or the error that stopped it), for
--   `jobtrail retention status` and /metrics (a row an hour: kept, it is small).
-- * An index that finds finished jobs by the time they finished, so each bounded batch
--   of archiving costs the same however large the views grow; and one that finds archived
--   streams by the time they were archived, for the purge.
-- * jobtrail.purge_archive: the one way archived events are ever deleted.  The host calls
--   it only after it wrote those events to an export file, fsynced it and read it back
--   with a matching digest; the function checks that the rows it deletes are exactly the
--   rows exported (same streams, same positions, all archived before the cutoff), deletes
--   them and records log.archive_purged (counts, position range, digest, file) in the
--   same transaction.  Like archive_streams it is SECURITY DEFINER: the application role
--   holds no DELETE on the archive.

CREATE TABLE jobtrail.retention_runs (
    run_id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    host            text        NOT NULL,
    started_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at     timestamptz,
    next_run_at     timestamptz,
    archived_jobs   bigint      NOT NULL DEFAULT 0,
    purged_events   bigint      NOT NULL DEFAULT 0,
    removed_files   integer     NOT NULL DEFAULT 0,
    error           text
);
CREATE INDEX ON jobtrail.retention_runs (started_at);

CREATE INDEX ON jobtrail.job_executions
    ((coalesce(completed_at, failed_at, cancelled_at)), job_id)
    WHERE status IN ('completed', 'failed', 'cancelled');

CREATE INDEX events_archive_archived_at ON jobtrail.events_archive (archived_at, stream_id);

CREATE FUNCTION jobtrail.purge_archive(
    stream_ids      text[],
    positions       bigint[],
    sha256          text,
    file            text,
    file_bytes      bigint,
    archived_before timestamptz,
    archive_days    integer
) RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    expected bigint := pg_catalog.cardinality(positions);
    found    bigint;
    matching bigint;
    too_new  bigint;
    purged   bigint;
    low      bigint;
    high     bigint;
BEGIN
    IF expected = 0 OR sha256 !~ '^[0-9a-f]{64}$' OR file_bytes <= 0 THEN
        RAISE EXCEPTION 'purge_archive needs the exported positions, the export''s sha256 '
                        '(64 hex digits) and its size; got % position(s), %, % bytes',
                        expected, pg_catalog.quote_literal(sha256), file_bytes
            USING ERRCODE = 'JT030';
    END IF;
    -- The streams' locks, as archiving takes them: nothing joins them while they go.
    PERFORM jobtrail.lock_for_append(stream_ids, ARRAY[]::text[]);
    SELECT pg_catalog.count(*),
           pg_catalog.count(*) FILTER (WHERE a.position = ANY (positions)),
           pg_catalog.count(*) FILTER (WHERE a.archived_at >= archived_before),
           pg_catalog.min(a.position), pg_catalog.max(a.position)
      INTO found, matching, too_new, low, high
      FROM jobtrail.events_archive a
     WHERE a.stream_id = ANY (stream_ids);
    IF found <> expected OR matching <> expected OR too_new > 0 THEN
        RAISE EXCEPTION 'the archive does not hold exactly the exported events: % exported, '
                        '% archived in those streams (% of them exported, % archived too '
                        'recently); nothing purged', expected, found, matching, too_new
            USING ERRCODE = 'JT031';
    END IF;
    DELETE FROM jobtrail.events_archive a WHERE a.stream_id = ANY (stream_ids);
    GET DIAGNOSTICS purged = ROW_COUNT;
    INSERT INTO jobtrail.events (stream_id, version, event_type, schema_version, data)
    VALUES ('archive-' || pg_catalog.gen_random_uuid(), 1, 'log.archive_purged', 1,
            pg_catalog.json_build_object(
                'streams', pg_catalog.cardinality(stream_ids),
                'events', purged,
                'first_position', low,
                'last_position', high,
                'sha256', sha256,
                'file', file,
                'file_bytes', file_bytes,
                'archived_before', archived_before,
                'archive_days', archive_days));
    RETURN purged;
END;
$$;

REVOKE ALL ON FUNCTION jobtrail.purge_archive(text[], bigint[], text, text, bigint, timestamptz,
                                              integer) FROM PUBLIC;

-- As in 0015, with purge_archive among the functions an application role may execute.
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
        'jobtrail.projection_tables, jobtrail.app_roles FROM %I', role_name);
    EXECUTE pg_catalog.format('GRANT SELECT, INSERT ON jobtrail.events TO %I', role_name);
    EXECUTE pg_catalog.format(
        'GRANT SELECT ON jobtrail.events_archive, jobtrail.schema_migrations, '
        'jobtrail.projection_tables TO %I', role_name);
    FOR r IN SELECT c.oid::pg_catalog.regclass AS rel
               FROM pg_catalog.pg_class c
              WHERE c.relnamespace = 'jobtrail'::pg_catalog.regnamespace
                AND c.relkind IN ('r', 'p')
                AND c.relname NOT IN ('events', 'events_archive', 'schema_migrations',
                                      'projection_tables', 'app_roles') LOOP
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
                                      'projection_tables', 'app_roles') LOOP
        EXECUTE pg_catalog.format('GRANT USAGE, SELECT ON SEQUENCE %s TO %I', r.seq, role_name);
    END LOOP;
    FOR r IN SELECT p.oid::pg_catalog.regprocedure AS fn
               FROM pg_catalog.pg_proc p
              WHERE p.pronamespace = 'jobtrail'::pg_catalog.regnamespace
                AND p.proname IN ('append_events', 'append_events_each', 'archive_streams',
                                  'purge_archive') LOOP
        EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO %I', r.fn, role_name);
    END LOOP;

    INSERT INTO jobtrail.app_roles AS a (role_name) VALUES (grant_app_role.role_name)
        ON CONFLICT ON CONSTRAINT app_roles_pkey DO UPDATE SET granted_at = pg_catalog.now();
END;
$$;
