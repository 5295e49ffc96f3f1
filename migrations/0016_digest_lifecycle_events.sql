-- Upstream apps hear about report digests too (docs/upstream.md): a digest built, blocked,
-- approved, published or superseded becomes a `digest.<what>` lifecycle event in the outbox, in
-- the same transaction. Its `digest` object names the digest, its period, client and state, and
-- why it is blocked; never its content or its figures.
CREATE FUNCTION comms.outbox_digests() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    id uuid := gen_random_uuid();
    what text;
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.state IS NOT DISTINCT FROM OLD.state THEN
        RETURN NULL;
    END IF;
    what := CASE NEW.state WHEN 'awaiting_approval' THEN 'built' ELSE NEW.state END;
    INSERT INTO comms.event_outbox (event_id, routing_key, payload) VALUES (id, 'digest.' || what,
        jsonb_build_object(
            'schema', 'comms.event.v1',
            'event_id', id,
            'type', 'digest.' || what,
            'occurred_at', now(),
            'app', NULL,
            'message', NULL,
            'task', NULL,
            'incident', NULL,
            'digest', jsonb_build_object(
                'id', NEW.id,
                'period_id', NEW.period_id,
                'revision', NEW.revision,
                'client_id', NEW.client_id,
                'state', NEW.state,
                'owner', NEW.owner,
                'source', NEW.source),
            'reason', NEW.blocked_reason));
    RETURN NULL;
END $$;

CREATE TRIGGER digests_outbox AFTER INSERT OR UPDATE OF state ON comms.digests
    FOR EACH ROW EXECUTE FUNCTION comms.outbox_digests();
