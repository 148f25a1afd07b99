-- Idempotency keys of pushes (README, "Pushing your own data").
--
-- A push sent with an `Idempotency-Key` header claims the key, per dashboard,
-- in the transaction that stores its values: a push sent again with that key
-- (its answer lost to a broken connection, a retrying client) is answered
-- with what the first one stored instead of storing it twice. `digest` is a
-- SHA-256 of the request (path and body): the same key with another request
-- is refused. `stored` holds the values the push stored, [[id, metric_id,
-- value, ts, seq], ...]; `published` is set once they were published, so that
-- a push sent again after its first attempt died before publishing publishes
-- them then. Kept 24 hours (worker/retention.py); an older key is a new one.
CREATE TABLE push_keys (
    dashboard_id bigint NOT NULL REFERENCES dashboards (id) ON DELETE CASCADE,
    idempotency_key text NOT NULL,
    digest bytea NOT NULL,
    stored jsonb,
    published boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (dashboard_id, idempotency_key)
);
CREATE INDEX push_keys_created_idx ON push_keys (created_at);
