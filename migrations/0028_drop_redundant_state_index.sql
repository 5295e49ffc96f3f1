-- `messages_state_idx` on (delivery_state) is covered by `messages_state_created_idx` on
-- (delivery_state, created_at) from 0010: every lookup by state alone uses the latter's leading
-- column. Every insert and every state change that is not a HOT update (none is: `updated_at`
-- is indexed) wrote both. Measured in docs/benchmarks.md ("The redundant state index").
DROP INDEX IF EXISTS comms.messages_state_idx;
