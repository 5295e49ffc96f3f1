-- Upstream apps hear back (docs/upstream.md): which app enqueued what, one lifecycle event per
-- recorded change in a transactional outbox, and signed webhooks out.

-- Which API key (by name: one key per app) enqueued a message over HTTP. The gateway writes it
-- before it publishes; the first app to use an idempotency key owns it, so a second app that
-- reuses the key can neither read nor be told about the first app's message.
CREATE TABLE comms.api_submissions (
    idempotency_key  text PRIMARY KEY,
    app              text NOT NULL,
    submitted_at     timestamptz NOT NULL DEFAULT now()
);

-- The transactional outbox. Rows are written by the triggers below in the same transaction as
-- the change they describe, so a change is never committed without its event; the relay in
-- `comms-events` publishes them to `comms.events` with publisher confirms and only then marks
-- them published. A crash in between publishes the row again (at least once, never zero times);
-- `event_id` lets consumers drop the duplicate.
CREATE TABLE comms.event_outbox (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id      uuid NOT NULL UNIQUE,
    routing_key   text NOT NULL,
    payload       jsonb NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    published_at  timestamptz
);

CREATE INDEX event_outbox_pending_idx ON comms.event_outbox (id) WHERE published_at IS NULL;

-- The app a message belongs to: the key that enqueued it over HTTP, else the request's source.
CREATE FUNCTION comms.message_app(key text, source text) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT COALESCE((SELECT app FROM comms.api_submissions WHERE idempotency_key = key), source)
$$;

-- What every event says about its message: ids, states, reasons and attempts, never the body, the
-- address or the contact's name. NULL for an event without a message.
CREATE FUNCTION comms.event_message(m comms.messages) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN m.id IS NULL THEN NULL ELSE jsonb_build_object(
        'id', m.id,
        'idempotency_key', m.idempotency_key,
        'channel', m.channel,
        'kind', m.kind,
        'record', jsonb_build_object('type', m.record_type, 'id', m.record_id),
        'owner', m.owner,
        'source', m.source,
        'delivery_state', m.delivery_state,
        'reply_state', m.reply_state,
        'opt_out_state', m.opt_out_state,
        'failure_reason', m.failure_reason,
        'next_action', m.next_action,
        'attempts', m.attempt_count) END
$$;

-- One `message.<event_type>` event per timeline entry. Statement-level with a transition table,
-- so a group's set-based insert costs one more statement, not one per row. No personal content:
-- ids, states, reasons and times only (never the body, the address or the contact's name).
CREATE FUNCTION comms.outbox_message_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO comms.event_outbox (event_id, routing_key, payload)
    SELECT s.event_id, 'message.' || s.event_type,
           jsonb_build_object(
               'schema', 'comms.event.v1',
               'event_id', s.event_id,
               'type', 'message.' || s.event_type,
               'occurred_at', s.occurred_at,
               'app', comms.message_app(m.idempotency_key, m.source),
               'message', comms.event_message(m),
               'task', NULL,
               'incident', NULL,
               'digest', NULL,
               'reason', s.reason)
    FROM (SELECT gen_random_uuid() AS event_id, n.* FROM new_events n) s
    LEFT JOIN comms.messages m ON m.id = s.message_id
    ORDER BY s.id;
    RETURN NULL;
END $$;

CREATE TRIGGER message_events_outbox AFTER INSERT ON comms.message_events
    REFERENCING NEW TABLE AS new_events
    FOR EACH STATEMENT EXECUTE FUNCTION comms.outbox_message_events();

-- Owner tasks reach the owner's tools too: opened, overdue (found by the periodic check in
-- `comms-events`, which stamps `overdue_at`), closed.
ALTER TABLE comms.tasks ADD COLUMN overdue_at timestamptz;

CREATE INDEX tasks_due_idx ON comms.tasks (due_at) WHERE state = 'open' AND overdue_at IS NULL;

CREATE FUNCTION comms.outbox_task(event text, t comms.tasks) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    id uuid := gen_random_uuid();
    m comms.messages%ROWTYPE;
BEGIN
    SELECT * INTO m FROM comms.messages WHERE messages.id = t.message_id;
    INSERT INTO comms.event_outbox (event_id, routing_key, payload) VALUES (id, event,
        jsonb_build_object(
            'schema', 'comms.event.v1',
            'event_id', id,
            'type', event,
            'occurred_at', now(),
            'app', CASE WHEN m.id IS NULL THEN NULL ELSE comms.message_app(m.idempotency_key, m.source) END,
            'message', comms.event_message(m),
            'task', jsonb_build_object(
                'id', t.id,
                'owner', t.owner,
                'title', t.title,
                'next_action', t.next_action,
                'state', t.state,
                'due_at', t.due_at,
                'record', CASE WHEN t.record_type IS NULL THEN NULL
                               ELSE jsonb_build_object('type', t.record_type, 'id', t.record_id) END),
            'incident', NULL,
            'digest', NULL,
            'reason', t.reason));
END $$;

CREATE FUNCTION comms.outbox_tasks() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM comms.outbox_task('task.opened', NEW);
    ELSIF OLD.state = 'open' AND NEW.state <> 'open' THEN
        PERFORM comms.outbox_task('task.closed', NEW);
    ELSIF OLD.overdue_at IS NULL AND NEW.overdue_at IS NOT NULL AND NEW.state = 'open' THEN
        PERFORM comms.outbox_task('task.overdue', NEW);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER tasks_outbox AFTER INSERT OR UPDATE ON comms.tasks
    FOR EACH ROW EXECUTE FUNCTION comms.outbox_tasks();

-- Webhooks out ----------------------------------------------------------------------------------

-- One registered endpoint of an app (or of every app, `app` NULL: an on-call or CRM integration).
-- The secret signs every delivery; it is shown once at registration and must be kept here in
-- clear to sign with, like any HMAC key.
CREATE TABLE comms.webhooks (
    id                    uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    app                   text CHECK (app IS NULL OR btrim(app) <> ''),
    url                   text NOT NULL CHECK (url ~ '^https?://'),
    events                text[] NOT NULL CHECK (cardinality(events) > 0),
    secret                text NOT NULL CHECK (length(secret) >= 32),
    owner                 text NOT NULL CHECK (btrim(owner) <> ''),
    state                 text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'disabled', 'removed')),
    consecutive_failures  integer NOT NULL DEFAULT 0,
    disabled_reason       text,
    created_at            timestamptz NOT NULL DEFAULT now(),
    disabled_at           timestamptz
);

-- Every delivery of an event to a webhook, with its attempts, for `commsctl webhooks deliveries`
-- and replay.
CREATE TABLE comms.webhook_deliveries (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    webhook_id       uuid NOT NULL REFERENCES comms.webhooks (id),
    event_id         uuid NOT NULL,
    event_type       text NOT NULL,
    payload          jsonb NOT NULL,
    state            text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts         integer NOT NULL DEFAULT 0,
    last_status      integer,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    last_attempt_at  timestamptz,
    delivered_at     timestamptz,
    UNIQUE (webhook_id, event_id)
);

CREATE INDEX webhook_deliveries_webhook_idx ON comms.webhook_deliveries (webhook_id, id);
