-- A client's question relayed to the business's admin chat: which message there stands for
-- which client chat, so an admin's reply to it goes back to that client. One row per admin
-- message; `question_key` (the relay job's key) lets a retried relay see what it already sent.
CREATE TABLE support_relays (
    business_id   TEXT NOT NULL,
    messenger     TEXT NOT NULL,
    admin_chat    TEXT NOT NULL,
    admin_message TEXT NOT NULL,
    chat_key      TEXT NOT NULL,
    question_key  TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (business_id, messenger, admin_chat, admin_message)
);
CREATE UNIQUE INDEX support_relays_question ON support_relays (business_id, question_key, messenger);
-- Forgetting a client erases their chat's rows.
CREATE INDEX support_relays_chat ON support_relays (business_id, chat_key);
