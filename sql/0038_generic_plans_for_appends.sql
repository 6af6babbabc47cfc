-- The append functions use their generic plans (issue 21: appends cost ~1 ms per call).
--
-- PL/pgSQL keeps a plan per statement and, under plan_cache_mode = auto, plans its first
-- five executions for their parameters and then keeps doing so for good whenever the
-- generic plan's estimate looks dearer than those custom plans.  For the one big statement
-- of append_events / append_events_each (checks, tokens, numbering and the insert in one
-- WITH), a session whose first appends were small batches (a host's are: one delivery at a
-- time) was re-planned at every call: ~0.9 ms of planning per call, against ~0.4 ms for the
-- whole call of one event on its generic plan (measured 2026-11-30, synchronous_commit
-- off: 1,095 -> 441 µs per one-event call, 1,874 -> 864 µs per four-event call; batches of
-- 64 and 256 events: 101 -> 91 and 106 -> 94 µs per event).  The generic plan's shape
-- (nested loops over the input arrays, one index probe per stream) is the right one at
-- every batch size these functions get (up to a few hundred events).
--
-- A SET clause of the function: a later CREATE OR REPLACE of either function must repeat
-- it (tests/integration/test_event_store.py checks it is there).

ALTER FUNCTION jobtrail.append_events(text[], integer[], text[], text[], smallint[], json[],
                                      json[], boolean)
    SET plan_cache_mode = force_generic_plan;

ALTER FUNCTION jobtrail.append_events_each(text[], integer[], text[], timestamptz[], text[],
                                           text[], smallint[], json[], json[])
    SET plan_cache_mode = force_generic_plan;
