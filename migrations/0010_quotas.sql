-- Who made each API token (issue 14).
--
-- A token used to outlive the editor who made it: demoted, removed or deleted,
-- they could still push with it. Its creator is now recorded, and their tokens
-- for a dashboard are revoked in the transaction that ends their editorship
-- (common/db/dashboards.py, users.py). NULL: made from the CLI, or before this
-- migration (such tokens stay until revoked by hand), or the creator was
-- deleted (after the revocation).
ALTER TABLE api_tokens ADD COLUMN created_by bigint REFERENCES users (id) ON DELETE SET NULL;
-- The revocation finds a creator's active tokens; deleting a user finds all of them.
CREATE INDEX api_tokens_created_by_idx ON api_tokens (created_by, dashboard_id) WHERE revoked_at IS NULL;
