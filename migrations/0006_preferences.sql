-- Personal preferences (issue 6): how each user likes to see things.
--
-- Theme is per user: it is how the whole site looks to them, so it follows
-- them from one dashboard to the next and onto the dashboard list. The rest
-- is per user and dashboard: which cards, in what order, over what range and
-- drawn how depends on what that dashboard shows.

CREATE TABLE user_preferences (
    user_id bigint PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    theme   text NOT NULL DEFAULT 'light' CHECK (theme IN ('light', 'dark'))
);

-- Keyed by the membership, so only members can have a row, and deleting the
-- user or the dashboard (which deletes the membership) or ending the
-- membership deletes it too: someone added again starts from the defaults.
-- Metric ids are not foreign keys (arrays cannot be): ids of metrics deleted
-- later stay here and are left out when read (common/db/preferences.py).
CREATE TABLE dashboard_preferences (
    dashboard_id      bigint NOT NULL,
    user_id           bigint NOT NULL,
    hidden_metric_ids bigint[] NOT NULL DEFAULT '{}',
    -- Metrics listed here come first, in this order; the others follow in the
    -- dashboard's order. Empty: the dashboard's order.
    card_order        bigint[] NOT NULL DEFAULT '{}',
    default_range     text NOT NULL DEFAULT '5m' CHECK (default_range IN ('5m', '1h', '24h', '7d')),
    chart_style       text NOT NULL DEFAULT 'line' CHECK (chart_style IN ('line', 'area', 'points')),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (dashboard_id, user_id),
    FOREIGN KEY (dashboard_id, user_id) REFERENCES dashboard_members (dashboard_id, user_id) ON DELETE CASCADE
);
