-- Every job changes state three times (pending, running, done), so each index of `sync_jobs`
-- takes a new entry at every step. `sync_jobs_by_state (state, system)` served no hot
-- statement. `sync_jobs_order` stays: it is SQLite's ordering-key probe.
DROP INDEX sync_jobs_by_state;
