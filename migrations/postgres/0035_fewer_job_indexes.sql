-- Every job changes state three times (pending, running, done), and a change of state is never
-- a HOT update, so each index of `sync_jobs` takes a new entry at every step.
-- `sync_jobs_by_state (state, system)` served no hot statement, and on a table without
-- statistics the planner ANDed it into each batch's completion, reading every entry the
-- running state ever had (most of them dead) to finish sixteen jobs by primary key.
-- `sync_jobs_order` is SQLite's ordering-key probe; PostgreSQL's is `sync_jobs_key`.
DROP INDEX sync_jobs_by_state;
DROP INDEX sync_jobs_order;
