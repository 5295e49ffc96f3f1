-- What the sender needs beyond the foundation: the pause switch it consults before every
-- dispatch, the approval records it requires for client-visible kinds, and the portal's own
-- "provider" (a portal update record).

-- The pause switch --------------------------------------------------------------------------------

-- The scopes that are on now (one row per active scope). History lives in pause_events.
CREATE TABLE comms.pauses (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    scope        text NOT NULL CHECK (scope IN ('global', 'channel', 'kind', 'client')),
    -- '' for global; the channel, kind or client id otherwise.
    scope_value  text NOT NULL DEFAULT '',
    reason       text NOT NULL CHECK (btrim(reason) <> ''),
    actor        text NOT NULL CHECK (btrim(actor) <> ''),
    automatic    boolean NOT NULL DEFAULT false,
    started_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz,
    CHECK ((scope = 'global') = (scope_value = ''))
);

CREATE UNIQUE INDEX pauses_one_per_scope ON comms.pauses (scope, scope_value);

-- Every pause, resume and expiry, append-only: who, why, when.
CREATE TABLE comms.pause_events (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    pause_id     uuid NOT NULL,
    action       text NOT NULL CHECK (action IN ('pause', 'resume', 'expire', 'extend')),
    scope        text NOT NULL,
    scope_value  text NOT NULL,
    reason       text NOT NULL,
    actor        text NOT NULL,
    expires_at   timestamptz,
    occurred_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TRIGGER pause_events_append_only BEFORE UPDATE OR DELETE ON comms.pause_events
    FOR EACH ROW EXECUTE FUNCTION comms.refuse_event_change();
CREATE TRIGGER pause_events_no_truncate BEFORE TRUNCATE ON comms.pause_events
    FOR EACH STATEMENT EXECUTE FUNCTION comms.refuse_event_change();

-- A message caught by a pause remembers which one (and keeps it after resume for the timeline).
ALTER TABLE comms.messages ADD COLUMN held_by_pause uuid;
CREATE INDEX messages_held_idx ON comms.messages (created_at) WHERE delivery_state = 'held';

-- Approvals of individual messages ----------------------------------------------------------------

-- One decision on one version of a message's content. A content change makes the hash differ,
-- so an old approval no longer covers it.
CREATE TABLE comms.message_approvals (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    message_id    uuid NOT NULL REFERENCES comms.messages (id),
    content_hash  text NOT NULL,
    decision      text NOT NULL CHECK (decision IN ('approved', 'rejected', 'expired', 'reviewed_safe')),
    decided_by    text NOT NULL,
    reason        text,
    requested_at  timestamptz NOT NULL,
    decided_at    timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX message_approvals_message_idx ON comms.message_approvals (message_id, decided_at);

-- The portal "provider" ---------------------------------------------------------------------------

-- What the client portal shows. A row exists only once the message was approved and dispatched.
CREATE TABLE comms.portal_updates (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    message_id    uuid NOT NULL UNIQUE REFERENCES comms.messages (id),
    contact_id    uuid NOT NULL REFERENCES comms.contacts (id),
    client_id     uuid REFERENCES comms.clients (id),
    kind          text NOT NULL,
    subject       text,
    body          text NOT NULL,
    published_at  timestamptz NOT NULL DEFAULT now()
);
