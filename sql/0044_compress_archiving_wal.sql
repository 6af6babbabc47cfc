-- Archiving and purging write their full-page images compressed (issue 16).
--
-- An append's commit flushes the WAL up to its own commit record, so while archiving runs
-- every append also waits for the WAL archiving wrote just before it (bench/archive.py).
-- Archiving sweeps the log's oldest pages, and each of them is first changed since the
-- last checkpoint when archiving deletes from it: most of archiving's WAL is full-page
-- images (70-75 % at ten million events), which compress well.  Run with
-- wal_compression, archiving writes less WAL per moved event, so each batch's burst is
-- shorter and an append that commits during one has less to flush; the pace
-- (JOBTRAIL_ARCHIVE_WAL_MB_PER_S) then also moves more events per second.
--
-- wal_compression is a superuser setting: the functions' own SET clause applies it, with
-- the rights of their owner (they are SECURITY DEFINER), to them alone; nothing else on
-- the server changes.  It is set only where the migrating role may set it (a superuser,
-- or a role granted SET ON PARAMETER wal_compression); otherwise a NOTICE says what to do
-- (the same setting on the whole server) and archiving runs with the server's setting.  lz4 where the server has it
-- (cheapest to compress), pglz otherwise.

DO $$
DECLARE
    method text;
BEGIN
    IF NOT has_parameter_privilege('wal_compression', 'SET') THEN
        RAISE NOTICE 'archiving''s WAL is not compressed: role % may not set wal_compression; '
                     'set wal_compression = lz4 on the server for the same effect', current_user;
        RETURN;
    END IF;
    SELECT CASE WHEN 'lz4' = ANY (s.enumvals) THEN 'lz4' ELSE 'pglz' END INTO method
      FROM pg_catalog.pg_settings s WHERE s.name = 'wal_compression';
    EXECUTE format('ALTER FUNCTION jobtrail.archive_streams(text[], timestamptz, integer) '
                   'SET wal_compression = %L', method);
    EXECUTE format('ALTER FUNCTION jobtrail.purge_archive(text[], bigint[], text, text, bigint, '
                   'timestamptz, integer) SET wal_compression = %L', method);
END;
$$;
