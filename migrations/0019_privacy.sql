-- Privacy over time (docs/privacy.md): erasure of a person, retention of personal content, and a
-- record of who read full addresses.
--
-- The event log (comms.message_events) stays append-only and is not touched here: it never held
-- personal content (ids, states, reasons and times only; provider reasons are redacted before they
-- are written), so erasing a person and expiring content never needs to change an event.

-- Erasure ---------------------------------------------------------------------------------------

-- Every erasure: who, when, why and how many rows of each kind it changed. Never whom: no contact
-- id, no address, no hash of one. Append-only like the other audits.
CREATE TABLE comms.erasures (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    erased_by  text NOT NULL CHECK (btrim(erased_by) <> ''),
    reason     text NOT NULL CHECK (btrim(reason) <> ''),
    counts     jsonb NOT NULL DEFAULT '{}'::jsonb,
    erased_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TRIGGER erasures_append_only BEFORE UPDATE OR DELETE ON comms.erasures
    FOR EACH ROW EXECUTE FUNCTION comms.refuse_event_change();
CREATE TRIGGER erasures_no_truncate BEFORE TRUNCATE ON comms.erasures
    FOR EACH STATEMENT EXECUTE FUNCTION comms.refuse_event_change();

-- What the law requires to be kept after an erasure: that an address which had opted out (or was
-- suppressed after a bounce or complaint) is never messaged again. Only a keyed hash (HMAC-SHA-256
-- with `privacy.hash_key`, which the database never sees) of the channel and address is stored,
-- so the table cannot be read back into addresses, nor brute-forced from a dump without the key.
-- An erased address that had not opted out leaves no entry: erasure is not an opt-out.
CREATE TABLE comms.erased_suppressions (
    channel        text NOT NULL CHECK (channel IN ('sms', 'email', 'portal')),
    address_hash   text NOT NULL CHECK (address_hash ~ '^[0-9a-f]{64}$'),
    consent_state  text NOT NULL CHECK (consent_state IN ('opted_out', 'suppressed')),
    PRIMARY KEY (channel, address_hash)
);

-- A contact whose personal data was erased keeps its row (messages and tasks still reference it)
-- without a name; `erased_at` says why it is empty.
ALTER TABLE comms.contacts ADD COLUMN erased_at timestamptz;

-- Retention ---------------------------------------------------------------------------------------

-- When a message's personal content (recipient address, subject, body, the request's recipient and
-- template variables) was removed, by retention or by an erasure. The row keeps its state, times,
-- reasons, owner and source. The partial index is what the retention job walks: only SMS and email
-- messages still holding content (portal updates are the client's record, kept until an erasure),
-- oldest first, so each batch is an index range scan that never revisits finished rows.
ALTER TABLE comms.messages ADD COLUMN content_removed_at timestamptz;

-- A stored send request without its personal parts: the recipient becomes the contact reference
-- alone, the template variables (names, amounts, links) are dropped, and so is the consent
-- evidence's free text. What remains still parses as a request (channel, kind, record, owner...).
CREATE FUNCTION comms.scrub_request(request jsonb, contact uuid) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN request ? 'template'
                THEN jsonb_set(r, '{template,vars}', '{}'::jsonb)
                ELSE r END
    FROM (SELECT (request - 'recipient' - 'consent')
                 || jsonb_build_object('recipient', jsonb_build_object('contact_id', contact)) AS r) s
$$;
CREATE INDEX messages_content_kept_idx ON comms.messages (created_at)
    WHERE content_removed_at IS NULL AND channel <> 'portal';

ALTER TABLE internal.inbound_messages ADD COLUMN content_removed_at timestamptz;
CREATE INDEX inbound_messages_content_kept_idx ON internal.inbound_messages (received_at)
    WHERE content_removed_at IS NULL;
CREATE INDEX inbound_messages_contact_idx ON internal.inbound_messages (contact_id);

CREATE INDEX provider_payloads_received_idx ON internal.provider_payloads (received_at);
CREATE INDEX provider_payloads_message_id_idx ON internal.provider_payloads (message_id);
CREATE INDEX delivery_callbacks_received_idx ON comms.delivery_callbacks (received_at);
CREATE INDEX portal_updates_contact_idx ON comms.portal_updates (contact_id);
CREATE INDEX digest_batches_contact_idx ON comms.digest_batches (contact_id);

-- Every retention run (scheduled or `commsctl retention run`): what it removed, as counts per
-- class, never content. A dry run is recorded too, with what it would have removed.
CREATE TABLE comms.retention_runs (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    actor        text NOT NULL,
    dry_run      boolean NOT NULL,
    cutoffs      jsonb NOT NULL,
    counts       jsonb NOT NULL,
    started_at   timestamptz NOT NULL,
    finished_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TRIGGER retention_runs_append_only BEFORE UPDATE OR DELETE ON comms.retention_runs
    FOR EACH ROW EXECUTE FUNCTION comms.refuse_event_change();

-- Who read what -------------------------------------------------------------------------------------

-- Every read of personal data with full addresses (`commsctl message --reveal`, the admin API's
-- `reveal`, the console's search by address): who, through what, which message or contact, why
-- when given, when. It holds references, never the address read.
CREATE TABLE comms.access_log (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    who          text NOT NULL CHECK (btrim(who) <> ''),
    via          text NOT NULL CHECK (via IN ('commsctl', 'admin_api', 'console')),
    what         text NOT NULL,
    message_id   uuid,
    contact_id   uuid,
    why          text,
    occurred_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX access_log_time_idx ON comms.access_log (occurred_at);
CREATE INDEX access_log_contact_idx ON comms.access_log (contact_id, occurred_at);

CREATE TRIGGER access_log_append_only BEFORE UPDATE OR DELETE ON comms.access_log
    FOR EACH ROW EXECUTE FUNCTION comms.refuse_event_change();
CREATE TRIGGER access_log_no_truncate BEFORE TRUNCATE ON comms.access_log
    FOR EACH STATEMENT EXECUTE FUNCTION comms.refuse_event_change();

REVOKE ALL ON comms.erasures, comms.erased_suppressions, comms.retention_runs, comms.access_log
    FROM PUBLIC;
