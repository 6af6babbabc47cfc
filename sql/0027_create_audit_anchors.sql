-- Signed anchors of the log's stream heads, and archiving that records the heads it moves.
--
-- jobtrail.audit_anchors: one row per anchor (jobstore/audit.py writes them, one host at a
-- time).  ``body`` is the canonical JSON the anchor's ``digest`` (sha256) and ``signature``
-- (HMAC-SHA256 under JOBTRAIL_AUDIT_KEY, a key the database never sees) cover: the anchor's
-- number, the previous anchor's digest, the cursor (xid, position) the log was read up to,
-- and the head (stream, version, position, hash) of every stream that changed since the
-- previous anchor.  The cursor columns repeat the body's for the next anchor's query.  The
-- table is append-only like the log; the database cannot make a valid anchor, so an edited
-- or inserted one is caught by its signature, and cutting the last ones off by comparing
-- with an export (`jobtrail audit export`).
--
-- Archiving moves whole streams out of the log; from here on it also copies each event's
-- hash into the archive and records, in the metadata of its log.streams_archived event
-- (under "audit_heads": [stream_id, version, position, hex hash] per stream), the heads
-- of the streams it moved.  That event is itself chained and anchored, so a verifier can
-- tell a stream archived on record from a stream removed.  The archive's own purge
-- (sql/0025) records the position range and digest of what it deletes.

CREATE TABLE jobtrail.audit_anchors (
    seq             bigint      PRIMARY KEY CHECK (seq >= 1),
    cursor_xid      xid8        NOT NULL,
    cursor_position bigint      NOT NULL,
    events          integer     NOT NULL CHECK (events >= 1),
    body            text        NOT NULL,
    digest          bytea       NOT NULL CHECK (octet_length(digest) = 32),
    key_id          text        NOT NULL,
    signature       bytea       NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE FUNCTION jobtrail.forbid_anchor_changes() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION 'jobtrail.audit_anchors is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'JT002',
              HINT = 'anchors are never changed; a new one is added every interval';
END;
$$;

CREATE TRIGGER audit_anchors_forbid_update_delete
    BEFORE UPDATE OR DELETE ON jobtrail.audit_anchors
    FOR EACH ROW EXECUTE FUNCTION jobtrail.forbid_anchor_changes();

CREATE TRIGGER audit_anchors_forbid_truncate
    BEFORE TRUNCATE ON jobtrail.audit_anchors
    FOR EACH STATEMENT EXECUTE FUNCTION jobtrail.forbid_anchor_changes();

-- As in 0024, copying each event's hash into the archive and recording the moved streams'
-- heads in the archive event's metadata (see the header).
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
    heads json;
BEGIN
    -- The candidates' locks: no event can join a stream while it is checked and moved.
    PERFORM jobtrail.lock_for_append(candidates, ARRAY[]::text[]);
    SELECT pg_catalog.array_agg(c.sid ORDER BY c.sid) INTO moved
      FROM (SELECT DISTINCT pg_catalog.unnest(candidates) AS sid) c
     WHERE c.sid LIKE 'job-%'
       AND (SELECT e.event_type IN ('job.completed', 'job.failed', 'job.cancelled')
                   AND e.recorded_at < finished_before
              FROM jobtrail.events e
             WHERE e.stream_id = c.sid
               AND e.event_type NOT IN ('job.notified', 'job.outcome_late', 'job.heartbeat')
             ORDER BY e.version DESC LIMIT 1)
       AND NOT EXISTS (SELECT 1 FROM jobtrail.events e
                         JOIN jobtrail.events_archive a
                           ON a.stream_id = e.stream_id AND a.version = e.version
                        WHERE e.stream_id = c.sid);
    IF moved IS NULL THEN
        RETURN;
    END IF;
    PERFORM pg_catalog.set_config('jobtrail.archiving', 'on', true);
    WITH gone AS (
        DELETE FROM jobtrail.events e WHERE e.stream_id = ANY (moved) RETURNING e.*
    ), kept AS (
        INSERT INTO jobtrail.events_archive
            (position, stream_id, version, event_type, schema_version, data, metadata,
             recorded_at, xid, hash)
        SELECT g.position, g.stream_id, g.version, g.event_type, g.schema_version, g.data,
               g.metadata, g.recorded_at, g.xid, g.hash
          FROM gone g
        RETURNING stream_id, version, position, hash
    )
    SELECT pg_catalog.json_agg(
               pg_catalog.json_build_array(h.stream_id, h.version, h.position,
                                           pg_catalog.encode(h.hash, 'hex'))
               ORDER BY h.stream_id)
      INTO heads
      FROM (SELECT DISTINCT ON (k.stream_id) k.stream_id, k.version, k.position, k.hash
              FROM kept k ORDER BY k.stream_id, k.version DESC) h;
    PERFORM pg_catalog.set_config('jobtrail.archiving', 'off', true);
    INSERT INTO jobtrail.events (stream_id, version, event_type, schema_version, data, metadata)
    VALUES ('archive-' || pg_catalog.gen_random_uuid(), 1, 'log.streams_archived', 1,
            pg_catalog.json_build_object(
                'stream_ids', moved,
                'job_ids', (SELECT pg_catalog.array_agg(pg_catalog.substr(s, 5))
                              FROM pg_catalog.unnest(moved) AS s),
                'finished_before', finished_before,
                'retention_days', retention_days),
            pg_catalog.json_build_object('audit_heads', heads));
    RETURN QUERY SELECT pg_catalog.unnest(moved);
END;
$$;
