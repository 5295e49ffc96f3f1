-- Reconciliation of delivery status (docs/reliability.md#reconciliation): a message `sent` for
-- longer than `status.reconcile_after` without a final callback is checked at its provider by
-- the status worker.
--
-- `unknown_delivery`: the provider was asked and cannot say (SendGrid has no per-message status
-- API; a Twilio SID it does not know). The message's owner has a task. A late event from the
-- provider still moves it forward, like `sent`.
ALTER TABLE comms.messages DROP CONSTRAINT messages_delivery_state_check;
ALTER TABLE comms.messages ADD CONSTRAINT messages_delivery_state_check CHECK (delivery_state IN (
    'received', 'deferred', 'awaiting_approval', 'held', 'retrying', 'sending',
    'sent', 'delivered', 'undelivered', 'failed', 'blocked', 'cancelled', 'unknown_delivery')) NOT VALID;
ALTER TABLE comms.messages VALIDATE CONSTRAINT messages_delivery_state_check;

-- How a status reached us: the provider's callback, or our own question to the provider. The
-- freshness watchdog counts only callbacks: an answer we fetched says nothing about whether the
-- provider's callbacks still arrive.
ALTER TABLE comms.delivery_callbacks
    ADD COLUMN via text NOT NULL DEFAULT 'callback' CHECK (via IN ('callback', 'reconciliation'));

-- One row per message the reconciler asked about: when, how often, and what it last heard. A
-- check is claimed by updating `last_checked_at`, so two status replicas never ask twice.
CREATE TABLE comms.reconciliations (
    message_id       uuid PRIMARY KEY REFERENCES comms.messages (id) ON DELETE CASCADE,
    checks           integer NOT NULL DEFAULT 1 CHECK (checks >= 1),
    first_checked_at timestamptz NOT NULL DEFAULT now(),
    last_checked_at  timestamptz NOT NULL DEFAULT now(),
    -- The provider's status (`delivered`, `sent` …), `not_found`, `no_status_api` or `error`.
    last_result      text
);
