-- name: dispatch_callbacks
-- params: stream_ids
-- The callbacks each dispatch of these jobs asked for (from its JobDispatched).
SELECT stream_id,
       (data ->> 'dispatch')::integer AS dispatch,
       data ->> 'job_type' AS job_type,
       data -> 'options' ->> 'callback' AS callback,
       data -> 'options' ->> 'failure_callback' AS failure_callback
  FROM jobtrail.events
 WHERE stream_id = ANY($1::text[])
   AND event_type = 'job.dispatched';

-- name: settled_notifications
-- params: stream_ids, notification_ids, results
-- Of these notifications, those whose callback call was recorded with a final result.
SELECT DISTINCT data ->> 'notification_id' AS notification_id
  FROM jobtrail.events
 WHERE stream_id = ANY($1::text[])
   AND event_type = 'job.notified'
   AND data ->> 'notification_id' = ANY($2::text[])
   AND data ->> 'result' = ANY($3::text[]);
