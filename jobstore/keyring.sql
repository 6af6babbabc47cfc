-- name: create_keys
-- params: key_ids, user_ids, organization_ids, wrapped_keys, master_key_id, schedule_ids
-- Makes the keys that do not exist yet (a job's: key id = job id, schedule id NULL; a
-- schedule's: key id derived from the schedule id); returns every key's row (a key that
-- exists is kept: an idempotent enqueue seals with the key its first enqueue made).
WITH given AS (
    SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::bigint[], $4::bytea[], $6::text[])
        AS g(job_id, user_id, organization_id, wrapped_key, schedule_id)
), inserted AS (
    INSERT INTO jobtrail.data_keys AS k (job_id, user_id, organization_id, wrapped_key,
                                         master_key_id, schedule_id)
    SELECT g.job_id, g.user_id, g.organization_id, g.wrapped_key, $5::text, g.schedule_id
      FROM given g
    ON CONFLICT (job_id) DO NOTHING
    RETURNING k.job_id
)
SELECT g.job_id::text AS job_id,
       CASE WHEN i.job_id IS NULL THEN k.wrapped_key ELSE g.wrapped_key END AS wrapped_key,
       CASE WHEN i.job_id IS NULL THEN k.master_key_id ELSE $5::text END AS master_key_id,
       (i.job_id IS NULL AND k.job_id IS NOT NULL AND k.erased_at IS NOT NULL) AS erased,
       (i.job_id IS NOT NULL OR k.job_id IS NOT NULL) AS known
  FROM given g
  LEFT JOIN inserted i ON i.job_id = g.job_id
  LEFT JOIN jobtrail.data_keys k ON k.job_id = g.job_id AND i.job_id IS NULL;

-- name: read_keys
-- params: job_ids
SELECT k.job_id::text AS job_id, k.wrapped_key, k.master_key_id, k.erased_at IS NOT NULL AS erased,
       true AS known
  FROM jobtrail.data_keys k
 WHERE k.job_id = ANY($1::uuid[]);

-- name: erase_keys
-- params: job_id, user_id, organization_id
-- Destroys the keys of a job, or of a user's or an organization's jobs and schedules (any
-- one given; a job id never matches a schedule's key); returns the keys destroyed now
-- (erased ones before are not repeated), each with its schedule id (NULL: a job's key).
UPDATE jobtrail.data_keys k
   SET wrapped_key = NULL, erased_at = now()
 WHERE k.wrapped_key IS NOT NULL
   AND ((k.job_id = $1::uuid AND k.schedule_id IS NULL)
        OR k.user_id = $2::bigint OR k.organization_id = $3::bigint)
RETURNING k.job_id::text AS job_id, k.schedule_id;

-- name: erased_at
-- params: job_id
SELECT k.erased_at FROM jobtrail.data_keys k WHERE k.job_id = $1::uuid;

-- name: vacuum_keys
-- params:
VACUUM jobtrail.data_keys;

-- name: count_keys_by_master_key
-- params:
-- The data keys by the master key that wrapped them; erased keys (no wrapped key left, so
-- no master key needed) counted apart, under a NULL master key id.
SELECT CASE WHEN k.wrapped_key IS NULL THEN NULL ELSE k.master_key_id END AS master_key_id,
       count(*) AS keys
  FROM jobtrail.data_keys k
 GROUP BY 1
 ORDER BY 1 NULLS LAST;

-- name: lock_keys_to_rewrap
-- params: master_key_id, after_job_id, batch_size
-- The next batch of data keys, in key id order after after_job_id, still wrapped by another
-- master key than the current one.  Each is locked until the batch's transaction rewraps it:
-- an erasure (erase_keys) waits for that and then destroys the rewrapped key, and one that
-- locked a key first is skipped here, never waited for (its keys are taken by
-- lock_key_to_rewrap once it is over); skipping also keeps a rewrap from ever deadlocking
-- with an erasure that locks its keys in another order.
SELECT k.job_id::text AS job_id, k.wrapped_key, k.master_key_id
  FROM jobtrail.data_keys k
 WHERE k.job_id > $2::uuid AND k.wrapped_key IS NOT NULL AND k.master_key_id <> $1::text
 ORDER BY k.job_id
 LIMIT $3::int
   FOR UPDATE SKIP LOCKED;

-- name: lock_key_to_rewrap
-- params: master_key_id
-- One data key still wrapped by another master key, waiting for a transaction (an erasure)
-- that holds it: once that is over the key is checked again, and one it erased is passed
-- over.  One at a time, so no lock is held while waiting for another.
SELECT k.job_id::text AS job_id, k.wrapped_key, k.master_key_id
  FROM jobtrail.data_keys k
 WHERE k.wrapped_key IS NOT NULL AND k.master_key_id <> $1::text
 ORDER BY k.job_id
 LIMIT 1
   FOR UPDATE;

-- name: rewrap_keys
-- params: job_ids, wrapped_keys, master_key_id
-- Stores the rewrapped keys the same transaction locked (lock_keys_to_rewrap), so none was
-- erased since it was read.
UPDATE jobtrail.data_keys k
   SET wrapped_key = g.wrapped_key, master_key_id = $3::text
  FROM unnest($1::uuid[], $2::bytea[]) AS g(job_id, wrapped_key)
 WHERE k.job_id = g.job_id AND k.wrapped_key IS NOT NULL;
