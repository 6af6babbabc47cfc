-- name: use_live_tables
-- params:
-- Projections write unqualified table names: this transaction resolves them to the views.
SET LOCAL search_path TO jobtrail;

-- name: use_shadow_tables
-- params:
-- ... and this one to a rebuild's shadow copies (see sql/0011_create_rebuild_functions.sql).
-- Shadow writes need not wait for the disk: a crash discards the shadows anyway, and the
-- swap's own (synchronous) commit flushes everything written before it.  The shadows have
-- no statistics until the rebuild ends, so the planner is told to look rows up by index.
SET LOCAL search_path TO jobtrail_rebuild; SET LOCAL synchronous_commit TO off;
SET LOCAL enable_seqscan TO off;
