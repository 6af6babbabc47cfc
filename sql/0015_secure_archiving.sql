-- Append-only by privilege, not by convention.
--
-- Until now the log's trigger let rows go whenever jobtrail.archiving was 'on', and any
-- session may set any custom setting: a host that could DELETE could rewrite history by
-- setting a flag first.  From here on:
--
-- 1. The application (the host) runs as its own role, which holds no UPDATE, DELETE or
--    TRUNCATE on jobtrail.events or jobtrail.events_archive (jobtrail.grant_app_role).
--    It reads and appends; that is all it needs to do with the log.
-- 2. Archiving, the one sanctioned removal, runs inside jobtrail.archive_streams, now a
--    SECURITY DEFINER function: it executes as its owner (the role that ran the
--    migrations and owns the log), so the application role may archive without holding
--    DELETE itself.  Its search_path is fixed, so a caller cannot slip its own objects
--    into what it resolves.
-- 3. The trigger lets a row be deleted only when the flag is set AND the current user
--    (the effective role: inside a SECURITY DEFINER function, its owner) owns the log.
--    The application role can set the flag but cannot become the owner, so for it the
--    flag changes nothing; and without DELETE it is refused before the trigger anyway.
--    Updates and truncation are refused for everyone, archiving included.
--
-- Superusers and the owner can still disable triggers: privilege stops the application,
-- not the database's administrator.  `jobtrail db check-role NAME` says whether a role
-- could change the log.

CREATE OR REPLACE FUNCTION jobtrail.forbid_event_changes() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- Only archiving deletes, and only as the log's owner (see the header).  current_user
    -- is the effective role: a session cannot make it the owner without being able to
    -- SET ROLE to it, and whoever can is trusted with the log already.
    IF TG_OP = 'DELETE'
       AND pg_catalog.current_setting('jobtrail.archiving', true) = 'on'
       AND EXISTS (SELECT 1
                     FROM pg_catalog.pg_class c
                     JOIN pg_catalog.pg_roles r ON r.oid = c.relowner
                    WHERE c.oid = TG_RELID AND r.rolname = current_user) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'jobtrail.events is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'JT002',
              HINT = 'append a new event instead of changing a recorded one';
END;
$$;

-- Same behaviour as in 0006, now as the owner and with every name schema-qualified or
-- resolved in pg_catalog only (pg_temp last, so no temporary table shadows anything).
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
    -- The log's append lock: no event can join a stream while it is being moved.
    PERFORM pg_catalog.pg_advisory_xact_lock(7244012501);
    -- Only job streams whose last event finished the job before the cutoff qualify,
    -- whatever the caller (and the possibly stale view it asked) believed.
    SELECT pg_catalog.array_agg(c.sid ORDER BY c.sid) INTO moved
      FROM (SELECT DISTINCT pg_catalog.unnest(candidates) AS sid) c
     WHERE c.sid LIKE 'job-%'
       AND (SELECT e.event_type IN ('job.completed', 'job.failed', 'job.cancelled')
                   AND e.recorded_at < finished_before
              FROM jobtrail.events e
             WHERE e.stream_id = c.sid
             ORDER BY e.version DESC LIMIT 1);
    IF moved IS NULL THEN
        RETURN;
    END IF;
    PERFORM pg_catalog.set_config('jobtrail.archiving', 'on', true);
    WITH gone AS (
        DELETE FROM jobtrail.events e WHERE e.stream_id = ANY (moved) RETURNING e.*
    )
    INSERT INTO jobtrail.events_archive
        (position, stream_id, version, event_type, schema_version, data, metadata, recorded_at)
    SELECT g.position, g.stream_id, g.version, g.event_type, g.schema_version, g.data,
           g.metadata, g.recorded_at
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

-- A SECURITY DEFINER function is a door: only roles given the key may use it.
REVOKE ALL ON FUNCTION jobtrail.archive_streams(text[], timestamptz, integer) FROM PUBLIC;
REVOKE UPDATE, DELETE, TRUNCATE ON jobtrail.events, jobtrail.events_archive FROM PUBLIC;

-- The application roles granted so far, so that `jobtrail db migrate` can grant them the
-- tables later migrations add (jobtrail.refresh_app_roles).
CREATE TABLE jobtrail.app_roles (
    role_name  name        PRIMARY KEY,
    granted_at timestamptz NOT NULL DEFAULT now()
);

-- Grant role_name what a host needs, and nothing that could change the log:
--   jobtrail.events          SELECT, INSERT (appends; the trigger serialises them)
--   jobtrail.events_archive  SELECT
--   schema_migrations, projection_tables  SELECT (projection_tables says which tables a
--                            rebuild may drop and swap: the application must not add to it)
--   app_roles                nothing
--   every other table in jobtrail (views, checkpoints, relay, tokens, and those that later
--                            migrations add): SELECT, INSERT, UPDATE, DELETE
--   sequences of those tables: USAGE, SELECT
--   append_events, append_events_each, archive_streams: EXECUTE
-- The tables are read from the catalog rather than listed, so a table a later migration
-- adds is covered by running this again (`jobtrail db migrate` does, for every role in
-- jobtrail.app_roles); the log's two tables are the exceptions, named here, and their
-- privileges are revoked first, so running this again also repairs a role that was
-- granted too much by hand.  It runs with the caller's rights (it must own the objects);
-- the role name goes into DDL only through format('%I').
CREATE FUNCTION jobtrail.grant_app_role(role_name name) RETURNS void
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
                AND p.proname IN ('append_events', 'append_events_each', 'archive_streams') LOOP
        EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO %I', r.fn, role_name);
    END LOOP;

    INSERT INTO jobtrail.app_roles AS a (role_name) VALUES (grant_app_role.role_name)
        ON CONFLICT ON CONSTRAINT app_roles_pkey DO UPDATE SET granted_at = pg_catalog.now();
