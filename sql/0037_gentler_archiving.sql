-- Archiving that holds the append path less (issue 16): the log's DELETE guard once per
-- statement instead of once per row.
--
-- The guard (sql/0015) is a row trigger whose function runs a catalog query and, having a
-- SET search_path, saves and restores a setting on every call: for an archiving batch that
-- moves ~1,700 events, that was ~1,700 calls.  Whether a DELETE is allowed never depends
-- on the row (archiving is on in this transaction, and the effective role owns the log),
-- so the same function now runs once per statement, BEFORE it: a DELETE or UPDATE that is
-- not archiving's is refused before it touches any row, as before (and now even when it
-- matches none).  The trigger keeps its name: jobstore/role.sql checks it is there.
DROP TRIGGER events_forbid_update_delete ON jobtrail.events;
CREATE TRIGGER events_forbid_update_delete
    BEFORE DELETE OR UPDATE ON jobtrail.events
    FOR EACH STATEMENT EXECUTE FUNCTION jobtrail.forbid_event_changes();
