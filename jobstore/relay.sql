-- name: save_messages
-- params: job_ids, dispatches, message_ids
INSERT INTO jobtrail.relay_messages (job_id, dispatch, message_id)
SELECT * FROM unnest($1::text[], $2::integer[], $3::text[])
ON CONFLICT (job_id, dispatch)
DO UPDATE SET message_id = excluded.message_id, published_at = now();

-- name: message_of
-- params: job_id, dispatch
SELECT message_id FROM jobtrail.relay_messages WHERE job_id = $1 AND dispatch = $2;
