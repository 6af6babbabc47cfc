-- The append-only event log: every fact about every job, in one table.
-- data and metadata are json, not jsonb: the log must give back exactly what was written
-- (jsonb turns 3.89e16 into the integer 38907764274163310 and reorders keys), it is read
-- by position and stream, never queried by content; the views use jsonb.
CREATE SCHEMA IF NOT EXISTS jobtrail;

CREATE TABLE jobtrail.events (
    position       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stream_id      text        NOT NULL CHECK (length(stream_id) BETWEEN 1 AND 200),
    version        integer     NOT NULL CHECK (version >= 1),
    event_type     text        NOT NULL CHECK (length(event_type) BETWEEN 1 AND 200),
    schema_version smallint    NOT NULL CHECK (schema_version >= 1),
    data           json        NOT NULL,
    metadata       json        NOT NULL DEFAULT '{}'::json,
    recorded_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT events_stream_version_key UNIQUE (stream_id, version)
);

-- Why a global lock: positions come from a sequence at insert time but become visible
-- at commit, so two concurrent appenders can commit out of position order and a reader
-- tailing "position > last seen" would skip the slower one's lower position for good.
-- Every statement that inserts into the log first takes this transaction-scoped
-- advisory lock, so position assignment and commit happen one transaction at a time:
-- when a transaction gets the lock, every lower position is already committed (or rolled
-- back) and visible.  The lock is taken by a trigger, so no writer can bypass it.
CREATE FUNCTION jobtrail.serialize_appends() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(7244012501);
    RETURN NULL;
END;
$$;

CREATE TRIGGER events_serialize_appends
    BEFORE INSERT ON jobtrail.events
    FOR EACH STATEMENT EXECUTE FUNCTION jobtrail.serialize_appends();

-- One notification per transaction: PostgreSQL folds identical notifications raised in
-- one transaction into one, and listeners only learn "there is something new".
CREATE FUNCTION jobtrail.notify_appended() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('jobtrail_events', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER events_notify_appended
    AFTER INSERT ON jobtrail.events
    FOR EACH STATEMENT EXECUTE FUNCTION jobtrail.notify_appended();

-- Append-only: updates, deletes and truncation fail.  The one sanctioned exception,
-- archiving whole finished streams, will set jobtrail.archiving inside its own function.
CREATE FUNCTION jobtrail.forbid_event_changes() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('jobtrail.archiving', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'jobtrail.events is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'JT002',
              HINT = 'append a new event instead of changing a recorded one';
END;
$$;

CREATE TRIGGER events_forbid_update_delete
    BEFORE UPDATE OR DELETE ON jobtrail.events
    FOR EACH ROW EXECUTE FUNCTION jobtrail.forbid_event_changes();

CREATE TRIGGER events_forbid_truncate
    BEFORE TRUNCATE ON jobtrail.events
    FOR EACH STATEMENT EXECUTE FUNCTION jobtrail.forbid_event_changes();

-- Append events to one or more streams in one statement (and so one transaction).
-- check_streams/check_versions: the expected current version of each stream named,
-- NULL meaning "any" and 0 meaning "no stream yet".  A mismatch raises SQLSTATE JT001
-- and writes nothing.  Rows come in the order given; each row's version is its stream's
-- current version plus its rank within that stream in this call.
CREATE FUNCTION jobtrail.append_events(
    check_streams   text[],
    check_versions  integer[],
    stream_ids      text[],
    event_types     text[],
    schema_versions smallint[],
    datas           json[],
    metadatas       json[]
) RETURNS TABLE (out_position bigint, out_stream_id text, out_version integer)
LANGUAGE plpgsql AS $$
DECLARE
    i      integer;
    actual integer;
BEGIN
    -- Take the log's append lock before reading versions, so the check and the insert
    -- see the same state (see jobtrail.serialize_appends).
    PERFORM pg_advisory_xact_lock(7244012501);
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
        SELECT s.sid, coalesce(max(e.version), 0) AS v
          FROM (SELECT DISTINCT input.sid FROM input) s
          LEFT JOIN jobtrail.events e ON e.stream_id = s.sid
         GROUP BY s.sid
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
