-- Rebuilds build secondary indexes once, at the end, instead of row by row: a shadow table
-- starts with its columns, constraints and the indexes of its primary key and unique
-- constraints only (the projection's upserts need those), and
-- jobtrail.finish_shadow_tables adds the other indexes, then ANALYZE, before the swap.
-- The copies keep the originals' names exactly (they live in another schema until the
-- swap), so a rebuild never renames an index.

CREATE OR REPLACE FUNCTION jobtrail.create_shadow_tables(tables text[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    t text;
    c record;
BEGIN
    FOREACH t IN ARRAY tables LOOP
        PERFORM jobtrail.check_projection_table(t);
        EXECUTE format('DROP TABLE IF EXISTS jobtrail_rebuild.%I', t);
        EXECUTE format(
            'CREATE TABLE jobtrail_rebuild.%I (LIKE jobtrail.%I INCLUDING ALL EXCLUDING INDEXES)',
            t, t);
        FOR c IN SELECT con.conname, pg_get_constraintdef(con.oid) AS definition
                   FROM pg_constraint con
                  WHERE con.conrelid = format('jobtrail.%I', t)::regclass
                    AND con.contype IN ('p', 'u')
                  ORDER BY con.oid LOOP
            EXECUTE format('ALTER TABLE jobtrail_rebuild.%I ADD CONSTRAINT %I %s',
                           t, c.conname, c.definition);
        END LOOP;
    END LOOP;
END;
$$;

-- Add the original's other indexes to each shadow table (same names and definitions),
-- then ANALYZE it.  Runs before the swap, outside its locks: readers are not held up.
CREATE FUNCTION jobtrail.finish_shadow_tables(tables text[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    t text;
    i record;
BEGIN
    FOREACH t IN ARRAY tables LOOP
        PERFORM jobtrail.check_projection_table(t);
        FOR i IN SELECT pg_get_indexdef(ix.indexrelid) AS definition
                   FROM pg_index ix
                  WHERE ix.indrelid = format('jobtrail.%I', t)::regclass
                    AND NOT EXISTS (SELECT 1 FROM pg_constraint con
                                     WHERE con.conindid = ix.indexrelid)
                  ORDER BY ix.indexrelid LOOP
            -- The definition reads "CREATE INDEX name ON jobtrail.<table> USING ...".
            EXECUTE regexp_replace(i.definition, ' ON jobtrail\.', ' ON jobtrail_rebuild.');
        END LOOP;
        EXECUTE format('ANALYZE jobtrail_rebuild.%I', t);
    END LOOP;
END;
$$;

CREATE OR REPLACE FUNCTION jobtrail.swap_shadow_tables(tables text[]) RETURNS void
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
    END LOOP;
    -- Lock every table first, in the order given (callers sort): readers wait for the
    -- whole swap and then see the new tables, never a mix of old and new.
    FOREACH t IN ARRAY tables LOOP
        EXECUTE format('LOCK TABLE jobtrail.%I IN ACCESS EXCLUSIVE MODE', t);
    END LOOP;
    FOREACH t IN ARRAY tables LOOP
        EXECUTE format('DROP TABLE jobtrail.%I', t);
        EXECUTE format('ALTER TABLE jobtrail_rebuild.%I SET SCHEMA jobtrail', t);
    END LOOP;
END;
$$;
