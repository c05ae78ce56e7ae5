-- The queue claim's ordering-key probe: the earliest open job of one key. Led by the key so
-- that it is the only index able to serve the probe, with or without planner statistics.
CREATE INDEX sync_jobs_key ON sync_jobs (ordering_key, id) WHERE state IN ('pending', 'running');
