-- Per-dashboard API tokens for pushing values over HTTP. Only a SHA-256 of
-- each token is kept: tokens are 256 random bits, so a fast hash is enough
-- to make a leaked table useless (unlike passwords, they cannot be guessed).

CREATE TABLE api_tokens (
    id           bigserial PRIMARY KEY,
    dashboard_id bigint NOT NULL REFERENCES dashboards (id) ON DELETE CASCADE,
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    token_hash   bytea NOT NULL UNIQUE,
    prefix       text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);
CREATE INDEX api_tokens_dashboard_idx ON api_tokens (dashboard_id);
