-- The window of `dispatch_outcome_unknown` (docs/reliability.md#the-window-of-dispatch_outcome_unknown):
-- a message in `sending` says which claim holds it and whether that claim's provider call has
-- started, so a process that died between the claim and the call leaves a message that is
-- sent again, not failed.
--
-- Both are read only while the message is in `sending`:
-- `dispatch_claim`: the claim that moved the message to `sending` (one id for a group claimed
-- together); written by every claim. NULL in `sending` means a claim made before this column
-- existed, whose call may have started.
-- `call_started_at`: set (in one statement for a group) and committed before any byte of the
-- call goes to a provider; NULL in `sending` means the call never started. Reset by every claim;
-- after `sending` it tells when the last call started.
ALTER TABLE comms.messages
    ADD COLUMN dispatch_claim uuid,
    ADD COLUMN call_started_at timestamptz;
