-- What was said in each chat, so the CRM card can carry the conversation that led to a booking.
CREATE TABLE chat_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    business_id TEXT NOT NULL,
    chat_key    TEXT NOT NULL,
    at          BIGINT NOT NULL,
    author      TEXT NOT NULL,
    text        TEXT NOT NULL,
    buttons     TEXT
);
CREATE INDEX chat_log_by_chat ON chat_log (business_id, chat_key, at);
