-- Appends commit in parallel; readers still never skip.
--
-- Until now every insert into the log took one global advisory lock (7244012501) and held
-- it through commit, so that positions became visible in position order.  That lock also
-- serialised every commit's WAL flush: however many hosts append, the log took about one
-- commit at a time.  This migration removes it.
--
-- The problem the lock solved stays: a position is taken at insert time and becomes
-- visible at commit, so "position > last seen" can skip a slow transaction's lower position.
-- The choices weighed:
--
-- * A global lock through commit (what we had): simple, exact; one commit at a time.
-- * A reader that waits at a gap in positions for a while, then skips it: gaps are also
--   left by rollbacks and by sequence caching, so "a while" must end, and a slow commit
--   after it is skipped for good.  Rule 2 says never.
-- * Positions handed out after commit (a sequencer process or a second, ordered table):
--   another writer, another round trip per event, and UPDATEs on an append-only log.
-- * A lock taken only for the instant of commit: PostgreSQL has no commit hook that runs
--   after the commit record is written; any lock we take is held through the flush.
-- * Chosen: record the writing transaction's id with each event (xid8, 64 bits, so no
--   wraparound) and let a reader advance only below the oldest transaction still running
--   (pg_snapshot_xmin(pg_current_snapshot())).  Every transaction id below that horizon
--   has ended (committed and visible, or rolled back), and every transaction that has not
--   got an id yet will get one at or above it; so the events below the horizon are
--   final, and a reader that reads them in (xid, position) order and remembers the last
--   (xid, position) it read never skips one.  Positions stay the events' identity (and
--   still grow within a transaction); followers' checkpoints become (xid, position).
--
-- What it costs: a write transaction that stays open holds back every reader of the log
-- (the relay, the projections, subscriptions) until it ends, whichever database of the
-- server it writes in, and events it did not write are not followed meanwhile.  Readers
-- tell how much is held back (EventStore.reader_lag: /metrics, `jobtrail projections
-- status`) and log a warning while it grows.  Keep write transactions short.
--
-- Two things the global lock also did get their own, narrower locks:
-- * The version check (read the stream's version, insert the next ones): an advisory lock
--   per stream, so appends to the same stream queue and the check is exact; appends to
--   different streams do not wait for each other.  (The unique (stream_id, version) key
--   still stops any writer that bypasses the functions.)
-- * A delivery token's "used once": an advisory lock per token, so two transactions with
--   the same token cannot both find it unused (each stream's lock is not enough: nothing
--   ties a token to one stream).
-- * Archiving takes the locks of the streams it moves, so no append joins a stream while
--   it is being moved.
-- Locks are taken in one statement, sorted by key, so two appends that share streams
-- never wait for each other in opposite orders.
--
-- Within a stream, reading order must be version order.  A transaction gets its id at its
-- first write: an append made alone gets it at its insert, after the stream's lock, so
-- after every earlier append to the stream committed, with a higher id than theirs.  A
-- transaction that wrote before appending (an append inside a caller's transaction) holds
-- an older id; if a younger transaction appended to the stream meanwhile, its events
-- would read before that transaction's, so append_events refuses (JT001, a conflict:
-- retry in a new transaction).

-- Existing events were committed one at a time under the old lock, so position order is
-- their commit order: they get xid 0 and read in position order, before anything newer.
-- The constant default first (no table rewrite), then the real default for new rows.
ALTER TABLE jobtrail.events ADD COLUMN xid xid8 NOT NULL DEFAULT '0';
ALTER TABLE jobtrail.events ALTER COLUMN xid SET DEFAULT pg_current_xact_id();
-- A writer cannot claim another transaction's id (an old one would hide its events
-- behind every reader's cursor).  NOT VALID: the old rows' 0 is not checked.
ALTER TABLE jobtrail.events
    ADD CONSTRAINT events_xid_is_writer CHECK (xid = pg_current_xact_id()) NOT VALID;
CREATE INDEX events_read_order ON jobtrail.events (xid, position);

ALTER TABLE jobtrail.events_archive ADD COLUMN xid xid8 NOT NULL DEFAULT '0';

ALTER TABLE jobtrail.checkpoints ADD COLUMN xid xid8 NOT NULL DEFAULT '0';

DROP TRIGGER events_serialize_appends ON jobtrail.events;
DROP FUNCTION jobtrail.serialize_appends();

-- Why the announcement can move out of the transaction: PostgreSQL serialises the commits
-- of all transactions that NOTIFY (a database-wide lock, taken before the commit record
-- and held until after its flush, keeps the notification queue in commit order).  Left in
-- the trigger, it would serialise appends just as the old lock did.  The event store's own
-- appends therefore set jobtrail.announce = 'after_commit' and send the notification
-- themselves once committed, in a transaction that writes no WAL flush; inserts made any
-- other way (inside a caller's transaction, by archiving) still notify here.
CREATE OR REPLACE FUNCTION jobtrail.notify_appended() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('jobtrail.announce', true) IS DISTINCT FROM 'after_commit' THEN
        PERFORM pg_notify('jobtrail_events', '');
    END IF;
    RETURN NULL;
END;
$$;

-- Lock the streams and tokens named, in key order (see the header).  Keys live in their
-- own advisory-lock classes (elections use class 72440125).  A hash collision only makes
-- two unrelated streams queue behind each other.  PL/pgSQL, not SQL, so that its plan is
-- kept between calls (an SQL function that cannot be inlined is planned at every call);
-- names are qualified instead of a SET search_path, which would cost a configuration
-- change per call (it runs with its caller's rights and search_path).
CREATE FUNCTION jobtrail.lock_for_append(stream_ids text[], token_ids text[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_catalog.pg_advisory_xact_lock(k.class_id, k.object_id)
       FROM (SELECT DISTINCT 72440126 AS class_id, pg_catalog.hashtext(s) AS object_id
               FROM pg_catalog.unnest(stream_ids) AS s
             UNION
             SELECT DISTINCT 72440127, pg_catalog.hashtext(t)
               FROM pg_catalog.unnest(token_ids) AS t WHERE t IS NOT NULL
              ORDER BY 1, 2) k;
END;
$$;

-- As in 0003, with the stream locks instead of the global lock, and announce_after_commit:
-- true when the caller (the event store, in a transaction of its own) sends the log's
-- notification itself after commit.
CREATE FUNCTION jobtrail.append_events(
    check_streams   text[],
    check_versions  integer[],
    stream_ids      text[],
    event_types     text[],
    schema_versions smallint[],
    datas           json[],
    metadatas       json[],
    announce_after_commit boolean
) RETURNS TABLE (out_position bigint, out_stream_id text, out_version integer)
LANGUAGE plpgsql AS $$
DECLARE
    i      integer;
    actual integer;
    late   text;
    -- Whether this transaction got its id before the streams' locks (see the header).
    early  boolean := pg_current_xact_id_if_assigned() IS NOT NULL;
BEGIN
    IF announce_after_commit THEN
        PERFORM set_config('jobtrail.announce', 'after_commit', true);
    END IF;
    -- The streams' locks before reading their versions: the check and the insert see the
    -- same versions (each later statement takes a new snapshot, after the locks).
    PERFORM jobtrail.lock_for_append(
        array_cat(check_streams, stream_ids), ARRAY[]::text[]);
    IF early THEN
        SELECT d.sid INTO late
          FROM (SELECT DISTINCT unnest(stream_ids) AS sid) d
         WHERE (SELECT e.xid FROM jobtrail.events e WHERE e.stream_id = d.sid
                 ORDER BY e.version DESC LIMIT 1) > pg_current_xact_id()
         LIMIT 1;
        IF late IS NOT NULL THEN
            SELECT coalesce(max(e.version), 0) INTO actual
              FROM jobtrail.events e WHERE e.stream_id = late;
            RAISE EXCEPTION 'stream % was appended to by a transaction younger than this one', late
                USING ERRCODE = 'JT001',
                      HINT = 'retry the append in a new transaction',
                      DETAIL = json_build_object(
                          'stream_id', late, 'actual', actual,
                          'expected', 'no append by a transaction younger than its own')::text;
        END IF;
    END IF;
    FOR i IN 1 .. coalesce(array_length(check_streams, 1), 0) LOOP
        SELECT coalesce(max(e.version), 0) INTO actual
          FROM jobtrail.events e WHERE e.stream_id = check_streams[i];
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
    ), current_versions AS (
        SELECT s.sid,
               (SELECT coalesce(max(e.version), 0) FROM jobtrail.events e
                 WHERE e.stream_id = s.sid) AS v
          FROM (SELECT DISTINCT input.sid FROM input) s
    ), numbered AS (
        SELECT input.*, cv.v + row_number() OVER (PARTITION BY input.sid ORDER BY input.ord)
                   AS new_version
          FROM input JOIN current_versions cv USING (sid)
    ), inserted AS (
        INSERT INTO jobtrail.events (stream_id, version, event_type, schema_version, data, metadata)
        SELECT n.sid, n.new_version, n.etype, n.sver, n.dat, n.meta
          FROM numbered n ORDER BY n.ord
        RETURNING position, stream_id, version
    )
    SELECT ins.position, ins.stream_id, ins.version FROM inserted ins ORDER BY ins.position;
END;
$$;

-- The old signature stays for callers that do not announce (the trigger notifies).
CREATE OR REPLACE FUNCTION jobtrail.append_events(
    check_streams   text[],
    check_versions  integer[],
    stream_ids      text[],
    event_types     text[],
    schema_versions smallint[],
    datas           json[],
    metadatas       json[]
) RETURNS TABLE (out_position bigint, out_stream_id text, out_version integer)
LANGUAGE sql AS $$
    SELECT * FROM jobtrail.append_events(check_streams, check_versions, stream_ids,
                                         event_types, schema_versions, datas, metadatas,
                                         false);
$$;

-- As in 0014, with the stream and token locks instead of the global lock.  Group commit
-- runs only in the event store's own transactions, which announce after commit and get
-- their id at the insert, after the locks (so no check of younger appends is needed).
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
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('jobtrail.announce', 'after_commit', true);
    -- Each stream's lock before reading its version, each token's before reading whether
    -- it was used: the checks and the inserts below (a new snapshot) see the same state.
    PERFORM jobtrail.lock_for_append(array_cat(check_streams, stream_ids), token_ids);
    RETURN QUERY
    WITH checks AS (
        SELECT c.sid, c.expected, c.tok, c.texp,
               (SELECT coalesce(max(e.version), 0) FROM jobtrail.events e
                 WHERE e.stream_id = c.sid) AS actual,
               -- used before, or by an earlier stream of this same call
               (c.tok IS NOT NULL AND (
                    EXISTS (SELECT 1 FROM jobtrail.delivery_tokens t WHERE t.token_id = c.tok)
                    OR EXISTS (SELECT 1 FROM unnest(token_ids) WITH ORDINALITY AS p(tok, ord)
                                WHERE p.tok = c.tok AND p.ord < c.ord)))
                   AS token_used
          FROM unnest(check_streams, check_versions, token_ids, token_expiries)
               WITH ORDINALITY AS c(sid, expected, tok, texp, ord)
    ), accepted AS (
        SELECT checks.sid, checks.actual, checks.tok, checks.texp FROM checks
         WHERE (checks.expected IS NULL OR checks.expected = checks.actual)
           AND NOT checks.token_used
    ), tokens AS (
        -- No ON CONFLICT: under the token's lock a conflict cannot happen, and if it ever
        -- did (a token written without the lock) the whole append fails, never runs twice.
        INSERT INTO jobtrail.delivery_tokens (token_id, stream_id, expires_at)
        SELECT accepted.tok, accepted.sid, accepted.texp FROM accepted
         WHERE accepted.tok IS NOT NULL
    ), input AS (
        SELECT u.sid, u.etype, u.sver, u.dat, u.meta, u.ord
          FROM unnest(stream_ids, event_types, schema_versions, datas, metadatas)
               WITH ORDINALITY AS u(sid, etype, sver, dat, meta, ord)
    ), numbered AS (
        SELECT input.*, accepted.actual
                   + row_number() OVER (PARTITION BY input.sid ORDER BY input.ord) AS new_version
          FROM input JOIN accepted USING (sid)
    ), inserted AS (
        INSERT INTO jobtrail.events (stream_id, version, event_type, schema_version, data, metadata)
        SELECT n.sid, n.new_version, n.etype, n.sver, n.dat, n.meta
          FROM numbered n ORDER BY n.ord
        RETURNING position, stream_id, version
    )
    SELECT ins.position, ins.stream_id, ins.version, false FROM inserted ins
    UNION ALL
    SELECT NULL::bigint, checks.sid, checks.actual, checks.token_used FROM checks
     WHERE NOT (checks.expected IS NULL OR checks.expected = checks.actual)
        OR checks.token_used
    ORDER BY 1 NULLS LAST;
END;
$$;

-- As in 0015, with the moved streams' locks instead of the global lock (an append to one
-- of them waits, then finds it gone), and each event's xid kept in the archive.
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
    -- The candidates' locks: no event can join a stream while it is checked and moved.
    PERFORM jobtrail.lock_for_append(candidates, ARRAY[]::text[]);
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
        (position, stream_id, version, event_type, schema_version, data, metadata,
         recorded_at, xid)
    SELECT g.position, g.stream_id, g.version, g.event_type, g.schema_version, g.data,
           g.metadata, g.recorded_at, g.xid
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
