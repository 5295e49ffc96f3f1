-- Upstream apps hear about incidents too (docs/upstream.md): every accepted incident event
-- becomes an `incident.<event>` lifecycle event in the outbox, in the same transaction. Its
-- `incident` object carries ids, sequence, severity and the affected clients; never the title
-- (incident tooling may put internal detail there) and never `summary_internal`.

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
            'digest', NULL,
            'reason', NULL));
    RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER incident_events_outbox AFTER INSERT ON comms.incident_events
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION comms.outbox_incident_events();
