-- A role's holder keeps a session advisory lock keyed (72440125, hashtext(name)) on a
-- connection of its own.  PostgreSQL releases a session lock when the holder's connection
-- ends, which is what lets a standby take over when the holder dies.

-- name: lock_key
-- params: name
-- The one place a role's name becomes its lock key (projections kept this key from their
-- first release, so hosts of both versions exclude each other during an upgrade).
SELECT 72440125 AS class_id, hashtext($1) AS object_id;

-- name: try_lead
-- params: class_id, object_id
SELECT pg_try_advisory_lock($1, $2);

-- name: queue_for_lead
-- params: class_id, object_id
-- Waits in PostgreSQL's lock queue; the holder sees the waiter and steps down (a rebuild).
SELECT pg_advisory_lock($1, $2);

-- name: lead_wanted
-- params: class_id, object_id
-- Whether someone waits in the queue for this lock (standbys only try, never wait).  Also
-- the holder's heartbeat: it fails at once when the lock's connection is gone.
SELECT EXISTS (
    SELECT 1 FROM pg_locks
     WHERE locktype = 'advisory' AND classid = $1::int4::oid AND objsubid = 2
       AND objid = $2::int4::oid AND NOT granted);

-- name: keep_alive
-- params:
-- Notice a holder whose machine vanished within ~15 s instead of TCP's default hours:
-- keep-alive probes while the connection is idle, and tcp_user_timeout while data the
-- server sent goes unacknowledged (a leader LISTENs on this connection, so the server
-- often has a notification in flight, and keep-alives never start; TCP would retransmit
-- for ~15 minutes).
SET tcp_keepalives_idle = 5; SET tcp_keepalives_interval = 2; SET tcp_keepalives_count = 5;
SET tcp_user_timeout = 15000;
