-- The marketer's funnel per source: when a chat started (`start`) and when its client picked
-- a time and was asked for contacts (`contact`), each with the source the chat came from as
-- it was resolved then. Bookings carry their own source; these rows count the steps before.
CREATE TABLE chat_events (
    id           INTEGER PRIMARY KEY,
    business_id  TEXT NOT NULL,
    chat_key     TEXT NOT NULL,
    at           BIGINT NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('start', 'contact')),
    channel      TEXT NOT NULL,
    payload      TEXT,
    link_name    TEXT,
    utm_source   TEXT,
    utm_medium   TEXT,
    utm_campaign TEXT
);
-- The funnel reads a period of a business's events; the retention purge walks them by age.
CREATE INDEX chat_events_by_time ON chat_events (business_id, at);
-- An erasure finds the events of the client's chats.
CREATE INDEX chat_events_by_chat ON chat_events (business_id, chat_key);

-- The funnel counts the bookings made in a period (a failed request is no booking). Partial, so
-- the planner cannot take it for a business's bookings in creation order where the query
-- wants a client's (the latest booking of a phone).
CREATE INDEX bookings_by_created ON bookings (business_id, created_at) WHERE status <> 'failed';
