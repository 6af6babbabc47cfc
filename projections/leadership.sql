-- Each projection's leader holds a session advisory lock keyed (72440125, hashtext(name)).
-- A session lock is released by PostgreSQL when the holder's connection ends, which is
-- what lets another host take over when the leader dies.

-- name: try_lead
-- params: name
SELECT pg_try_advisory_lock(72440125, hashtext($1));

-- name: queue_for_lead
-- params: name
-- Waits in PostgreSQL's lock queue; the leader sees the waiter and steps down (a rebuild).
SELECT pg_advisory_lock(72440125, hashtext($1));

-- name: lead_wanted
-- params: name
-- Whether someone waits in the queue for this lock (standby runners only try, never wait).
SELECT EXISTS (
    SELECT 1 FROM pg_locks
     WHERE locktype = 'advisory' AND classid = 72440125 AND objsubid = 2
       AND objid = hashtext($1)::oid AND NOT granted);

-- name: keep_alive
-- params:
-- Notice a leader whose machine vanished within ~15 s instead of TCP's default hours.
SET tcp_keepalives_idle = 5; SET tcp_keepalives_interval = 2; SET tcp_keepalives_count = 5;
