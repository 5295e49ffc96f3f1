-- Reply capture: every inbound SMS and email is kept (internally), matched to the message it
-- answers where possible, and turned into an owner task, an opt-out, an opt-in or a help answer.

CREATE TABLE internal.inbound_messages (
    id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    provider             text NOT NULL,
    channel              text NOT NULL CHECK (channel IN ('sms', 'email')),
    -- The provider's id (Twilio MessageSid, the email's Message-ID): a redelivery is a no-op.
    provider_message_id  text NOT NULL,
    from_address         text NOT NULL,
    to_address           text NOT NULL,
    subject              text,
    body                 text NOT NULL,
    classification       text NOT NULL CHECK (classification IN
                             ('reply', 'opt_out', 'opt_in', 'help', 'auto_reply', 'unmatched')),
    keyword              text,
    message_id           uuid REFERENCES comms.messages (id),
    contact_id           uuid REFERENCES comms.contacts (id),
    received_at          timestamptz NOT NULL DEFAULT now(),
    responded_at         timestamptz,
    UNIQUE (provider, provider_message_id)
);

CREATE INDEX inbound_messages_message_idx ON internal.inbound_messages (message_id);

-- A task about a reply links to it, so marking the task done records the response time.
ALTER TABLE comms.tasks ADD COLUMN inbound_id uuid REFERENCES internal.inbound_messages (id);
