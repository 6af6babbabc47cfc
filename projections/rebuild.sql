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
