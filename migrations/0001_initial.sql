-- Users, dashboards, who may see which, their metrics and the metric values.

CREATE TABLE users (
    id            bigserial PRIMARY KEY,
    username      text NOT NULL UNIQUE CHECK (length(username) BETWEEN 1 AND 150),
    password_hash text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE dashboards (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    slug        text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9]+(-[a-z0-9]+)*$'),
    description text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE dashboard_members (
    dashboard_id bigint NOT NULL REFERENCES dashboards (id) ON DELETE CASCADE,
    user_id      bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (dashboard_id, user_id)
);
-- "Which dashboards may this user see" reads by user.
CREATE INDEX dashboard_members_user_idx ON dashboard_members (user_id);

CREATE TABLE metrics (
    id           bigserial PRIMARY KEY,
    dashboard_id bigint NOT NULL REFERENCES dashboards (id) ON DELETE CASCADE,
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    description  text NOT NULL DEFAULT '',
    type         text NOT NULL CHECK (type IN ('counter', 'gauge', 'histogram')),
    unit         text NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (dashboard_id, name)
);

CREATE TABLE metric_values (
    id        bigserial PRIMARY KEY,
    metric_id bigint NOT NULL REFERENCES metrics (id) ON DELETE CASCADE,
    value     double precision NOT NULL,
    ts        timestamptz NOT NULL DEFAULT now()
);
-- "The latest N values of a metric" walks this index backwards from the
-- metric's newest entry and stops after N: an index scan whatever the table
-- size. `value` is included so the scan never visits the heap.
CREATE INDEX metric_values_latest_idx ON metric_values (metric_id, ts DESC, id DESC) INCLUDE (value);
