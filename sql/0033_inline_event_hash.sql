-- The chain's hash is computed inline in the trigger (issue 17: the chain cost appends 22 %).
--
-- What the time went on (pg_stat_statements with track = all, and EXPLAIN ANALYZE of a
-- 10,000-row INSERT into a copy of the log, 2026-11-30): jobtrail.event_hash was declared
-- IMMUTABLE, but its body calls convert_to() and EXTRACT(epoch FROM timestamptz), which are
-- STABLE.  PostgreSQL inlines a SQL function only when its body is no more volatile than
-- the function says it is, so the trigger (sql/0032) never got it inlined: every event ran
-- it as a separate SQL function call, executor and all (pg_stat_statements listed its
-- SELECT sha256(...) as a statement of its own, 12,000 calls for 12,000 events).  Trigger
-- time per event: ~18 µs with it, ~11 µs inlined; of which ~1 µs is the PL/pgSQL call,
-- ~5 µs the sha256 of the row with its concatenation, ~5 µs the previous event's lookup.
--
-- The function says what it is (STABLE) and is then inlined into the trigger's expression.
-- Its body is not touched: the same bytes are hashed the same way (jobstore/audit.py, the
-- Python twin, still recomputes every hash; tests/integration/test_chain_setwise.py).
-- Nothing else changes: the trigger still computes every hash, whatever the inserter
-- supplied, so no writer can have a hash of its choosing stored.
--
-- Why not hashes computed set-wise in append_events / append_events_each (one lookup per
-- stream, no trigger call): those functions' latest definitions are in sql/0035, which is
-- applied after this migration in a new database and would put its own bodies back.  That
-- change needs a migration after 0035.

ALTER FUNCTION jobtrail.event_hash(bytea, bigint, xid8, text, integer, text, smallint, json,
                                   json, timestamptz) STABLE;
