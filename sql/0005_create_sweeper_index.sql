-- The sweeper looks at recently published dispatches, oldest first.
CREATE INDEX relay_messages_published_at ON jobtrail.relay_messages (published_at);
