-- Clients, bookings, conversations, tracked links and external ids.
-- Every table carries business_id so one deployment can host several businesses.
-- Instants are unix milliseconds (BIGINT) so both backends compare and sort them alike.

CREATE TABLE clients (
    id          TEXT PRIMARY KEY,
    business_id TEXT NOT NULL,
    phone       TEXT NOT NULL,
    name        TEXT NOT NULL,
    email       TEXT,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    UNIQUE (business_id, phone)
);

CREATE TABLE bookings (
    id             TEXT PRIMARY KEY,
    business_id    TEXT NOT NULL,
    client_id      TEXT NOT NULL REFERENCES clients (id),
    service_id     TEXT NOT NULL,
    service_name   TEXT NOT NULL,
    master_id      TEXT NOT NULL,
    master_name    TEXT NOT NULL,
    start_at       BIGINT NOT NULL,
    duration_min   BIGINT NOT NULL,
    price          BIGINT NOT NULL,
    status         TEXT NOT NULL,
    source         TEXT NOT NULL,
    source_payload TEXT,
    channel        TEXT,
    chat_id        TEXT,
    external_id    TEXT,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);
CREATE INDEX bookings_by_chat ON bookings (business_id, channel, chat_id, start_at);
CREATE INDEX bookings_by_client ON bookings (business_id, client_id, start_at);
CREATE INDEX bookings_by_payload ON bookings (business_id, source_payload);

CREATE TABLE dialogs (
    business_id TEXT NOT NULL,
    chat_key    TEXT NOT NULL,
    state       TEXT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (business_id, chat_key)
);

CREATE TABLE tracked_links (
    business_id TEXT NOT NULL,
    token       TEXT NOT NULL,
    name        TEXT NOT NULL,
    utm         TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (business_id, token),
    UNIQUE (business_id, name)
);

CREATE TABLE links (
    business_id TEXT NOT NULL,
    entity      TEXT NOT NULL,
    entity_id   TEXT NOT NULL,
    system      TEXT NOT NULL,
    external_id TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (business_id, entity, entity_id, system),
    UNIQUE (business_id, system, entity, external_id)
);

CREATE TABLE sandbox_records (
    id           TEXT PRIMARY KEY,
    business_id  TEXT NOT NULL,
    master_id    TEXT NOT NULL,
    service_id   TEXT NOT NULL,
    start_at     BIGINT NOT NULL,
    end_at       BIGINT NOT NULL,
    client_phone TEXT NOT NULL,
    client_name  TEXT NOT NULL,
    comment      TEXT NOT NULL,
    booking_id   TEXT NOT NULL,
    status       TEXT NOT NULL,
    created_at   BIGINT NOT NULL
);
-- The last line of defence against double booking: one active record per master and start.
CREATE UNIQUE INDEX sandbox_one_per_start ON sandbox_records (business_id, master_id, start_at)
    WHERE status = 'active';
CREATE INDEX sandbox_by_day ON sandbox_records (business_id, start_at);
