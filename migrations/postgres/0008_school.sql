-- Applications from landing forms and the school-mode bot, kept before AlfaCRM sees them so
-- an outage there loses nothing.
CREATE TABLE school_applications (
    id          TEXT PRIMARY KEY,
    business_id TEXT NOT NULL,
    form        TEXT NOT NULL,
    name        TEXT NOT NULL,
    phone       TEXT NOT NULL,
    email       TEXT,
    course      TEXT,
    group_id    BIGINT,
    trial       BIGINT NOT NULL DEFAULT 0,
    comment     TEXT,
    source      TEXT NOT NULL,
    referrer    TEXT,
    created_at  BIGINT NOT NULL
);
CREATE INDEX school_applications_by_phone ON school_applications (business_id, phone);

-- Spam turned away by the forms endpoint, counted per form and reason.
CREATE TABLE school_spam (
    business_id TEXT NOT NULL,
    form        TEXT NOT NULL,
    reason      TEXT NOT NULL,
    hits        BIGINT NOT NULL,
    PRIMARY KEY (business_id, form, reason)
);
