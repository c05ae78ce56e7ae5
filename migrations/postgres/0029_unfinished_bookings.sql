-- A new booking the client took to the contact step (consent, phone, name, confirmation) and
-- did not confirm: one row per attempt, with what they had chosen and given so far (JSON), so
-- that a CRM lead can be made of it once the client has been away long enough. The attempt is
-- open (`enqueued_at` NULL) while the client may still come back; a booking from the chat
-- closes it, and the periodic check enqueues its lead once and marks it.
CREATE TABLE unfinished_bookings (
    business_id TEXT NOT NULL,
    chat_key    TEXT NOT NULL,
    started_at  BIGINT NOT NULL,
    last_at     BIGINT NOT NULL,
    draft       TEXT NOT NULL,
    enqueued_at BIGINT,
    PRIMARY KEY (business_id, chat_key, started_at)
);
-- One open attempt per chat: a turn in the contact step updates it rather than adding one.
CREATE UNIQUE INDEX unfinished_bookings_open ON unfinished_bookings (business_id, chat_key)
    WHERE enqueued_at IS NULL;
-- The check walks the open attempts by age; the retention purge walks all of them by age.
CREATE INDEX unfinished_bookings_by_age ON unfinished_bookings (business_id, last_at);
