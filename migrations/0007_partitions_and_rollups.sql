-- Retention and downsampling (issue 6).
--
-- 1. metric_values becomes a table partitioned by day on `ts`, so that
--    dropping a day of old values is dropping a table (no DELETE, no bloat,
--    no long locks). The existing rows move into it, keeping their ids: the
--    sequence is handed over, so new ids continue after the old ones and a
--    client resuming from a stored id finds it. A primary key of a
--    partitioned table must contain the partition key, hence (id, ts); its
--    leading `id` still serves "the value with this id" (resume), probed in
--    every partition's index.
--    A DEFAULT partition takes any value whose day has no partition yet, so
--    an insert never fails; the worker creates each day's partition ahead of
--    time (worker/partitions.py) and moves rows out of the default one.
--    Rewriting the rows takes time on a big table: writes wait meanwhile.
ALTER TABLE metric_values RENAME TO metric_values_unpartitioned;
ALTER INDEX metric_values_pkey RENAME TO metric_values_unpartitioned_pkey;
ALTER INDEX metric_values_latest_idx RENAME TO metric_values_unpartitioned_latest_idx;
ALTER INDEX metric_values_ts_idx RENAME TO metric_values_unpartitioned_ts_idx;

CREATE TABLE metric_values (
    id        bigint NOT NULL DEFAULT nextval('metric_values_id_seq'),
    metric_id bigint NOT NULL REFERENCES metrics (id) ON DELETE CASCADE,
    value     double precision NOT NULL,
    ts        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (id, ts)
) PARTITION BY RANGE (ts);
-- Owned by the new column, so dropping the old table keeps the sequence.
ALTER SEQUENCE metric_values_id_seq OWNED BY metric_values.id;
-- The same two indexes as before (0001, 0003), now on every partition.
CREATE INDEX metric_values_latest_idx ON metric_values (metric_id, ts DESC, id DESC) INCLUDE (value);
CREATE INDEX metric_values_ts_idx ON metric_values (ts);
CREATE TABLE metric_values_default PARTITION OF metric_values DEFAULT;

-- One partition per UTC day that has values, and for today and the next
-- three days. The days with values are found by hopping along the ts index
-- (one probe per day), not by scanning the table.
DO $$
DECLARE
    day timestamptz := (SELECT date_trunc('day', min(ts), 'UTC') FROM metric_values_unpartitioned);
    today timestamptz := date_trunc('day', now(), 'UTC');
BEGIN
    WHILE day IS NOT NULL AND day < today LOOP
        EXECUTE format(
            'CREATE TABLE %I PARTITION OF metric_values FOR VALUES FROM (%L) TO (%L)',
            'metric_values_p' || to_char(day AT TIME ZONE 'UTC', 'YYYYMMDD'), day, day + interval '1 day'
        );
        day := (SELECT date_trunc('day', min(ts), 'UTC') FROM metric_values_unpartitioned
                WHERE ts >= day + interval '1 day');
    END LOOP;
    FOR day IN SELECT generate_series(today, today + interval '3 days', interval '1 day') LOOP
        EXECUTE format(
            'CREATE TABLE %I PARTITION OF metric_values FOR VALUES FROM (%L) TO (%L)',
            'metric_values_p' || to_char(day AT TIME ZONE 'UTC', 'YYYYMMDD'), day, day + interval '1 day'
        );
    END LOOP;
END
$$;

INSERT INTO metric_values (id, metric_id, value, ts)
    SELECT id, metric_id, value, ts FROM metric_values_unpartitioned;
DROP TABLE metric_values_unpartitioned;
-- Autovacuum analyses the partitions but never the partitioned table itself.
ANALYZE metric_values;

-- 2. Per-minute rollups of every metric, kept longer than the raw values:
--    long ranges read them instead of millions of raw rows, and still show
--    the times whose raw values retention has dropped. `last_id` is the
--    newest value id of the minute (a bucketed history's `last_id`).
CREATE TABLE metric_rollups (
    metric_id bigint NOT NULL REFERENCES metrics (id) ON DELETE CASCADE,
    minute    timestamptz NOT NULL,
    min       double precision NOT NULL,
    max       double precision NOT NULL,
    sum       double precision NOT NULL,
    count     integer NOT NULL,
    last_id   bigint NOT NULL,
    PRIMARY KEY (metric_id, minute)
);
-- Rollup retention deletes by age alone.
CREATE INDEX metric_rollups_minute_idx ON metric_rollups (minute);

-- Where the worker's rollup passes have got to (one row). A pass
-- re-aggregates the minutes touched by values with ids in
-- (from_id, highest id now]; the next pass starts again at the previous
-- pass's highest id, so values committed late by a transaction that had its
-- ids before a pass began are still rolled up. `covered_until`: when the
-- last complete pass started; minutes before it are in the rollups.
CREATE TABLE rollup_progress (
    singleton     boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    from_id       bigint NOT NULL DEFAULT 0,
    last_hi       bigint NOT NULL DEFAULT 0,
    covered_until timestamptz
);
INSERT INTO rollup_progress DEFAULT VALUES;

-- 3. Per-dashboard retention of raw values, in days; NULL: the worker's
--    global --retention-days.
ALTER TABLE dashboards
    ADD COLUMN retention_days integer CHECK (retention_days BETWEEN 1 AND 36500);
