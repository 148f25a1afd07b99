-- Roles and metric order (issue 6: dashboard editing).
--
-- A member is a `viewer` (watches) or an `editor` (also renames the dashboard,
-- edits its metrics and members). Rows that exist already become editors:
-- until now membership was the only access level and was granted by an
-- administrator, so every existing dashboard keeps people who can manage it
-- from the UI; making them viewers would leave every dashboard without an
-- editor until someone ran the CLI. New memberships default to `viewer`,
-- the least privilege, and callers say `editor` explicitly.
ALTER TABLE dashboard_members
    ADD COLUMN role text NOT NULL DEFAULT 'editor' CHECK (role IN ('viewer', 'editor'));
ALTER TABLE dashboard_members ALTER COLUMN role SET DEFAULT 'viewer';

-- The order of a dashboard's metrics, as editors arrange them. Existing rows
-- keep the id order they were shown in. A new metric takes the next value of
-- its own sequence, above every position a reorder writes (1..n), so it comes
-- last however it is inserted. Not unique: a reorder rewrites every position
-- of the dashboard in one statement, and ties fall back to the id.
ALTER TABLE metrics ADD COLUMN position bigint;
CREATE SEQUENCE metrics_position_seq OWNED BY metrics.position;
UPDATE metrics SET position = id;
SELECT setval('metrics_position_seq', coalesce((SELECT max(id) FROM metrics), 0) + 1, false);
ALTER TABLE metrics
    ALTER COLUMN position SET DEFAULT nextval('metrics_position_seq'),
    ALTER COLUMN position SET NOT NULL;
CREATE INDEX metrics_dashboard_position_idx ON metrics (dashboard_id, position, id);
