-- Statistics that stay true on long ranges (issue 15).
--
-- Per rollup minute, what a counter's rate and a histogram's percentiles
-- need besides min/max/sum/count:
--   first, last  the minute's first and last value (by ts, id);
--   increase     the increase between its consecutive values, a decrease
--                being a reset (common/stats.py::rise);
--   sketch_keys, sketch_counts
--                histograms only: how many of its values fall under each
--                key of the log-scale sketch (common/stats.py), keys
--                ascending. At most one entry per value, and per 2 % wide
--                band of magnitudes: a minute of latencies between 0.1 ms
--                and 100 s holds at most ~700 entries (8 bytes each).
-- NULL in minutes rolled up before this migration; the next rollup passes
-- start again at the first value id, so every minute whose raw values are
-- still kept gets them.
ALTER TABLE metric_rollups
    ADD COLUMN first double precision,
    ADD COLUMN last double precision,
    ADD COLUMN increase double precision,
    ADD COLUMN sketch_keys integer[],
    ADD COLUMN sketch_counts integer[];
UPDATE rollup_progress SET from_id = 0, last_hi = 0;
