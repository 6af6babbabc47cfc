-- name: set_statement_timeout
-- params: timeout
-- Bounds every query of this (API) transaction only: LOCAL ends with the transaction.
SELECT set_config('statement_timeout', $1, true);