END;
$$;

-- Create role_name if it does not exist (NOLOGIN, or LOGIN with the given password
-- verifier: a SCRAM secret computed by the client, so the password itself never reaches
-- the server or its logs), set a given verifier on an existing role, then grant it
-- (jobtrail.grant_app_role).  Returns whether the role was created.  The caller needs
-- CREATEROLE and must own the jobtrail objects.
CREATE FUNCTION jobtrail.ensure_app_role(role_name name, password_verifier text)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    created boolean := false;
BEGIN
    IF role_name !~ '^[a-z_][a-z0-9_]{0,62}$' OR role_name LIKE 'pg\_%' THEN
        RAISE EXCEPTION 'invalid role name %', pg_catalog.quote_literal(role_name)
            USING ERRCODE = 'JT020';
    END IF;
    IF pg_catalog.to_regrole(pg_catalog.quote_ident(role_name)) IS NULL THEN
        IF password_verifier IS NULL THEN
            EXECUTE pg_catalog.format('CREATE ROLE %I NOLOGIN', role_name);
        ELSE
            EXECUTE pg_catalog.format('CREATE ROLE %I LOGIN PASSWORD %L',
                                      role_name, password_verifier);
        END IF;
        created := true;
    ELSIF password_verifier IS NOT NULL THEN
        EXECUTE pg_catalog.format('ALTER ROLE %I LOGIN PASSWORD %L', role_name, password_verifier);
    END IF;
    PERFORM jobtrail.grant_app_role(role_name);
    RETURN created;
END;
$$;

-- Grant every recorded application role again (after migrations added tables); roles
-- dropped since are forgotten.  Returns the roles granted.
CREATE FUNCTION jobtrail.refresh_app_roles() RETURNS SETOF name
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
BEGIN
    DELETE FROM jobtrail.app_roles a
     WHERE pg_catalog.to_regrole(pg_catalog.quote_ident(a.role_name)) IS NULL;
    FOR r IN SELECT a.role_name FROM jobtrail.app_roles a ORDER BY a.role_name LOOP
        PERFORM jobtrail.grant_app_role(r.role_name);
        RETURN NEXT r.role_name;
    END LOOP;
END;
$$;

REVOKE ALL ON FUNCTION jobtrail.grant_app_role(name) FROM PUBLIC;
REVOKE ALL ON FUNCTION jobtrail.ensure_app_role(name, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION jobtrail.refresh_app_roles() FROM PUBLIC;

-- A rebuild swaps in tables it created, which carry none of the grants of the tables they
-- replace: an application role would lose its views at the first rebuild.  The swap now
-- gives each new table the privileges held on the table it replaces (same grantees, same
-- privileges, same grant option; the owner's are the owner's anyway).  Otherwise as in
-- 0012.
CREATE OR REPLACE FUNCTION jobtrail.swap_shadow_tables(tables text[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    t text;
    g record;
BEGIN
    FOREACH t IN ARRAY tables LOOP
        PERFORM jobtrail.check_projection_table(t);
        IF to_regclass(format('jobtrail_rebuild.%I', t)) IS NULL THEN
            RAISE EXCEPTION 'no shadow table jobtrail_rebuild.% to swap in', t
                USING ERRCODE = 'JT011';
        END IF;
    END LOOP;
    -- Lock every table first, in the order given (callers sort): readers wait for the
    -- whole swap and then see the new tables, never a mix of old and new.
    FOREACH t IN ARRAY tables LOOP
        EXECUTE format('LOCK TABLE jobtrail.%I IN ACCESS EXCLUSIVE MODE', t);
    END LOOP;
    FOREACH t IN ARRAY tables LOOP
        -- Privilege names and grantees come from the catalog, not from the caller.
        FOR g IN SELECT a.privilege_type, a.is_grantable,
                        CASE WHEN a.grantee = 0 THEN 'PUBLIC'
                             ELSE quote_ident(pg_get_userbyid(a.grantee)) END AS grantee
                   FROM pg_class old, aclexplode(old.relacl) a
                  WHERE old.oid = format('jobtrail.%I', t)::regclass
                    AND a.grantee <> (SELECT new.relowner FROM pg_class new
                                       WHERE new.oid = format('jobtrail_rebuild.%I', t)::regclass)
                  ORDER BY 3, 1 LOOP
            EXECUTE format('GRANT %s ON jobtrail_rebuild.%I TO %s%s', g.privilege_type, t,
                           g.grantee, CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
        END LOOP;
        EXECUTE format('DROP TABLE jobtrail.%I', t);
        EXECUTE format('ALTER TABLE jobtrail_rebuild.%I SET SCHEMA jobtrail', t);
    END LOOP;
END;
$$;
