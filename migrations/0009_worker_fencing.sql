-- Worker leases as rows with a fencing token (issue 14).
--
-- A lease used to be an advisory lock on a worker's own session, checked
-- there while the values went in on another connection: a worker stalled
-- between the two (a pause, a long GC, a frozen VM) kept its lock, or stored
-- after another had taken over. Now each dashboard's lease is a row whose
-- `token` changes whenever another worker takes it; a worker's INSERT of
-- values locks the rows of the leases it believes it holds (FOR SHARE) and
-- stores only where the token is still its own, in the same statement, so a
-- takeover and a stale worker's values are ordered by the database.
-- A lease not renewed by `expires_at` may be taken; keys are the dashboard
-- ids themselves (no int4 advisory-lock key to collide).
CREATE SEQUENCE dashboard_lease_token_seq;

CREATE TABLE dashboard_leases (
    dashboard_id bigint PRIMARY KEY REFERENCES dashboards (id) ON DELETE CASCADE,
    worker       uuid NOT NULL,
    token        bigint NOT NULL,
    expires_at   timestamptz NOT NULL
);
-- A worker renews and releases its own leases by its id.
CREATE INDEX dashboard_leases_worker_idx ON dashboard_leases (worker);
