-- name: create_shadow_tables
-- params: tables
SELECT jobtrail.create_shadow_tables($1::text[]);

-- name: swap_shadow_tables
-- params: tables
SELECT jobtrail.swap_shadow_tables($1::text[]);

-- name: drop_shadow_tables
-- params: tables
SELECT jobtrail.drop_shadow_tables($1::text[]);

-- name: shadow_indexes
-- params: tables
SELECT table_name, index_name FROM jobtrail.shadow_indexes($1::text[]);

-- name: build_shadow_index
-- params: table_name, index_name
SELECT jobtrail.build_shadow_index($1, $2);

-- name: analyze_shadow_table
-- params: table_name
SELECT jobtrail.analyze_shadow_table($1);

-- name: index_build_memory
-- params:
-- Sorting a view's index in memory instead of on disk (this transaction only).
SET LOCAL maintenance_work_mem TO '128MB';
