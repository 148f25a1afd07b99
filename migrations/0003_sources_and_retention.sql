-- Where the worker takes each metric's values from: `random` (the demo
-- generator) or a reading of this host, `system:<reading>` (the readings are
-- listed in common/sources.py). Existing metrics keep producing random values.
-- A constant default: PostgreSQL adds the column without rewriting the table.
ALTER TABLE metrics
    ADD COLUMN source text NOT NULL DEFAULT 'random'
    CHECK (source = 'random' OR source ~ '^system:[a-z0-9_]+$');

-- Retention deletes "values older than N days" of every metric, i.e. by time
-- alone, which the per-metric index cannot serve. Built in this migration's
-- transaction, so on a large existing table writes to metric_values wait
-- while it builds (CREATE INDEX CONCURRENTLY cannot run in a transaction).
CREATE INDEX metric_values_ts_idx ON metric_values (ts);
