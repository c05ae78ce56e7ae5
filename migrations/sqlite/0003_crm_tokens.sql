-- OAuth token pairs for external systems (amoCRM first), one row per business and system.
-- amoCRM refresh tokens are single-use and rotate: the new pair is written here, in one
-- statement, before the new access token is used anywhere, so a crash never leaves only a
-- spent refresh token behind. Instants are unix milliseconds, like every other table.

CREATE TABLE oauth_tokens (
    business_id   TEXT NOT NULL,
    system        TEXT NOT NULL,
    access_token  TEXT NOT NULL,
    refresh_token TEXT NOT NULL,
    expires_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    PRIMARY KEY (business_id, system)
);
