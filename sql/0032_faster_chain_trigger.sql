-- The chain's row trigger (sql/0026), same rule, cheaper: the previous hash is read by
-- statements of the trigger's own (PL/pgSQL keeps their plans) and handed to
-- jobtrail.event_hash as a plain value.  Given as a sub-select argument, it kept the SQL
-- function from being inlined, so it was planned again for every event (~200 µs each:
-- appends 40-67 % slower; bench/append.py --compare-chain).
CREATE OR REPLACE FUNCTION jobtrail.chain_event() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    prev bytea;
BEGIN
    IF NEW.version > 1 THEN
        SELECT e.hash INTO prev FROM jobtrail.events e
         WHERE e.stream_id = NEW.stream_id AND e.version = NEW.version - 1;
        IF NOT FOUND THEN  -- archived and then continued (sql/0024)
            SELECT a.hash INTO prev FROM jobtrail.events_archive a
             WHERE a.stream_id = NEW.stream_id AND a.version = NEW.version - 1;
        END IF;
    END IF;
    NEW.hash := jobtrail.event_hash(prev, NEW.position, NEW.xid, NEW.stream_id, NEW.version,
                                    NEW.event_type, NEW.schema_version, NEW.data,
                                    NEW.metadata, NEW.recorded_at);
    RETURN NEW;
END;
$$;
