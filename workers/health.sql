-- name: applied_migrations
-- params:
-- The readiness check: which schema migrations this database has applied.
SELECT version FROM jobtrail.schema_migrations;
