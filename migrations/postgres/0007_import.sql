-- Initial imports of a client base (`zapis import`). A run is one file into one target; its
-- rows are the deduplicated clients, keyed by their normalised phone (or email), so a re-run
-- of the same file continues where the last one stopped and never creates a client twice.

CREATE TABLE import_runs (
    id          BIGSERIAL PRIMARY KEY,
    business_id TEXT NOT NULL,
    target      TEXT NOT NULL,
    -- SHA-256 of the file bytes and the column mapping: the same input continues the same run.
    digest      TEXT NOT NULL,
    file_name   TEXT NOT NULL,
    state       TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    UNIQUE (business_id, target, digest)
);

CREATE TABLE import_rows (
    run_id      BIGINT NOT NULL,
    -- The idempotency key: `phone:+79123456789` or `email:anna@mail.ru`.
    key         TEXT NOT NULL,
    -- The merged client (JSON) as it will be written.
    payload     TEXT NOT NULL,
    -- pending | done | failed
    state       TEXT NOT NULL,
    -- Planned: create | update | link | adopt; once done: created | updated | skipped.
    action      TEXT,
    -- The target's id: known before writing when the client already exists there.
    external_id TEXT,
    -- For a planned update: the phones and emails (JSON) the existing contact should carry.
    plan        TEXT,
    error       TEXT,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (run_id, key)
);
CREATE INDEX import_rows_by_state ON import_rows (run_id, state);
