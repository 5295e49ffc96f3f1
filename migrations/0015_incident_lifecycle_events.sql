-- Upstream apps hear about incidents too (docs/upstream.md): every accepted incident event
-- becomes an `incident.<event>` lifecycle event in the outbox, in the same transaction. Its
-- `incident` object carries ids, sequence, severity and the affected clients; never the title
-- (incident tooling may put internal detail there) and never `summary_internal`.
-- Every event now has an `incident` key (null for message and task events), so the message and
-- task functions of 0008 are replaced to write it.

CREATE OR REPLACE FUNCTION comms.outbox_message_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO comms.event_outbox (event_id, routing_key, payload)
    SELECT s.event_id, 'message.' || s.event_type,
           jsonb_build_object(
               'schema', 'comms.event.v1',
               'event_id', s.event_id,
               'type', 'message.' || s.event_type,
               'occurred_at', s.occurred_at,
               'app', comms.message_app(m.idempotency_key, m.source),
               'message', CASE WHEN m.id IS NULL THEN NULL ELSE jsonb_build_object(
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
                   'attempts', m.attempt_count) END,
               'task', NULL,
               'incident', NULL,
               'reason', s.reason)
    FROM (SELECT gen_random_uuid() AS event_id, n.* FROM new_events n) s
    LEFT JOIN comms.messages m ON m.id = s.message_id
    ORDER BY s.id;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION comms.outbox_task(event text, t comms.tasks) RETURNS void LANGUAGE plpgsql AS $$
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
            'message', CASE WHEN m.id IS NULL THEN NULL ELSE jsonb_build_object(
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
                'attempts', m.attempt_count) END,
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
            'reason', t.reason));
END $$;

-- The outbox rows written before this migration lack the key: give them `incident: null`, so a
-- relay publishing them after the upgrade sends valid v1 events.
UPDATE comms.event_outbox SET payload = payload || '{"incident": null}'::jsonb
 WHERE NOT payload ? 'incident';

-- Deferred to the commit of the transaction that recorded the event: the worker inserts the
-- event before the clients it adds, and the event names them all. Incident events are few, so a
-- row-level trigger costs nothing that matters.
CREATE FUNCTION comms.outbox_incident_events() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    id uuid := gen_random_uuid();
BEGIN
    INSERT INTO comms.event_outbox (event_id, routing_key, payload) VALUES (id,
        'incident.' || NEW.event_type,
        jsonb_build_object(
            'schema', 'comms.event.v1',
            'event_id', id,
            'type', 'incident.' || NEW.event_type,
            'occurred_at', NEW.received_at,
            'app', NULL,
            'message', NULL,
            'task', NULL,
            'incident', jsonb_build_object(
                'id', NEW.incident_id,
                'sequence', NEW.sequence,
                'severity', NEW.severity,
                'facts_verified', NEW.facts_verified,
                'owner', NEW.owner,
                'source', NEW.source,
                'clients', COALESCE((SELECT jsonb_agg(c.client_id ORDER BY c.client_id)
                                       FROM comms.incident_clients c
                                      WHERE c.incident_id = NEW.incident_id), '[]'::jsonb)),
            'reason', NULL));
    RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER incident_events_outbox AFTER INSERT ON comms.incident_events
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION comms.outbox_incident_events();
