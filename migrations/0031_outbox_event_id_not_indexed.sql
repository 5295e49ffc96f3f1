-- Every recorded change writes a row to `comms.event_outbox` (three per message sent: received,
-- dispatching, sent), and the relay updates each one when it is published. The UNIQUE constraint
-- on `event_id` kept a B-tree over random UUIDs beside it: every insert, and every publishing
-- update (not a HOT update, since `published_at` is in the pending index's predicate), wrote an
-- entry at a random place in it. No statement looks a row up by `event_id` (the relay reads by
-- `id` in order, and marks by `id`), and the ids are `gen_random_uuid()`, unique without the
-- index: consumers de-duplicate on them, as before. Measured in docs/benchmarks.md ("The outbox's
-- event_id index").
ALTER TABLE comms.event_outbox DROP CONSTRAINT IF EXISTS event_outbox_event_id_key;
