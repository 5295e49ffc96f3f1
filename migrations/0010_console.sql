-- The operator console (docs/console.md): server-side sessions, and the indexes that keep its
-- pages fast on a large message table.

-- One row per console login. Only the SHA-256 of the session token is kept (the token lives in the
-- browser's cookie), so a database dump opens no session. A session belongs to an API key: revoking
-- the key ends its sessions at once, because every request re-reads the key.
CREATE TABLE comms.console_sessions (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    token_hash  text NOT NULL UNIQUE CHECK (length(token_hash) = 64),
    key_id      uuid NOT NULL REFERENCES comms.api_keys (id),
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    ended_at    timestamptz,
    CHECK (expires_at > created_at)
);

CREATE INDEX console_sessions_expires_idx ON comms.console_sessions (expires_at);

-- The home page's rates: what was dispatched, and what failed, in the last minutes.
CREATE INDEX messages_dispatched_idx ON comms.messages (dispatched_at)
    WHERE dispatched_at IS NOT NULL;
CREATE INDEX messages_failed_recent_idx ON comms.messages (updated_at)
    WHERE delivery_state IN ('failed', 'undelivered');

-- Message search by client and by state, newest first.
CREATE INDEX messages_client_created_idx ON comms.messages (client_id, created_at);
CREATE INDEX messages_state_created_idx ON comms.messages (delivery_state, created_at);

-- What a pause holds, and after a resume how much of it was released (the pause page).
CREATE INDEX messages_held_by_pause_idx ON comms.messages (held_by_pause, delivery_state)
    WHERE held_by_pause IS NOT NULL;
