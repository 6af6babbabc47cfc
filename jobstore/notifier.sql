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
