-- A rebuild builds its shadows' secondary indexes side by side, one per connection, so a
-- server with several cores builds several at once (jobtrail.finish_shadow_tables builds
-- them one after another; it is dropped below).  Names and definitions are the
-- originals', as in 0012.

-- The secondary indexes (not backing a constraint) of the originals of ``tables``.
CREATE FUNCTION jobtrail.shadow_indexes(tables text[])
RETURNS TABLE (table_name text, index_name text)
LANGUAGE plpgsql AS $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY tables LOOP
        PERFORM jobtrail.check_projection_table(t);
        RETURN QUERY
        SELECT t, c.relname::text
          FROM pg_index ix JOIN pg_class c ON c.oid = ix.indexrelid
         WHERE ix.indrelid = format('jobtrail.%I', t)::regclass
           AND NOT EXISTS (SELECT 1 FROM pg_constraint con WHERE con.conindid = ix.indexrelid)
         ORDER BY ix.indexrelid;
    END LOOP;
END;
$$;

-- Build the original's index ``index_name`` on the shadow of ``table_name``.
CREATE FUNCTION jobtrail.build_shadow_index(table_name text, index_name text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    definition text;
BEGIN
    PERFORM jobtrail.check_projection_table(table_name);
    SELECT pg_get_indexdef(ix.indexrelid) INTO definition
      FROM pg_index ix JOIN pg_class c ON c.oid = ix.indexrelid
     WHERE ix.indrelid = format('jobtrail.%I', table_name)::regclass
       AND c.relname = index_name;
    IF definition IS NULL THEN
        RAISE EXCEPTION 'jobtrail.% has no index %', table_name, index_name
            USING ERRCODE = 'JT012';
    END IF;
    -- The definition reads "CREATE INDEX name ON jobtrail.<table> USING ...".
    EXECUTE regexp_replace(definition, ' ON jobtrail\.', ' ON jobtrail_rebuild.');
END;
$$;

CREATE FUNCTION jobtrail.analyze_shadow_table(table_name text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM jobtrail.check_projection_table(table_name);
    EXECUTE format('ANALYZE jobtrail_rebuild.%I', table_name);
END;
$$;

-- Replaced by the three functions above.
DROP FUNCTION jobtrail.finish_shadow_tables(text[]);
