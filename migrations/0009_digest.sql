-- The digest worker (comms-digest): report digests and notification batching.
--
-- The sender stays the only owner of message state: nothing here writes comms.messages. A digest
-- or a flushed batch becomes a send request (with a deterministic idempotency key) on comms.send.
-- These tables hold the digest worker's own state: what it built from which figures, why it
-- blocked, who approved which content and when, what it handed to the sender, who viewed it, and
-- the batching windows with every event they collected.

-- Report figures ---------------------------------------------------------------------------------

-- Figures an upstream reporting app recorded for a period. A digest shows only figures with a
-- source; an ROI or revenue figure must also have its source verified.
CREATE TABLE comms.report_figures (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    period_id        uuid NOT NULL REFERENCES comms.report_periods (id),
    label            text NOT NULL CHECK (btrim(label) <> ''),
    value            text NOT NULL,
    kind             text NOT NULL DEFAULT 'count' CHECK (kind IN ('count', 'booked', 'roi', 'revenue')),
    source           text,
    source_verified  boolean NOT NULL DEFAULT false,
    as_of            timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX report_figures_period_idx ON comms.report_figures (period_id);

-- Digests ------------------------------------------------------------------------------------------

-- One row per build whose content differed from the period's previous one (revision 1, 2, ...).
-- A rebuild with the same content changes nothing; a rebuild with other content supersedes the
-- previous revision and needs its own approval.
CREATE TABLE comms.digests (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    period_id          uuid NOT NULL REFERENCES comms.report_periods (id),
    revision           integer NOT NULL CHECK (revision > 0),
    client_id          uuid NOT NULL REFERENCES comms.clients (id),
    owner              text NOT NULL,
    source             text NOT NULL,
    state              text NOT NULL CHECK (state IN ('awaiting_approval', 'approved', 'published',
                                                      'blocked', 'superseded')),
    blocked_reason     text,
    -- What the digest was built from: report, notes, outcomes, figures with their sources.
    facts              jsonb NOT NULL,
    stale_caveat       boolean NOT NULL DEFAULT false,
    email_template     integer,
    email_subject      text,
    email_body         text,
    portal_template    integer,
    portal_subject     text,
    portal_body        text,
    -- sha256 over both renderings: what an approval covers.
    content_hash       text NOT NULL,
    task_id            uuid REFERENCES comms.tasks (id),
    built_at           timestamptz NOT NULL,
    approved_by        text,
    on_behalf_of       text,
    approved_at        timestamptz,
    approval_seconds   double precision
        GENERATED ALWAYS AS (extract(epoch FROM (approved_at - built_at))::double precision) STORED,
    published_at       timestamptz,
    UNIQUE (period_id, revision),
    CHECK (state <> 'blocked' OR blocked_reason IS NOT NULL),
    CHECK (approved_at IS NULL OR approved_by IS NOT NULL)
);

CREATE INDEX digests_state_idx ON comms.digests (state, built_at);

-- The send requests a digest handed to the sender, one per recipient contact and channel.
CREATE TABLE comms.digest_sends (
    digest_id        uuid NOT NULL REFERENCES comms.digests (id),
    contact_id       uuid NOT NULL REFERENCES comms.contacts (id),
    channel          text NOT NULL CHECK (channel IN ('email', 'portal')),
    idempotency_key  text NOT NULL UNIQUE,
    published_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (digest_id, contact_id, channel)
);

-- Digests of a client stopped until the owner decides (an unverified revenue figure). One open
-- hold per client; releasing keeps the row as history.
CREATE TABLE comms.digest_holds (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    client_id    uuid NOT NULL REFERENCES comms.clients (id),
    reason       text NOT NULL,
    digest_id    uuid REFERENCES comms.digests (id),
    task_id      uuid REFERENCES comms.tasks (id),
    held_at      timestamptz NOT NULL DEFAULT now(),
    released_at  timestamptz,
    released_by  text
);

CREATE UNIQUE INDEX digest_holds_open_idx ON comms.digest_holds (client_id) WHERE released_at IS NULL;

-- Every view of a digest reported through the gateway (the first and each later one).
CREATE TABLE comms.digest_views (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    digest_id   uuid NOT NULL REFERENCES comms.digests (id),
    contact_id  uuid NOT NULL REFERENCES comms.contacts (id),
    viewed_at   timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX digest_views_digest_idx ON comms.digest_views (digest_id, viewed_at);

-- Notification batching ------------------------------------------------------------------------------

-- One bucket of events for one key (contact, channel, topic). The key is kept as its parts, never
-- as a joined string, so two keys can never share a bucket. At most one bucket per key is open.
CREATE TABLE comms.digest_batches (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    contact_id        uuid NOT NULL REFERENCES comms.contacts (id),
    channel           text NOT NULL CHECK (channel IN ('sms', 'email', 'portal')),
    topic             text NOT NULL CHECK (btrim(topic) <> ''),
    -- 'open' collects; 'due' is full or past its window (no more events); 'flushed' went out.
    state             text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'due', 'flushed')),
    window_spec       jsonb NOT NULL,
    opened_at         timestamptz NOT NULL,
    closes_at         timestamptz NOT NULL,
    max_events        integer NOT NULL CHECK (max_events > 0),
    event_count       integer NOT NULL DEFAULT 0,
    template_name     text NOT NULL,
    template_version  integer,
    kind              text NOT NULL,
    owner             text NOT NULL,
    source            text NOT NULL,
    record_type       text NOT NULL,
    record_id         uuid NOT NULL,
    flushed_at        timestamptz,
    flush_reason      text CHECK (flush_reason IN ('window', 'count'))
);

CREATE UNIQUE INDEX digest_batches_open_idx ON comms.digest_batches (contact_id, channel, topic)
    WHERE state = 'open';
CREATE INDEX digest_batches_pending_idx ON comms.digest_batches (closes_at) WHERE state <> 'flushed';

-- Every collected event, in exactly one bucket. The event id makes a redelivery a no-op.
CREATE TABLE comms.digest_batch_events (
    event_id     text PRIMARY KEY CHECK (length(event_id) BETWEEN 1 AND 200),
    batch_id     uuid NOT NULL REFERENCES comms.digest_batches (id),
    payload      jsonb NOT NULL,
    received_at  timestamptz NOT NULL
);

CREATE INDEX digest_batch_events_batch_idx ON comms.digest_batch_events (batch_id, received_at);
