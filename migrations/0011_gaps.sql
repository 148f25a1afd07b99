-- Gap-free live updates and one order for stored values (issue 14).
--
-- Each dashboard's stored batches are numbered: every transaction that
-- stores values of a dashboard first takes its row here (`seq` + 1), then
-- inserts, then records the batch's newest value id. The row lock is held
-- until commit, so per dashboard the batches commit one after the other, in
-- `seq` order, and their value ids grow in that order too: "stored after"
-- is "has a larger id". The published message carries `seq`; a server that
-- sees a number skipped knows a publish was lost and reads what it missed
-- (server/live/gaps.py).
--
-- No foreign key to dashboards: a dashboard deleted while a batch is stored
-- would make that batch's insert of a new row fail its key check (and cost
-- the tick of every other dashboard); an orphan row is a few bytes.
CREATE TABLE dashboard_seqs (
    dashboard_id  bigint PRIMARY KEY,
    seq           bigint NOT NULL,
    last_value_id bigint NOT NULL
);

-- "The values of a metric stored after id N" (resume, a server filling a
-- gap) walk this index; the other one is in time order.
CREATE INDEX metric_values_stored_idx ON metric_values (metric_id, id);
