-- A claim walks one business's due jobs of one system (sync/jobs/claim.rs). Led by the system
-- alone, the walk stepped over every earlier due job of every other business on the way to a
-- business's first, so one business's backlog slowed every other business's claims.
DROP INDEX sync_jobs_due;
CREATE INDEX sync_jobs_due ON sync_jobs (business_id, system, run_at, id) WHERE state = 'pending';
