-- The durable sync engine: jobs (the transactional outbox), the append-only journal of every
-- attempt, per-system outages (one alert per outage) and the raw webhook inbox.

CREATE TABLE sync_jobs (
    id              BIGSERIAL PRIMARY KEY,
    business_id     TEXT NOT NULL,
    system          TEXT NOT NULL,
    operation       TEXT NOT NULL,
    payload         TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    ordering_key    TEXT,
    state           TEXT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    auth_refreshes  BIGINT NOT NULL DEFAULT 0,
    run_at          BIGINT NOT NULL,
    lease_until     BIGINT,
    worker_id       TEXT,
    last_error      TEXT,
    -- max_age counts from here: enqueue time, reset when an operator revives a dead job.
    age_from        BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    finished_at     BIGINT,
    UNIQUE (business_id, system, idempotency_key)
);
CREATE INDEX sync_jobs_due ON sync_jobs (system, run_at, id) WHERE state = 'pending';
CREATE INDEX sync_jobs_lease ON sync_jobs (lease_until) WHERE state = 'running';
CREATE INDEX sync_jobs_order ON sync_jobs (business_id, system, ordering_key, id)
    WHERE state IN ('pending', 'running');
CREATE INDEX sync_jobs_by_state ON sync_jobs (state, system);

CREATE TABLE sync_journal (
    id          BIGSERIAL PRIMARY KEY,
    at          BIGINT NOT NULL,
    business_id TEXT NOT NULL,
    system      TEXT NOT NULL,
    operation   TEXT NOT NULL,
    job_id      BIGINT NOT NULL,
    attempt     BIGINT NOT NULL,
    outcome     TEXT NOT NULL,
    http_status BIGINT,
    duration_ms BIGINT NOT NULL,
    error       TEXT
);
CREATE INDEX sync_journal_by_job ON sync_journal (job_id, id);
CREATE INDEX sync_journal_by_system ON sync_journal (business_id, system, at);
CREATE INDEX sync_journal_by_time ON sync_journal (at);
-- Audit rows are never rewritten or removed.
CREATE FUNCTION sync_journal_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'sync_journal is append-only'; END;
$$;
CREATE TRIGGER sync_journal_no_change BEFORE UPDATE OR DELETE ON sync_journal
FOR EACH ROW EXECUTE FUNCTION sync_journal_append_only();

CREATE TABLE sync_outages (
    business_id   TEXT NOT NULL,
    system        TEXT NOT NULL,
    failing_since BIGINT NOT NULL,
    last_error    TEXT,
    alerted_at    BIGINT,
    PRIMARY KEY (business_id, system)
);

CREATE TABLE sync_inbox (
    id          BIGSERIAL PRIMARY KEY,
    business_id TEXT NOT NULL,
    source      TEXT NOT NULL,
    dedup_key   TEXT NOT NULL,
    headers     TEXT NOT NULL,
    body        TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    UNIQUE (business_id, source, dedup_key)
);
