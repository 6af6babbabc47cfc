-- Recurring schedules' personal data is sealed too (issue 17).  A schedule whose job type
-- declares personal payload fields gets a data key of its own, in the same table as the
-- jobs' keys (one wrapping, one erasure, one tombstone rule for both).
--
-- A schedule's key row carries the schedule's id in schedule_id; its job_id column holds
-- the key's id, a UUID derived from the schedule id (uuid5, jobstore.keyring.schedule_key_id),
-- which is the "kid" written in every value the key seals, as a job's key id is its job id.
-- A job's key row has schedule_id NULL.  An erasure by job id touches only rows with
-- schedule_id NULL; one by user or organization destroys the keys of that subject's jobs
-- and schedules alike and deletes those schedules (jobstore.erasure).
ALTER TABLE jobtrail.data_keys ADD COLUMN schedule_id text;

CREATE UNIQUE INDEX data_keys_by_schedule ON jobtrail.data_keys (schedule_id)
    WHERE schedule_id IS NOT NULL;

COMMENT ON COLUMN jobtrail.data_keys.schedule_id IS
    'the schedule this key belongs to (its job_id is then the key id derived from it); NULL for a job''s key';
