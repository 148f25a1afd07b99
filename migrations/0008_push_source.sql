-- A metric's values can come from the push API alone: source `push`, which
-- the worker never writes to (common/sources.py). It becomes the column's
-- default, so a metric made without naming a source gets no invented values.
-- Existing rows keep their source: a metric that was random stays random
-- until an editor says otherwise.
ALTER TABLE metrics DROP CONSTRAINT metrics_source_check;
ALTER TABLE metrics ADD CONSTRAINT metrics_source_check
    CHECK (source IN ('push', 'random') OR source ~ '^system:[a-z0-9_]+$');
ALTER TABLE metrics ALTER COLUMN source SET DEFAULT 'push';
