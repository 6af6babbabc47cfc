-- name: create_shadow_tables
-- params: tables
SELECT jobtrail.create_shadow_tables($1::text[]);

-- name: swap_shadow_tables
-- params: tables
SELECT jobtrail.swap_shadow_tables($1::text[]);

-- name: drop_shadow_tables
-- params: tables
SELECT jobtrail.drop_shadow_tables($1::text[]);

-- name: finish_shadow_tables
-- params: tables
SELECT jobtrail.finish_shadow_tables($1::text[]);

-- name: index_build_memory
-- params:
-- Sorting a view's index in memory instead of on disk (this transaction only).
SET LOCAL maintenance_work_mem TO '128MB';
