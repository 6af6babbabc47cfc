-- Crypto-shredding (issue 17): one data key per job, for the job's personal fields, error
-- texts, tracebacks and results.  Keys are stored wrapped (AES-256-GCM) with the master key
-- from settings (JOBTRAIL_DATA_KEY), never in the clear; master_key_id names that key
-- (a fingerprint), so a process holding another one refuses instead of guessing.
--
-- Erasing a subject (a job, a user, an organization) sets wrapped_key to NULL and records
-- when: the row stays as a tombstone, so an erased job is known as erased (a replay is
-- refused) and its key is never made again.  The old row version stays in the table's
-- pages until VACUUM; jobtrail.erase runs VACUUM on this table after each erasure.
CREATE TABLE jobtrail.data_keys (
    job_id          uuid PRIMARY KEY,
    user_id         bigint,
    organization_id bigint,
    wrapped_key     bytea,
    master_key_id   text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    erased_at       timestamptz,
    CONSTRAINT data_keys_erased_has_no_key CHECK ((wrapped_key IS NULL) = (erased_at IS NOT NULL))
);

CREATE INDEX data_keys_by_user ON jobtrail.data_keys (user_id) WHERE user_id IS NOT NULL;
CREATE INDEX data_keys_by_organization ON jobtrail.data_keys (organization_id)
    WHERE organization_id IS NOT NULL;
