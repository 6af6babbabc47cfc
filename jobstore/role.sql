-- name: ensure_app_role
-- params: role_name, password_verifier
SELECT jobtrail.ensure_app_role($1::name, $2::text);

-- name: refresh_app_roles
-- params:
SELECT r::text AS role_name FROM jobtrail.refresh_app_roles() AS r;

-- name: role_attributes
-- params: role_name
-- owner is NULL when the schema is not migrated.
SELECT r.rolsuper AS superuser,
       r.rolcreaterole AS createrole,
       r.rolcanlogin AS login,
       pg_get_userbyid(c.relowner)::text AS owner,
       coalesce(pg_has_role(r.oid, c.relowner, 'MEMBER'), false) AS acts_as_owner
  FROM pg_roles r
  LEFT JOIN pg_class c ON c.oid = to_regclass('jobtrail.events')
 WHERE r.rolname = $1::name;

-- name: log_privileges_held
-- params: role_name
-- What the role could do to the log that it must not: TRIGGER included, since a trigger
-- it owned would run inside jobtrail.archive_streams with the owner's rights.
SELECT t.table_name,
       string_agg(p.privilege, '/' ORDER BY p.ord) FILTER (
           WHERE has_table_privilege($1::name, t.table_name, p.privilege)) AS held
  FROM (VALUES ('jobtrail.events', ARRAY['UPDATE', 'DELETE', 'TRUNCATE', 'TRIGGER']),
               ('jobtrail.events_archive',
                ARRAY['INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'TRIGGER']),
               ('jobtrail.event_hashes',
                ARRAY['INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'TRIGGER']))
       AS t(table_name, privileges),
       unnest(t.privileges) WITH ORDINALITY AS p(privilege, ord)
 GROUP BY t.table_name
 ORDER BY t.table_name;

-- name: log_guards
-- params:
SELECT EXISTS (SELECT 1 FROM jobtrail.schema_migrations m WHERE m.version = 15) AS secured,
       coalesce((SELECT p.prosecdef AND 'search_path=pg_catalog, pg_temp' = ANY (p.proconfig)
                   FROM pg_proc p
                  WHERE p.oid = to_regprocedure(
                            'jobtrail.archive_streams(text[], timestamptz, integer)')),
                false) AS definer,
       (SELECT count(*) FROM pg_trigger t
         WHERE t.tgrelid = 'jobtrail.events'::regclass
           AND t.tgname IN ('events_forbid_update_delete', 'events_forbid_truncate')
           AND t.tgenabled IN ('O', 'A')) = 2 AS guarded;

-- name: host_privileges_missing
-- params: role_name
-- What a host running as the role needs and the role lacks, one row per object.
WITH needed (what, object, held) AS (
    SELECT 'CONNECT', 'database ' || quote_ident(current_database()),
           has_database_privilege($1::name, current_database(), 'CONNECT')
    UNION ALL
    SELECT 'USAGE', 'schema jobtrail', has_schema_privilege($1::name, 'jobtrail', 'USAGE')
    UNION ALL
    SELECT p, 'jobtrail.events', has_table_privilege($1::name, 'jobtrail.events', p)
      FROM unnest(ARRAY['SELECT', 'INSERT']) AS p
    UNION ALL
    SELECT 'SELECT', 'jobtrail.' || t, has_table_privilege($1::name, 'jobtrail.' || t, 'SELECT')
      FROM unnest(ARRAY['events_archive', 'event_hashes', 'chain_progress']) AS t
    UNION ALL
    SELECT p, 'jobtrail.' || quote_ident(c.relname), has_table_privilege($1::name, c.oid, p)
      FROM pg_class c, unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE']) AS p
     WHERE c.relnamespace = 'jobtrail'::regnamespace
       AND c.relkind IN ('r', 'p')
       AND c.relname NOT IN ('events', 'events_archive', 'schema_migrations',
                             'projection_tables', 'app_roles', 'event_hashes', 'chain_progress')
    UNION ALL
    SELECT 'EXECUTE', 'function jobtrail.' || quote_ident(f.proname),
           has_function_privilege($1::name, f.oid, 'EXECUTE')
      FROM pg_proc f
     WHERE f.pronamespace = 'jobtrail'::regnamespace
       AND f.proname IN ('append_events', 'append_events_each', 'archive_streams',
                         'chain_events')
)
SELECT string_agg(DISTINCT what, ', ') AS privileges, object
  FROM needed
 WHERE NOT held
 GROUP BY object
 ORDER BY object;
