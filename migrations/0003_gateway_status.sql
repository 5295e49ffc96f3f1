-- What the gateway and the status worker need beyond the sender: API keys for the HTTP enqueue
-- API (stored hashed, audited per call), and the record of every provider status callback that
-- was applied (the dedupe key that makes callbacks idempotent, and the freshness signal the
-- watchdog reads).

-- API keys ----------------------------------------------------------------------------------------

-- One key per calling app. Only the SHA-256 of the key is stored: the key itself is shown once, at
-- creation (`commsctl keys create`), and cannot be recovered from the database.
CREATE TABLE comms.api_keys (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text NOT NULL CHECK (btrim(name) <> '' AND length(name) <= 100),
    role        text NOT NULL CHECK (role IN ('enqueue', 'oncall', 'owner')),
    key_hash    text NOT NULL UNIQUE CHECK (key_hash ~ '^[0-9a-f]{64}$'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

CREATE INDEX api_keys_name_idx ON comms.api_keys (name);

-- Every authenticated call, allowed or refused, with the key's name (never the key).
CREATE TABLE comms.api_audit (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key_id       uuid NOT NULL REFERENCES comms.api_keys (id),
    key_name     text NOT NULL,
    role         text NOT NULL,
    method       text NOT NULL,
    path         text NOT NULL,
    allowed      boolean NOT NULL,
    occurred_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX api_audit_key_idx ON comms.api_audit (key_id, occurred_at);

CREATE TRIGGER api_audit_append_only BEFORE UPDATE OR DELETE ON comms.api_audit
    FOR EACH ROW EXECUTE FUNCTION comms.refuse_event_change();
CREATE TRIGGER api_audit_no_truncate BEFORE TRUNCATE ON comms.api_audit
    FOR EACH STATEMENT EXECUTE FUNCTION comms.refuse_event_change();

-- Delivery-status callbacks -------------------------------------------------------------------------

-- One row per provider status event applied to a message. The unique key is the provider's own
-- event identity (Twilio MessageSid + MessageStatus, SendGrid sg_event_id), so a callback
-- delivered twice (provider retry, broker redelivery) is applied once. The raw payload is kept
-- apart, in internal.provider_payloads.
CREATE TABLE comms.delivery_callbacks (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    provider     text NOT NULL CHECK (provider IN ('twilio', 'sendgrid')),
    event_key    text NOT NULL CHECK (length(event_key) BETWEEN 1 AND 300),
    message_id   uuid NOT NULL REFERENCES comms.messages (id),
    channel      text NOT NULL CHECK (channel IN ('sms', 'email', 'portal')),
    status       text NOT NULL,
    -- When the gateway received the callback (its first-seen time), not when it was applied.
    received_at  timestamptz NOT NULL DEFAULT now(),
    applied_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (provider, event_key)
);

CREATE INDEX delivery_callbacks_message_idx ON comms.delivery_callbacks (message_id, id);
-- The freshness watchdog asks "did any callback arrive on this channel lately?".
CREATE INDEX delivery_callbacks_freshness_idx ON comms.delivery_callbacks (channel, received_at);
-- ...and "which sent messages have waited too long?".
CREATE INDEX messages_sent_idx ON comms.messages (channel, dispatched_at) WHERE delivery_state = 'sent';
