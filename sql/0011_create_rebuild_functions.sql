-- Rebuilding a projection: replay the whole log into shadow copies of its tables, then
-- swap them in at once, so readers never see a half-built view.  The shadow copies live in
-- their own schema under the same names, so the projection's SQL (unqualified table names,
-- resolved through search_path) writes to either.  These two functions are the only
-- runtime DDL, and they act only on tables listed in jobtrail.projection_tables.
CREATE SCHEMA IF NOT EXISTS jobtrail_rebuild;

CREATE FUNCTION jobtrail.check_projection_table(wanted text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM jobtrail.projection_tables p WHERE p.table_name = wanted) THEN
        RAISE EXCEPTION 'table % is not a projection table; known: %', wanted,
            (SELECT string_agg(p.table_name, ', ' ORDER BY p.table_name)
               FROM jobtrail.projection_tables p)
            USING ERRCODE = 'JT010';
    END IF;
END;
$$;

-- An empty copy of jobtrail.<table> (columns, defaults, constraints, indexes) in
-- jobtrail_rebuild, replacing any left there by a rebuild that did not finish.
CREATE FUNCTION jobtrail.create_shadow_tables(tables text[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY tables LOOP
        PERFORM jobtrail.check_projection_table(t);
        EXECUTE format('DROP TABLE IF EXISTS jobtrail_rebuild.%I', t);
        EXECUTE format('CREATE TABLE jobtrail_rebuild.%I (LIKE jobtrail.%I INCLUDING ALL)', t, t);
    END LOOP;
END;
$$;

-- Replace jobtrail.<table> by its shadow copy, in the caller's transaction.  The copies are
-- analyzed first (so queries are planned well at once), then every table is locked, in the
-- order given (callers sort), so readers wait for the whole swap and then see the new
-- tables, never a mix of old and new.
CREATE FUNCTION jobtrail.swap_shadow_tables(tables text[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY tables LOOP
        PERFORM jobtrail.check_projection_table(t);
        IF to_regclass(format('jobtrail_rebuild.%I', t)) IS NULL THEN
            RAISE EXCEPTION 'no shadow table jobtrail_rebuild.% to swap in', t
                USING ERRCODE = 'JT011';
        END IF;
        EXECUTE format('ANALYZE jobtrail_rebuild.%I', t);
    END LOOP;
    FOREACH t IN ARRAY tables LOOP
        EXECUTE format('LOCK TABLE jobtrail.%I IN ACCESS EXCLUSIVE MODE', t);
    END LOOP;
    FOREACH t IN ARRAY tables LOOP
        EXECUTE format('DROP TABLE jobtrail.%I', t);
        EXECUTE format('ALTER TABLE jobtrail_rebuild.%I SET SCHEMA jobtrail', t);
    END LOOP;
END;
$$;

-- Drop the shadow copies of a rebuild that gave up.
CREATE FUNCTION jobtrail.drop_shadow_tables(tables text[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY tables LOOP
        PERFORM jobtrail.check_projection_table(t);
        EXECUTE format('DROP TABLE IF EXISTS jobtrail_rebuild.%I', t);
    END LOOP;
END;
$$;
