-- Alert notifications (issue 16).
--
-- A contact point is where a dashboard's alerts are sent: a generic webhook
-- (signed with HMAC-SHA256 under `secret`), a Slack-compatible incoming
-- webhook, or an e-mail address. `secret` is kept as is, not hashed: the
-- delivery loop needs it to sign every body (it is a signing key, not a
-- password); it is shown to the editor once, at creation, and never again.
CREATE TABLE contact_points (
    id bigserial PRIMARY KEY,
    dashboard_id bigint NOT NULL REFERENCES dashboards (id) ON DELETE CASCADE,
    name text NOT NULL,
    kind text NOT NULL CHECK (kind IN ('webhook', 'slack', 'email')),
    -- A URL (webhook, slack) or an e-mail address (email).
    target text NOT NULL,
    secret text,
    created_by bigint REFERENCES users (id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX contact_points_dashboard_idx ON contact_points (dashboard_id);

-- Which contact points a rule notifies, on firing and on resolving.
CREATE TABLE alert_rule_contacts (
    rule_id bigint NOT NULL REFERENCES alert_rules (id) ON DELETE CASCADE,
    contact_point_id bigint NOT NULL REFERENCES contact_points (id) ON DELETE CASCADE,
    PRIMARY KEY (rule_id, contact_point_id)
);
CREATE INDEX alert_rule_contacts_contact_idx ON alert_rule_contacts (contact_point_id);

-- While a rule stays firing, its contact points are notified again every
-- `repeat_seconds` (NULL: once). `repeat_due_at` is when next: set when the
-- rule fires, cleared when it resolves, advanced by whoever enqueues the repeat
-- (with the rule's row locked, as the evaluators do, so it is enqueued once).
ALTER TABLE alert_rules
    ADD COLUMN repeat_seconds integer CHECK (repeat_seconds IS NULL OR repeat_seconds > 0),
    ADD COLUMN repeat_due_at timestamptz;
CREATE INDEX alert_rules_repeat_due_idx ON alert_rules (repeat_due_at) WHERE repeat_due_at IS NOT NULL;

-- The outbox: one row per message to send, inserted in the transaction that
-- stores the alert event, so no transition is lost and none is sent twice.
-- The ingest path only inserts; workers' delivery loops send. A worker claims
-- due rows (FOR UPDATE SKIP LOCKED) by setting `claimed_until`; another takes
-- a row up again only once that lease has passed (its claimer died).
CREATE TABLE notifications (
    id bigserial PRIMARY KEY,
    contact_point_id bigint NOT NULL REFERENCES contact_points (id) ON DELETE CASCADE,
    -- NULL for a test message sent from the page.
    event_id bigint REFERENCES alert_events (id) ON DELETE CASCADE,
    kind text NOT NULL CHECK (kind IN ('firing', 'resolved', 'repeat', 'test')),
    status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts integer NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    -- No attempt starts after this: the message is marked failed instead.
    give_up_at timestamptz NOT NULL,
    claimed_until timestamptz
);
CREATE INDEX notifications_due_idx ON notifications (next_attempt_at) WHERE status = 'pending';
CREATE INDEX notifications_contact_idx ON notifications (contact_point_id, id DESC);

-- Every attempt, as the page's delivery log shows it.
CREATE TABLE notification_attempts (
    id bigserial PRIMARY KEY,
    notification_id bigint NOT NULL REFERENCES notifications (id) ON DELETE CASCADE,
    at timestamptz NOT NULL DEFAULT now(),
    outcome text NOT NULL CHECK (outcome IN ('delivered', 'retrying', 'failed')),
    detail text NOT NULL
);
CREATE INDEX notification_attempts_notification_idx ON notification_attempts (notification_id);
