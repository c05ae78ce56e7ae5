-- The console's people: who may sign in, with which role, for which businesses ('*' = all),
-- and their server-side sessions. A session row holds a digest of the cookie, never the
-- cookie itself, so a copy of the store signs nobody in.
CREATE TABLE console_users (
    id            TEXT PRIMARY KEY,
    login         TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);

CREATE TABLE console_user_businesses (
    user_id     TEXT NOT NULL,
    business_id TEXT NOT NULL,
    PRIMARY KEY (user_id, business_id)
);

CREATE TABLE console_sessions (
    token_hash TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL,
    csrf       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX console_sessions_by_user ON console_sessions (user_id);
