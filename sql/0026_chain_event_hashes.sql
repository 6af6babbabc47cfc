-- A tamper-evident log: every event carries a hash chained to the one before it in its stream.
--
--   hash(v) = sha256( hash(v - 1)            32 bytes; 32 zero bytes for version 1
--                  || position, xid          int8 each, big-endian
--                  || version                int4
--                  || schema_version         int2
--                  || recorded_at            int8, microseconds since 1970-01-01 UTC
--                  || stream_id, event_type, data, metadata
--                                            each: int4 byte length, then its UTF-8 bytes,
--                                            data and metadata exactly as stored (json text) )
--
-- jobtrail.event_hash is the one definition in SQL; jobstore/audit.py is the one in Python
-- (the verifier recomputes every hash itself, it does not ask the database to).  An edit of
-- any stored field, a removed or an inserted event, breaks the chain at that place.  Who
-- rewrites a stream *and* recomputes its hashes is caught by the signed anchors of stream
-- heads (sql/0027, jobstore/audit.py), which the database cannot forge.
--
-- Why a row trigger computes it, and where the previous hash comes from:
-- * Appends do not serialise (sql/0019): an advisory lock per stream, held to commit, makes
--   the version check exact.  The same lock makes "the previous event of this stream" exact:
--   under it, version - 1 is committed (or written earlier by this very statement, which a
--   BEFORE ROW trigger sees) and nothing else can be appended to the stream meanwhile.  So
--   the chain needs no lock of its own and appends to different streams still run in
--   parallel; two appends to one stream were already queued by its lock.
-- * A trigger rather than code in append_events/append_events_each: every way an event gets
--   in is chained the same way, including archiving's own record and events that later
--   functions insert, and a writer cannot supply a hash of its choosing (it is overwritten).
--   The position and xid it hashes are the row's own defaults, assigned before the trigger.
-- * The cost is one index lookup of (stream_id, version - 1) and one sha256 per event
--   (bench/append.py --compare-chain measures it against the schema without this).
--
-- Existing events are chained here, stream by stream in version order (the append-only
-- trigger is disabled for that one UPDATE, by the log's owner, inside this migration's
-- transaction); archived events are chained the same way within the archive.

CREATE FUNCTION jobtrail.event_hash(
    previous       bytea,
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
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT pg_catalog.sha256(
        COALESCE(previous, '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea)
        || pg_catalog.int8send("position")
        || pg_catalog.int8send(xid::text::bigint)
        || pg_catalog.int4send(version)
        || pg_catalog.int2send(schema_version)
        || pg_catalog.int8send((EXTRACT(epoch FROM recorded_at) * 1000000)::bigint)
        || pg_catalog.int4send(pg_catalog.octet_length(pg_catalog.convert_to(stream_id, 'UTF8')))
        || pg_catalog.convert_to(stream_id, 'UTF8')
        || pg_catalog.int4send(pg_catalog.octet_length(pg_catalog.convert_to(event_type, 'UTF8')))
        || pg_catalog.convert_to(event_type, 'UTF8')
        || pg_catalog.int4send(pg_catalog.octet_length(pg_catalog.convert_to(data::text, 'UTF8')))
        || pg_catalog.convert_to(data::text, 'UTF8')
        || pg_catalog.int4send(pg_catalog.octet_length(pg_catalog.convert_to(metadata::text, 'UTF8')))
        || pg_catalog.convert_to(metadata::text, 'UTF8'))
$$;

ALTER TABLE jobtrail.events ADD COLUMN hash bytea;
ALTER TABLE jobtrail.events_archive ADD COLUMN hash bytea;

-- Chain the rows of one table (the log or the archive) in place.
CREATE FUNCTION jobtrail.backfill_event_hashes(tbl regclass) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    r            record;
    prev         bytea;
    last_stream  text;
    last_version integer;
BEGIN
    CREATE TEMPORARY TABLE chain_backfill (pos bigint PRIMARY KEY, hash bytea NOT NULL)
        ON COMMIT DROP;
    FOR r IN EXECUTE format(
        'SELECT position, xid, stream_id, version, event_type, schema_version, data, '
        'metadata, recorded_at FROM %s ORDER BY stream_id, version', tbl) LOOP
        IF r.stream_id IS DISTINCT FROM last_stream OR r.version <> last_version + 1 THEN
            prev := NULL;  -- a stream's first event (or one after a gap: the chain says so)
        END IF;
        prev := jobtrail.event_hash(prev, r.position, r.xid, r.stream_id, r.version,
                                    r.event_type, r.schema_version, r.data, r.metadata,
                                    r.recorded_at);
        INSERT INTO chain_backfill VALUES (r.position, prev);
        last_stream := r.stream_id;
        last_version := r.version;
    END LOOP;
    EXECUTE format('UPDATE %s e SET hash = b.hash FROM chain_backfill b WHERE b.pos = e.position',
                   tbl);
    DROP TABLE chain_backfill;
END;
$$;

-- The one UPDATE of existing events: the append-only trigger and the writer's-xid check
-- (sql/0019: an event's xid must be its writing transaction's, true of no existing row
-- rewritten here) are set aside for it, inside this migration's transaction, and the check
-- is put back as it was (NOT VALID: existing rows keep the xid their writer gave them).
ALTER TABLE jobtrail.events DROP CONSTRAINT events_xid_is_writer;
ALTER TABLE jobtrail.events DISABLE TRIGGER events_forbid_update_delete;
SELECT jobtrail.backfill_event_hashes('jobtrail.events');
ALTER TABLE jobtrail.events ENABLE TRIGGER events_forbid_update_delete;
ALTER TABLE jobtrail.events
    ADD CONSTRAINT events_xid_is_writer CHECK (xid = pg_current_xact_id()) NOT VALID;
SELECT jobtrail.backfill_event_hashes('jobtrail.events_archive');
DROP FUNCTION jobtrail.backfill_event_hashes(regclass);

ALTER TABLE jobtrail.events ALTER COLUMN hash SET NOT NULL;
ALTER TABLE jobtrail.events ADD CONSTRAINT events_hash_is_sha256 CHECK (octet_length(hash) = 32);

-- Chain each new event to its stream's previous one (see the header): in the log, or in the
-- archive when the stream was archived and then continued (sql/0024).  Qualified names, no
-- SET search_path (that would cost a configuration change per row); it runs with the
-- inserting role's rights, which may read the log.
CREATE FUNCTION jobtrail.chain_event() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.hash := jobtrail.event_hash(
        CASE WHEN NEW.version > 1 THEN
            coalesce((SELECT e.hash FROM jobtrail.events e
                       WHERE e.stream_id = NEW.stream_id AND e.version = NEW.version - 1),
                     (SELECT a.hash FROM jobtrail.events_archive a
                       WHERE a.stream_id = NEW.stream_id AND a.version = NEW.version - 1))
        END,
        NEW.position, NEW.xid, NEW.stream_id, NEW.version, NEW.event_type,
        NEW.schema_version, NEW.data, NEW.metadata, NEW.recorded_at);
    RETURN NEW;
END;
$$;

CREATE TRIGGER events_chain_hash
    BEFORE INSERT ON jobtrail.events
    FOR EACH ROW EXECUTE FUNCTION jobtrail.chain_event();
