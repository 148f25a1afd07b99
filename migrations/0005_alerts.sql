-- Threshold alerts (issue 6).
--
-- A rule watches one metric: it fires once the condition (value above or
-- below the threshold) has held for at least `for_seconds`, by the stored
-- values' timestamps, and resolves at the first value for which it does not.
--
-- The evaluation state (`state`, `condition_since`, `evaluated_ts`) lives in
-- the rule's row, not in a process's memory: values of one metric may be
-- stored by any worker (whichever holds the dashboard's lease) or any server
-- process (push API), and a restart must not forget how long a condition has
-- held. Evaluators lock the rows (SELECT ... FOR UPDATE) so that two of them
-- never fire the same rule twice.
CREATE TABLE alert_rules (
    id bigserial PRIMARY KEY,
    metric_id bigint NOT NULL REFERENCES metrics (id) ON DELETE CASCADE,
    condition text NOT NULL CHECK (condition IN ('above', 'below')),
    threshold double precision NOT NULL,
    for_seconds integer NOT NULL DEFAULT 0 CHECK (for_seconds >= 0),
    -- NULL when made from the CLI, or once that user is deleted.
    created_by bigint REFERENCES users (id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    state text NOT NULL DEFAULT 'ok' CHECK (state IN ('ok', 'firing')),
    -- Timestamp of the first value of the current unbroken run meeting the condition.
    condition_since timestamptz,
    -- Timestamp of the newest value evaluated: older values arriving late are skipped.
    evaluated_ts timestamptz
);
CREATE INDEX alert_rules_metric_idx ON alert_rules (metric_id);

CREATE TABLE alert_events (
    id bigserial PRIMARY KEY,
    rule_id bigint NOT NULL REFERENCES alert_rules (id) ON DELETE CASCADE,
    state text NOT NULL CHECK (state IN ('firing', 'resolved')),
    value double precision NOT NULL,
    at timestamptz NOT NULL
);
CREATE INDEX alert_events_rule_at_idx ON alert_events (rule_id, at DESC);
